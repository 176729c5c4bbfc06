//! CIFAR-10 (Krizhevsky 2009) in the forms researchers keep it: the binary version's folder,
//! the Python version's folder (`cifar-10-batches-py`, what torchvision and most tutorials
//! leave behind), and both published archives, read without unpacking them.
//!
//! The binary version's `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin` each
//! hold 10,000 records of 1 label byte (0..9) and 3072 pixel bytes: the 1024 red values of
//! the 32x32 image row by row, then the green, then the blue. The Python version's
//! `data_batch_1` .. `data_batch_5` and `test_batch` are pickled dicts holding the same
//! pixels as a (10000, 3072) `uint8` array and the labels as a list (see the `pickle` module's
//! reader). [`detect`] tells the form from what the data path holds; [`load`] gives the same
//! images and labels from every form, and its errors name the file or archive member, what
//! was found and what was expected. [`synthesize`] writes a learnable synthetic set in the
//! binary version's format (the real files cannot be downloaded everywhere).

mod archive;
mod pickle;

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::seed::derive;

/// Image side in pixels.
pub const SIDE: usize = 32;
/// Pixel bytes of one image (3 x 32 x 32, channel-major).
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
/// Bytes of one record: the label, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Records in each file of the official set.
pub const RECORDS_PER_FILE: usize = 10_000;
/// The training files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";
/// Class names, by label (`batches.meta.txt` of the official set).
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// Where the data set is published.
pub const SOURCE: &str =
    "https://www.cs.toronto.edu/~kriz/cifar.html (\"CIFAR-10 binary version\", cifar-10-binary.tar.gz)";

/// What a data path may hold, for error messages.
pub const FORMS: &str = "CIFAR-10 as published at https://www.cs.toronto.edu/~kriz/cifar.html: \
     the binary version's folder (data_batch_1.bin .. data_batch_5.bin and test_batch.bin), \
     the Python version's folder cifar-10-batches-py (data_batch_1 .. data_batch_5 and \
     test_batch), a folder holding either of them, or one of the archives \
     cifar-10-binary.tar.gz and cifar-10-python.tar.gz; or a synthetic set written by \
     `sap synth-cifar DIR`";

/// The Python version's training files, in order.
pub const PYTHON_TRAIN_FILES: [&str; 5] = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
];
/// The Python version's test file.
pub const PYTHON_TEST_FILE: &str = "test_batch";

/// A published version of CIFAR-10: how its six batch files encode the images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `cifar-10-batches-bin`: fixed-size records of a label byte and 3072 pixel bytes.
    Binary,
    /// `cifar-10-batches-py`: pickled dicts of a numpy `uint8` array and a list of labels.
    Python,
}

impl Format {
    /// The version's batch files of `split`, in order.
    pub fn files(self, split: Split) -> &'static [&'static str] {
        match (self, split) {
            (Format::Binary, Split::Train) => &TRAIN_FILES,
            (Format::Binary, Split::Test) => std::slice::from_ref(&TEST_FILE),
            (Format::Python, Split::Train) => &PYTHON_TRAIN_FILES,
            (Format::Python, Split::Test) => std::slice::from_ref(&PYTHON_TEST_FILE),
        }
    }

    /// All six batch files, training files first.
    fn all_files(self) -> impl Iterator<Item = &'static str> {
        let files = self
            .files(Split::Train)
            .iter()
            .chain(self.files(Split::Test));
        files.copied()
    }

    /// The folder the published archive unpacks into.
    pub fn folder(self) -> &'static str {
        match self {
            Format::Binary => "cifar-10-batches-bin",
            Format::Python => "cifar-10-batches-py",
        }
    }

    /// The published archive's file name.
    pub fn archive(self) -> &'static str {
        match self {
            Format::Binary => "cifar-10-binary.tar.gz",
            Format::Python => "cifar-10-python.tar.gz",
        }
    }

    /// The version's name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary version",
            Format::Python => "Python version",
        }
    }

    /// The version whose batch file is called `name`, if one is.
    fn of_file(name: &str) -> Option<Format> {
        [Format::Binary, Format::Python]
            .into_iter()
            .find(|f| f.all_files().any(|n| n == name))
    }

    /// Reads one batch file's bytes into `out`; `file` names it in errors.
    fn read(self, bytes: &[u8], file: &str, out: &mut CifarSplit) -> Result<(), CifarError> {
        match self {
            Format::Binary => read_records(bytes, file, out),
            Format::Python => pickle::read_batch(bytes, file, out).map_err(CifarError::Batch),
        }
    }
}

/// Where a data path keeps its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Container {
    /// The six files side by side in this folder.
    Folder(PathBuf),
    /// Members of this gzip-compressed tar archive, in any folder inside it.
    Archive(PathBuf),
}

