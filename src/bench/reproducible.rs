//! `sap bench reproducible`: what the reproducible mode costs. Each round runs the same
//! workloads in two child processes, one with libtorch's default kernels for this CPU and
//! one in the reproducible mode (which must be entered before libtorch starts, hence the
//! children), one torch thread each as in a cell, and prints the time ratios per round.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::defense::{Defense, DefensePoints, DefenseRng};
use crate::manifest::DdqnSettings;
use crate::nn::{Architecture, MlpConfig, Model};
use crate::provenance::REPRODUCIBLE_ENV;
use crate::rl::{Batch, DoubleDqn};

/// The two ways a child computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// libtorch's own kernel choices for this CPU.
    Default,
    /// The reproducible mode.
    Reproducible,
}

/// The workloads, in the order children print them.
pub const WORKLOADS: [&str; 6] = [
    "ResNet-20 forward, dense, batch 128",
    "ResNet-20 forward, SAP-100, batch 128",
    "Nature CNN forward, dense, batch 32",
    "Nature CNN forward, SAP-100, batch 32",
    "Double DQN update, Nature CNN, batch 32, Adam",
    "Double DQN update, MLP 256x256 (CartPole), batch 64, Adam",
];

/// Items per second of every workload in each round and mode.
#[derive(Clone, Debug)]
pub struct ReproducibleBench {
    /// `[round][workload]` rates with the default kernels.
    pub default: Vec<Vec<f64>>,
    /// `[round][workload]` rates in the reproducible mode.
    pub reproducible: Vec<Vec<f64>>,
}

impl ReproducibleBench {
    /// Per workload, the time ratios reproducible / default of each round (> 1: slower).
    pub fn time_ratios(&self) -> Vec<Vec<f64>> {
        (0..WORKLOADS.len())
            .map(|w| {
                self.default
                    .iter()
                    .zip(&self.reproducible)
                    .map(|(d, r)| d[w] / r[w])
                    .collect()
            })
            .collect()
    }
}

/// Runs `rounds` rounds, each a default child then a reproducible one, and gathers rates.
pub fn bench_reproducible(exe: &Path, rounds: u32, iterations: u32) -> Result<ReproducibleBench> {
    let mut out = ReproducibleBench {
        default: Vec::new(),
        reproducible: Vec::new(),
    };
    for _ in 0..rounds {
        for mode in [Mode::Default, Mode::Reproducible] {
            let mut cmd = Command::new(exe);
            cmd.args(["bench", "reproducible", "--iterations"])
                .arg(iterations.to_string())
                .arg("--child-mode")
                .arg(match mode {
                    Mode::Default => "default",
                    Mode::Reproducible => "reproducible",
                });
            if mode == Mode::Default {
                for (k, _) in REPRODUCIBLE_ENV {
                    cmd.env_remove(k);
                }
            }
            let o = cmd.output().context("starting a benchmark child")?;
            if !o.status.success() {
                bail!(
                    "benchmark child ({mode:?}) failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            let rates: Vec<f64> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("@rate "))
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .context("reading a benchmark child's rates")?;
            if rates.len() != WORKLOADS.len() {
                bail!("a benchmark child printed {} rates", rates.len());
            }
            match mode {
                Mode::Default => out.default.push(rates),
                Mode::Reproducible => out.reproducible.push(rates),
            }
        }
    }
    Ok(out)
}

/// The child's part: measures every workload once (`iterations` batches or updates after
/// one off the clock) with one torch thread and prints `@rate <items/s>` lines in
/// [`WORKLOADS`] order.
pub fn measure_child(iterations: u32) {
    tch::set_num_threads(1);
    let device = Device::cuda_if_available();
    let mut rng = DefenseRng::seed_from_u64(2);
    for (arch, batch) in [
        (Architecture::ResNet20 { classes: 10 }, 128),
        (Architecture::NatureCnn { actions: 6 }, 32),
    ] {
        tch::manual_seed(0);
        let model = Model::new(arch.clone(), device);
        let x = pixels(&arch, batch, 1).to_device(device);
        for defense in [Defense::Dense, Defense::SAP_100] {
            let pass = |rng: &mut DefenseRng| {
                tch::no_grad(|| {
                    let mut points = DefensePoints::new(defense, rng);
                    let out = model.forward(&x, false, &mut points);
                    let _ = out.sum(Kind::Float).double_value(&[]);
                })
            };
            let secs = timed(iterations, || pass(&mut rng));
            crate::outln!("@rate {}", (batch * iterations as i64) as f64 / secs);
        }
    }
    let nature = Architecture::NatureCnn { actions: 6 };
    let frames = pixels(&nature, 32, 3);
    let frames = Vec::<u8>::try_from(frames.to_kind(Kind::Uint8).flatten(0, -1)).expect("u8");
    ddqn_rate(
        nature,
        synthetic_batch(frames, 32, 6),
        32,
        iterations,
        device,
    );
    let mlp = Architecture::Mlp(MlpConfig {
        inputs: 4,
        hidden: vec![256, 256],
        outputs: 2,
        input_scale: 1.0,
    });
    let mut r = ChaCha8Rng::seed_from_u64(4);
    let states: Vec<f32> = (0..64 * 4).map(|_| r.gen_range(-1.0..1.0)).collect();
    ddqn_rate(
        mlp,
        synthetic_batch(states, 64, 2),
        64,
        iterations * 4,
        device,
    );
}

/// Seconds for `n` calls of `f` after one call off the clock.
fn timed(n: u32, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64()
}

/// `[batch, input]` pixel values 0..255 as f32.
fn pixels(arch: &Architecture, batch: i64, seed: u64) -> Tensor {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut shape = vec![batch];
    shape.extend(arch.input_shape());
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.gen_range(0..=255) as f32).collect();
    Tensor::from_slice(&v).view(shape.as_slice())
}

/// A batch whose next states are its states shifted by one example.
fn synthetic_batch<T: Copy>(states: Vec<T>, n: usize, actions: i64) -> Batch<T> {
    let per = states.len() / n;
    let mut next = states[per..].to_vec();
    next.extend_from_slice(&states[..per]);
    Batch {
        states,
        actions: (0..n as i64).map(|i| i % actions).collect(),
        rewards: (0..n).map(|i| (i % 3) as f32 - 1.0).collect(),
        next_states: next,
        dones: (0..n).map(|i| f32::from(i % 7 == 0)).collect(),
    }
}

/// Prints the Double DQN updates/s of `arch` on `batch` (Adam, the classic defaults).
fn ddqn_rate<T: tch::kind::Element + Copy>(
    arch: Architecture,
    batch: Batch<T>,
    n: usize,
    iterations: u32,
    device: Device,
) {
    assert_eq!(batch.len(), n);
    let d = DdqnSettings::defaults(None);
    let mut ddqn = DoubleDqn::new(arch, device, d.optimizer_config(), d.gamma, d.loss, 1);
    let secs = timed(iterations, || {
        ddqn.update(&batch);
    });
    crate::outln!("@rate {}", iterations as f64 / secs);
}
