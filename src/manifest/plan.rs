//! The plan: every cell of a manifest, numbered in one deterministic order (training first,
//! then evaluations), with the training cells each evaluation needs.
//!
//! A cell's number is its Slurm array task id and the `--cell` of `sap run-cell`; its id
//! names its folder `cells/<id>/` in the run directory.

use std::path::{Path, PathBuf};

use crate::attack::Attack;
use crate::defense::Defense;
use crate::env::{AtariSettings, Game, Preset};

use super::{Cell, CifarTrainJob, GameId, Manifest, Task, TrainCell, Variant};

/// Where an agent's network comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkSource {
    /// A training cell of the same run: its `final.safetensors`.
    Train {
        /// The training cell's index in the plan.
        cell: usize,
        /// Its id (folder name).
        id: String,
        /// Its training seed.
        seed: u64,
    },
    /// A file, relative to the manifest's folder.
    File(String),
}

impl NetworkSource {
    /// The training seed, when the network was trained in this run.
    pub fn train_seed(&self) -> Option<u64> {
        match self {
            NetworkSource::Train { seed, .. } => Some(*seed),
            NetworkSource::File(_) => None,
        }
    }

    /// The cells a network needs: its training cell, if any.
    pub fn deps(&self) -> Vec<usize> {
        match self {
            NetworkSource::Train { cell, .. } => vec![*cell],
            NetworkSource::File(_) => Vec::new(),
        }
    }

    /// The network's file, and the name rows give it: a training cell's
    /// `cells/<id>/final.safetensors` in `run_dir`, or the file relative to `manifest_dir`.
    pub fn file(&self, run_dir: &Path, manifest_dir: &Path) -> (PathBuf, String) {
        match self {
            NetworkSource::Train { id, .. } => {
                let rel = format!("cells/{id}/final.safetensors");
                (run_dir.join(&rel), rel)
            }
            NetworkSource::File(f) => (manifest_dir.join(f), f.clone()),
        }
    }
}

/// One agent under one defense, attack and radius, over `episodes` evaluation episodes.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentCell {
    /// Index of the `[[eval]]` job.
    pub job: usize,
    /// The job's name.
    pub job_name: String,
    /// The game.
    pub game: Game,
    /// The preset its network was trained (and is evaluated) under.
    pub preset: Preset,
    /// Environment settings (evaluation mode applies on top).
    pub settings: AtariSettings,
    /// The network.
    pub network: NetworkSource,
    /// Evaluation seed: episode starts, defense draws, exploration.
    pub seed: u64,
    /// The defense.
    pub defense: Defense,
    /// The attack with its radius; `None` for the dense clean reference the plan adds when
    /// the grid lacks it.
    pub attack: Option<Attack>,
    /// The surrogate network of a transfer attack with `source = "checkpoint"` (relative to
    /// the manifest).
    pub source_checkpoint: Option<String>,
    /// Q-value passes averaged per action.
    pub samples: u32,
    /// Rows per forward pass when a prediction's `samples` passes and a gradient's
    /// `gradient_samples` passes are stacked along the batch (the draws do not depend on it).
    pub max_batch: u32,
    /// Episodes played in lockstep: the job's `parallel_episodes`, at most `episodes`.
    pub parallel_episodes: u32,
    /// The first `record` episodes are written as animated GIFs.
    pub record: u32,
    /// Probability of a random action per step.
    pub epsilon: f64,
    /// Episodes to play.
    pub episodes: u32,
    /// The random-policy cell of the same game, settings and seed.
    pub baseline: usize,
}

impl AgentCell {
    /// The attack's radius (0 without an attack).
    pub fn lambda(&self) -> f64 {
        self.attack.map_or(0.0, |a| a.lambda)
    }

    /// The attack's label (`none` without one; [`crate::table::Treatment::attack_label`]).
    pub fn attack_label(&self) -> String {
        self.treatment(1).attack_label()
    }

    /// The treatment columns of the cell's rows, with `samples` passes actually run.
    pub fn treatment(&self, samples: u32) -> crate::table::Treatment {
        let mut t = crate::table::Treatment::new(&self.defense, self.attack.as_ref(), samples);
        t.source_checkpoint = self.source_checkpoint.clone();
        t
    }
}

