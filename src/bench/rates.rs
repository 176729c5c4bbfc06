//! `sap bench rates`: this machine's CPU cost of the work cells are made of, measured once
//! and saved, so that `sap plan` can estimate each cell's CPU time.
//!
//! Every network cost is CPU seconds of one call of `b` rows, modelled as
//! `fixed + per_row * b` from calls at batch 1 and at a larger batch, with one torch thread and
//! the process's CPU clock (so threads that the defenses start are counted too). An estimate
//! is a bound of the same kind as the plan's frame bound: every episode runs to its cap and
//! no action is an exploring one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::attack::Attack;
use crate::defense::{pass_groups, Defense, DefensePoints, DefenseRng};
use crate::env::{AtariEnv, Environment, Game, Mode, Preset};
use crate::manifest::{CellKind, GameId, PlanCell};
use crate::nn::{Architecture, Model};

/// The CPU seconds of one call of `b` rows: `fixed + per_row * b`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Seconds per call whatever its rows.
    pub fixed_s: f64,
    /// Seconds per row.
    pub per_row_s: f64,
}

impl Cost {
    /// Fits the model to `t1` seconds at batch 1 and `tb` at batch `b > 1`.
    fn fit(t1: f64, b: i64, tb: f64) -> Self {
        let per_row = (tb - t1) / (b - 1) as f64;
        if per_row <= 0.0 || per_row * b as f64 > tb {
            // Noise: no measurable fixed part.
            Self {
                fixed_s: 0.0,
                per_row_s: tb / b as f64,
            }
        } else {
            Self {
                fixed_s: tb - per_row * b as f64,
                per_row_s: per_row,
            }
        }
    }

    /// Seconds of `passes` passes over `batch` rows, stacked as [`pass_groups`] stacks them
    /// (as many whole passes per call as `max_batch` rows allow).
    pub fn passes(&self, passes: u64, batch: u64, max_batch: u64) -> f64 {
        if batch == 0 {
            return 0.0;
        }
        let calls = pass_groups(passes as usize, batch as usize, max_batch as usize).count();
        calls as f64 * self.fixed_s + (passes * batch) as f64 * self.per_row_s
    }
}

/// One network's costs under the three kinds of defense.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkCosts {
    /// Batch of the second measurement.
    pub batch: i64,
    /// A forward pass without gradients, no defense.
    pub dense_forward: Cost,
    /// A forward and backward pass to the input (one attack gradient), no defense.
    pub dense_gradient: Cost,
    /// Forward, SAP-100 exact.
    pub sap_forward: Cost,
    /// Gradient, SAP-100 exact.
    pub sap_gradient: Cost,
    /// Forward, dropout 0.1 (the other stochastic defenses cost about as much).
    pub other_forward: Cost,
    /// Gradient, dropout 0.1.
    pub other_gradient: Cost,
    /// A training step's forward and backward to the weights (train mode), no defense.
    pub train: Cost,
}

impl NetworkCosts {
    /// The forward and gradient costs of `defense`.
    fn of(&self, defense: &Defense) -> (Cost, Cost) {
        match defense {
            Defense::Dense => (self.dense_forward, self.dense_gradient),
            Defense::Sap { .. } => (self.sap_forward, self.sap_gradient),
            Defense::Dropout { .. } | Defense::Gaussian { .. } => {
                (self.other_forward, self.other_gradient)
            }
        }
    }
}

/// What `sap bench rates` measured, as saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// When, UTC.
    pub measured: String,
    /// The CPU's model name.
    pub cpu: String,
    /// CPU seconds per emulator frame through the whole preprocessing pipeline (Pong,
    /// `dopamine-v5`).
    pub emulator_frame_s: f64,
    /// The Nature CNN (agents).
    pub nature_cnn: NetworkCosts,
    /// ResNet-20 (CIFAR-10).
    pub resnet20: NetworkCosts,
}

/// Where `sap bench rates` saves and `sap plan` looks: `$XDG_CACHE_HOME/sap-harness/rates.toml`,
/// else `~/.cache/sap-harness/rates.toml`.
pub fn default_path() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("sap-harness").join("rates.toml"))
}

