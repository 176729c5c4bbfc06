//! The plan: every cell of a manifest, numbered in one deterministic order (training first,
//! then evaluations), with the training cells each evaluation needs.
//!
//! A cell's number is its Slurm array task id and the `--cell` of `sap run-cell`; its id
//! names its folder `cells/<id>/` in the run directory.

use std::path::{Path, PathBuf};

use crate::env::{AtariSettings, Game, Preset};

use super::{Cell, CifarTrainJob, Condition, GameId, Manifest, Task, TrainCell, Variant};

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
    /// Defense, attack, radius and seed (episode starts, defense draws, exploration); no
    /// attack for the dense clean reference the plan adds when the grid lacks it.
    pub condition: Condition,
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
    /// Defense, attack, radius and seed (defense draws, random starts); no attack for the
    /// clean inputs (lambda 0, shared by every attack of the grid).
    pub condition: Condition,
}

/// A `[[robustness]]` job with one seed: a classifier trained (or loaded), then evaluated
/// under every defense x lambda of the job.
#[derive(Clone, Debug, PartialEq)]
pub struct RobustnessCell {
    /// Index of the `[[robustness]]` job.
    pub job: usize,
    /// Its data set.
    pub task: Task,
    /// The seed of training, test data and defense draws.
    pub seed: u64,
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
    Robustness(RobustnessCell),
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
            CellKind::CifarTrain(_) | CellKind::CifarEval(_) | CellKind::Robustness(_) => None,
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
                    "agent-{i:03}-{}-{net}-{}",
                    a.game.name(),
                    a.condition.label()
                )
            }
            CellKind::Robustness(r) => format!("robustness-{i:03}-{}-s{}", r.task.name(), r.seed),
            CellKind::CifarTrain(c) => {
                format!("cifar-train-{i:03}-{}-s{}", c.variant.name(), c.seed)
            }
            CellKind::CifarEval(c) => {
                let net = match &c.network {
                    NetworkSource::Train { seed, .. } => format!("t{seed}"),
                    NetworkSource::File(_) => "file".to_owned(),
                };
                format!(
                    "cifar-eval-{i:03}-{}-{net}-{}",
                    c.label,
                    c.condition.label()
                )
            }
        }
    }

    /// The cell's seed.
    pub fn seed(&self) -> u64 {
        match &self.kind {
            CellKind::Train(t) => t.seed,
            CellKind::Episodes(c) => c.seed,
            CellKind::Agent(a) => a.condition.seed,
            CellKind::Robustness(r) => r.seed,
            CellKind::CifarTrain(c) => c.seed,
            CellKind::CifarEval(c) => c.condition.seed,
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
            CellKind::Robustness(_) | CellKind::CifarTrain(_) | CellKind::CifarEval(_) => None,
        }
    }

    /// Network passes per test image of a CIFAR evaluation cell: `samples` passes for the
    /// prediction (1 for a deterministic defense) plus, under attack, a forward and a
    /// backward pass per gradient sample and step.
    pub fn passes_per_image(&self) -> Option<u32> {
        let CellKind::CifarEval(c) = &self.kind else {
            return None;
        };
        let k = &c.condition;
        Some(k.prediction_passes(c.samples) + k.attack_passes().unwrap_or(0))
    }

    /// Network passes (forward or backward) per agent step of an agent cell: `samples` Q-value passes for the
    /// action, plus (under attack) the clean greedy action's passes and one forward and
    /// backward pass per gradient sample.
    pub fn passes_per_step(&self) -> Option<u32> {
        let CellKind::Agent(a) = &self.kind else {
            return None;
        };
        let k = &a.condition;
        let samples = k.prediction_passes(a.samples);
        Some(match k.attack_passes() {
            None => samples,
            Some(attack) => 2 * samples + attack,
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
                format!(
                    "{} episodes ({} in lockstep), {net}, {}, epsilon {}",
                    a.episodes,
                    a.parallel_episodes,
                    a.condition.describe(a.samples),
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
                format!(
                    "{} test images, {net}, {}, {} passes/image",
                    c.examples,
                    c.condition.describe(c.samples),
                    self.passes_per_image().unwrap_or(0)
                )
            }
            CellKind::Robustness(r) => {
                let job = r.job;
                let j = &manifest.robustness[job];
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