/// One ResNet-20 trained on CIFAR-10: a variant of a `[[cifar_train]]` job with one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct CifarTrainCell {
    /// Index of the `[[cifar_train]]` job.
    pub job: usize,
    /// The job.
    pub settings: CifarTrainJob,
    /// Dense or adversarial training.
    pub variant: Variant,
    /// The seed of weights, batch order and augmentation.
    pub seed: u64,
}

/// One network under one defense, attack and radius on the CIFAR-10 test images.
#[derive(Clone, Debug, PartialEq)]
pub struct CifarEvalCell {
    /// Index of the `[[cifar_eval]]` job.
    pub job: usize,
    /// The job's name.
    pub job_name: String,
    /// The network's label: its variant, or its key under `checkpoints`.
    pub label: String,
    /// The network.
    pub network: NetworkSource,
    /// The `[[cifar_train]]` job that trained it, with its adversarial settings
    /// (`Some((fraction, lambda))` for the adv variant).
    pub trained_by: Option<(String, Option<(f64, f64)>)>,
    /// CIFAR-10 in any published form (folder or archive), relative to the manifest's folder.
    pub data: String,
    /// Test examples.
    pub examples: u32,
    /// Examples per batch.
    pub batch_size: u32,
    /// Softmax passes averaged per prediction.
    pub samples: u32,
    /// Rows per forward pass when a prediction's `samples` passes and a gradient's
    /// `gradient_samples` passes are stacked along the batch (the draws do not depend on it).
    pub max_batch: u32,
    /// Evaluation seed: defense draws and random starts.
    pub seed: u64,
    /// The defense.
    pub defense: Defense,
    /// The attack with its radius; `None` for the clean inputs (lambda 0, shared by every
    /// attack of the grid).
    pub attack: Option<Attack>,
    /// The surrogate network of a transfer attack with `source = "checkpoint"` (relative to
    /// the manifest).
    pub source_checkpoint: Option<String>,
}

impl CifarEvalCell {
    /// The attack's radius (0 without an attack).
    pub fn lambda(&self) -> f64 {
        self.attack.map_or(0.0, |a| a.lambda)
    }

    /// The attack's label (`none` without one; [`crate::table::Treatment::attack_label`]).
    pub fn attack_label(&self) -> String {
        self.treatment(1).attack_label()
    }

    /// The treatment columns of the cell's rows, with `samples` passes actually run.
    pub fn treatment(&self, samples: u32) -> crate::table::Treatment {
        let mut t = crate::table::Treatment::new(&self.defense, self.attack.as_ref(), samples);
        t.source_checkpoint = self.source_checkpoint.clone();
        t
    }
}

/// What a cell does.
#[derive(Clone, Debug, PartialEq)]
pub enum CellKind {
    /// Double DQN training.
    Train(TrainCell),
    /// Random-policy episodes (`[[eval]]` with `policy = "random"`, and the baselines of
    /// agent evaluations).
    Episodes(Cell),
    /// A trained agent under a defense, attack and radius.
    Agent(AgentCell),
    /// ResNet-20 training on CIFAR-10.
    CifarTrain(CifarTrainCell),
    /// A ResNet-20 under a defense, attack and radius.
    CifarEval(CifarEvalCell),
    /// A `[[robustness]]` job with one seed.
    Robustness {
        /// Index of the job.
        job: usize,
        /// Its data set.
        task: Task,
        /// The seed.
        seed: u64,
    },
}

/// One numbered cell.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanCell {
    /// Position in the plan, from 0.
    pub index: usize,
    /// What it does.
    pub kind: CellKind,
    /// Cells that must finish first.
    pub deps: Vec<usize>,
}

/// Which Slurm array a cell belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Training cells.
    Train,
    /// Everything else.
    Eval,
}

