//! The published archives, `cifar-10-binary.tar.gz` and `cifar-10-python.tar.gz`, read as
//! one gzip stream without unpacking them (`flate2` and `tar`). A batch file is found by its
//! file name in any folder of the archive. Reading to a member needs every byte before it to
//! be decompressed, so each call reads the archive once from its start.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::{CifarError, Format, Split, FILE_BYTES};

/// What a visit to a member asks for next.
enum Step {
    /// Go on to the next member.
    Next,
    /// Stop reading the archive.
    Stop,
}

/// One member of an archive while it is visited.
struct Member<'a, 'b> {
    /// The archive.
    archive: &'a Path,
    /// The member's path inside it.
    path: String,
    /// The member's file name.
    name: String,
    /// Its size in bytes, from its header.
    size: u64,
    /// Its bytes, read once.
    entry: &'b mut dyn Read,
}

impl Member<'_, '_> {
    /// The member's bytes; a short read names the member.
    fn read(&mut self) -> Result<Vec<u8>, CifarError> {
        let mut bytes = Vec::with_capacity(self.size as usize);
        self.entry
            .read_to_end(&mut bytes)
            .map_err(|source| CifarError::Archive {
                archive: self.archive.to_path_buf(),
                member: Some(self.path.clone()),
                source,
            })?;
        Ok(bytes)
    }
}

/// Visits the archive's regular files in order until `visit` stops; an error while reading
/// names the member that was being read.
fn walk<'a>(
    archive: &'a Path,
    mut visit: impl FnMut(&mut Member<'a, '_>) -> Result<Step, CifarError>,
) -> Result<(), CifarError> {
    let file = File::open(archive).map_err(|source| CifarError::Io {
        file: archive.to_path_buf(),
        source,
    })?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut last: Option<String> = None;
    let broken = |last: &Option<String>, source| CifarError::Archive {
        archive: archive.to_path_buf(),
        member: last.clone(),
        source,
    };
    let entries = tar.entries().map_err(|e| broken(&last, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| broken(&last, e))?;
        let path = entry
            .path()
            .map_err(|e| broken(&last, e))?
            .to_string_lossy()
            .into_owned();
        last = Some(path.clone());
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = entry.size();
        let mut member = Member {
            archive,
            path,
            name,
            size,
            entry: &mut entry,
        };
        if let Step::Stop = visit(&mut member)? {
            break;
        }
    }
    Ok(())
}

/// The version of the archive's first batch file.
pub(super) fn format(archive: &Path) -> Result<Format, CifarError> {
    let mut found = None;
    let mut seen = Vec::new();
    walk(archive, |m| {
        found = Format::of_file(&m.name);
        if seen.len() < 8 {
            seen.push(m.path.clone());
        }
        Ok(if found.is_some() {
            Step::Stop
        } else {
            Step::Next
        })
    })?;
    found.ok_or_else(|| CifarError::Unrecognised {
        path: archive.to_path_buf(),
        found: if seen.is_empty() {
            "a gzip-compressed tar archive without files".to_string()
        } else {
            format!(
                "a gzip-compressed tar archive whose files are {}",
                seen.join(", ")
            )
        },
    })
}

/// The first of `format`'s files that `have` lacks, as a missing-member error.
fn missing(
    archive: &Path,
    format: Format,
    wanted: &[&str],
    have: &[String],
) -> Result<(), CifarError> {
    match wanted.iter().find(|w| !have.iter().any(|h| h == *w)) {
        None => Ok(()),
        Some(member) => Err(CifarError::MissingMember {
            archive: archive.to_path_buf(),
            member: member.to_string(),
            format,
            found: if have.is_empty() {
                "(none)".to_string()
            } else {
                have.join(", ")
            },
        }),
    }
}

/// Reads the whole archive, checking that it holds all six of `format`'s files (and, for the
/// binary version, that each has a whole file's size).
pub(super) fn check(archive: &Path, format: Format) -> Result<(), CifarError> {
    let mut have = Vec::new();
    walk(archive, |m| {
        if format.all_files().any(|n| n == m.name) && !have.contains(&m.name) {
            if format == Format::Binary && m.size != FILE_BYTES {
                return Err(CifarError::Size {
                    file: format!("{} (member {})", archive.display(), m.path),
                    found: m.size,
                    expected: FILE_BYTES,
                });
            }
            have.push(m.name.clone());
        }
        Ok(Step::Next)
    })?;
    let wanted: Vec<&str> = format.all_files().collect();
    missing(archive, format, &wanted, &have)
}

/// The bytes of `split`'s files of `format`, in the split's order, each with its path in
/// the archive. Reading stops after the last one is found.
pub(super) fn members(
    archive: &Path,
    format: Format,
    split: Split,
) -> Result<Vec<(String, Vec<u8>)>, CifarError> {
    let wanted = format.files(split);
    let mut slots: Vec<Option<(String, Vec<u8>)>> = vec![None; wanted.len()];
    let mut others = Vec::new();
    walk(archive, |m| {
        if let Some(i) = wanted.iter().position(|w| *w == m.name) {
            if slots[i].is_none() {
                slots[i] = Some((m.path.clone(), m.read()?));
            }
        } else if Format::of_file(&m.name) == Some(format) {
            others.push(m.name.clone());
        }
        Ok(if slots.iter().all(Option::is_some) {
            Step::Stop
        } else {
            Step::Next
        })
    })?;
    let mut have: Vec<String> = wanted
        .iter()
        .zip(&slots)
        .filter(|(_, s)| s.is_some())
        .map(|(w, _)| w.to_string())
        .collect();
    have.extend(others);
    missing(archive, format, wanted, &have)?;
    Ok(slots.into_iter().flatten().collect())
}