/// A data path, resolved: which version it holds and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The version.
    pub format: Format,
    /// The folder or archive holding its files.
    pub container: Container,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.container {
            Container::Folder(dir) => write!(f, "the {} in {}", self.format.name(), dir.display()),
            Container::Archive(file) => {
                write!(
                    f,
                    "the {} in the archive {}",
                    self.format.name(),
                    file.display()
                )
            }
        }
    }
}

/// A data path that cannot be used, named with what was found and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CifarError {
    /// Nothing is at the path.
    #[error("{path} does not exist; expected {FORMS}")]
    NotFound {
        /// The data path.
        path: PathBuf,
    },
    /// The path holds something else.
    #[error("{path} is not CIFAR-10 in a form that can be read: {found}; expected {FORMS}")]
    Unrecognised {
        /// The data path.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// A folder holds some of a version's files but not this one.
    #[error(
        "{file} is missing: {dir} holds the {} but not all six of its files ({}); expected \
         {FORMS}",
        format.name(),
        format.all_files().collect::<Vec<_>>().join(", "),
        dir = .file.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    Missing {
        /// The file.
        file: PathBuf,
        /// The version the folder's other files belong to.
        format: Format,
    },
    /// An archive lacks one of a version's members.
    #[error(
        "{archive} has no member {member}: it holds the {}'s members {found} but not all six \
         ({}); the archive is incomplete (published as {} at \
         https://www.cs.toronto.edu/~kriz/cifar.html)",
        format.name(),
        format.all_files().collect::<Vec<_>>().join(", "),
        format.archive()
    )]
    MissingMember {
        /// The archive.
        archive: PathBuf,
        /// The member's file name.
        member: String,
        /// The version of the archive's other members.
        format: Format,
        /// The members it does hold, by file name.
        found: String,
    },
    /// A binary-version file has the wrong size (short, truncated or another format).
    #[error(
        "{file}: {found} bytes, expected {expected} ({RECORDS_PER_FILE} records of 1 label byte \
         + {IMAGE_BYTES} pixel bytes); the file is short or not the binary version published at \
         {SOURCE}"
    )]
    Size {
        /// The file, or the archive and member.
        file: String,
        /// Its size.
        found: u64,
        /// The size of a whole file.
        expected: u64,
    },
    /// A binary-version record's label is not 0..9.
    #[error(
        "{file}: record {record} has label {label}; labels are 0..9, so the file is corrupt or \
         not the binary version published at {SOURCE}"
    )]
    Label {
        /// The file, or the archive and member.
        file: String,
        /// The record, from 0.
        record: usize,
        /// The byte found.
        label: u8,
    },
    /// A Python-version batch is not the pickled dict it should be (the message names the
    /// file or member, what it holds and what was expected).
    #[error("{0}")]
    Batch(String),
    /// An archive cannot be read to its end.
    #[error(
        "{archive}: {}: {source}; the archive is truncated or corrupt (download it again from \
         https://www.cs.toronto.edu/~kriz/cifar.html)",
        match member {
            Some(m) => format!("reading member {m}"),
            None => "reading the archive".to_string(),
        }
    )]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// The member being read when it failed, if one was.
        member: Option<String>,
        /// The error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Training or test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The 50,000 images of the five training files, in file order.
    Train,
    /// The 10,000 test images.
    Test,
}

impl Split {
    /// The split's files in the binary version, in order.
    pub fn files(self) -> &'static [&'static str] {
        Format::Binary.files(self)
    }
}

/// Images and labels in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct CifarSplit {
    /// `len() x 3072` pixel bytes, each image channel-major (R plane, G plane, B plane).
    pub images: Vec<u8>,
    /// Labels 0..9.
    pub labels: Vec<u8>,
}

impl CifarSplit {
    /// Images in the split.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`: 3072 bytes, channel-major.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    fn empty() -> Self {
        CifarSplit {
            images: Vec::new(),
            labels: Vec::new(),
        }
    }
}

/// The bytes of one binary-version file.
const FILE_BYTES: u64 = (RECORDS_PER_FILE * RECORD_BYTES) as u64;

/// An I/O error's wrapper naming `file`.
fn io_error(file: &Path) -> impl FnOnce(std::io::Error) -> CifarError + '_ {
    move |source| CifarError::Io {
        file: file.to_path_buf(),
        source,
    }
}

