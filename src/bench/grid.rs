//! `sap bench grid`: agent steps per second of one agent cell of the Atari grid (Pong, a
//! random Nature CNN from a file, SAP-100, FGSM with `gradient_samples = 10`, `samples = 1`)
//! with one torch thread, through the cell code `sap run` uses: episodes one at a time with
//! one network pass per forward (`parallel_episodes = 1`, `max_batch = 1`: batch-1 passes
//! throughout), one at a time with the passes stacked (`max_batch` 128), and 16 in lockstep;
//! measured alternately in one run, with their ratios.

use std::time::Instant;

use anyhow::{Context, Result};
use tch::Device;

use crate::manifest::{CellKind, Manifest};
use crate::nn::{checkpoint, Architecture, Model};
use crate::progress::Progress;
use crate::record::read_rows;
use crate::table::AgentRow;

/// One measurement.
#[derive(Clone, Debug)]
pub struct GridBench {
    /// Episodes in lockstep.
    pub parallel_episodes: u32,
    /// Rows per forward pass.
    pub max_batch: u32,
    /// Agent steps of the cell's episodes.
    pub agent_steps: u64,
    /// Best wall time over the rounds, seconds.
    pub seconds: f64,
}

impl GridBench {
    /// Agent steps per second of wall time.
    pub fn steps_per_second(&self) -> f64 {
        self.agent_steps as f64 / self.seconds
    }
}

/// The cell's manifest: 16 Pong episodes of at most `cap` frames.
fn manifest(cap: u64, parallel: u32, max_batch: u32) -> String {
    format!(
        r#"name = "bench_grid"
seed = 11
[[eval]]
policy = "agent"
family = "atari"
checkpoints = {{ Pong = "pong.safetensors" }}
episodes = 16
samples = 1
random_episodes = 1
parallel_episodes = {parallel}
max_batch = {max_batch}
defenses = [{{ kind = "sap", frac = 1.0 }}]
attacks = [{{ kind = "fgsm", gradient_samples = 10 }}]
lambdas = [8]
[eval.env]
max_episode_frames = {cap}
"#
    )
}

/// Plays the cell with `parallel` episodes in lockstep and `max_batch` rows per forward,
/// writing under `dir`; returns (agent steps, seconds).
fn run_once(dir: &std::path::Path, cap: u64, config: (u32, u32), round: u32) -> Result<(u64, f64)> {
    let (parallel, max_batch) = config;
    let name = format!("p{parallel}-b{max_batch}-r{round}");
    let manifest_path = dir.join(format!("{name}.toml"));
    std::fs::write(&manifest_path, manifest(cap, parallel, max_batch))?;
    let m = Manifest::load(&manifest_path)?;
    let plan = m.plan();
    let cell = plan
        .iter()
        .find_map(|c| match &c.kind {
            CellKind::Agent(a) if a.condition.defense.is_stochastic() => Some(a),
            _ => None,
        })
        .context("the bench manifest has a SAP agent cell")?;
    let rows = dir.join(format!("{name}.csv"));
    let mut progress = Progress::new(cell.episodes as u64);
    let start = Instant::now();
    crate::experiment::agent::run_cell(dir, dir, cell, &rows, &mut progress)?;
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    let recorded: Vec<AgentRow> = read_rows(&rows)?;
    Ok((recorded.iter().map(|r| r.agent_steps).sum(), seconds))
}

/// Measures the cell's three configurations (see the module), `rounds` times each
/// (alternating; the best kept), with one torch thread.
pub fn bench_grid(rounds: u32, cap: u64) -> Result<Vec<GridBench>> {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let dir = tmp.path();
    tch::manual_seed(1);
    let model = Model::new(Architecture::NatureCnn { actions: 6 }, Device::Cpu);
    checkpoint::save(&model, &dir.join("pong.safetensors"))?;
    let default_batch = crate::defense::DEFAULT_MAX_BATCH as u32;
    let configs = [(1u32, 1u32), (1, default_batch), (16, default_batch)];
    let mut best = [(0u64, f64::INFINITY); 3];
    for round in 0..rounds {
        for (i, &config) in configs.iter().enumerate() {
            let (steps, secs) = run_once(dir, cap, config, round)?;
            if secs < best[i].1 {
                best[i] = (steps, secs);
            }
        }
    }
    Ok(configs
        .iter()
        .zip(best)
        .map(
            |(&(parallel_episodes, max_batch), (agent_steps, seconds))| GridBench {
                parallel_episodes,
                max_batch,
                agent_steps,
                seconds,
            },
        )
        .collect())
}
