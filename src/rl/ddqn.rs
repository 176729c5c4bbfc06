//! Double DQN (van Hasselt et al. 2016) in one place: when it learns ([`Cadence`]), the
//! update, and the target network's copies. The runtime feeds replay and calls
//! [`DoubleDqn::after_step`] after every agent step.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::replay::{Batch, Replay};
use super::Frame;
use crate::defense::DefensePoints;
use crate::nn::optim::{Optimizer, OptimizerConfig};
use crate::nn::{Architecture, Model};

/// When Double DQN learns, in agent steps that entered replay: no update until
/// `learning_starts` steps, then one after every `update_period` steps (after step `s` iff
/// `s > learning_starts` and `(s - learning_starts) % update_period == 0`); the target
/// network copies the online one after every `target_period` updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// Agent steps before the first update.
    pub learning_starts: u64,
    /// Agent steps per update.
    pub update_period: u64,
    /// Updates between target-network copies.
    pub target_period: u64,
}

impl Cadence {
    /// Updates done once `steps` agent steps entered replay.
    pub fn updates_after(&self, steps: u64) -> u64 {
        steps.saturating_sub(self.learning_starts) / self.update_period
    }

    /// Whether agent step number `steps` (counted from 1) is followed by an update.
    pub fn update_due(&self, steps: u64) -> bool {
        steps > self.learning_starts
            && (steps - self.learning_starts).is_multiple_of(self.update_period)
    }
}

/// The regression loss on the TD error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Huber loss with threshold 1 (Mnih et al. 2015's error clipping; Dopamine).
    #[default]
    Huber,
    /// Squared error.
    Mse,
}

/// What one update measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateStats {
    /// The batch loss.
    pub loss: f64,
    /// Mean of `Q_online(s, a)` over the batch, for the actions taken.
    pub mean_q: f64,
}

/// Double DQN targets.
///
/// ```text
/// y = r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))
/// ```
///
/// # Shapes
/// `q_next_online`, `q_next_target`: `[batch, actions]`; `rewards`, `dones`: `[batch]`
/// -> `[batch]`.
pub fn double_dqn_targets(
    q_next_online: &Tensor,
    q_next_target: &Tensor,
    rewards: &Tensor,
    dones: &Tensor,
    gamma: f64,
) -> Tensor {
    // The online network picks the action, the target network evaluates it.
    let best = q_next_online.argmax(1, true); // [batch, 1]
    let evaluated = q_next_target.gather(1, &best, false).squeeze_dim(1); // [batch]
    rewards + (1.0 - dones) * gamma * evaluated
}

/// Why a Double DQN state does not fit the learner.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A tensor the learner needs is not in the state.
    #[error("tensor `{0}` is missing")]
    Missing(String),
    /// A tensor has another shape than the learner's.
    #[error("tensor `{key}` has shape {found:?}, the learner needs {expected:?}")]
    Shape {
        /// The tensor's name.
        key: String,
        /// Its shape in the state.
        found: Vec<i64>,
        /// The learner's shape.
        expected: Vec<i64>,
    },
}

/// The online and target networks and the optimiser.
pub struct DoubleDqn {
    /// The network being trained.
    pub online: Model,
    /// The periodically copied network that evaluates targets.
    pub target: Model,
    optimizer: Optimizer,
    gamma: f64,
    loss: Loss,
    updates: u64,
}

impl DoubleDqn {
    /// Fresh networks of `arch` on `device`, the target a copy of the online network.
    ///
    /// Initial weights come from torch's generator, seeded here with `init_seed`; build
    /// learners one at a time when the weights must repeat.
    pub fn new(
        arch: Architecture,
        device: Device,
        optimizer: OptimizerConfig,
        gamma: f64,
        loss: Loss,
        init_seed: u64,
    ) -> Self {
        tch::manual_seed(init_seed as i64);
        let online = Model::new(arch.clone(), device);
        let mut target = Model::new(arch, device);
        target.vs.copy(&online.vs).expect("same architecture");
        target.vs.freeze();
        let params = online.vs.variables().into_iter().collect();
        Self {
            online,
            target,
            optimizer: Optimizer::new(optimizer, params),
            gamma,
            loss,
            updates: 0,
        }
    }

    /// Updates done.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Copies the online weights into the target network.
    pub fn sync_target(&mut self) {
        self.target
            .vs
            .copy(&self.online.vs)
            .expect("same architecture");
    }