/// Reads one binary-version file's records into `out`, checking its size and labels.
fn read_records(bytes: &[u8], file: &str, out: &mut CifarSplit) -> Result<(), CifarError> {
    if bytes.len() as u64 != FILE_BYTES {
        return Err(CifarError::Size {
            file: file.to_string(),
            found: bytes.len() as u64,
            expected: FILE_BYTES,
        });
    }
    out.images.reserve(RECORDS_PER_FILE * IMAGE_BYTES);
    for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = chunk[0];
        if label as usize >= CLASSES.len() {
            return Err(CifarError::Label {
                file: file.to_string(),
                record,
                label,
            });
        }
        out.labels.push(label);
        out.images.extend_from_slice(&chunk[1..]);
    }
    Ok(())
}

/// Whether `path` starts with gzip's magic bytes.
fn is_gzip(path: &Path) -> Result<bool, CifarError> {
    use std::io::Read;
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(path).map_err(io_error(path))?;
    let n = f.read(&mut magic).map_err(io_error(path))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// Up to eight names of a folder's entries, for error messages.
fn listing(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        return "an empty folder".to_string();
    }
    let more = names.len().saturating_sub(8);
    names.truncate(8);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("a folder holding {}{tail}", names.join(", "))
}

/// Which version, and where, the data path `path` holds. A folder holding the binary or the
/// Python version's files is used as it is; a folder holding `cifar-10-batches-bin` or
/// `cifar-10-batches-py` (what the archives unpack into, and where torchvision's `root`
/// points) or only an archive is searched in that order; a file must be a gzip-compressed tar
/// archive of either version, whose version is told by its first member of a known name.
pub fn detect(path: &Path) -> Result<Source, CifarError> {
    if !path.exists() {
        return Err(CifarError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_file() {
        if !is_gzip(path)? {
            return Err(CifarError::Unrecognised {
                path: path.to_path_buf(),
                found: "a file that is not gzip-compressed".to_string(),
            });
        }
        let format = archive::format(path)?;
        return Ok(Source {
            format,
            container: Container::Archive(path.to_path_buf()),
        });
    }
    for format in [Format::Binary, Format::Python] {
        if format.all_files().any(|n| path.join(n).is_file()) {
            return Ok(Source {
                format,
                container: Container::Folder(path.to_path_buf()),
            });
        }
    }
    for format in [Format::Binary, Format::Python] {
        let inner = path.join(format.folder());
        if inner.is_dir() && format.all_files().any(|n| inner.join(n).is_file()) {
            return Ok(Source {
                format,
                container: Container::Folder(inner),
            });
        }
    }
    for format in [Format::Binary, Format::Python] {
        let archive = path.join(format.archive());
        if archive.is_file() {
            return detect(&archive);
        }
    }
    Err(CifarError::Unrecognised {
        path: path.to_path_buf(),
        found: listing(path),
    })
}

/// Checks that the data path `path` holds a whole version of the set (what a manifest's
/// `data` must point at): in a folder, all six files, with the binary version's sizes; in an
/// archive, all six members, read to the archive's end (so a truncated archive is found).
/// Images are read only from a folder of pickles, whose size says nothing.
pub fn check(path: &Path) -> Result<Source, CifarError> {
    let source = detect(path)?;
    match &source.container {
        Container::Folder(dir) => {
            for name in source.format.all_files() {
                let file = dir.join(name);
                let len = match std::fs::metadata(&file) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(CifarError::Missing {
                            file,
                            format: source.format,
                        })
                    }
                    Err(e) => return Err(io_error(&file)(e)),
                };
                if source.format == Format::Binary && len != FILE_BYTES {
                    return Err(CifarError::Size {
                        file: file.display().to_string(),
                        found: len,
                        expected: FILE_BYTES,
                    });
                }
            }
        }
        Container::Archive(file) => archive::check(file, source.format)?,
    }
    Ok(source)
}

/// Loads a split from the data path `path`: a folder or archive of either version (see
/// [`detect`]). Every version gives the same images and labels in the same order.
pub fn load(path: &Path, split: Split) -> Result<CifarSplit, CifarError> {
    let source = detect(path)?;
    tracing::info!(
        "reading the CIFAR-10 {} split from {source}",
        match split {
            Split::Train => "training",
            Split::Test => "test",
        }
    );
    let mut out = CifarSplit::empty();
    match &source.container {
        Container::Folder(dir) => {
            for name in source.format.files(split) {
                let file = dir.join(name);
                let bytes = match std::fs::read(&file) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(CifarError::Missing {
                            file,
                            format: source.format,
                        })
                    }
                    Err(e) => return Err(io_error(&file)(e)),
                };
                source
                    .format
                    .read(&bytes, &file.display().to_string(), &mut out)?;
            }
        }
        Container::Archive(file) => {
            for (name, bytes) in archive::members(file, source.format, split)? {
                let place = format!("{} (member {name})", file.display());
                source.format.read(&bytes, &place, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Standard deviation of the pixel noise of [`synthesize`], in pixel units.
pub const SYNTH_NOISE: f64 = 48.0;

/// One class's prototype: a colour per channel and a sinusoidal grating whose orientation
/// and frequency depend on the class, in pixel units before noise.
fn prototype(class: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive(0x6369_6661, "synth-class", class as u64));
    let angle = std::f64::consts::PI * class as f64 / CLASSES.len() as f64;
    let freq = 2.0 * std::f64::consts::PI * (1.5 + (class % 3) as f64) / SIDE as f64;
    let (dx, dy) = (angle.cos(), angle.sin());
    let colour: [f64; 3] = std::array::from_fn(|_| rng.gen_range(60.0..200.0));
    let amplitude: [f64; 3] = std::array::from_fn(|_| rng.gen_range(30.0..60.0));
    let mut out = Vec::with_capacity(IMAGE_BYTES);
    for c in 0..3 {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let phase = freq * (dx * x as f64 + dy * y as f64);
                out.push(colour[c] + amplitude[c] * phase.sin());
            }
        }
    }
    out
}

