//! The CIFAR-10 loader on files the tests write, in every published form, and the synthetic
//! set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sap_harness::data::cifar::{
    check, detect, load, synthesize, Container, Format, Split, IMAGE_BYTES, RECORDS_PER_FILE,
    RECORD_BYTES, TEST_FILE, TRAIN_FILES,
};

/// A file of the binary format whose record `i` (from `first`) has label `(i * 7) % 10`, a
/// red plane of `i % 251`, a green plane holding each pixel's row and a blue plane its column.
fn write_marked(path: &Path, first: usize) {
    let mut bytes = Vec::with_capacity(RECORDS_PER_FILE * RECORD_BYTES);
    for i in first..first + RECORDS_PER_FILE {
        bytes.push(((i * 7) % 10) as u8);
        bytes.extend(std::iter::repeat_n((i % 251) as u8, 1024));
        bytes.extend((0..1024).map(|p| (p / 32) as u8));
        bytes.extend((0..1024).map(|p| (p % 32) as u8));
    }
    std::fs::write(path, bytes).unwrap();
}

fn marked_set(dir: &Path) {
    for (f, name) in TRAIN_FILES.iter().enumerate() {
        write_marked(&dir.join(name), f * RECORDS_PER_FILE);
    }
    write_marked(&dir.join(TEST_FILE), 0);
}

#[test]
fn the_loader_keeps_file_order_labels_and_the_channel_major_byte_layout() {
    let dir = tempfile::tempdir().unwrap();
    marked_set(dir.path());
    let train = load(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 50_000);
    assert_eq!(train.images.len(), 50_000 * IMAGE_BYTES);
    for i in [0, 1, 9_999, 10_000, 23_456, 49_999] {
        assert_eq!(train.labels[i] as usize, (i * 7) % 10, "label of image {i}");
        let img = train.image(i);
        assert!(
            img[..1024].iter().all(|&v| v as usize == i % 251),
            "red plane of {i}"
        );
        // Green: row y at offset 1024 + 32 y + x; blue: column x.
        assert_eq!(img[1024 + 32 * 5 + 7], 5);
        assert_eq!(img[2048 + 32 * 5 + 7], 7);
        assert_eq!(img[1024 + 32 * 31], 31);
    }
    let test = load(dir.path(), Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.labels[3], 1);
}

#[test]
fn a_missing_short_or_corrupt_file_is_named_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = load(&d.join("nowhere"), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nowhere does not exist"), "{err}");
    assert!(
        err.contains("https://www.cs.toronto.edu/~kriz/cifar.html"),
        "{err}"
    );

    write_marked(&d.join("data_batch_1.bin"), 0);
    let err = load(d, Split::Train).unwrap_err().to_string();
    assert!(err.contains("data_batch_2.bin is missing"), "{err}");
    assert!(
        err.contains("holds the binary version but not all six"),
        "{err}"
    );
    assert!(err.contains("sap synth-cifar"), "{err}");

    // Short: a test file cut by 100 bytes.
    write_marked(&d.join(TEST_FILE), 0);
    let path = d.join(TEST_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&path, &bytes).unwrap();
    let err = load(d, Split::Test).unwrap_err().to_string();
    assert!(
        err.contains("test_batch.bin: 30729900 bytes, expected 30730000 (10000 records of 1 label byte + 3072 pixel bytes)"),
        "{err}"
    );

    // Corrupt: record 5's label byte is 200.
    write_marked(&path, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5 * RECORD_BYTES] = 200;
    std::fs::write(&path, &bytes).unwrap();
    let err = load(d, Split::Test).unwrap_err().to_string();
    assert!(
        err.contains("test_batch.bin: record 5 has label 200"),
        "{err}"
    );
}

/// The marked set in the binary version (`bin/`) and its other forms written from it by
/// `tests/data/cifar_forms.py` with the project venv's Python and numpy, once per test run.
fn forms() -> &'static Path {
    static FORMS: OnceLock<tempfile::TempDir> = OnceLock::new();
    FORMS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).unwrap();
            marked_set(&bin);
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cifar_forms.py");
            for args in [
                vec!["forms".into(), bin.clone(), dir.path().into()],
                vec!["bad".into(), dir.path().join("bad")],
            ] {
                let status = Command::new(common::venv_python())
                    .arg(&script)
                    .args(&args)
                    .status()
                    .unwrap();
                assert!(status.success(), "cifar_forms.py {args:?} failed");
            }
            dir
        })
        .path()
}

