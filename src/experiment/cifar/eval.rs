//! `[[cifar_eval]]` cells: one ResNet-20 under one defense, attack and radius on the first
//! `examples` CIFAR-10 test images. Test image `i` is attacked and predicted with its own
//! generator, seeded from (cell seed, i), so its row does not depend on the batch it is in
//! (docs/ARCHITECTURE.md section 5); each batch's predictions are appended to `predictions.csv`, so an
//! interrupted cell continues at its first missing batch with the same rows. When every batch is done the cell writes `cifar_eval.csv` (one row) and
//! `reliability.csv` (one row per confidence bin).

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use tch::Device;

use super::train::{architecture, images_tensor};
use crate::data::cifar::{load, Split};
use crate::defense::DefenseRng;
use crate::experiment::{CellCtx, CellRunner};
use crate::manifest::CifarEvalCell;
use crate::metrics::{reliability_bins, ClassifierMetrics, Prediction, ReliabilityBin, Scored};
use crate::nn::{checkpoint, Model};
use crate::policy::PolicyWrapper;
use crate::progress::TrainProgress;
use crate::record::{read_rows, write_table, CsvAppender};
use crate::run_dir::files;
use crate::seed::derive;
use crate::table::{CifarEvalRow, PredictionRow, ReliabilityRow};

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
    dataset: &str,
    checkpoint: &str,
    wrapper: &PolicyWrapper,
    m: ClassifierMetrics,
) -> CifarEvalRow {
    let (train_job, adv) = match &cell.trained_by {
        Some((job, adv)) => (Some(job.clone()), *adv),
        None => (None, None),
    };
    CifarEvalRow {
        job: cell.job_name.clone(),
        dataset: dataset.to_owned(),
        data: cell.data.clone(),
        network: architecture().name().into(),
        variant: cell.label.clone(),
        train_job,
        adv_fraction: adv.map(|a| a.0),
        adv_lambda: adv.map(|a| a.1),
        checkpoint: checkpoint.to_owned(),
        train_seed: cell.network.train_seed(),
        eval_seed: cell.condition.seed,
        treatment: cell.condition.treatment(wrapper.effective_samples()),
        n: m.n,
        accuracy: m.accuracy,
        optimistic_accuracy: m.accuracy,
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
            treatment: row.treatment.clone(),
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
pub fn run_cell(ctx: &CellCtx, cell: &CifarEvalCell) -> Result<u64> {
    let (manifest_dir, dir, id) = (ctx.manifest_dir, &ctx.dir, ctx.id.as_str());
    let device = Device::cuda_if_available();
    let (path, name) = ctx.network(&cell.network);
    let model = load_network(&path, device)?;
    let mut wrapper = PolicyWrapper::new(
        model,
        cell.condition.defense,
        cell.condition.attack,
        cell.samples,
        cell.condition.seed,
    )
    .context("the cell's defense and attack")?
    .with_max_batch(cell.max_batch as usize);
    if let Some(file) = &cell.condition.source_checkpoint {
        let source = load_network(&manifest_dir.join(file), device)
            .context("the transfer attack's surrogate network (the attack's `checkpoint`)")?;
        wrapper = wrapper.with_source(source);
    }
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
    let pred_path = dir.join(files::CIFAR_EVAL_PREDICTIONS);
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
        let mut rngs: Vec<DefenseRng> = range
            .clone()
            .map(|i| DefenseRng::seed_from_u64(derive(cell.condition.seed, "image", i as u64)))
            .collect();
        let labels: Vec<i64> = range.clone().map(|e| test.labels[e] as i64).collect();
        let scored = wrapper.classify_rows(&x, &y, &mut rngs).scored(&y, &labels);
        let any = &scored.any_pass_correct;
        for (j, p) in scored.predictions.iter().enumerate() {
            let example = range.start + j;
            let r = PredictionRow {
                batch: b,
                example: example as u64,
                label: p.label,
                predicted: p.predicted,
                confidence: p.confidence,
                p_label: p.p_label,
                any_pass_correct: any[j],
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
    let scored = Scored {
        predictions: recorded
            .iter()
            .map(|r| Prediction {
                label: r.label,
                predicted: r.predicted,
                confidence: r.confidence,
                p_label: r.p_label,
            })
            .collect(),
        any_pass_correct: recorded.iter().map(|r| r.any_pass_correct).collect(),
    };
    let dataset = crate::data::cifar::dataset_name(&data_dir);
    let mut row = eval_row(cell, dataset, &name, &wrapper, scored.metrics());
    row.optimistic_accuracy = scored.optimistic_accuracy();
    let bins = reliability_rows(&row, reliability_bins(&scored.predictions));
    write_table(&dir.join(files::CIFAR_EVAL), &[row])?;
    write_table(&dir.join(files::RELIABILITY), &bins)?;
    Ok(predicted)
}

impl CellRunner for CifarEvalCell {
    fn outputs(&self) -> &'static [&'static str] {
        &[files::CIFAR_EVAL, files::RELIABILITY]
    }

    fn run(&self, ctx: &CellCtx) -> Result<u64> {
        run_cell(ctx, self)
    }
}
