//! Run directories and CSV files that survive crashes.
//!
//! Per-episode rows are appended one whole line per `write` and flushed at once, so a kill
//! leaves at most one torn final line, which [`CsvAppender::open`] cuts off before appending
//! again. Summaries are written to a temporary file and renamed over the old one, so a
//! reader sees the old summary or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors from result files, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A CSV file could not be read or written.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV error.
        source: csv::Error,
    },
    /// An existing CSV file has another header than this version writes.
    #[error("{path}: the header is `{found}` but this table's header is `{expected}`")]
    HeaderMismatch {
        /// The file.
        path: PathBuf,
        /// The header found.
        found: String,
        /// The header expected.
        expected: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, renamed
/// over `path`, then the folder synced so the rename survives a crash. On failure the
/// temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// The temporary name [`write_atomic_with`] writes `path` under first.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Has `write` create a temporary file beside `path`, then syncs it, renames it over `path`
/// and syncs the folder. On failure the temporary file is removed and the error names the
/// file.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), RecordError> {
    let tmp = temporary_name(path);
    let result = write(&tmp)
        .and_then(|()| File::open(&tmp)?.sync_all())
        .map_err(io_err(&tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err(path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_folder(path)
}

/// Syncs the folder holding `path`, so a rename or a new file in it survives a crash.
pub fn sync_folder(path: &Path) -> Result<(), RecordError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// What is wrong with `path` as a file to read: it does not exist, is a folder, or is not a
/// regular file (a device, FIFO or socket); `None` for a regular file.
pub fn not_a_file(path: &Path) -> Option<&'static str> {
    match fs::metadata(path) {
        Err(_) => Some("does not exist"),
        Ok(m) if m.is_dir() => Some("is a folder, not a file"),
        Ok(m) if !m.is_file() => Some("is not a regular file (a device, FIFO or socket)"),
        Ok(_) => None,
    }
}

/// Serialises rows to CSV text with a header.
pub fn csv_text<T: Serialize>(rows: &[T]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// The header line (without newline) that `T` serialises to.
fn header_of<T: Serialize>(sample: &T) -> String {
    let text = csv_text(std::slice::from_ref(sample)).expect("row types serialise");
    String::from_utf8(text)
        .expect("utf-8")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Appends typed rows to a CSV file, one flushed line at a time.
pub struct CsvAppender<T> {
    path: PathBuf,
    file: File,
    line: Vec<u8>,
    _row: PhantomData<fn(T)>,
}

impl<T: Serialize> CsvAppender<T> {
    /// Opens `path` for appending: writes the header into a new or empty file, checks it in
    /// an existing one, and cuts off a torn final line left by a crash. `sample` is any row,
    /// used only to learn the header.
    pub fn open(path: &Path, sample: &T) -> Result<Self, RecordError> {
        let header = header_of(sample);
        let mut file = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err(path))?;
        if text.is_empty() {
            file.write_all(format!("{header}\n").as_bytes())
                .map_err(io_err(path))?;
        } else {
            let found = text.lines().next().unwrap_or_default();
            if found != header {
                return Err(RecordError::HeaderMismatch {
                    path: path.to_path_buf(),
                    found: found.to_owned(),
                    expected: header,
                });
            }
            if !text.ends_with('\n') {
                // A torn final line from a crash: drop it, the row is rewritten on resume.
                let keep = text.rfind('\n').map_or(0, |i| i + 1) as u64;
                file.set_len(keep).map_err(io_err(path))?;
                file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
                if keep == 0 {
                    file.write_all(format!("{header}\n").as_bytes())
                        .map_err(io_err(path))?;
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            line: Vec::new(),
            _row: PhantomData,
        })
    }

    /// Appends one row and flushes it to the operating system.
    pub fn append(&mut self, row: &T) -> Result<(), RecordError> {
        self.line.clear();
        {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut self.line);
            w.serialize(row).map_err(|source| RecordError::Csv {
                path: self.path.clone(),
                source,
            })?;
            w.flush().map_err(io_err(&self.path))?;
        }
        // One write call for the whole line keeps rows whole.
        self.file
            .write_all(&self.line)
            .map_err(io_err(&self.path))?;
        self.file.flush().map_err(io_err(&self.path))
    }
}

/// Reads every complete row of a CSV file; a torn final line (no newline) is ignored.
/// A missing file reads as no rows.
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, RecordError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut reader = csv::Reader::from_reader(complete.as_bytes());
    reader
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|source| RecordError::Csv {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a whole table atomically.
pub fn write_table<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), RecordError> {
    let text = csv_text(rows).map_err(|source| RecordError::Csv {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &text)
}
