//! CIFAR-10, binary version (Krizhevsky 2009): `data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, each 10,000 records of 1 label byte (0..9) and 3072 pixel bytes: the
//! 1024 red values of the 32x32 image row by row, then the green, then the blue.
//!
//! [`load`] checks every file's size and labels and names the file, what it expected and
//! where the data set is published. [`synthesize`] writes a learnable synthetic set in
//! exactly this format (the real files cannot be downloaded everywhere).

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

/// A data-set file that cannot be used, named with what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CifarError {
    /// The folder does not exist or is not a folder.
    #[error(
        "{dir} is not a CIFAR-10 folder (it does not exist); expected the binary version's \
         files data_batch_1.bin .. data_batch_5.bin and test_batch.bin, published at {SOURCE}"
    )]
    NotAFolder {
        /// The folder.
        dir: PathBuf,
    },
    /// A file of the set is missing.
    #[error(
        "{file} is missing: {dir} is not a CIFAR-10 binary folder; expected data_batch_1.bin .. \
         data_batch_5.bin and test_batch.bin, published at {SOURCE} (or write a synthetic set \
         with `sap synth-cifar DIR`)",
        dir = .file.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    Missing {
        /// The file.
        file: PathBuf,
    },
    /// A file has the wrong size (short, truncated or another format).
    #[error(
        "{file}: {found} bytes, expected {expected} ({RECORDS_PER_FILE} records of 1 label byte \
         + {IMAGE_BYTES} pixel bytes); the file is short or not the binary version published at \
         {SOURCE}"
    )]
    Size {
        /// The file.
        file: PathBuf,
        /// Its size.
        found: u64,
        /// The size of a whole file.
        expected: u64,
    },
    /// A record's label is not 0..9.
    #[error(
        "{file}: record {record} has label {label}; labels are 0..9, so the file is corrupt or \
         not the binary version published at {SOURCE}"
    )]
    Label {
        /// The file.
        file: PathBuf,
        /// The record, from 0.
        record: usize,
        /// The byte found.
        label: u8,
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
    /// The split's files, in order.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Split::Train => &TRAIN_FILES,
            Split::Test => std::slice::from_ref(&TEST_FILE),
        }
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
}

/// Checks that one file of the set exists with the size of a whole file.
fn check_file(path: &Path) -> Result<(), CifarError> {
    let expected = (RECORDS_PER_FILE * RECORD_BYTES) as u64;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CifarError::Missing {
                file: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(CifarError::Io {
                file: path.to_path_buf(),
                source,
            })
        }
    };
    if meta.len() != expected {
        return Err(CifarError::Size {
            file: path.to_path_buf(),
            found: meta.len(),
            expected,
        });
    }
    Ok(())
}

/// Checks, without reading the images, that `dir` holds the six files of the binary
/// version with their sizes (what a manifest's `data` must point at).
pub fn check(dir: &Path) -> Result<(), CifarError> {
    if !dir.is_dir() {
        return Err(CifarError::NotAFolder {
            dir: dir.to_path_buf(),
        });
    }
    for name in Split::Train.files().iter().chain(Split::Test.files()) {
        check_file(&dir.join(name))?;
    }
    Ok(())
}

/// Reads one file of the set, checking its size and labels.
fn read_file(path: &Path, out: &mut CifarSplit) -> Result<(), CifarError> {
    check_file(path)?;
    let bytes = std::fs::read(path).map_err(|source| CifarError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    out.images.reserve(RECORDS_PER_FILE * IMAGE_BYTES);
    for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = chunk[0];
        if label as usize >= CLASSES.len() {
            return Err(CifarError::Label {
                file: path.to_path_buf(),
                record,
                label,
            });
        }
        out.labels.push(label);
        out.images.extend_from_slice(&chunk[1..]);
    }
    Ok(())
}

/// Loads a split from the folder `dir` holding the binary version's files.
pub fn load(dir: &Path, split: Split) -> Result<CifarSplit, CifarError> {
    if !dir.is_dir() {
        return Err(CifarError::NotAFolder {
            dir: dir.to_path_buf(),
        });
    }
    let mut out = CifarSplit {
        images: Vec::new(),
        labels: Vec::new(),
    };
    for name in split.files() {
        read_file(&dir.join(name), &mut out)?;
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

/// Whether `dir` holds a synthetic set written by [`synthesize`] rather than CIFAR-10.
pub fn is_synthetic(dir: &Path) -> bool {
    dir.join(SYNTHETIC_MARKER).is_file()
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