impl Rates {
    /// Reads saved rates; an error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the rates file {}", path.display()))?;
        let rates: Rates = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a rates file of this version of sap; `sap bench rates` writes a \
                 new one",
                path.display()
            )
        })?;
        Ok(rates)
    }

    /// Writes the rates to `path` (its folder made if needed), through a temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, toml::to_string(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// An estimate of the CPU seconds `cell` takes, where the rates cover it (Atari and
    /// CIFAR-10 cells; not classic control or glyph classifiers).
    pub fn cpu_seconds(&self, cell: &PlanCell) -> Option<f64> {
        let frame = self.emulator_frame_s;
        match &cell.kind {
            CellKind::Episodes(c) => {
                let GameId::Atari(_) = c.game else {
                    return None;
                };
                Some(cell.frames_bound()? as f64 * frame)
            }
            CellKind::Agent(a) => {
                let skip = a.settings.frame_skip.max(1) as u64;
                let lanes = a.parallel_episodes.max(1) as u64;
                let (forward, gradient) = self.nature_cnn.of(&a.condition.defense);
                let samples = if a.condition.defense.is_stochastic() {
                    a.samples as u64
                } else {
                    1
                };
                let max_batch = a.max_batch as u64;
                let attack = a.condition.attack.filter(|x| x.lambda > 0.0);
                // One step of every lane: its frames, the prediction's passes (twice under
                // attack: the label, then the action), the attack's gradients.
                let mut step = (lanes * skip) as f64 * frame;
                let predictions = if attack.is_some() { 2 } else { 1 };
                step += predictions as f64 * forward.passes(samples, lanes, max_batch);
                step += attack_seconds(
                    attack.as_ref(),
                    &a.condition.defense,
                    gradient,
                    lanes,
                    max_batch,
                );
                let steps = cell.frames_bound()? / skip;
                Some(steps as f64 / lanes as f64 * step)
            }
            CellKind::Train(t) => {
                let GameId::Atari(_) = t.game else {
                    return None;
                };
                let job = &t.job;
                let skip = job.frame_skip().max(1);
                let steps = job.frames / skip;
                let net = &self.nature_cnn;
                let envs = job.runtime.envs_per_actor.max(1) as u64;
                let act = net.dense_forward.passes(1, envs, envs) / envs as f64;
                let batch = job.ddqn.batch_size as u64;
                // An update: the online network's step, and forward passes of the next
                // states through the online and target networks.
                let update = net.train.passes(1, batch, batch)
                    + 2.0 * net.dense_forward.passes(1, batch, batch);
                let updates =
                    steps.saturating_sub(job.ddqn.learning_starts) / job.ddqn.update_period.max(1);
                let eval_frames = cell.frames_bound()?.saturating_sub(job.frames);
                let lanes =
                    crate::experiment::train::EVAL_LANES.min(job.eval_episodes.max(1)) as u64;
                let eval_step =
                    skip as f64 * frame + net.dense_forward.passes(1, lanes, lanes) / lanes as f64;
                Some(
                    steps as f64 * (skip as f64 * frame + act)
                        + updates as f64 * update
                        + (eval_frames / skip) as f64 * eval_step,
                )
            }
            CellKind::CifarTrain(c) => {
                let s = &c.settings;
                let net = &self.resnet20;
                let batch = s.batch_size as u64;
                let mut step = net.train.passes(1, batch, batch);
                if c.variant == crate::manifest::Variant::Adv {
                    // FGSM on the dense network for the batch's adversarial share.
                    let adv = (s.adv_fraction.unwrap_or(0.0) * batch as f64).round() as u64;
                    step += net.dense_gradient.passes(1, adv, adv);
                }
                let images = s.iterations * batch;
                let epochs = images / s.train_examples.max(1) as u64;
                let test = s.test_examples as u64;
                Some(
                    s.iterations as f64 * step
                        + epochs as f64 * net.dense_forward.passes(1, test, batch),
                )
            }
            CellKind::CifarEval(e) => {
                let net = &self.resnet20;
                let (forward, gradient) = net.of(&e.condition.defense);
                let batch = e.batch_size as u64;
                let batches = (e.examples as u64).div_ceil(batch.max(1));
                let samples = if e.condition.defense.is_stochastic() {
                    e.samples as u64
                } else {
                    1
                };
                let max_batch = e.max_batch as u64;
                let attack = e.condition.attack.filter(|x| x.lambda > 0.0);
                let per_batch = forward.passes(samples, batch, max_batch)
                    + attack_seconds(
                        attack.as_ref(),
                        &e.condition.defense,
                        gradient,
                        batch,
                        max_batch,
                    );
                Some(batches as f64 * per_batch)
            }
            CellKind::Robustness(_) => None,
        }
    }

    /// One line naming where the rates come from and the main ones.
    pub fn describe(&self) -> String {
        let per_s = |c: &Cost| 1.0 / c.per_row_s;
        format!(
            "rates measured by `sap bench rates` at {} on {}, one torch thread: {:.0} emulator \
             frames/s; Nature CNN rows/s dense {:.0}, SAP-100 {:.0}, gradient {:.0} and {:.0}; \
             ResNet-20 images/s dense {:.0}, SAP-100 {:.0}, gradient {:.0} and {:.0}, training {:.0}",
            self.measured,
            self.cpu,
            1.0 / self.emulator_frame_s,
            per_s(&self.nature_cnn.dense_forward),
            per_s(&self.nature_cnn.sap_forward),
            per_s(&self.nature_cnn.dense_gradient),
            per_s(&self.nature_cnn.sap_gradient),
            per_s(&self.resnet20.dense_forward),
            per_s(&self.resnet20.sap_forward),
            per_s(&self.resnet20.dense_gradient),
            per_s(&self.resnet20.sap_gradient),
            per_s(&self.resnet20.train),
        )
    }
}

