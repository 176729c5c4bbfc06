//! `[[robustness]]` cells: train (or load) a classifier on a synthetic task, then measure
//! accuracy and calibration under every defense x lambda with the job's attack, one row per
//! (defense, lambda) in `classifier_eval.csv`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::nn::OptimizerConfig;
use tch::{Device, Tensor};

use super::{CellCtx, CellRunner};
use crate::defense::DefensePoints;
use crate::manifest::{RobustnessCell, RobustnessJob, Task};
use crate::nn::{checkpoint, Architecture, MlpConfig, Model};
use crate::policy::PolicyWrapper;
use crate::record::{read_rows, CsvAppender};
use crate::run_dir::files;
use crate::seed;
use crate::table::{ClassifierRow, Treatment};

/// Classes of the glyphs task.
pub const GLYPH_CLASSES: i64 = Task::Glyphs.classes();
/// Pixels of one glyph (8x8, one channel).
pub const GLYPH_PIXELS: i64 = 64;
/// Standard deviation of the pixel noise added to each glyph's prototype, pixel units.
pub const GLYPH_NOISE: f64 = 70.0;

/// `count` glyphs and their labels, from `seed`. Each class has a fixed 8x8 binary
/// prototype (pixels 40 or 215, the same for every seed); an example adds Gaussian noise of
/// standard deviation [`GLYPH_NOISE`] and is rounded and clipped to 0..255.
///
/// # Shapes
/// -> (`[count, 64]` float pixel values, `[count]` int64 labels)
pub fn glyphs(count: usize, seed: u64) -> (Tensor, Tensor) {
    let prototypes: Vec<[f32; 64]> = (0..GLYPH_CLASSES as u64)
        .map(|c| {
            let bits = seed::derive(0x6c79_7068, "glyph", c);
            std::array::from_fn(|j| if bits >> j & 1 == 1 { 215.0 } else { 40.0 })
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(count * 64);
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let c = rng.gen_range(0..GLYPH_CLASSES as usize);
        labels.push(c as i64);
        for &v in &prototypes[c] {
            let z: f64 = rng.sample(StandardNormal);
            pixels.push((v as f64 + GLYPH_NOISE * z).round().clamp(0.0, 255.0) as f32);
        }
    }
    (
        Tensor::from_slice(&pixels).view([count as i64, GLYPH_PIXELS]),
        Tensor::from_slice(&labels),
    )
}

/// The architecture a job trains.
pub fn architecture(job: &RobustnessJob) -> Architecture {
    match job.task {
        Task::Glyphs => Architecture::Mlp(MlpConfig {
            inputs: GLYPH_PIXELS,
            hidden: job.hidden.clone(),
            outputs: GLYPH_CLASSES,
            input_scale: 1.0 / 255.0,
        }),
    }
}

/// Trains the job's network with Adam (lr 1e-3, batches of 64 fresh glyphs) and saves it.
fn train(job: &RobustnessJob, seed: u64, path: &Path) -> Result<()> {
    let device = Device::cuda_if_available();
    tch::manual_seed(seed::derive(seed, "init", 0) as i64);
    let model = Model::new(architecture(job), device);
    let mut opt = tch::nn::Adam::default().build(&model.vs, 1e-3)?;
    for step in 0..job.train_steps {
        let (x, y) = glyphs(64, seed::derive(seed, "train-batch", step as u64));
        let logits = model.forward(&x.to_device(device), true, &mut DefensePoints::dense());
        let loss = logits.cross_entropy_for_logits(&y.to_device(device));
        opt.backward_step(&loss);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    checkpoint::save(&model, path)?;
    Ok(())
}

fn load(job: &RobustnessJob, path: &Path) -> Result<Model> {
    let mut model = Model::new(architecture(job), Device::cuda_if_available());
    checkpoint::load(&mut model, path)?;
    Ok(model)
}

/// Runs one cell (job `job_index`, `seed`): every (defense, lambda) pair not in `done` is
/// evaluated and appended to `sink`. Returns the rows written.
pub fn run_cell(
    run_dir: &Path,
    manifest_dir: &Path,
    job_index: usize,
    job: &RobustnessJob,
    seed: u64,
    done: &HashSet<String>,
    sink: &mut CsvAppender<ClassifierRow>,
) -> Result<u64> {
    let ckpt: PathBuf = match &job.checkpoint {
        Some(path) => manifest_dir.join(path),
        None => {
            let name = format!(
                "robustness{job_index}-{}-s{seed}.safetensors",
                job.task.name()
            );
            let path = run_dir.join("checkpoints").join(name);
            if !path.exists() {
                tracing::info!("training {} ({} steps)", path.display(), job.train_steps);
                train(job, seed, &path)?;
            }
            path
        }
    };
    // Loaded once, before any evaluation, and passed from wrapper to wrapper.
    let mut model = load(job, &ckpt).with_context(|| match &job.checkpoint {
        Some(_) => format!("robustness[{job_index}].checkpoint"),
        None => "the cell's own checkpoint".to_owned(),
    })?;
    let device = Device::cuda_if_available();
    let (x, labels) = glyphs(job.examples as usize, seed::derive(seed, "test", 0));
    let (x, labels_dev) = (x.to_device(device), labels.to_device(device));
    let labels: Vec<i64> = Vec::try_from(&labels).expect("int64 labels");
    let shown = ckpt
        .strip_prefix(run_dir)
        .unwrap_or(&ckpt)
        .display()
        .to_string();
    let mut written = 0;
    for (d, defense) in job.defenses.iter().enumerate() {
        for (l, &lambda) in job.lambdas.iter().enumerate() {
            let attack = job.attack_at(lambda);
            // The resume key depends on the defense, attack and radius only, not on the
            // passes run, so it is known before the wrapper exists.
            let treatment = |samples| {
                let mut t = Treatment::new(defense, Some(&attack), samples);
                t.source_checkpoint = job.attack.checkpoint.clone();
                t
            };
            let planned = treatment(job.samples);
            let mut row = describe(job, planned, seed, &shown);
            if done.contains(&row.key()) {
                continue;
            }
            let wrapper_seed =
                seed::derive(seed, "robustness-eval", (d * job.lambdas.len() + l) as u64);
            let mut policy =
                PolicyWrapper::new(model, *defense, Some(attack), job.samples, wrapper_seed)?
                    .with_max_batch(job.max_batch as usize);
            if let Some(file) = &job.attack.checkpoint {
                let source = load(job, &manifest_dir.join(file)).with_context(|| {
                    format!("robustness[{job_index}].attack.checkpoint (the transfer attack's surrogate)")
                })?;
                policy = policy.with_source(source);
            }
            let scored = policy
                .classify(&x, &labels_dev)
                .scored(&labels_dev, &labels);
            let m = scored.metrics();
            row.optimistic_accuracy = scored.optimistic_accuracy();
            row.treatment = treatment(policy.effective_samples());
            row.n = m.n;
            row.accuracy = m.accuracy;
            row.mean_confidence = m.mean_confidence;
            row.ece = m.ece;
            row.nll = m.nll;
            model = policy.into_model();
            sink.append(&row)?;
            written += 1;
        }
    }
    Ok(written)
}

/// A row with every parameter filled in and the metrics still zero.
fn describe(job: &RobustnessJob, treatment: Treatment, seed: u64, ckpt: &str) -> ClassifierRow {
    ClassifierRow {
        task: job.task.name().to_owned(),
        network: architecture(job).name().to_owned(),
        checkpoint: ckpt.to_owned(),
        train_seed: seed,
        eval_seed: seed,
        treatment,
        n: 0,
        accuracy: 0.0,
        optimistic_accuracy: 0.0,
        mean_confidence: 0.0,
        ece: 0.0,
        nll: 0.0,
    }
}

/// A zero row, used to write the CSV header.
pub fn header_row() -> ClassifierRow {
    ClassifierRow {
        task: String::new(),
        network: String::new(),
        checkpoint: String::new(),
        train_seed: 0,
        eval_seed: 0,
        treatment: Treatment::default(),
        n: 0,
        accuracy: 0.0,
        optimistic_accuracy: 0.0,
        mean_confidence: 0.0,
        ece: 0.0,
        nll: 0.0,
    }
}

impl CellRunner for RobustnessCell {
    fn outputs(&self) -> &'static [&'static str] {
        &[files::CLASSIFIER_EVAL]
    }

    fn run(&self, ctx: &CellCtx) -> Result<u64> {
        let path = ctx.file(files::CLASSIFIER_EVAL);
        let recorded: Vec<ClassifierRow> = read_rows(&path)?;
        let done: HashSet<String> = recorded.iter().map(|r| r.key()).collect();
        let mut sink = CsvAppender::open(&path, &header_row())?;
        let job = &ctx.manifest.robustness[self.job];
        let (run_dir, manifest_dir) = (ctx.run_dir, ctx.manifest_dir);
        run_cell(
            run_dir,
            manifest_dir,
            self.job,
            job,
            self.seed,
            &done,
            &mut sink,
        )
    }
}