/// Writes a synthetic set in the binary version's exact format into `dir` (created if
/// needed): five training files and a test file of 10,000 records each, plus
/// `batches.meta.txt`. Labels are uniform over the 10 classes; an image is its class's
/// prototype (a colour and an oriented grating) shifted by up to 4 pixels, with Gaussian
/// noise of [`SYNTH_NOISE`], rounded and clipped to 0..255. Everything derives from `seed`.
pub fn synthesize(dir: &Path, seed: u64) -> Result<(), CifarError> {
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| CifarError::Io { file, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let prototypes: Vec<Vec<f64>> = (0..CLASSES.len()).map(prototype).collect();
    let noise = Normal::new(0.0, SYNTH_NOISE).expect("a positive standard deviation");
    let names = TRAIN_FILES.iter().chain(std::iter::once(&TEST_FILE));
    for (f, name) in names.enumerate() {
        let path = dir.join(name);
        let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, "synth-cifar", f as u64));
        let mut bytes = Vec::with_capacity(RECORDS_PER_FILE * RECORD_BYTES);
        for _ in 0..RECORDS_PER_FILE {
            let label = rng.gen_range(0..CLASSES.len());
            let (sx, sy) = (rng.gen_range(-4i64..=4), rng.gen_range(-4i64..=4));
            bytes.push(label as u8);
            let proto = &prototypes[label];
            for c in 0..3 {
                for y in 0..SIDE as i64 {
                    for x in 0..SIDE as i64 {
                        let (px, py) = ((x + sx).rem_euclid(32), (y + sy).rem_euclid(32));
                        let base = proto[c * SIDE * SIDE + (py as usize) * SIDE + px as usize];
                        let v = base + noise.sample(&mut rng);
                        bytes.push(v.round().clamp(0.0, 255.0) as u8);
                    }
                }
            }
        }
        // A name of its own, so that two writers of the same set never share a file.
        let tmp = dir.join(format!(
            ".{name}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::File::create(&tmp)
            .and_then(|mut w| w.write_all(&bytes))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    let meta = dir.join("batches.meta.txt");
    std::fs::write(&meta, CLASSES.join("\n") + "\n").map_err(io(&meta))?;
    let marker = dir.join(SYNTHETIC_MARKER);
    let text = format!(
        "A synthetic stand-in for CIFAR-10 written by `sap synth-cifar` (seed {seed}): class \
         prototypes (a colour and an oriented grating) with noise, in the binary version's \
         format. It is not CIFAR-10; rows evaluated on it say `cifar10-synthetic`.\n"
    );
    std::fs::write(&marker, text).map_err(io(&marker))?;
    Ok(())
}

/// The file [`synthesize`] leaves in a synthetic set's folder.
pub const SYNTHETIC_MARKER: &str = "SYNTHETIC.txt";

/// Whether the data path `dir` holds a synthetic set written by [`synthesize`] rather than
/// CIFAR-10 (its marker sits in the folder of the files).
pub fn is_synthetic(dir: &Path) -> bool {
    if dir.join(SYNTHETIC_MARKER).is_file() {
        return true;
    }
    match detect(dir) {
        Ok(Source {
            container: Container::Folder(files),
            ..
        }) => files.join(SYNTHETIC_MARKER).is_file(),
        _ => false,
    }
}

/// The `dataset` value of rows evaluated on the set in `dir`: `cifar10`, or
/// `cifar10-synthetic` for a set written by [`synthesize`].
pub fn dataset_name(dir: &Path) -> &'static str {
    if is_synthetic(dir) {
        "cifar10-synthetic"
    } else {
        "cifar10"
    }
}
