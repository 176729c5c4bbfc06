//! `sap bench jobs`: multi-game scaling of the local runner. A fixed tiny grid (Pong and
//! Breakout, random Nature CNNs from files, dense and SAP-100 under FGSM at lambda 0 and 4,
//! 2 episodes of at most `cap` frames per cell, plus the random baselines) runs with
//! `--jobs 1` and with `--jobs N` (one torch thread per cell, the default), alternately, each in a fresh run directory; cells per hour
//! and their ratio are printed.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use tch::Device;

use crate::manifest::Manifest;
use crate::nn::{checkpoint, Architecture, Model};
use crate::runner::{run_local, LocalOptions};

/// One measurement.
#[derive(Clone, Debug)]
pub struct JobsBench {
    /// Cells of the grid.
    pub cells: usize,
    /// Cells at once.
    pub jobs: usize,
    /// torch threads per cell.
    pub threads_per_job: usize,
    /// Best wall time over the rounds, seconds.
    pub seconds: f64,
}

impl JobsBench {
    /// Cells per hour of wall time.
    pub fn cells_per_hour(&self) -> f64 {
        self.cells as f64 * 3600.0 / self.seconds
    }
}

/// The grid's manifest text; networks are `pong.safetensors` and `breakout.safetensors`
/// next to it.
fn manifest(cap: u64) -> String {
    format!(
        r#"name = "bench_jobs"
seed = 7
[[eval]]
policy = "agent"
family = "atari"
checkpoints = {{ Pong = "pong.safetensors", Breakout = "breakout.safetensors" }}
episodes = 2
samples = 2
random_episodes = 2
defenses = [{{ kind = "dense" }}, {{ kind = "sap", frac = 1.0 }}]
attacks = [{{ kind = "fgsm", gradient_samples = 2 }}]
lambdas = [0, 4]
[eval.env]
max_episode_frames = {cap}
"#
    )
}

fn run_once(dir: &Path, manifest_path: &Path, run: &str, opts: &LocalOptions) -> Result<f64> {
    let m = Manifest::load(manifest_path)?;
    let run_dir = dir.join(run);
    crate::run_dir::create_run_dir(manifest_path, &m, &run_dir, opts.threads_per_job as u32)?;
    let plan = m.plan();
    let start = Instant::now();
    let report = run_local(&run_dir, &plan, opts)?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(f) = report.failed.first() {
        anyhow::bail!("bench cell {} failed: {}", f.id, f.message);
    }
    Ok(secs)
}

/// Measures the grid with 1 job and with `jobs`, `rounds` times each (alternating; the
/// best kept), through the executable `exe`.
pub fn bench_jobs(
    exe: &Path,
    jobs: usize,
    rounds: u32,
    cap: u64,
) -> Result<(JobsBench, JobsBench)> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let dir = tmp.path();
    for (name, actions, seed) in [("pong", 6, 1), ("breakout", 4, 2)] {
        tch::manual_seed(seed);
        let model = Model::new(Architecture::NatureCnn { actions }, Device::Cpu);
        checkpoint::save(&model, &dir.join(format!("{name}.safetensors")))?;
    }
    let manifest_path = dir.join("bench.toml");
    std::fs::write(&manifest_path, manifest(cap))?;
    let cells = Manifest::load(&manifest_path)?.plan().len();
    let configs = [
        LocalOptions::new(1, 1, exe.to_path_buf()),
        LocalOptions::new(jobs, 1, exe.to_path_buf()),
    ];
    let mut best = [f64::INFINITY; 2];
    for round in 0..rounds {
        for (i, opts) in configs.iter().enumerate() {
            let secs = run_once(
                dir,
                &manifest_path,
                &format!("r{round}-j{}", opts.jobs),
                opts,
            )?;
            best[i] = best[i].min(secs);
        }
    }
    let result = |i: usize| JobsBench {
        cells,
        jobs: configs[i].jobs,
        threads_per_job: configs[i].threads_per_job,
        seconds: best[i],
    };
    Ok((result(0), result(1)))
}
