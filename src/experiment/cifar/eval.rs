//! `[[cifar_eval]]` cells: one ResNet-20 under one defense, attack and radius on the first
//! `examples` CIFAR-10 test images. Batch `b` is attacked and predicted with a generator
//! seeded from (cell seed, b), and each batch's predictions are appended to
//! `predictions.csv`, so an interrupted cell continues at its first missing batch with the
//! same rows. When every batch is done the cell writes `cifar_eval.csv` (one row) and
//! `reliability.csv` (one row per confidence bin).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::train::{architecture, images_tensor};
use crate::data::cifar::{load, Split, CLASSES};
use crate::manifest::CifarEvalCell;
use crate::metrics::{
    prediction_metrics, reliability_bins, ClassifierMetrics, Prediction, ReliabilityBin,
};
use crate::nn::{checkpoint, Model};
use crate::policy::PolicyWrapper;
use crate::progress::TrainProgress;
use crate::record::{read_rows, write_table, CsvAppender};
use crate::seed::derive;

/// One test image's prediction (`cells/<id>/predictions.csv`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    /// The batch it was attacked and predicted in.
    pub batch: u64,
    /// Index in the test set.
    pub example: u64,
    /// True class.
    pub label: i64,
    /// Most probable class of the averaged softmax.
    pub predicted: i64,
    /// Its probability.
    pub confidence: f64,
    /// Probability of the true class.
    pub p_label: f64,
}

/// One row of `cifar_eval.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CifarEvalRow {
    /// The `[[cifar_eval]]` job.
    pub job: String,
    /// The data set (`cifar10`).
    pub dataset: String,
    /// Its folder as the manifest names it (the real files or a synthetic set).
    pub data: String,
    /// The architecture (`resnet20`).
    pub network: String,
    /// The network's label: its variant (`dense`, `adv`) or its `checkpoints` key.
    pub variant: String,
    /// The `[[cifar_train]]` job that trained it (empty for a file).
    pub train_job: Option<String>,
    /// FGSM fraction of each training batch (adv only).
    pub adv_fraction: Option<f64>,
    /// FGSM radius of adversarial training, pixel units (adv only).
    pub adv_lambda: Option<f64>,
    /// The checkpoint file.
    pub checkpoint: String,
    /// Training seed (empty for a file).
    pub train_seed: Option<u64>,
    /// Evaluation seed.
    pub eval_seed: u64,
    /// Defense kind.
    pub defense: String,
    /// SAP draws as a fraction of the map size (SAP only).
    pub frac: Option<f64>,
    /// SAP sampling (SAP only).
    pub sampling: Option<String>,
    /// Dropout probability (dropout only).
    pub p: Option<f64>,
    /// Relative noise scale (gaussian only).
    pub sigma: Option<f64>,
    /// Attack kind (`none` for the clean images).
    pub attack: String,
    /// L-infinity radius, pixel units.
    pub lambda: f64,
    /// Iterations (iterative attacks only).
    pub steps: Option<u32>,
    /// Step size, pixel units (iterative attacks only).
    pub step_size: Option<f64>,
    /// Random start (iterative attacks only).
    pub random_start: Option<bool>,
    /// Passes per gradient estimate actually run (empty without an attack).
    pub gradient_samples: Option<u32>,
    /// Softmax passes averaged per prediction actually run.
    pub samples: u32,
    /// Test images.
    pub n: usize,
    /// Accuracy on the (attacked) images.
    pub accuracy: f64,
    /// Mean top probability.
    pub mean_confidence: f64,
    /// Expected calibration error over 15 equal-width confidence bins.
    pub ece: f64,
    /// Mean negative log-likelihood of the label (probabilities floored at 1e-12).
    pub nll: f64,
}

