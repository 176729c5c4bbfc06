//! `[[cifar_train]]` cells: ResNet-20 trained on CIFAR-10 as He et al. (2016) train it (SGD
//! with momentum and weight decay, a stepped learning rate, 4-pixel pad random crop and flip),
//! dense or adversarially (a fraction of each batch replaced by FGSM examples against the
//! current network).
//!
//! Batches come from [`Pipeline`] threads over crossbeam channels. Every `checkpoint_every`
//! iterations the cell saves the network, the momentum buffers and the current epoch's
//! running sums, so a resumed cell continues at the next batch and writes the same rows as
//! an uninterrupted one. `cifar_train.csv` has one row per epoch; the last one may be partial.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::attack::fgsm::{fgsm, FgsmParams};
use crate::attack::GradientSpec;
use crate::data::cifar::{load, CifarSplit, Split, CLASSES};
use crate::data::pipeline::{Pipeline, PipelineConfig, TrainBatch};
use crate::defense::{Defense, DefensePoints, DefenseRng, Draws};
use crate::experiment::{CellCtx, CellRunner};
use crate::manifest::{CifarTrainCell, CifarTrainJob, Variant};
use crate::nn::checkpoint::CheckpointFolder;
use crate::nn::optim::{Optimizer, OptimizerConfig};
use crate::nn::{checkpoint, Architecture, Model};
use crate::progress::TrainProgress;
use crate::record::{read_rows, write_table, CsvAppender};
use crate::run_dir::files;
use crate::seed::derive;
use crate::table::CifarTrainRow;

/// The network every CIFAR-10 cell trains and evaluates.
pub fn architecture() -> Architecture {
    Architecture::ResNet20 {
        classes: CLASSES.len() as i64,
    }
}

/// The running sums of the epoch in progress, saved with each checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct EpochSums {
    batches: u64,
    images: u64,
    loss_sum: f64,
    correct: u64,
    adv: u64,
    secs: f64,
}

impl EpochSums {
    /// The epoch's row at iteration `done` (test columns zero: the caller measures them).
    fn row(&self, cell: &CifarTrainCell, epoch: u64, done: u64, lr: f64) -> CifarTrainRow {
        CifarTrainRow {
            job: cell.settings.name.clone(),
            variant: cell.variant,
            seed: cell.seed,
            epoch,
            iteration: done,
            batches: self.batches,
            lr,
            loss: self.loss_sum / self.images as f64,
            train_accuracy: self.correct as f64 / self.images as f64,
            adv_examples: self.adv,
            test_loss: 0.0,
            test_accuracy: 0.0,
            test_examples: 0,
            images_per_s: self.images as f64 / self.secs.max(1e-9),
        }
    }
}

/// A checkpoint's description, written after its tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointInfo {
    /// Iterations done.
    iteration: u64,
    /// Rows of `cifar_train.csv` written.
    rows: u64,
    /// The tensors' file, in the same folder.
    tensors: String,
    /// The epoch in progress.
    epoch: EpochSums,
}

/// What a training call did.
#[derive(Clone, Copy, Debug)]
pub struct CifarTrainOutcome {
    /// Iterations run in this call.
    pub iterations_run: u64,
}

/// The learning rate at iteration `it` (from 0): `lr * decay^(milestones passed)`.
pub fn learning_rate(job: &CifarTrainJob, it: u64) -> f64 {
    let passed = job.lr_milestones.iter().filter(|&&m| it >= m).count() as i32;
    job.lr * job.lr_decay.powi(passed)
}

/// Replaces the first `round(fraction * batch)` examples of `x` by FGSM examples of radius
/// `lambda` against `model` (batch norm in evaluation mode, no defense), the rest kept. The
/// batch comes shuffled, so the replaced examples are a random subset. Returns the batch and
/// the number replaced.
///
/// # Shapes
/// `x`: `[batch, 3, 32, 32]` pixel units; `y`: `[batch]` -> (`[batch, 3, 32, 32]`, count)
pub fn adversarial_batch(
    model: &Model,
    x: &Tensor,
    y: &Tensor,
    fraction: f64,
    lambda: f64,
) -> (Tensor, i64) {
    let b = x.size()[0];
    let k = ((fraction * b as f64).round() as i64).clamp(0, b);
    if k == 0 {
        return (x.shallow_clone(), 0);
    }
    // FGSM against a network without a defense draws nothing.
    let mut rng = DefenseRng::seed_from_u64(0);
    let head = fgsm(
        model,
        Defense::Dense,
        &mut Draws::Shared(&mut rng),
        &x.narrow(0, 0, k),
        &y.narrow(0, 0, k),
        FgsmParams {
            lambda,
            gradient: GradientSpec::cross_entropy(1, crate::defense::DEFAULT_MAX_BATCH),
        },
    );
    (Tensor::cat(&[head, x.narrow(0, k, b - k)], 0), k)
}