#[test]
fn every_published_form_gives_the_same_images_and_labels_as_the_binary_folder() {
    let root = forms();
    let bin = root.join("bin");
    let (train, test) = (
        load(&bin, Split::Train).unwrap(),
        load(&bin, Split::Test).unwrap(),
    );
    // A folder holding only an archive, as torchvision's root does before it unpacks.
    let only_archive = root.join("only-archive");
    std::fs::create_dir_all(&only_archive).unwrap();
    let archive = only_archive.join("cifar-10-binary.tar.gz");
    if !archive.exists() {
        std::fs::hard_link(root.join("cifar-10-binary.tar.gz"), &archive).unwrap();
    }
    let folder = |p: PathBuf| Container::Folder(p);
    let cases: [(PathBuf, Format, Container); 6] = [
        (
            root.join("cifar-10-batches-py"),
            Format::Python,
            folder(root.join("cifar-10-batches-py")),
        ),
        (root.join("py3"), Format::Python, folder(root.join("py3"))),
        (
            root.join("cifar-10-binary.tar.gz"),
            Format::Binary,
            Container::Archive(root.join("cifar-10-binary.tar.gz")),
        ),
        (
            root.join("cifar-10-python.tar.gz"),
            Format::Python,
            Container::Archive(root.join("cifar-10-python.tar.gz")),
        ),
        // The folder the Python archive unpacks in: its cifar-10-batches-py is found.
        (
            root.to_path_buf(),
            Format::Python,
            folder(root.join("cifar-10-batches-py")),
        ),
        (
            only_archive.clone(),
            Format::Binary,
            Container::Archive(archive.clone()),
        ),
    ];
    for (path, format, container) in cases {
        let source = detect(&path).unwrap();
        assert_eq!(source.format, format, "{}", path.display());
        assert_eq!(source.container, container, "{}", path.display());
        assert_eq!(check(&path).unwrap(), source, "{}", path.display());
        let t = load(&path, Split::Test).unwrap();
        assert!(t == test, "{}: the test split differs", path.display());
        let t = load(&path, Split::Train).unwrap();
        assert!(t == train, "{}: the training split differs", path.display());
    }
}

#[test]
fn a_bad_pickle_an_incomplete_archive_and_a_truncated_one_are_each_named_with_the_member() {
    let root = forms();
    let err = |path: &Path, split| load(path, split).unwrap_err().to_string();
    let bad = root.join("bad");

    let e = err(&bad.join("shape"), Split::Test);
    assert!(
        e.contains(
            "shape/test_batch: 'data' has shape (10000, 32, 32, 3); expected a pickled dict"
        ),
        "{e}"
    );
    assert!(e.contains("(10000, 3072)"), "{e}");
    let e = err(&bad.join("dtype"), Split::Test);
    assert!(
        e.contains("dtype/test_batch: 'data' of shape (10000, 3072) holds 122880000 bytes (4 bytes per element, byte order '<'), so its dtype is not uint8"),
        "{e}"
    );
    let e = err(&bad.join("list"), Split::Test);
    assert!(
        e.contains("list/test_batch: the pickle holds a list, not a dict"),
        "{e}"
    );
    // The training files of that folder are missing, and the error says which version the
    // folder seems to hold.
    let e = err(&bad.join("list"), Split::Train);
    assert!(e.contains("data_batch_1 is missing"), "{e}");
    assert!(e.contains("holds the Python version"), "{e}");

    // An archive without its test batch: loading the test split and checking both name it.
    let incomplete = root.join("no-test.tar.gz");
    for e in [
        err(&incomplete, Split::Test),
        check(&incomplete).unwrap_err().to_string(),
    ] {
        assert!(e.contains("no-test.tar.gz has no member test_batch"), "{e}");
        assert!(e.contains("data_batch_1"), "{e}");
    }
    // The training split is whole, so it loads.
    assert_eq!(load(&incomplete, Split::Train).unwrap().len(), 50_000);

    // An archive cut in half: the error names the member being read when it ended.
    let whole = std::fs::read(root.join("cifar-10-python.tar.gz")).unwrap();
    let cut = root.join("cut").join("cifar-10-python.tar.gz");
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    for e in [err(&cut, Split::Test), check(&cut).unwrap_err().to_string()] {
        assert!(e.contains("reading member cifar-10-batches-py/"), "{e}");
        assert!(e.contains("the archive is truncated or corrupt"), "{e}");
    }

    // Neither version nor an archive.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "x").unwrap();
    let e = err(&other, Split::Test);
    assert!(
        e.contains("is not CIFAR-10 in a form that can be read: a folder holding notes.txt"),
        "{e}"
    );
    assert!(e.contains("cifar-10-python.tar.gz"), "{e}");
    let e = err(&other.join("notes.txt"), Split::Test);
    assert!(e.contains("a file that is not gzip-compressed"), "{e}");
}

