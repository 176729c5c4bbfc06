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
    /// A file listed in a `SHA256SUMS` beside it is missing or altered.
    #[error(transparent)]
    Digest(#[from] super::digest::DigestError),
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
/// the first such tensor. A file that a `SHA256SUMS` beside it lists must have the listed
/// digest ([`super::digest`]).
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    super::digest::verify(path)?;
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

/// A folder of numbered checkpoints `state-<n>.*` (n: agent steps or iterations done). A
/// checkpoint is its data files plus a TOML description, written last: it counts only once
/// the description is there. The newest description wins; committing a checkpoint removes
/// the older ones (their descriptions first).
#[derive(Clone, Debug)]
pub struct CheckpointFolder {
    dir: PathBuf,
}

impl CheckpointFolder {
    /// The folder `dir` (created by [`CheckpointFolder::create`] or on first commit).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Creates the folder if needed.
    pub fn create(&self) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file-name stem of checkpoint `n`: `state-<n>` with 12 digits.
    pub fn stem(n: u64) -> String {
        format!("state-{n:012}")
    }

    /// The path of a data file of a checkpoint in this folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The number of a checkpoint file name (`state-<digits>.<ext>`) and whether it is a
    /// description.
    fn parse_name(name: &str) -> Option<(u64, bool)> {
        let rest = name.strip_prefix("state-")?;
        let (digits, ext) = rest.split_once('.')?;
        Some((digits.parse().ok()?, ext == "toml"))
    }

    /// Makes checkpoint `n` count: writes its description atomically (its data files must
    /// already be written), then removes every older checkpoint.
    pub fn commit<T: serde::Serialize>(
        &self,
        n: u64,
        description: &T,
    ) -> Result<(), CheckpointError> {
        let path = self.dir.join(format!("{}.toml", Self::stem(n)));
        let text = toml::to_string(description).map_err(|e| io(&path, e))?;
        crate::record::write_atomic(&path, text.as_bytes()).map_err(|e| io(&path, e))?;
        self.prune(n)
    }

    /// Removes every checkpoint older than `n`: descriptions first, so that a checkpoint
    /// cut off halfway never counts.
    fn prune(&self, n: u64) -> Result<(), CheckpointError> {
        let mut older: Vec<(bool, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
            if let Some((k, description)) = Self::parse_name(name) {
                if k < n {
                    older.push((!description, path));
                }
            }
        }
        older.sort();
        for (_, path) in older {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// The newest checkpoint whose description parses and satisfies `complete` (its data
    /// files exist, say): its number, description and the description's path. `None` when
    /// the folder has none (or does not exist).
    pub fn newest<T: serde::de::DeserializeOwned>(
        &self,
        complete: impl Fn(&T) -> bool,
    ) -> Result<Option<(u64, T, PathBuf)>, CheckpointError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.dir, e)),
        };
        let mut best: Option<(u64, T, PathBuf)> = None;
        for entry in entries {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
            let Some((n, true)) = Self::parse_name(name) else {
                continue;
            };
            if best.as_ref().is_some_and(|(b, _, _)| *b >= n) {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let description: T = toml::from_str(&text).map_err(|e| {
                io(
                    &path,
                    format!("not a checkpoint description of this cell ({e})"),
                )
            })?;
            if complete(&description) {
                best = Some((n, description, path));
            }
        }
        Ok(best)
    }
}