impl PlanCell {
    /// The Atari game the cell emulates, if it plays one.
    pub fn atari_game(&self) -> Option<Game> {
        let atari = |g: GameId| match g {
            GameId::Atari(g) => Some(g),
            GameId::Classic(_) => None,
        };
        match &self.kind {
            CellKind::Train(t) => atari(t.game),
            CellKind::Episodes(c) => atari(c.game),
            CellKind::Agent(a) => Some(a.game),
            CellKind::CifarTrain(_) | CellKind::CifarEval(_) | CellKind::Robustness { .. } => None,
        }
    }

    /// The folder name: `train-000-Pong-dopamine-v5-s1`, `eval-002-Pong-dopamine-v5-random-s1`,
    /// `agent-005-Pong-t1-sap-100-fgsm-l4-s1`, `robustness-009-glyphs-s1`.
    pub fn id(&self) -> String {
        let i = self.index;
        match &self.kind {
            CellKind::Train(t) => t.id(),
            CellKind::Episodes(c) => format!(
                "eval-{i:03}-{}-{}-{}-s{}",
                c.game.name(),
                c.preset_name(),
                c.policy.name(),
                c.seed
            ),
            CellKind::Agent(a) => {
                let net = match &a.network {
                    NetworkSource::Train { seed, .. } => format!("t{seed}"),
                    NetworkSource::File(_) => "file".to_owned(),
                };
                format!(
                    "agent-{i:03}-{}-{net}-{}-{}-l{}-s{}",
                    a.game.name(),
                    a.defense.label(),
                    a.attack_label(),
                    a.lambda(),
                    a.seed
                )
            }
            CellKind::Robustness { task, seed, .. } => {
                format!("robustness-{i:03}-{}-s{seed}", task.name())
            }
            CellKind::CifarTrain(c) => {
                format!("cifar-train-{i:03}-{}-s{}", c.variant.name(), c.seed)
            }
            CellKind::CifarEval(c) => {
                let net = match &c.network {
                    NetworkSource::Train { seed, .. } => format!("t{seed}"),
                    NetworkSource::File(_) => "file".to_owned(),
                };
                format!(
                    "cifar-eval-{i:03}-{}-{net}-{}-{}-l{}-s{}",
                    c.label,
                    c.defense.label(),
                    c.attack_label(),
                    c.lambda(),
                    c.seed
                )
            }
        }
    }

    /// The cell's seed.
    pub fn seed(&self) -> u64 {
        match &self.kind {
            CellKind::Train(t) => t.seed,
            CellKind::Episodes(c) => c.seed,
            CellKind::Agent(a) => a.seed,
            CellKind::Robustness { seed, .. } => *seed,
            CellKind::CifarTrain(c) => c.seed,
            CellKind::CifarEval(c) => c.seed,
        }
    }

    /// Training or evaluation.
    pub fn stage(&self) -> Stage {
        match self.kind {
            CellKind::Train(_) | CellKind::CifarTrain(_) => Stage::Train,
            _ => Stage::Eval,
        }
    }

    /// Emulator frames the cell plays, at most: the training budget plus its evaluation
    /// phases, or episodes x the frame cap (classic control: steps x the time limit). `None`
    /// for classifier cells (no environment).
    pub fn frames_bound(&self) -> Option<u64> {
        match &self.kind {
            CellKind::Train(c) => {
                let j = &c.job;
                let cap = match (j.env, c.game) {
                    (Some(e), _) => e.max_episode_frames,
                    (None, GameId::Classic(g)) => g.max_steps() as u64,
                    (None, GameId::Atari(_)) => 0,
                };
                let phases = j.frames / j.eval_every.max(1);
                Some(j.frames + phases * j.eval_episodes as u64 * cap)
            }
            CellKind::Episodes(c) => {
                let cap = match (c.settings, c.game) {
                    (Some(s), _) => s.max_episode_frames,
                    (None, GameId::Classic(g)) => g.max_steps() as u64,
                    (None, GameId::Atari(_)) => 0,
                };
                Some(c.episodes as u64 * cap)
            }
            CellKind::Agent(a) => Some(a.episodes as u64 * a.settings.max_episode_frames),
            CellKind::Robustness { .. } | CellKind::CifarTrain(_) | CellKind::CifarEval(_) => None,
        }
    }

