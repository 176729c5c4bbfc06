//! Safetensors checkpoints of a [`Model`]'s parameters, checked name by name and shape by
//! shape on load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::Model;

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file's tensors do not fit the network.
    #[error(
        "{path}: the checkpoint does not fit the {arch} network: {problems}; it was probably \
         saved from another architecture or size"
    )]
    Mismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The network it was loaded into.
        arch: String,
        /// The first differences found (missing, unexpected or misshapen tensors).
        problems: String,
    },
}

fn io(path: &Path, message: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Writes every parameter and buffer of `model` to `path` (safetensors), atomically: a
/// temporary file in the same folder is renamed over `path`.
pub fn save(model: &Model, path: &Path) -> Result<(), CheckpointError> {
    let vars: BTreeMap<String, Tensor> = model.vs.variables().into_iter().collect();
    let named: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(k, v)| (k, v.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint")
        .suffix(".safetensors")
        .tempfile_in(dir)
        .map_err(|e| {
            io(
                path,
                format!("cannot create a file in {}: {e}", dir.display()),
            )
        })?;
    Tensor::write_safetensors(&named, tmp.path()).map_err(|e| io(path, e))?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// Loads `path` into `model`. Every tensor of the network must be present with its shape and
/// element kind, and the file must hold nothing else.
pub fn load(model: &mut Model, path: &Path) -> Result<(), CheckpointError> {
    if !path.is_file() {
        return Err(io(path, "no such checkpoint file"));
    }
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| io(path, format!("not a readable safetensors checkpoint ({e})")))?;
    let file: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let vars: BTreeMap<String, Tensor> = model.vs.variables().into_iter().collect();
    let mut problems = Vec::new();
    for (name, var) in &vars {
        match file.get(name) {
            None => problems.push(format!("`{name}` {:?} is missing", var.size())),
            Some(t) if t.size() != var.size() => problems.push(format!(
                "`{name}` has shape {:?}, the network needs {:?}",
                t.size(),
                var.size()
            )),
            Some(t) if !same_family(t.kind(), var.kind()) => problems.push(format!(
                "`{name}` holds {:?}, the network needs {:?}",
                t.kind(),
                var.kind()
            )),
            Some(_) => {}
        }
    }
    for name in file.keys().filter(|k| !vars.contains_key(*k)) {
        problems.push(format!("`{name}` is not a tensor of this network"));
    }
    if !problems.is_empty() {
        let shown = problems.len().min(4);
        let mut text = problems[..shown].join("; ");
        if problems.len() > shown {
            text += &format!("; and {} more", problems.len() - shown);
        }
        return Err(CheckpointError::Mismatch {
            path: path.to_owned(),
            arch: model.arch.name().to_owned(),
            problems: text,
        });
    }
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let src = &file[&name];
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(())
}

/// Float checkpoints load into float networks of another precision; integers stay integers.
fn same_family(a: Kind, b: Kind) -> bool {
    let float = |k| matches!(k, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double);
    float(a) == float(b)
}
