//! Double DQN: replay that stores each frame once, the update, optimisers with checkpointable
//! state, exploration schedules, and the
//! one way actions are chosen from Q-values ([`act`]). The threads that feed it live in [`crate::runtime`].

pub mod act;
pub mod ddqn;
pub mod frame;
pub mod replay;
pub mod schedule;

pub use crate::nn::optim::{Optimizer, OptimizerConfig};
pub use ddqn::{double_dqn_targets, Cadence, DoubleDqn, Loss, StateError, UpdateStats};
pub use frame::Frame;
pub use replay::{Batch, Replay, ReplayError};
pub use schedule::{Exploration, LinearSchedule};