    /// The algorithm after agent step number `steps` (counted from 1) entered `replay`: when
    /// `cadence` says an update is due, one gradient step on `batch_size` transitions drawn
    /// uniformly with `rng` (into `batch`), then the target copy when that is due. Returns
    /// the update's statistics, or `None` when no update was due.
    pub fn after_step<T: Frame>(
        &mut self,
        cadence: &Cadence,
        steps: u64,
        replay: &Replay<T>,
        batch_size: usize,
        rng: &mut impl rand::Rng,
        batch: &mut Batch<T>,
    ) -> Option<UpdateStats> {
        if !cadence.update_due(steps) {
            return None;
        }
        replay.sample(batch_size, rng, batch);
        let stats = self.update(batch);
        if self.updates.is_multiple_of(cadence.target_period.max(1)) {
            self.sync_target();
        }
        Some(stats)
    }

    /// One gradient step on `batch`.
    pub fn update<T: tch::kind::Element + Copy>(&mut self, batch: &Batch<T>) -> UpdateStats {
        let device = self.online.device();
        let n = batch.len() as i64;
        let obs_shape = self.online.arch.input_shape();
        let shape: Vec<i64> = std::iter::once(n).chain(obs_shape).collect();
        let states = Tensor::from_slice(&batch.states)
            .view(&shape[..])
            .to(device);
        let next = Tensor::from_slice(&batch.next_states)
            .view(&shape[..])
            .to(device);
        let actions = Tensor::from_slice(&batch.actions).to(device);
        let rewards = Tensor::from_slice(&batch.rewards).to(device);
        let dones = Tensor::from_slice(&batch.dones).to(device);
        // Targets are computed in evaluation mode (batch-norm statistics used, not updated):
        // they are not trained, and the target network must stay a frozen copy.
        let targets = tch::no_grad(|| {
            let mut dense = DefensePoints::dense();
            let q_online = self.online.forward(&next, false, &mut dense);
            let q_target = self.target.forward(&next, false, &mut dense);
            double_dqn_targets(&q_online, &q_target, &rewards, &dones, self.gamma)
        });
        let q = self
            .online
            .forward(&states, true, &mut DefensePoints::dense())
            .gather(1, &actions.unsqueeze(1), false)
            .squeeze_dim(1); // [batch]
        let loss = match self.loss {
            Loss::Huber => q.huber_loss(&targets, tch::Reduction::Mean, 1.0),
            Loss::Mse => q.mse_loss(&targets, tch::Reduction::Mean),
        };
        self.optimizer.zero_grad();
        loss.backward();
        self.optimizer.step();
        self.updates += 1;
        UpdateStats {
            loss: loss.double_value(&[]),
            mean_q: q.detach().mean(Kind::Double).double_value(&[]),
        }
    }

    /// Everything a checkpoint needs to continue exactly: `online.*`, `target.*`,
    /// `optimizer.*` and `updates`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, model) in [("online", &self.online), ("target", &self.target)] {
            for (name, t) in model.vs.variables() {
                out.push((format!("{prefix}.{name}"), t.detach()));
            }
        }
        for (name, t) in self.optimizer.state() {
            out.push((format!("optimizer.{name}"), t));
        }
        out.push((
            "updates".to_owned(),
            Tensor::from_slice(&[self.updates as i64]),
        ));
        out
    }

    /// Restores a state written by [`DoubleDqn::state`]; the error names the first missing
    /// or misshapen tensor.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), StateError> {
        let find = |key: &str| {
            tensors
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, t)| t.shallow_clone())
        };
        for (prefix, model) in [("online", &mut self.online), ("target", &mut self.target)] {
            let mut vars: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            tch::no_grad(|| {
                for (name, mut var) in vars {
                    let key = format!("{prefix}.{name}");
                    let src = find(&key).ok_or_else(|| StateError::Missing(key.clone()))?;
                    if src.size() != var.size() {
                        return Err(StateError::Shape {
                            key,
                            found: src.size(),
                            expected: var.size(),
                        });
                    }
                    var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
                }
                Ok(())
            })?;
        }
        self.optimizer
            .load_state(|name| find(&format!("optimizer.{name}")))
            .map_err(|k| StateError::Missing(format!("optimizer.{k}")))?;
        let updates = find("updates").ok_or_else(|| StateError::Missing("updates".into()))?;
        self.updates = updates.int64_value(&[0]) as u64;
        Ok(())
    }
}
