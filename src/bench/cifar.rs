//! `sap bench cifar`: ResNet-20 training steps (batch 128, SGD momentum 0.9, weight decay
//! 1e-4, lr 0.1) on a synthetic CIFAR-10, fed by the background batch pipeline against the
//! same steps on batches made beforehand, measured alternately in one run. The ratio says
//! whether the model ever waits for data (target >= 0.95).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tch::Device;

use crate::data::cifar::{load, synthesize, Split};
use crate::data::pipeline::{Pipeline, PipelineConfig, TrainBatch};
use crate::experiment::cifar::train::{sgd, train_step};
use crate::nn::optim::Optimizer;
use crate::nn::{Architecture, Model};

/// What `bench_cifar` measured (best of the rounds).
#[derive(Clone, Debug)]
pub struct CifarBench {
    /// Images per batch.
    pub batch: usize,
    /// Background batch threads.
    pub workers: usize,
    /// torch threads of the trainer.
    pub torch_threads: i32,
    /// Training images/s with the pipeline making batches meanwhile.
    pub pipeline_images_per_s: f64,
    /// Training images/s on batches made beforehand.
    pub model_only_images_per_s: f64,
}

impl CifarBench {
    /// Pipeline-on over model-only throughput.
    pub fn ratio(&self) -> f64 {
        self.pipeline_images_per_s / self.model_only_images_per_s
    }
}

/// One SGD step of `model` on `batch`, as training cells take it.
fn step(model: &Model, opt: &mut Optimizer, batch: &TrainBatch) {
    // The loss is read back, so the step has finished (it is asynchronous on a GPU).
    let _ = train_step(model, opt, batch, None);
}

/// Measures `steps` training steps per round, `rounds` rounds of each kind alternately,
/// with `workers` batch threads.
pub fn bench_cifar(steps: usize, rounds: u32, workers: usize) -> Result<CifarBench> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    synthesize(tmp.path(), 1)?;
    let data = Arc::new(load(tmp.path(), Split::Train)?);
    let batch = 128;
    let cfg = PipelineConfig {
        batch_size: batch,
        workers,
        capacity: 4,
        seed: 1,
        augment: true,
        start: (0, 0),
    };
    tch::manual_seed(1);
    let model = Model::new(
        Architecture::ResNet20 { classes: 10 },
        Device::cuda_if_available(),
    );
    let mut opt = sgd(&model, 0.1, 0.9, 1e-4);
    let premade: Vec<TrainBatch> = Pipeline::start(Arc::clone(&data), cfg).take(4).collect();
    // Warm-up: the first steps allocate.
    for b in &premade {
        step(&model, &mut opt, b);
    }
    let (mut piped, mut alone) = (0f64, 0f64);
    for round in 0..rounds {
        let start = Instant::now();
        for k in 0..steps {
            step(&model, &mut opt, &premade[k % premade.len()]);
        }
        alone = alone.max((steps * batch) as f64 / start.elapsed().as_secs_f64());
        let mut pipeline = Pipeline::start(
            Arc::clone(&data),
            PipelineConfig {
                start: (round as u64, 0),
                ..cfg
            },
        );
        let start = Instant::now();
        for _ in 0..steps {
            let b = pipeline.next().context("the batch pipeline stopped")?;
            step(&model, &mut opt, &b);
        }
        piped = piped.max((steps * batch) as f64 / start.elapsed().as_secs_f64());
    }
    Ok(CifarBench {
        batch,
        workers,
        torch_threads: tch::get_num_threads(),
        pipeline_images_per_s: piped,
        model_only_images_per_s: alone,
    })
}

/// One evaluation setting measured by [`bench_cifar_eval`].
#[derive(Clone, Debug)]
pub struct EvalRate {
    /// What was measured.
    pub what: String,
    /// Network passes (forward or backward) per test image.
    pub passes_per_image: u32,
    /// Test images per second (best of the rounds).
    pub images_per_s: f64,
}

/// Evaluation throughput of a ResNet-20 on `images` synthetic test images per round, in
/// batches of `batch`: dense; dense under FGSM; SAP-100 with samples = 10; SAP-100 with
/// samples = 10 under FGSM with gradient_samples = 10 (lambda 8). Settings alternate within
/// each round, so they share the machine's conditions.
pub fn bench_cifar_eval(images: usize, batch: usize, rounds: u32) -> Result<Vec<EvalRate>> {
    use crate::attack::{Attack, AttackKind};
    use crate::defense::Defense;
    use crate::experiment::cifar::train::images_tensor;
    use crate::policy::PolicyWrapper;
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    synthesize(tmp.path(), 1)?;
    let test = load(tmp.path(), Split::Test)?;
    let device = Device::cuda_if_available();
    let fgsm = |k| Attack::new(AttackKind::Fgsm, 8.0, k);
    let settings: [(&str, Defense, Option<Attack>, u32); 4] = [
        ("dense", Defense::Dense, None, 1),
        ("dense, FGSM", Defense::Dense, Some(fgsm(10)), 1),
        ("SAP-100, samples = 10", Defense::SAP_100, None, 10),
        (
            "SAP-100, samples = 10, FGSM gradient_samples = 10",
            Defense::SAP_100,
            Some(fgsm(10)),
            10,
        ),
    ];
    let mut best = vec![0f64; settings.len()];
    let mut wrappers = Vec::new();
    for (_, defense, attack, samples) in settings {
        tch::manual_seed(1);
        let model = Model::new(Architecture::ResNet20 { classes: 10 }, device);
        wrappers.push(PolicyWrapper::new(model, defense, attack, samples, 1)?);
    }
    let images = images.min(test.len());
    for _ in 0..rounds {
        for (w, best) in wrappers.iter_mut().zip(best.iter_mut()) {
            let start = Instant::now();
            for s in (0..images).step_by(batch) {
                let (x, y) = images_tensor(&test, s..(s + batch).min(images), device);
                // Reading the probabilities back waits for the work (asynchronous on a GPU).
                let _ = w
                    .classify(&x, &y)
                    .probabilities
                    .sum(tch::Kind::Float)
                    .double_value(&[]);
            }
            *best = best.max(images as f64 / start.elapsed().as_secs_f64());
        }
    }
    Ok(settings
        .iter()
        .zip(best)
        .map(|((what, defense, attack, samples), images_per_s)| {
            let samples = if defense.is_stochastic() { *samples } else { 1 };
            let grads = attack.map_or(0, |a| 2 * a.effective_gradient_samples(defense));
            EvalRate {
                what: (*what).to_owned(),
                passes_per_image: samples + grads,
                images_per_s,
            }
        })
        .collect())
}