    /// Network passes per test image of a CIFAR evaluation cell: `samples` passes for the
    /// prediction (1 for a deterministic defense) plus, under attack, a forward and a
    /// backward pass per gradient sample and step.
    pub fn passes_per_image(&self) -> Option<u32> {
        let CellKind::CifarEval(c) = &self.kind else {
            return None;
        };
        let samples = if c.defense.is_stochastic() {
            c.samples
        } else {
            1
        };
        Some(match c.attack.filter(|x| x.lambda > 0.0) {
            None => samples,
            Some(x) => {
                samples + 2 * x.effective_gradient_samples(&c.defense) * x.kind.gradient_steps()
            }
        })
    }

    /// Network passes (forward or backward) per agent step of an agent cell: `samples` Q-value passes for the
    /// action, plus (under attack) the clean greedy action's passes and one forward and
    /// backward pass per gradient sample.
    pub fn passes_per_step(&self) -> Option<u32> {
        let CellKind::Agent(a) = &self.kind else {
            return None;
        };
        let samples = if a.defense.is_stochastic() {
            a.samples
        } else {
            1
        };
        Some(match a.attack.filter(|x| x.lambda > 0.0) {
            None => samples,
            Some(x) => {
                let k = x.effective_gradient_samples(&a.defense);
                let steps = x.kind.gradient_steps();
                2 * samples + 2 * k * steps
            }
        })
    }

    /// A one-line description for `sap plan`.
    pub fn describe(&self, manifest: &Manifest) -> String {
        match &self.kind {
            CellKind::Train(c) => {
                let j = &c.job;
                format!(
                    "train {} frames ({} agent steps), {} actors x {} envs",
                    j.frames,
                    j.steps(j.frames),
                    j.runtime.actors,
                    j.runtime.envs_per_actor
                )
            }
            CellKind::Episodes(c) => format!("{} random-policy episodes", c.episodes),
            CellKind::Agent(a) => {
                let net = match &a.network {
                    NetworkSource::Train { id, .. } => format!("network of {id}"),
                    NetworkSource::File(f) => format!("network {f}"),
                };
                let gs = a.attack.map_or(String::new(), |x| {
                    format!(", gradient_samples {}", x.gradient_samples)
                });
                format!(
                    "{} episodes ({} in lockstep), {net}, {} (samples {}), {} lambda {}{gs}, \
                     epsilon {}",
                    a.episodes,
                    a.parallel_episodes,
                    a.defense.label(),
                    a.samples,
                    a.attack_label(),
                    a.lambda(),
                    a.epsilon
                )
            }
            CellKind::CifarTrain(c) => {
                let j = &c.settings;
                let adv = match (c.variant, j.adv()) {
                    (Variant::Adv, Some((fraction, lambda))) => {
                        format!(", {}% of each batch FGSM lambda {lambda}", fraction * 100.0)
                    }
                    _ => String::new(),
                };
                format!(
                    "train ResNet-20 ({}) on {}: {} iterations of {} images{adv}",
                    c.variant.name(),
                    j.data,
                    j.iterations,
                    j.batch_size
                )
            }
            CellKind::CifarEval(c) => {
                let net = match &c.network {
                    NetworkSource::Train { id, .. } => format!("network of {id}"),
                    NetworkSource::File(f) => format!("network {f}"),
                };
                let gs = c.attack.map_or(String::new(), |x| {
                    format!(", gradient_samples {}", x.gradient_samples)
                });
                format!(
                    "{} test images, {net}, {} (samples {}), {} lambda {}{gs}, {} passes/image",
                    c.examples,
                    c.defense.label(),
                    c.samples,
                    c.attack_label(),
                    c.lambda(),
                    self.passes_per_image().unwrap_or(0)
                )
            }
            CellKind::Robustness { job, .. } => {
                let j = &manifest.robustness[*job];
                format!(
                    "robustness[{job}] {}: {} defenses x {} lambdas ({} attack, {} test examples)",
                    j.task.name(),
                    j.defenses.len(),
                    j.lambdas.len(),
                    j.attack.kind.name(),
                    j.examples
                )
            }
        }
    }
}