/// Mean cross-entropy and accuracy of `model` (evaluation mode) on the first `n` images of
/// `data`.
pub fn test_metrics(model: &Model, data: &CifarSplit, n: usize) -> (f64, f64) {
    let device = model.device();
    let (mut loss_sum, mut correct) = (0.0, 0i64);
    tch::no_grad(|| {
        for start in (0..n).step_by(500) {
            let end = (start + 500).min(n);
            let (x, y) = images_tensor(data, start..end, device);
            let logits = model.forward(&x, false, &mut DefensePoints::dense());
            loss_sum += logits
                .cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0)
                .double_value(&[]);
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
    });
    (loss_sum / n as f64, correct as f64 / n as f64)
}

/// Images `range` of `data` as float pixels and their labels, on `device`.
///
/// # Shapes
/// -> (`[n, 3, 32, 32]` float, `[n]` int64)
pub fn images_tensor(
    data: &CifarSplit,
    range: std::ops::Range<usize>,
    device: Device,
) -> (Tensor, Tensor) {
    let n = range.len() as i64;
    let bytes = &data.images[range.start * 3072..range.end * 3072];
    let x = Tensor::from_slice(bytes)
        .to_kind(Kind::Float)
        .view([n, 3, 32, 32])
        .to(device);
    let labels: Vec<i64> = data.labels[range].iter().map(|&l| l as i64).collect();
    (x, Tensor::from_slice(&labels).to(device))
}

/// SGD with momentum and weight decay over `model`'s trainable parameters.
pub fn sgd(model: &Model, lr: f64, momentum: f64, weight_decay: f64) -> Optimizer {
    let config = OptimizerConfig::Sgd {
        lr,
        momentum,
        weight_decay,
    };
    let params = model
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    Optimizer::new(config, params)
}

/// One SGD step on `batch`, with its adversarial part when `adv` is `Some((fraction,
/// lambda))`. Returns (summed loss, correct, adversarial examples).
pub fn train_step(
    model: &Model,
    opt: &mut Optimizer,
    batch: &TrainBatch,
    adv: Option<(f64, f64)>,
) -> (f64, i64, i64) {
    let b = batch.labels.len() as i64;
    let device = model.device();
    let x = Tensor::from_slice(&batch.images)
        .view([b, 3, 32, 32])
        .to(device);
    let y = Tensor::from_slice(&batch.labels).to(device);
    let (x, replaced) = match adv {
        Some((fraction, lambda)) => adversarial_batch(model, &x, &y, fraction, lambda),
        None => (x, 0),
    };
    opt.zero_grad();
    let logits = model.forward(&x, true, &mut DefensePoints::dense());
    let loss = logits.cross_entropy_for_logits(&y);
    loss.backward();
    opt.step();
    let correct = tch::no_grad(|| {
        logits
            .argmax(-1, false)
            .eq_tensor(&y)
            .sum(Kind::Int64)
            .int64_value(&[])
    });
    (loss.double_value(&[]) * b as f64, correct, replaced)
}

fn save_checkpoint(
    folder: &CheckpointFolder,
    model: &Model,
    opt: &Optimizer,
    info: &CheckpointInfo,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = model
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v.detach().to_device(Device::Cpu)))
        .collect();
    named.extend(
        opt.state()
            .into_iter()
            .map(|(k, v)| (format!("optim.{k}"), v.detach().to_device(Device::Cpu))),
    );
    named.sort_by(|a, b| a.0.cmp(&b.0));
    crate::nn::checkpoint::write_tensors(&folder.file(&info.tensors), &named)?;
    folder.commit(info.iteration, info)?;
    Ok(())
}

fn load_checkpoint(
    dir: &Path,
    info: &CheckpointInfo,
    model: &Model,
    opt: &mut Optimizer,
) -> Result<()> {
    let path = dir.join(&info.tensors);
    let file: BTreeMap<String, Tensor> = crate::nn::checkpoint::read_tensors(&path)?;
    let mismatch = |name: &str| {
        anyhow::anyhow!(
            "{}: tensor `{name}` is missing or misshapen; the checkpoint does not belong to this \
             cell's ResNet-20 (remove the cell's checkpoints folder to start again)",
            path.display()
        )
    };
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in model.vs.variables() {
            let t = file
                .get(&format!("model.{name}"))
                .filter(|t| t.size() == var.size())
                .ok_or_else(|| mismatch(&name))?;
            var.copy_(t);
        }
        Ok(())
    })?;
    let device = model.device();
    opt.load_state(|k| file.get(&format!("optim.{k}")).map(|t| t.to_device(device)))
        .map_err(|name| mismatch(&format!("optim.{name}")))?;
    Ok(())
}

/// Cuts `path` (a CSV with a header) to its header and first `rows` rows.
fn keep_rows(path: &Path, rows: u64) -> Result<()> {
    let kept: Vec<CifarTrainRow> = read_rows(path)?;
    if kept.len() as u64 > rows {
        write_table(path, &kept[..rows as usize])?;
    }
    Ok(())
}

