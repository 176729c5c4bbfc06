//! Throughput measurements printed as ratios measured side by side in one run, never as
//! timed tests: `sap bench env` (emulator and preprocessing), `sap bench defense`
//! (defended forward passes and attacks) and `sap bench ddqn` (actor-learner throughput).

pub mod ddqn;
pub mod defense;
pub mod env;

pub use ddqn::{bench_ddqn, DdqnBench};
pub use defense::{bench_defense, DefenseBench};
pub use env::{bench_env, EnvBench};
