//! `sap bench cifar`: ResNet-20 training steps (batch 128, SGD momentum 0.9, weight decay
//! 1e-4, lr 0.1) on a synthetic CIFAR-10, fed by the background batch pipeline against the
//! same steps on batches made beforehand, measured alternately in one run. The ratio says
//! whether the model ever waits for data (target >= 0.95).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

use crate::data::cifar::{load, synthesize, Split};
use crate::data::pipeline::{Pipeline, PipelineConfig, TrainBatch};
use crate::defense::DefensePoints;
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

/// One SGD step of `model` on `batch`.
fn step(model: &Model, opt: &mut tch::nn::Optimizer, batch: &TrainBatch) {
    let b = batch.labels.len() as i64;
    let x = Tensor::from_slice(&batch.images)
        .view([b, 3, 32, 32])
        .to(model.device());
    let y = Tensor::from_slice(&batch.labels).to(model.device());
    let logits = model.forward(&x, true, &mut DefensePoints::dense());
    let loss = logits.cross_entropy_for_logits(&y);
    opt.backward_step(&loss);
    // Wait for the step to finish (it is asynchronous on a GPU).
    let _ = loss.to_kind(Kind::Float).double_value(&[]);
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
    let mut opt = tch::nn::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        wd: 1e-4,
        nesterov: false,
    }
    .build(&model.vs, 0.1)?;
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