/// The gradient passes of `attack` on `batch` rows: `gradient_samples` (one for a
/// deterministic defense) per step, stacked up to `max_batch` rows.
fn attack_seconds(
    attack: Option<&Attack>,
    defense: &Defense,
    gradient: Cost,
    batch: u64,
    max_batch: u64,
) -> f64 {
    attack.map_or(0.0, |x| {
        let k = x.effective_gradient_samples(defense) as u64;
        x.kind.gradient_steps() as f64 * gradient.passes(k, batch, max_batch)
    })
}

/// The process's CPU seconds so far (every thread).
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "the process CPU clock is always available on Linux");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU seconds per call of `f`: the best of `rounds` rounds, each at least `min_s` seconds.
fn per_call(rounds: u32, min_s: f64, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let (start, mut calls) = (cpu_now(), 0u32);
        while calls < 2 || cpu_now() - start < min_s {
            f();
            calls += 1;
        }
        best = best.min((cpu_now() - start) / calls as f64);
    }
    best
}

/// One network's costs at batch 1 and `batch`.
fn network_costs(arch: Architecture, batch: i64, rounds: u32) -> NetworkCosts {
    tch::manual_seed(0);
    let model = Model::new(arch.clone(), Device::Cpu);
    let outputs = match arch {
        Architecture::ResNet20 { classes } => classes,
        Architecture::NatureCnn { actions } => actions,
        Architecture::Mlp(ref c) => c.outputs,
    };
    let mut data = ChaCha8Rng::seed_from_u64(1);
    let make = |b: i64, data: &mut ChaCha8Rng| {
        let shape: Vec<i64> = std::iter::once(b).chain(arch.input_shape()).collect();
        let numel: i64 = shape.iter().product();
        let pixels: Vec<f32> = (0..numel).map(|_| data.gen_range(0..=255) as f32).collect();
        let labels: Vec<i64> = (0..b).map(|_| data.gen_range(0..outputs)).collect();
        (
            Tensor::from_slice(&pixels).view(shape.as_slice()),
            Tensor::from_slice(&labels),
        )
    };
    let inputs = [make(1, &mut data), make(batch, &mut data)];
    let mut rng = DefenseRng::seed_from_u64(2);
    let min_s = 0.2;
    let mut cost = |defense: Defense, what: Work| {
        let mut t = [0.0; 2];
        for (i, (x, labels)) in inputs.iter().enumerate() {
            t[i] = per_call(rounds, min_s, || {
                let mut points = DefensePoints::new(defense, &mut rng);
                match what {
                    Work::Forward => tch::no_grad(|| {
                        let _ = model.forward(x, false, &mut points).sum(Kind::Float);
                    }),
                    Work::Gradient => {
                        let xi = x.detach().set_requires_grad(true);
                        let loss = model
                            .forward(&xi, false, &mut points)
                            .cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, -100, 0.0);
                        let _ = Tensor::run_backward(&[loss], &[&xi], false, false);
                    }
                    Work::Train => {
                        let loss = model
                            .forward(x, true, &mut points)
                            .cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0);
                        loss.backward();
                    }
                }
            });
        }
        Cost::fit(t[0], batch, t[1])
    };
    let dropout = Defense::Dropout { p: 0.1 };
    NetworkCosts {
        batch,
        dense_forward: cost(Defense::Dense, Work::Forward),
        dense_gradient: cost(Defense::Dense, Work::Gradient),
        sap_forward: cost(Defense::SAP_100, Work::Forward),
        sap_gradient: cost(Defense::SAP_100, Work::Gradient),
        other_forward: cost(dropout, Work::Forward),
        other_gradient: cost(dropout, Work::Gradient),
        train: cost(Defense::Dense, Work::Train),
    }
}

/// What a measured call does.
#[derive(Clone, Copy)]
enum Work {
    Forward,
    Gradient,
    Train,
}

/// CPU seconds per frame of random Pong through the whole pipeline.
fn emulator_frame(rounds: u32) -> Result<f64> {
    let mut env = AtariEnv::new(
        Game::from_name("Pong").expect("bundled"),
        Preset::DopamineV5.settings(),
        Mode::Eval,
        0,
    )?;
    let n = env.num_actions();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    env.reset(0)?;
    let mut episode = 0;
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let (start, mut frames) = (cpu_now(), 0u64);
        while frames < 20_000 {
            let step = env.step(rng.gen_range(0..n));
            frames += step.frames as u64;
            if step.game_over || step.truncated {
                episode += 1;
                env.reset(episode)?;
            }
        }
        best = best.min((cpu_now() - start) / frames as f64);
    }
    Ok(best)
}

/// Measures everything (about a minute with 3 rounds), with one torch thread.
pub fn measure(rounds: u32) -> Result<Rates> {
    tch::set_num_threads(1);
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    Ok(Rates {
        measured: now.format(&fmt).context("formatting the date")?,
        cpu: crate::provenance::cpu_model(),
        emulator_frame_s: emulator_frame(rounds)?,
        nature_cnn: network_costs(Architecture::NatureCnn { actions: 6 }, 32, rounds),
        resnet20: network_costs(Architecture::ResNet20 { classes: 10 }, 32, rounds),
    })
}
