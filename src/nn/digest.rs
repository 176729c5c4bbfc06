//! SHA-256 digests of shipped network files.
//!
//! A folder may hold a `SHA256SUMS` file in the format `sha256sum` writes and `sha256sum -c`
//! checks: per line 64 hexadecimal digits, a space, a space or `*`, and a file name in that
//! folder (`./name` as `sha256sum ./name` writes it, too). Every network file it lists is checked against it whenever it is read
//! ([`crate::nn::checkpoint::read_tensors`]), so a shipped model that is missing, truncated
//! or altered is refused with the digest it should have, not loaded or half-loaded.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The digest list's file name.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Why a listed file does not match its digest, or the list cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The list names the file but it is not there.
    #[error(
        "{path}: missing; {sums} lists it with SHA-256 {expected} (restore it, e.g. `git \
         checkout -- {path}`)"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// The list.
        sums: PathBuf,
        /// The digest the list gives.
        expected: String,
    },
    /// The file's digest is not the listed one.
    #[error(
        "{path}: SHA-256 is {found}, but {sums} expects {expected}: the file was altered or \
         damaged (restore it, e.g. `git checkout -- {path}`)"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The list.
        sums: PathBuf,
        /// The digest the list gives.
        expected: String,
        /// The file's digest.
        found: String,
    },
    /// A line of the list is not `<64 hex digits>  <file name>`.
    #[error(
        "{sums} line {line}: {problem}; allowed: `<64 hex digits>  <file name>` per line, as \
         `sha256sum` writes"
    )]
    List {
        /// The list.
        sums: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The list or the file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The hexadecimal SHA-256 digest of a file's bytes.
pub fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The digest that the `SHA256SUMS` beside `path` lists for it, with that list's path; `None`
/// when there is no list or it does not name the file.
pub fn listed_digest(path: &Path) -> Result<Option<(PathBuf, String)>, DigestError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let sums = path.with_file_name(SUMS_FILE);
    let text = match std::fs::read_to_string(&sums) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DigestError::Io {
                path: sums,
                message: e.to_string(),
            })
        }
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |problem: &str| DigestError::List {
            sums: sums.clone(),
            line: i + 1,
            problem: problem.to_owned(),
        };
        let (digest, rest) = line
            .split_once(' ')
            .ok_or_else(|| problem("no space after the digest"))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(problem("the digest is not 64 hexadecimal digits"));
        }
        let listed = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(|| problem("the digest is not followed by two spaces or ` *`"))?;
        // `sha256sum ./name` writes the name as given, `./` included.
        let listed = listed.strip_prefix("./").unwrap_or(listed);
        if listed == name {
            return Ok(Some((sums, digest.to_ascii_lowercase())));
        }
    }
    Ok(None)
}

/// Checks `path` against the `SHA256SUMS` beside it, if that lists it: the file must exist
/// and have the listed digest. Files that no list names pass unchecked.
pub fn verify(path: &Path) -> Result<(), DigestError> {
    let Some((sums, expected)) = listed_digest(path)? else {
        return Ok(());
    };
    if !path.is_file() {
        return Err(DigestError::Missing {
            path: path.to_owned(),
            sums,
            expected,
        });
    }
    let found = sha256_hex(path).map_err(|e| DigestError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if found != expected {
        return Err(DigestError::Mismatch {
            path: path.to_owned(),
            sums,
            expected,
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn folder(sums: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.safetensors"), b"abc").unwrap();
        std::fs::write(dir.path().join(SUMS_FILE), sums).unwrap();
        dir
    }

    #[test]
    fn the_digest_of_abc_is_the_published_one() {
        let dir = folder("");
        assert_eq!(
            sha256_hex(&dir.path().join("net.safetensors")).unwrap(),
            ABC
        );
    }

    #[test]
    fn a_listed_file_with_its_digest_passes_in_either_sha256sum_mode() {
        for sep in ["  ", " *"] {
            let dir = folder(&format!("# shipped networks\n{ABC}{sep}net.safetensors\n"));
            verify(&dir.path().join("net.safetensors")).unwrap();
        }
    }

    #[test]
    fn a_file_listed_as_dot_slash_name_is_checked_like_its_plain_name() {
        for sep in ["  ./", " *./"] {
            let dir = folder(&format!("{ABC}{sep}net.safetensors\n"));
            let path = dir.path().join("net.safetensors");
            verify(&path).unwrap();
            std::fs::write(&path, b"abd").unwrap();
            let e = verify(&path).unwrap_err().to_string();
            assert!(e.contains("altered or damaged"), "{sep}: {e}");
        }
    }

    #[test]
    fn an_altered_file_is_refused_with_the_expected_digest() {
        let dir = folder(&format!("{ABC}  net.safetensors\n"));
        let path = dir.path().join("net.safetensors");
        std::fs::write(&path, b"abd").unwrap();
        let e = verify(&path).unwrap_err().to_string();
        assert!(e.contains("net.safetensors") && e.contains(ABC), "{e}");
        assert!(e.contains("altered or damaged"), "{e}");
    }

    #[test]
    fn a_missing_listed_file_is_named_with_its_digest() {
        let dir = folder(&format!("{ABC}  other.safetensors\n"));
        let e = verify(&dir.path().join("other.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("other.safetensors: missing") && e.contains(ABC),
            "{e}"
        );
    }

    #[test]
    fn unlisted_files_and_folders_without_a_list_pass_unchecked() {
        let dir = folder(&format!("{ABC}  other.safetensors\n"));
        verify(&dir.path().join("net.safetensors")).unwrap();
        let bare = tempfile::tempdir().unwrap();
        std::fs::write(bare.path().join("net.safetensors"), b"xyz").unwrap();
        verify(&bare.path().join("net.safetensors")).unwrap();
    }

    #[test]
    fn a_malformed_list_line_is_named() {
        let dir = folder(&format!(
            "{ABC}  other.safetensors\nabc123  net.safetensors\n"
        ));
        let e = verify(&dir.path().join("net.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SHA256SUMS line 2") && e.contains("64 hexadecimal"),
            "{e}"
        );
    }
}
