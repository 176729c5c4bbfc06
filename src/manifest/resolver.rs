//! The resolver's common checks: reading a manifest file, numbers in range and finite,
//! names, seeds, and the files a manifest names.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::error::{self, ManifestError};

/// The largest manifest read, in bytes: manifests are short text files.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Reads a manifest's text: a regular file of at most [`MAX_MANIFEST_BYTES`] (a pipe such as
/// `<(cat m.toml)` is read too), UTF-8, errors naming the file and `what` it is.
pub(super) fn read_text(path: &Path, what: &str) -> Result<String, ManifestError> {
    use std::io::Read;
    let fail = |msg: String| ManifestError::whole_file(path, msg);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if meta.is_dir() {
        return Err(fail(format!(
            "is a directory; allowed: {what} as a TOML file"
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(fail(format!(
            "is larger than {} MiB; allowed: {what} as a TOML file of at most that size",
            MAX_MANIFEST_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        ManifestError::at(
            path,
            &text,
            Some(valid..valid),
            error::key_at(&text, valid),
            format!("invalid UTF-8 at byte {valid}; allowed: {what} as UTF-8 text"),
        )
    })
}

/// Numbers a manifest may hold: floats must be finite (TOML allows `nan` and `inf`, which no
/// key accepts).
pub(super) trait Finite {
    /// False for NaN and the infinities.
    fn is_finite_number(&self) -> bool;
}

macro_rules! always_finite {
    ($($t:ty),*) => {$(impl Finite for $t {
        fn is_finite_number(&self) -> bool {
            true
        }
    })*};
}

always_finite!(u32, u64, usize, i64);

impl Finite for f64 {
    fn is_finite_number(&self) -> bool {
        self.is_finite()
    }
}

impl Finite for f32 {
    fn is_finite_number(&self) -> bool {
        self.is_finite()
    }
}

/// How the files a manifest names (data folders, checkpoints) are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FileChecks {
    /// A missing or bad file is an error (`validate`, `run`).
    Require,
    /// A missing or bad file is a warning (`plan`, a dry run).
    Warn,
    /// Not looked at (a run's own copy, whose paths belong to the original's folder).
    Skip,
}

pub(super) struct Resolver<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) files: FileChecks,
    /// File problems found under [`FileChecks::Warn`].
    pub(super) warnings: std::cell::RefCell<Vec<ManifestError>>,
}

impl Resolver<'_> {
    /// Whether files the manifest names are looked at.
    pub(super) fn check_files(&self) -> bool {
        self.files != FileChecks::Skip
    }

    /// A problem with a file the manifest names: an error, or a warning in a dry run.
    pub(super) fn file_problem(&self, error: ManifestError) -> Result<(), ManifestError> {
        match self.files {
            FileChecks::Warn => {
                self.warnings.borrow_mut().push(error);
                Ok(())
            }
            _ => Err(error),
        }
    }

    /// Checks a checkpoint file a manifest names: a readable safetensors file with finite
    /// values (its shapes are checked against the network when a cell loads it).
    pub(super) fn checkpoint_file(
        &self,
        path: &Path,
        span: Range<usize>,
        key: String,
        allowed: &str,
    ) -> Result<(), ManifestError> {
        if !self.check_files() {
            return Ok(());
        }
        // A shipped network that its folder's SHA256SUMS lists: missing or altered is named
        // with the digest it should have.
        if let Err(e) = crate::nn::digest::verify(path) {
            return self.file_problem(self.error(span, key, e.to_string()));
        }
        let problem = match crate::record::not_a_file(path) {
            Some(p) => Some(format!(
                "checkpoint {} {p} (paths are relative to the manifest's folder); allowed: \
                 {allowed}",
                path.display()
            )),
            None => crate::nn::checkpoint::read_tensors(path)
                .err()
                .map(|e| e.to_string()),
        };
        match problem {
            Some(msg) => self.file_problem(self.error(span, key, msg)),
            None => Ok(()),
        }
    }

    pub(super) fn error(&self, span: Range<usize>, key: String, message: String) -> ManifestError {
        ManifestError::at(self.path, self.text, Some(span), Some(key), message)
    }

    pub(super) fn check_range<T: PartialOrd + Copy + std::fmt::Display + Finite>(
        &self,
        value: &Spanned<T>,
        key: String,
        allowed: Range<T>,
        inclusive_end: bool,
        what: &str,
    ) -> Result<T, ManifestError> {
        let v = *value.get_ref();
        self.finite(value, &key)?;
        let above = if inclusive_end {
            v > allowed.end
        } else {
            v >= allowed.end
        };
        if v < allowed.start || above {
            let close = if inclusive_end { "]" } else { ")" };
            let msg = format!(
                "{v} is out of range; allowed: {what} in [{}, {}{close}",
                allowed.start, allowed.end
            );
            return Err(self.error(value.span(), key, msg));
        }
        Ok(v)
    }

    /// Rejects NaN and the infinities, naming the key.
    pub(super) fn finite<T: Finite + std::fmt::Display>(
        &self,
        value: &Spanned<T>,
        key: &str,
    ) -> Result<(), ManifestError> {
        if value.get_ref().is_finite_number() {
            return Ok(());
        }
        let msg = format!(
            "{} is not allowed; allowed: a finite number (nan and inf are never valid)",
            value.get_ref()
        );
        Err(self.error(value.span(), key.to_owned(), msg))
    }

    /// A name that can be part of a folder name: letters, digits, '-', '_' and '.',
    /// starting with a letter or digit.
    pub(super) fn plain_name(
        &self,
        name: &Spanned<String>,
        key: String,
    ) -> Result<String, ManifestError> {
        let n = name.get_ref();
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            let msg = format!(
                "{n:?} cannot name a results folder; allowed: letters, digits, '-', '_' and \
                 '.', starting with a letter or digit"
            );
            return Err(self.error(name.span(), key, msg));
        }
        Ok(n.clone())
    }

    /// One error when two jobs of `table` share a name.
    pub(super) fn unique_names<'n>(
        &self,
        table: &str,
        names: impl Iterator<Item = &'n str>,
    ) -> Result<(), ManifestError> {
        let mut seen = HashSet::new();
        for (i, n) in names.enumerate() {
            if !seen.insert(n) {
                let msg = format!("two [[{table}]] jobs are named `{n}`; names must differ");
                return Err(ManifestError::keyed(
                    self.path,
                    format!("{table}[{i}].name"),
                    msg,
                ));
            }
        }
        Ok(())
    }

    /// A job's `seeds`, or the manifest seed when absent.
    pub(super) fn seed_list(
        &self,
        seeds: Option<Spanned<Vec<u64>>>,
        key: String,
        seed: u64,
    ) -> Result<Vec<u64>, ManifestError> {
        match seeds {
            None => Ok(vec![seed]),
            Some(seeds) => {
                let mut unique = HashSet::new();
                if seeds.get_ref().is_empty() || !seeds.get_ref().iter().all(|s| unique.insert(*s))
                {
                    let msg = "allowed: a non-empty list of distinct seeds".to_owned();
                    return Err(self.error(seeds.span(), key, msg));
                }
                Ok(seeds.into_inner())
            }
        }
    }

    /// An optional number: `default` when the key is absent, else its value checked against
    /// `allowed` (end included when `inclusive_end`), naming `key`.
    pub(super) fn or_in_range<T: PartialOrd + Copy + std::fmt::Display + Finite>(
        &self,
        value: &Option<Spanned<T>>,
        key: String,
        default: T,
        allowed: Range<T>,
        inclusive_end: bool,
        what: &str,
    ) -> Result<T, ManifestError> {
        match value {
            None => Ok(default),
            Some(v) => self.check_range(v, key, allowed, inclusive_end, what),
        }
    }

    /// An optional number that must be > 0: `default` when the key is absent.
    /// A `max_batch` key: rows per forward pass when stochastic passes are stacked
    /// ([`crate::defense::DEFAULT_MAX_BATCH`] by default), an integer >= 1.
    pub(super) fn max_batch(
        &self,
        value: &Option<Spanned<u32>>,
        key: String,
    ) -> Result<u32, ManifestError> {
        let default = crate::defense::DEFAULT_MAX_BATCH as u32;
        self.or_positive(
            value,
            key,
            default,
            "an integer >= 1 (rows per forward pass)",
        )
    }

    pub(super) fn or_positive<T: PartialOrd + Default + Copy + std::fmt::Display + Finite>(
        &self,
        value: &Option<Spanned<T>>,
        key: String,
        default: T,
        what: &str,
    ) -> Result<T, ManifestError> {
        match value {
            None => Ok(default),
            Some(v) => self.positive(v, key, what),
        }
    }
}
