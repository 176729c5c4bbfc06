//! Double DQN settings of a `[[train]]` job: the presets' defaults (docs/ARCHITECTURE.md section 4) and
//! what the `[train.ddqn]` table may override.

use serde::{Deserialize, Serialize};

use crate::env::Preset;
use crate::rl::{Exploration, LinearSchedule, Loss, OptimizerConfig};

/// The unit of the target-network period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    /// Agent steps (Dopamine's `target_update_period`).
    AgentSteps,
    /// Parameter updates (the Nature paper's table).
    Updates,
}

/// Which optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (betas 0.9, 0.999).
    Adam,
    /// Centered RMSProp (decay 0.95).
    Rmsprop,
}

/// Every Double DQN hyperparameter, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdqnSettings {
    /// Transitions per update.
    pub batch_size: usize,
    /// Discount.
    pub gamma: f64,
    /// Agent steps per update (4: one update per 4 agent steps).
    pub update_period: u64,
    /// Replay capacity in transitions.
    pub replay_capacity: usize,
    /// Agent steps before the first update.
    pub learning_starts: u64,
    /// Target-network copy period, in `target_period_unit`.
    pub target_period: u64,
    /// `agent_steps` or `updates`.
    pub target_period_unit: PeriodUnit,
    /// `adam` or `rmsprop`.
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Adam's epsilon, or RMSProp's term under the square root.
    pub optimizer_eps: f64,
    /// `huber` or `mse`.
    pub loss: Loss,
    /// Exploration epsilon at step 0.
    pub epsilon_start: f64,
    /// Exploration epsilon after the decay.
    pub epsilon_end: f64,
    /// Agent steps of the linear decay.
    pub epsilon_decay_steps: u64,
    /// Fixed per-slot epsilons 0.4^(1 + 7 i / (n - 1)) (Ape-X) instead of the schedule.
    pub apex_epsilons: bool,
    /// Epsilon of evaluation episodes.
    pub eval_epsilon: f64,
    /// MLP hidden widths (classic control only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<i64>,
}

impl DdqnSettings {
    /// The defaults of a preset (docs/ARCHITECTURE.md section 4), or of classic control (`None`).
    pub fn defaults(preset: Option<Preset>) -> Self {
        match preset {
            // Dopamine's DQN on Atari-v5 (Machado et al. 2018), with van Hasselt's target.
            Some(Preset::DopamineV5) => Self {
                batch_size: 32,
                gamma: 0.99,
                update_period: 4,
                replay_capacity: 1_000_000,
                learning_starts: 20_000,
                target_period: 8_000,
                target_period_unit: PeriodUnit::AgentSteps,
                optimizer: OptimizerKind::Adam,
                lr: 6.25e-5,
                optimizer_eps: 1.5e-4,
                loss: Loss::Huber,
                epsilon_start: 1.0,
                epsilon_end: 0.01,
                epsilon_decay_steps: 250_000,
                apex_epsilons: false,
                eval_epsilon: 0.001,
                hidden: Vec::new(),
            },
            // Mnih et al. 2015 (Extended Data Table 1) and van Hasselt et al. 2016.
            Some(Preset::Nature) => Self {
                batch_size: 32,
                gamma: 0.99,
                update_period: 4,
                replay_capacity: 1_000_000,
                learning_starts: 50_000,
                target_period: 10_000,
                target_period_unit: PeriodUnit::Updates,
                optimizer: OptimizerKind::Rmsprop,
                lr: 2.5e-4,
                optimizer_eps: 0.01,
                loss: Loss::Huber,
                epsilon_start: 1.0,
                epsilon_end: 0.1,
                epsilon_decay_steps: 1_000_000,
                apex_epsilons: false,
                eval_epsilon: 0.05,
                hidden: Vec::new(),
            },
            // Classic control: settings that solve CartPole-v1 (an evaluation phase of 100
            // greedy episodes with mean >= 195) within 40k agent steps on seeds 1-6 under
            // three CPU kernel sets (README), close to rl-baselines3-zoo's DQN CartPole entry.
            None => Self {
                batch_size: 64,
                gamma: 0.99,
                update_period: 2,
                replay_capacity: 100_000,
                learning_starts: 1_000,
                target_period: 100,
                target_period_unit: PeriodUnit::AgentSteps,
                optimizer: OptimizerKind::Adam,
                lr: 1e-3,
                optimizer_eps: 1e-8,
                loss: Loss::Huber,
                epsilon_start: 1.0,
                epsilon_end: 0.04,
                epsilon_decay_steps: 8_000,
                apex_epsilons: false,
                eval_epsilon: 0.0,
                hidden: vec![256, 256],
            },
        }
    }

    /// The optimiser with its hyperparameters.
    pub fn optimizer_config(&self) -> OptimizerConfig {
        match self.optimizer {
            OptimizerKind::Adam => OptimizerConfig::Adam {
                lr: self.lr,
                eps: self.optimizer_eps,
                beta1: 0.9,
                beta2: 0.999,
            },
            OptimizerKind::Rmsprop => OptimizerConfig::RmsProp {
                lr: self.lr,
                decay: 0.95,
                eps: self.optimizer_eps,
            },
        }
    }

    /// The exploration rule of the actors.
    pub fn exploration(&self) -> Exploration {
        if self.apex_epsilons {
            Exploration::Apex {
                base: 0.4,
                alpha: 7.0,
            }
        } else {
            Exploration::Linear(LinearSchedule {
                start: self.epsilon_start,
                end: self.epsilon_end,
                decay_steps: self.epsilon_decay_steps,
            })
        }
    }

    /// The target period in updates.
    pub fn target_period_updates(&self) -> u64 {
        match self.target_period_unit {
            PeriodUnit::Updates => self.target_period,
            PeriodUnit::AgentSteps => self.target_period / self.update_period,
        }
    }

    /// When the learner updates and copies its target network.
    pub fn cadence(&self) -> crate::rl::Cadence {
        crate::rl::Cadence {
            learning_starts: self.learning_starts,
            update_period: self.update_period,
            target_period: self.target_period_updates().max(1),
        }
    }
}