/// The job's training images (the first `train_examples`, at least one batch) and the test
/// images.
fn load_data(data_dir: &Path, job: &CifarTrainJob) -> Result<(Arc<CifarSplit>, CifarSplit)> {
    let mut train = load(data_dir, Split::Train)?;
    let keep = (job.train_examples as usize).min(train.len());
    train
        .images
        .truncate(keep * crate::data::cifar::IMAGE_BYTES);
    train.labels.truncate(keep);
    let batch_size = job.batch_size as usize;
    if train.len() < batch_size {
        bail!(
            "{}: {} training images, fewer than one batch of {batch_size}",
            data_dir.display(),
            train.len()
        );
    }
    let test = load(data_dir, Split::Test)?;
    Ok((Arc::new(train), test))
}

impl CellRunner for CifarTrainCell {
    fn outputs(&self) -> &'static [&'static str] {
        &[files::CIFAR_TRAIN, files::FINAL]
    }

    fn run(&self, ctx: &CellCtx) -> Result<u64> {
        Ok(run_cell(ctx, self)?.iterations_run)
    }
}

/// Trains (or resumes) one cell in its folder; data paths are relative to the manifest's
/// folder.
pub fn run_cell(ctx: &CellCtx, cell: &CifarTrainCell) -> Result<CifarTrainOutcome> {
    let (manifest_dir, dir, id) = (ctx.manifest_dir, &ctx.dir, ctx.id.as_str());
    let job = &cell.settings;
    let ckpt_dir = dir.join(files::CHECKPOINTS);
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let (train, test) = load_data(&manifest_dir.join(&job.data), job)?;
    let batch_size = job.batch_size as usize;
    let device = Device::cuda_if_available();
    tch::manual_seed(derive(cell.seed, "cifar-init", 0) as i64);
    let model = Model::new(architecture(), device);
    let mut opt = sgd(&model, job.lr, job.momentum, job.weight_decay);
    let path = dir.join(files::CIFAR_TRAIN);
    let folder = CheckpointFolder::new(&ckpt_dir);
    let resumed = folder
        .newest(|info: &CheckpointInfo| folder.file(&info.tensors).is_file())?
        .map(|(_, info, _)| info);
    let (start, mut rows, mut sums) = match &resumed {
        Some(info) => {
            load_checkpoint(&ckpt_dir, info, &model, &mut opt)?;
            // Rows after the checkpoint are trained again: cut them first.
            keep_rows(&path, info.rows)?;
            (info.iteration, info.rows, info.epoch)
        }
        None => {
            keep_rows(&path, 0)?;
            (0, 0, EpochSums::default())
        }
    };
    let mut sink = CsvAppender::open(&path, &CifarTrainRow::sample())?;
    let per_epoch = (train.len() / batch_size) as u64;
    let cfg = PipelineConfig {
        batch_size,
        workers: job.workers as usize,
        capacity: 4,
        seed: derive(cell.seed, "cifar-batches", 0),
        augment: job.augment,
        start: (start / per_epoch, start % per_epoch),
    };
    let adv = (cell.variant == Variant::Adv).then(|| job.adv()).flatten();
    let total = job.iterations * batch_size as u64;
    let mut progress = TrainProgress::with_unit(id, start * batch_size as u64, total, "images");
    let mut batches = Pipeline::start(Arc::clone(&train), cfg);
    let test_n = (job.test_examples as usize).min(test.len());
    for it in start..job.iterations {
        let lr = learning_rate(job, it);
        opt.set_lr(lr);
        // The time includes waiting for the batch: images/s says what the data feeds.
        let t0 = Instant::now();
        let batch = batches.next().context("the batch pipeline stopped")?;
        let (loss_sum, correct, replaced) = train_step(&model, &mut opt, &batch, adv);
        if !loss_sum.is_finite() {
            bail!(
                "training diverged at iteration {it}: loss {}; no rows after it are written. \
                 Lower lr or check the data",
                loss_sum / batch_size as f64
            );
        }
        sums.secs += t0.elapsed().as_secs_f64();
        sums.batches += 1;
        sums.images += batch.labels.len() as u64;
        sums.loss_sum += loss_sum;
        sums.correct += correct as u64;
        sums.adv += replaced as u64;
        let done = it + 1;
        progress.advance(done * batch_size as u64, done);
        if done % per_epoch == 0 || done == job.iterations {
            let mut row = sums.row(cell, it / per_epoch + 1, done, lr);
            (row.test_loss, row.test_accuracy) = test_metrics(&model, &test, test_n);
            row.test_examples = test_n as u32;
            progress.note(&format!(
                "epoch {}: loss {:.4}, train accuracy {:.4}, test accuracy {:.4}",
                row.epoch, row.loss, row.train_accuracy, row.test_accuracy
            ));
            sink.append(&row)?;
            rows += 1;
            sums = EpochSums::default();
        }
        if done % job.checkpoint_every == 0 && done < job.iterations {
            let info = CheckpointInfo {
                iteration: done,
                rows,
                tensors: format!("{}.safetensors", CheckpointFolder::stem(done)),
                epoch: sums,
            };
            save_checkpoint(&folder, &model, &opt, &info)?;
        }
    }
    drop(batches);
    progress.finish();
    checkpoint::save(&model, &dir.join(files::FINAL))?;
    Ok(CifarTrainOutcome {
        iterations_run: job.iterations.saturating_sub(start),
    })
}