#[test]
fn the_synthetic_set_has_the_exact_format_balanced_classes_and_depends_only_on_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    synthesize(&a, 3).unwrap();
    synthesize(&b, 3).unwrap();
    for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
        let bytes = std::fs::read(a.join(name)).unwrap();
        assert_eq!(bytes.len(), RECORDS_PER_FILE * RECORD_BYTES, "{name}");
        assert!(
            bytes == std::fs::read(b.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let train = load(&a, Split::Train).unwrap();
    let mut counts = [0usize; 10];
    train.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(
        counts.iter().all(|&c| (4_500..5_500).contains(&c)),
        "{counts:?}"
    );
    // Classes differ: per-class mean images are far apart compared with the noise.
    let mean = |class: u8| -> Vec<f64> {
        let idx: Vec<usize> = (0..train.len())
            .filter(|&i| train.labels[i] == class)
            .collect();
        (0..IMAGE_BYTES)
            .map(|p| idx.iter().map(|&i| train.image(i)[p] as f64).sum::<f64>() / idx.len() as f64)
            .collect()
    };
    let (m0, m1) = (mean(0), mean(1));
    let dist = (m0
        .iter()
        .zip(&m1)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        / IMAGE_BYTES as f64)
        .sqrt();
    assert!(
        dist > 20.0,
        "classes 0 and 1 differ by {dist} per pixel (rms)"
    );
    let c = dir.path().join("c");
    synthesize(&c, 4).unwrap();
    assert!(std::fs::read(c.join(TEST_FILE)).unwrap() != std::fs::read(a.join(TEST_FILE)).unwrap());
}

use sap_harness::data::cifar::CifarSplit;
use sap_harness::data::pipeline::{crop_flip, Pipeline, PipelineConfig, TrainBatch};
use std::sync::Arc;

#[test]
fn a_crop_shifts_the_zero_padded_image_and_a_flip_mirrors_it() {
    // Red plane: the column index + 1; green: the row index + 1 (0 marks padding).
    let mut src = vec![0u8; IMAGE_BYTES];
    for p in 0..1024 {
        src[p] = (p % 32 + 1) as u8;
        src[1024 + p] = (p / 32 + 1) as u8;
    }
    let mut out = vec![0f32; IMAGE_BYTES];
    // Offset (dx, dy) = (2, 7): crop pixel (x, y) is image pixel (x - 2, y + 3).
    crop_flip(&src, 2, 7, false, &mut out);
    assert_eq!(out[0], 0.0, "x - 2 < 0 is padding");
    assert_eq!(out[2], 1.0);
    assert_eq!(out[1024 + 10 * 32 + 5], 14.0, "row 10 shows image row 13");
    assert_eq!(out[1024 + 29 * 32], 0.0, "row 29 + 3 is padding");
    // The same crop mirrored: crop column x shows crop column 31 - x of the unflipped crop.
    let mut flipped = vec![0f32; IMAGE_BYTES];
    crop_flip(&src, 2, 7, true, &mut flipped);
    for x in 0..32 {
        assert_eq!(flipped[x], out[31 - x]);
    }
    // The centre offset without a flip is the identity.
    crop_flip(&src, 4, 4, false, &mut out);
    assert!(out.iter().zip(&src).all(|(o, &s)| *o == s as f32));
}

/// 1000 images whose pixel (0, 0) holds the index: red `i % 256`, green `i / 256`.
fn indexed_split() -> Arc<CifarSplit> {
    let n = 1000;
    let mut images = vec![0u8; n * IMAGE_BYTES];
    for i in 0..n {
        images[i * IMAGE_BYTES] = (i % 256) as u8;
        images[i * IMAGE_BYTES + 1024] = (i / 256) as u8;
    }
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Arc::new(CifarSplit { images, labels })
}

fn config(workers: usize, augment: bool, start: (u64, u64)) -> PipelineConfig {
    PipelineConfig {
        batch_size: 64,
        workers,
        capacity: 2,
        seed: 9,
        augment,
        start,
    }
}

fn take(data: &Arc<CifarSplit>, cfg: PipelineConfig, n: usize) -> Vec<TrainBatch> {
    Pipeline::start(Arc::clone(data), cfg).take(n).collect()
}

#[test]
fn batches_depend_on_the_seed_and_position_only_not_on_the_number_of_workers() {
    let data = indexed_split();
    // 15 batches per epoch: 40 batches cross two epoch boundaries.
    let one = take(&data, config(1, true, (0, 0)), 40);
    let three = take(&data, config(3, true, (0, 0)), 40);
    assert!(one == three, "1 and 3 workers gave different batches");
    assert_eq!((one[15].epoch, one[15].index), (1, 0));
    // A trainer resumed at epoch 2, batch 5 sees what an uninterrupted one saw there.
    let resumed = take(&data, config(2, true, (2, 5)), 5);
    assert!(resumed[..] == one[35..40]);
}

#[test]
fn each_epoch_visits_distinct_images_in_a_new_order() {
    let data = indexed_split();
    let batches = take(&data, config(2, false, (0, 0)), 30);
    let index = |b: &TrainBatch, j: usize| {
        let img = &b.images[j * IMAGE_BYTES..];
        img[0] as usize + 256 * img[1024] as usize
    };
    let epoch = |e: usize| -> Vec<usize> {
        batches[e * 15..(e + 1) * 15]
            .iter()
            .flat_map(|b| (0..64).map(move |j| (b, j)))
            .map(|(b, j)| index(b, j))
            .collect()
    };
    let (e0, e1) = (epoch(0), epoch(1));
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 15 * 64, "an epoch repeats an image");
    assert_ne!(e0, e1, "two epochs in the same order");
    // Labels travel with their images.
    let b = &batches[3];
    assert!((0..64).all(|j| b.labels[j] as usize == index(b, j) % 10));
}
