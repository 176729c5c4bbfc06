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
    /// A tensor holds NaN or infinite values (a diverged training run, say).
    #[error(
        "{path}: tensor `{tensor}` holds NaN or infinite values; allowed: finite weights (the \
         network was probably saved after training diverged)"
    )]
    NonFinite {
        /// The checkpoint file.
        path: PathBuf,
        /// The first such tensor.
        tensor: String,
    },
}

fn io(path: &Path, message: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Writes every parameter and buffer of `model` to `path` (safetensors), atomically (see
/// [`write_tensors`]).
pub fn save(model: &Model, path: &Path) -> Result<(), CheckpointError> {
    let named: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    write_tensors(path, &named)
}

/// Writes named tensors to `path` (safetensors) atomically: a temporary file in the same
/// folder, synced, renamed over `path`, the folder synced. Tensors are copied to the host
/// first; a failure leaves no temporary file behind.
pub fn write_tensors(path: &Path, named: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let host: Vec<(String, Tensor)> = named
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    crate::record::write_atomic_with(path, |tmp| {
        Tensor::write_safetensors(&host, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| io(path, e))
}

/// Reads named tensors from a safetensors file and refuses NaN or infinite values, naming
/// the first such tensor.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    if let Some(problem) = crate::record::not_a_file(path) {
        return Err(io(
            path,
            format!("{problem}; allowed: a safetensors checkpoint file"),
        ));
    }
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| io(path, format!("not a readable safetensors checkpoint ({e})")))?;
    let file: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    for (name, t) in &file {
        if t.is_floating_point() && t.numel() > 0 && t.isfinite().all().int64_value(&[]) == 0 {
            return Err(CheckpointError::NonFinite {
                path: path.to_owned(),
                tensor: name.clone(),
            });
        }
    }
    Ok(file)
}

/// Loads `path` into `model`. Every tensor of the network must be present with its shape and
/// element kind, and the file must hold nothing else.
pub fn load(model: &mut Model, path: &Path) -> Result<(), CheckpointError> {
    let file = read_tensors(path)?;
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