/// One confidence bin (`reliability.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityRow {
    /// The `[[cifar_eval]]` job.
    pub job: String,
    /// The network's label.
    pub variant: String,
    /// The checkpoint file.
    pub checkpoint: String,
    /// Training seed (empty for a file).
    pub train_seed: Option<u64>,
    /// Evaluation seed.
    pub eval_seed: u64,
    /// Defense kind.
    pub defense: String,
    /// SAP draws as a fraction of the map size (SAP only).
    pub frac: Option<f64>,
    /// SAP sampling (SAP only).
    pub sampling: Option<String>,
    /// Dropout probability (dropout only).
    pub p: Option<f64>,
    /// Relative noise scale (gaussian only).
    pub sigma: Option<f64>,
    /// Attack kind (`none` for the clean images).
    pub attack: String,
    /// L-infinity radius, pixel units.
    pub lambda: f64,
    /// Iterations (iterative attacks only).
    pub steps: Option<u32>,
    /// Passes per gradient estimate actually run (empty without an attack).
    pub gradient_samples: Option<u32>,
    /// Softmax passes averaged per prediction actually run.
    pub samples: u32,
    /// Bin number, from 0.
    pub bin: usize,
    /// Lower confidence edge (excluded; 0 is included in bin 0).
    pub bin_low: f64,
    /// Upper confidence edge (included).
    pub bin_high: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Their accuracy (empty when the bin is empty).
    pub accuracy: Option<f64>,
    /// Their mean confidence (empty when the bin is empty).
    pub mean_confidence: Option<f64>,
}

/// The per-cell file of predictions.
pub const PREDICTIONS: &str = "predictions.csv";
/// The per-cell and per-run file of accuracy and calibration rows.
pub const EVAL_FILE: &str = "cifar_eval.csv";
/// The per-cell and per-run file of reliability bins.
pub const RELIABILITY_FILE: &str = "reliability.csv";

/// Loads a ResNet-20 checkpoint on `device`, with one clear error for a file of another
/// network.
pub fn load_network(path: &Path, device: Device) -> Result<Model> {
    let mut model = Model::new(architecture(), device);
    checkpoint::load(&mut model, path)?;
    Ok(model)
}

/// The row of `cell` with metrics `m`.
fn eval_row(
    cell: &CifarEvalCell,
    checkpoint: &str,
    wrapper: &PolicyWrapper,
    m: ClassifierMetrics,
) -> CifarEvalRow {
    let (frac, sampling, p, sigma) = cell.defense.columns();
    let (steps, step_size, random_start) =
        cell.attack.map_or((None, None, None), |a| a.pgd_columns());
    let (train_job, adv) = match &cell.trained_by {
        Some((job, adv)) => (Some(job.clone()), *adv),
        None => (None, None),
    };
    CifarEvalRow {
        job: cell.job_name.clone(),
        dataset: "cifar10".into(),
        data: cell.data.clone(),
        network: architecture().name().into(),
        variant: cell.label.clone(),
        train_job,
        adv_fraction: adv.map(|a| a.0),
        adv_lambda: adv.map(|a| a.1),
        checkpoint: checkpoint.to_owned(),
        train_seed: cell.network.train_seed(),
        eval_seed: cell.seed,
        defense: cell.defense.kind().to_owned(),
        frac,
        sampling,
        p,
        sigma,
        attack: cell.attack_name().to_owned(),
        lambda: cell.lambda(),
        steps,
        step_size,
        random_start,
        gradient_samples: cell
            .attack
            .map(|a| a.effective_gradient_samples(&cell.defense)),
        samples: wrapper.effective_samples(),
        n: m.n,
        accuracy: m.accuracy,
        mean_confidence: m.mean_confidence,
        ece: m.ece,
        nll: m.nll,
    }
}

/// The reliability rows of `row`'s bins.
fn reliability_rows(row: &CifarEvalRow, bins: Vec<ReliabilityBin>) -> Vec<ReliabilityRow> {
    bins.into_iter()
        .map(|b| ReliabilityRow {
            job: row.job.clone(),
            variant: row.variant.clone(),
            checkpoint: row.checkpoint.clone(),
            train_seed: row.train_seed,
            eval_seed: row.eval_seed,
            defense: row.defense.clone(),
            frac: row.frac,
            sampling: row.sampling.clone(),
            p: row.p,
            sigma: row.sigma,
            attack: row.attack.clone(),
            lambda: row.lambda,
            steps: row.steps,
            gradient_samples: row.gradient_samples,
            samples: row.samples,
            bin: b.bin,
            bin_low: b.low,
            bin_high: b.high,
            count: b.count,
            accuracy: b.accuracy,
            mean_confidence: b.mean_confidence,
        })
        .collect()
}

