//! Throughput measurements printed as ratios measured side by side in one run, never as
//! timed tests: `sap bench env` (emulator and preprocessing), `sap bench defense`
//! (defended forward passes and attacks), `sap bench ddqn` (actor-learner throughput) and
//! `sap bench grid` (an agent cell's steps/s with 1 and 16 episodes in lockstep),
//! `sap bench jobs` (cells per hour with one and with N local jobs) and `sap bench cifar`
//! (ResNet-20 training with the batch pipeline against batches made beforehand) and
//! `sap bench reproducible` (the cost of the reproducible mode); `sap bench rates` measures
//! and saves the CPU costs `sap plan` estimates cells' CPU time from.

pub mod cifar;
pub mod ddqn;
pub mod defense;
pub mod env;
pub mod grid;
pub mod jobs;
pub mod rates;
pub mod reproducible;

pub use cifar::{bench_cifar, bench_cifar_eval, CifarBench, EvalRate};
pub use ddqn::{bench_ddqn, DdqnBench};
pub use defense::{bench_defense, pytorch_reference, DefenseBench, ReferenceTiming};
pub use env::{bench_env, EnvBench};
pub use grid::{bench_grid, GridBench};
pub use jobs::{bench_jobs, JobsBench};
pub use rates::Rates;
pub use reproducible::{bench_reproducible, ReproducibleBench};

/// Runs `scripts/<script>` with the project's venv (`SAP_PYTHON` overrides it) and `args`,
/// after `setup` adjusts the command (its environment); returns standard output. A failure
/// names the script, its exit status and what it printed on standard error.
pub(crate) fn run_reference_script(
    script: &str,
    args: &[(&str, String)],
    setup: impl FnOnce(&mut std::process::Command),
) -> anyhow::Result<String> {
    use anyhow::Context;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let python = defense::venv_python();
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script);
    for (flag, value) in args {
        cmd.args([flag, value.as_str()]);
    }
    setup(&mut cmd);
    let out = cmd
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
