//! Throughput measurements printed as ratios measured side by side in one run, never as
//! timed tests: `sap bench env` (emulator and preprocessing) and `sap bench defense`
//! (defended forward passes and attacks).

pub mod defense;
pub mod env;

pub use defense::{bench_defense, DefenseBench};
pub use env::{bench_env, EnvBench};