/// Runs (or resumes) one evaluation cell; returns the images predicted in this call.
pub fn run_cell(
    run_dir: &Path,
    manifest_dir: &Path,
    id: &str,
    cell: &CifarEvalCell,
) -> Result<u64> {
    let dir = super::super::cell_dir(run_dir, id);
    let device = Device::cuda_if_available();
    // Trained networks are named relative to the run directory, so rows do not depend on
    // where the run lives.
    let (path, name) = cell.network.file(run_dir, manifest_dir);
    let model = load_network(&path, device)?;
    let mut wrapper = PolicyWrapper::new(model, cell.defense, cell.attack, cell.samples, cell.seed)
        .context("the cell's defense and attack")?;
    let data_dir = manifest_dir.join(&cell.data);
    let test = load(&data_dir, Split::Test)?;
    let n = cell.examples as usize;
    if n > test.len() {
        bail!(
            "{} test images asked for, {} holds {}",
            n,
            data_dir.display(),
            test.len()
        );
    }
    let bs = cell.batch_size as usize;
    let batches = n.div_ceil(bs) as u64;
    let size = |b: u64| (n - b as usize * bs).min(bs);
    // Keep the whole batches already predicted; a torn batch is predicted again.
    let pred_path = dir.join(PREDICTIONS);
    let mut recorded: Vec<PredictionRow> = read_rows(&pred_path)?;
    let mut whole = 0u64;
    while whole < batches {
        let count = recorded.iter().filter(|r| r.batch == whole).count();
        if count != size(whole) {
            break;
        }
        whole += 1;
    }
    let keep = recorded.iter().filter(|r| r.batch < whole).count();
    if keep != recorded.len() {
        recorded.truncate(keep);
        write_table(&pred_path, &recorded)?;
    }
    let mut sink = CsvAppender::open(&pred_path, &PredictionRow::sample())?;
    let done_images = whole as usize * bs;
    let mut progress = TrainProgress::with_unit(id, done_images.min(n) as u64, n as u64, "images");
    let mut predicted = 0u64;
    for b in whole..batches {
        let start = b as usize * bs;
        let range = start..start + size(b);
        let (x, y) = images_tensor(&test, range.clone(), device);
        wrapper.reseed(derive(cell.seed, "cifar-batch", b));
        let c = wrapper.classify(&x, &y);
        let probs = Vec::<f32>::try_from(
            c.probabilities
                .to_kind(Kind::Float)
                .to_device(Device::Cpu)
                .flatten(0, -1),
        )
        .expect("float probabilities");
        for (j, row) in probs.chunks(CLASSES.len()).enumerate() {
            let example = range.start + j;
            let p = Prediction::from_probabilities(row, test.labels[example] as i64);
            let r = PredictionRow {
                batch: b,
                example: example as u64,
                label: p.label,
                predicted: p.predicted,
                confidence: p.confidence,
                p_label: p.p_label,
            };
            sink.append(&r)?;
            recorded.push(r);
        }
        predicted += range.len() as u64;
        progress.advance(range.end as u64, 0);
    }
    progress.finish();
    drop(sink);
    std::fs::File::open(&pred_path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", pred_path.display()))?;
    let preds: Vec<Prediction> = recorded
        .iter()
        .map(|r| Prediction {
            label: r.label,
            predicted: r.predicted,
            confidence: r.confidence,
            p_label: r.p_label,
        })
        .collect();
    let row = eval_row(cell, &name, &wrapper, prediction_metrics(&preds));
    let bins = reliability_rows(&row, reliability_bins(&preds));
    write_table(&dir.join(EVAL_FILE), &[row])?;
    write_table(&dir.join(RELIABILITY_FILE), &bins)?;
    Ok(predicted)
}

impl PredictionRow {
    /// A row used only to learn the header.
    pub fn sample() -> Self {
        PredictionRow {
            batch: 0,
            example: 0,
            label: 0,
            predicted: 0,
            confidence: 0.0,
            p_label: 0.0,
        }
    }
}
