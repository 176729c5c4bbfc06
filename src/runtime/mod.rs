//! The actor-learner runtime: N actor threads each step E environments and send their
//! transitions over bounded crossbeam channels; the learner (the calling thread) owns the
//! replay buffer and the optimiser.
//!
//! # A deterministic pipeline
//!
//! Time is counted in *rounds*: in round `r` every environment slot takes one step. The
//! learner reads actor 0's round, then actor 1's, and so on, so transitions enter replay in
//! one fixed order whatever the threads' speeds. After ingesting each agent step it hands
//! over to [`crate::rl::DoubleDqn::after_step`], which updates when the algorithm's
//! [`crate::rl::Cadence`] says so: the replay ratio is exact for any number of actors. Every `sync_period` updates it publishes
//! a versioned snapshot of the online network ([`board`]). The actors' round `r` acts with the
//! version the learner had reached after ingesting the rounds before `r - lag`, and waits for
//! it if it is not out yet. `lag` is one sync interval (in rounds), so actors and learner
//! overlap by that much, and every action depends only on the manifest's seed: the same
//! manifest gives the same transitions, updates and CSV rows.
//!
//! # Back-pressure and failure
//!
//! Each actor's channel holds `channel_capacity` rounds; a full channel blocks the actor,
//! so memory stays bounded when the learner is slower. A returned error or a panic in any
//! thread stops the board; every blocking call wakes at least every 100 ms, sees the stop
//! and returns, so the run ends with that thread's error instead of hanging.
//!
//! Choice recorded in the README: actors keep local copies refreshed from snapshots rather
//! than calling a batched inference thread (`sap bench ddqn` measures both).

pub mod actor;
pub mod board;
pub mod learner;

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use crate::rl::Frame;
pub use actor::{ActorSpec, EnvCall, EnvFactory, SlotState};
pub use board::{Board, Snapshot};
pub use learner::{run, EpisodeEnd, GameTally, Hooks, LearnerState, StepContext};

/// Threads and channels of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Actor threads.
    pub actors: usize,
    /// Environments each actor steps (their observations share one forward pass).
    pub envs_per_actor: usize,
    /// Learner updates between weight snapshots.
    pub sync_period: u64,
    /// Rounds each actor may have in flight before it blocks.
    pub channel_capacity: usize,
    /// torch intra-op threads per actor thread.
    pub actor_threads: usize,
    /// torch intra-op threads of the learner.
    pub learner_threads: usize,
}

impl RuntimeConfig {
    /// Environment slots: actors x envs per actor.
    pub fn slots(&self) -> usize {
        self.actors * self.envs_per_actor
    }
}

/// What an environment slot does in a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRole {
    /// Training step number `step` (0-based, counted from the start of training).
    Train(u64),
    /// Past the budget: the slot sits this round out.
    Idle,
}

/// The fixed schedule of rounds, versions and updates that makes runs repeatable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Environment slots (actors x envs per actor).
    pub slots: u64,
    /// Agent steps already done (a resumed run's checkpoint; 0 for a fresh run).
    pub start_step: u64,
    /// Agent steps when training ends.
    pub end_step: u64,
    /// When the learner updates and copies its target network.
    pub cadence: crate::rl::Cadence,
    /// Updates per snapshot.
    pub sync_period: u64,
}

impl Timeline {
    /// Rounds between a version becoming due and an actor using it: one sync interval.
    pub fn lag_rounds(&self) -> u64 {
        (self.sync_period * self.cadence.update_period).div_ceil(self.slots)
    }

    /// Rounds in the run.
    pub fn rounds(&self) -> u64 {
        (self.end_step - self.start_step).div_ceil(self.slots)
    }

    /// What slot `slot` does in round `round`.
    pub fn role(&self, round: u64, slot: usize) -> SlotRole {
        let step = self.start_step + round * self.slots + slot as u64;
        if step < self.end_step {
            SlotRole::Train(step)
        } else {
            SlotRole::Idle
        }
    }

    /// Updates done once `steps` agent steps were ingested.
    pub fn updates_after(&self, steps: u64) -> u64 {
        self.cadence.updates_after(steps)
    }

    /// The version published first (the weights the run starts from).
    pub fn base_version(&self) -> u64 {
        self.updates_after(self.start_step) / self.sync_period
    }

    /// The snapshot version actors act with in round `round`.
    pub fn version_for_round(&self, round: u64) -> u64 {
        let ready = round.saturating_sub(self.lag_rounds());
        let steps = (self.start_step + ready * self.slots).min(self.end_step);
        (self.updates_after(steps) / self.sync_period).max(self.base_version())
    }
}

/// Sets torch's intra-op thread count for the calling thread.
///
/// torch keeps the count per thread (OpenMP) but fills it from a process-wide default the
/// first time a thread runs a parallel operation, so that first use is forced here before
/// the count is set.
pub fn set_torch_threads(n: usize) {
    static ORDER: Mutex<()> = Mutex::new(());
    let _guard = ORDER.lock().unwrap_or_else(|e| e.into_inner());
    let _ = tch::get_num_threads();
    let warm = tch::Tensor::ones([64, 64], (tch::Kind::Float, tch::Device::Cpu));
    let _ = warm.matmul(&warm);
    tch::set_num_threads(n.max(1) as i32);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        Timeline {
            slots: 4,
            start_step: 0,
            end_step: 30,
            cadence: crate::rl::Cadence {
                learning_starts: 8,
                update_period: 2,
                target_period: 1,
            },
            sync_period: 2,
        }
    }

    #[test]
    fn the_last_round_runs_only_the_slots_inside_the_budget() {
        let t = timeline();
        assert_eq!(t.rounds(), 8);
        assert_eq!(t.role(7, 1), SlotRole::Train(29));
        assert_eq!(t.role(7, 2), SlotRole::Idle);
    }

    #[test]
    fn updates_follow_the_replay_ratio_after_the_warm_up() {
        let t = timeline();
        let due: Vec<u64> = (1..=16).filter(|&s| t.cadence.update_due(s)).collect();
        assert_eq!(due, vec![10, 12, 14, 16]);
        assert_eq!(t.updates_after(16), 4);
        assert_eq!(t.updates_after(8), 0);
    }

    #[test]
    fn actors_use_the_version_due_one_sync_interval_earlier() {
        let t = timeline();
        // Lag: 2 updates x 2 steps / 4 slots = 1 round.
        assert_eq!(t.lag_rounds(), 1);
        // Round 4 uses what the learner had after rounds 0..=2 (12 steps, 2 updates).
        assert_eq!(t.version_for_round(4), 1);
        assert_eq!(t.version_for_round(0), 0);
    }
}
