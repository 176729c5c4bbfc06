//! `[[train]]` cells: Double DQN through the actor-learner runtime, with `train.csv` (one row
//! per training game), `train_eval.csv` (one row per evaluation episode), checkpoints, and
//! resume.
//!
//! Files of a cell, under `cells/<cell id>/` in the run directory:
//! - `train.csv`, `train_eval.csv`;
//! - `checkpoints/state-<step>.safetensors` (networks, optimiser moments, update count),
//!   `state-<step>.replay` (the whole replay buffer) and `state-<step>.toml` (counters,
//!   generators, the games in progress and each environment slot's state), the TOML written
//!   last, so a checkpoint exists only once all three are whole; only the newest is kept;
//! - `final.safetensors`: the trained online network, loadable with
//!   [`crate::nn::checkpoint::load`].
//!
//! Exact resume: training runs in segments that end at checkpoint steps (rounded up to whole
//! rounds); every segment, in an uninterrupted run too, starts from the state the previous
//! one saved: networks, optimiser, replay, generators, and each slot's environment, restored
//! by making the same calls (resets with their seeds, actions) on a new one, since
//! environments are deterministic given their calls. So a run killed at any moment and
//! resumed from its newest checkpoint writes the same rows as one never interrupted (rows
//! after the checkpoint are cut first). The price: at every segment start each slot replays
//! at most its current game's actions.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

mod checkpoint;
mod hooks;
mod window;
pub use hooks::EVAL_LANES;

use checkpoint::{cut_rows_after, restore, CheckpointInfo};
use hooks::CellHooks;
use window::Window;

use super::{CellCtx, CellRunner};
use crate::env::{ale::action_counts, AtariEnv, ClassicEnv, Environment, Mode};
use crate::manifest::{Family, GameId, TrainCell};
use crate::nn::checkpoint::CheckpointFolder;
use crate::nn::{Architecture, MlpConfig};
use crate::progress::TrainProgress;
use crate::record::CsvAppender;
use crate::rl::{DoubleDqn, Replay};
use crate::run_dir::files;
use crate::runtime::{self, ActorSpec, Frame, LearnerState, SlotState};
use crate::seed::derive;
use crate::table::{TrainEvalRow, TrainRow};

use crate::run_dir::collect::last_eval_mean;

/// What a training cell produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The cell's folder.
    pub dir: PathBuf,
    /// Agent steps counted in this call (0 when the cell was already finished).
    pub steps_run: u64,
    /// Agent steps the cell's training reached.
    pub steps: u64,
    /// Training games recorded in all.
    pub games: usize,
    /// The last evaluation's mean return, if any evaluation ran.
    pub last_eval_mean: Option<f64>,
}

/// Runs (or resumes, or skips when finished) one training cell under `run_dir`.
pub fn run_cell(run_dir: &Path, cell: &TrainCell) -> Result<TrainOutcome> {
    match cell.job.family {
        Family::Atari => run_typed::<u8>(run_dir, cell),
        Family::Classic => run_typed::<f32>(run_dir, cell),
    }
}

/// The Q-network of a cell's game and its replay layout (values per frame, stack depth).
pub fn network(cell: &TrainCell) -> Result<(Architecture, usize, usize)> {
    Ok(match cell.game {
        GameId::Atari(game) => {
            let (minimal, full) = action_counts(game)?;
            let settings = cell.job.env.expect("Atari jobs have settings");
            let actions = match settings.action_set {
                crate::env::ActionSet::Minimal => minimal,
                crate::env::ActionSet::Full => full,
            };
            let arch = Architecture::NatureCnn {
                actions: actions as i64,
            };
            (arch, 84 * 84, 4)
        }
        GameId::Classic(game) => {
            let env = ClassicEnv::new(game);
            let inputs = env.observation_shape()[0];
            let arch = Architecture::Mlp(MlpConfig {
                inputs: inputs as i64,
                hidden: cell.job.ddqn.hidden.clone(),
                outputs: env.num_actions() as i64,
                input_scale: 1.0,
            });
            (arch, inputs, 1)
        }
    })
}

/// Builds a cell's environment in `mode`; `seed` is ALE's construction seed.
fn make_env(cell: &TrainCell, mode: Mode, seed: u64) -> Result<Box<dyn Environment>> {
    Ok(match cell.game {
        GameId::Atari(game) => {
            let settings = cell.job.env.expect("Atari jobs have settings");
            Box::new(AtariEnv::new(game, settings, mode, seed)?)
        }
        GameId::Classic(game) => Box::new(ClassicEnv::new(game)),
    })
}

/// The newest whole checkpoint of cell `id` in `ckpt_dir`, with its description's path.
fn newest_checkpoint(ckpt_dir: &Path, id: &str) -> Result<Option<(CheckpointInfo, PathBuf)>> {
    let resumed = CheckpointFolder::new(ckpt_dir)
        .newest(|_: &CheckpointInfo| true)?
        .map(|(_, info, path)| (info, path));
    if let Some((info, path)) = &resumed {
        if info.cell != id {
            bail!(
                "{} belongs to cell {}, not {id}: this run directory holds another manifest's \
                 cells",
                path.display(),
                info.cell
            );
        }
    }
    Ok(resumed)
}

/// Trains cell `cell` from its newest checkpoint (or from scratch) to its last step.
fn run_typed<T: Frame>(run_dir: &Path, cell: &TrainCell) -> Result<TrainOutcome> {
    let id = cell.id();
    let dir = run_dir.join("cells").join(&id);
    let ckpt_dir = dir.join(files::CHECKPOINTS);
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let job = &cell.job;
    let d = &job.ddqn;
    let end_step = job.steps(job.frames);
    let train_path = dir.join("train.csv");
    let eval_path = dir.join("train_eval.csv");
    let resumed = newest_checkpoint(&ckpt_dir, &id)?;
    let start_step = resumed.as_ref().map_or(0, |(info, _)| info.step);
    // CRUCIAL for resume: rows after the checkpoint are played again, so cut them first.
    let kept_games = cut_rows_after::<TrainRow>(&train_path, start_step)?;
    cut_rows_after::<TrainEvalRow>(&eval_path, start_step)?;
    // A finished cell whose budget was raised since (`sap run` with larger `frames`)
    // continues from its last checkpoint, which holds the whole state at that step.
    if let Some((info, _)) = resumed
        .as_ref()
        .filter(|(info, _)| info.finished && info.step >= end_step)
    {
        return Ok(TrainOutcome {
            dir,
            steps_run: 0,
            steps: info.step,
            games: kept_games,
            last_eval_mean: last_eval_mean(&eval_path)?,
        });
    }
    let (arch, frame_len, stack) = network(cell)?;
    let ddqn = DoubleDqn::new(
        arch.clone(),
        Device::cuda_if_available(),
        d.optimizer_config(),
        d.gamma,
        d.loss,
        derive(cell.seed, "init", 0),
    );
    let slots = job.runtime.slots() as u64;
    let mut learner = LearnerState {
        ddqn,
        replay: Replay::<T>::new(d.replay_capacity, slots as usize, frame_len, stack)?,
        rng: ChaCha8Rng::seed_from_u64(derive(cell.seed, "replay", 0)),
        steps: start_step,
        batch_size: d.batch_size,
        games: Vec::new(),
    };
    let mut window = Window::new(start_step, 0);
    let mut slot_states: Vec<SlotState> = Vec::new();
    if let Some((info, path)) = &resumed {
        restore(&mut learner, &mut window, &mut slot_states, info, path)?;
        tracing::info!(
            "{id}: resuming from agent step {} ({} updates)",
            info.step,
            info.updates
        );
    }
    let mut hooks = CellHooks {
        cell,
        id: id.clone(),
        ckpt_dir,
        end_step,
        eval_steps: job.steps(job.eval_every).max(1),
        train_sink: CsvAppender::open(&train_path, &TrainRow::sample())?,
        eval_sink: CsvAppender::open(&eval_path, &TrainEvalRow::sample())?,
        games: kept_games as u64,
        window,
        eval_envs: Vec::new(),
        last_eval_mean: None,
        progress: TrainProgress::new(
            &id,
            start_step * job.frame_skip(),
            end_step * job.frame_skip(),
        ),
    };
    train_segments(cell, &arch, slot_states, &mut learner, &mut hooks)?;
    hooks.progress.finish();
    Ok(TrainOutcome {
        dir,
        steps_run: end_step - start_step,
        steps: end_step,
        games: hooks.games as usize,
        last_eval_mean: hooks.last_eval_mean,
    })
}

/// Trains from the learner's step to the cell's last one in segments that end at checkpoints
/// (rounded up to whole rounds). Each segment starts from what the previous one left
/// (networks, optimiser, replay, slots), so a run resumed from a checkpoint continues
/// exactly as an uninterrupted run does.
fn train_segments<T: Frame>(
    cell: &TrainCell,
    arch: &Architecture,
    mut slot_states: Vec<SlotState>,
    learner: &mut LearnerState<T>,
    hooks: &mut CellHooks,
) -> Result<()> {
    let job = &cell.job;
    let d = &job.ddqn;
    let slots = job.runtime.slots() as u64;
    let end_step = job.steps(job.frames);
    let ckpt_steps = job.steps(job.checkpoint_every).max(1);
    // Fixed for the whole cell: episode seeds continue from the slots' counters.
    let actor_seed = derive(cell.seed, "actors", 0);
    let factory = |slot: usize| make_env(cell, Mode::Train, derive(actor_seed, "ale", slot as u64));
    let mut a = learner.steps;
    while a < end_step {
        let b = segment_end(a, ckpt_steps, slots, end_step);
        let timeline = runtime::Timeline {
            slots,
            start_step: a,
            end_step: b,
            cadence: d.cadence(),
            sync_period: job.runtime.sync_period,
        };
        let spec = ActorSpec {
            arch: arch.clone(),
            exploration: d.exploration(),
            seed: actor_seed,
            make_env: &factory,
            resume: &slot_states,
        };
        slot_states = runtime::run(&job.runtime, timeline, &spec, learner, hooks)
            .with_context(|| format!("training {}", cell.id()))?;
        hooks.checkpoint(learner, &slot_states, b == end_step)?;
        a = b;
    }
    Ok(())
}

/// The end of the segment that starts at agent step `a`: the first checkpoint step after
/// `a`, rounded up to a whole round of `slots` steps, at most `end`.
fn segment_end(a: u64, ckpt_steps: u64, slots: u64, end: u64) -> u64 {
    let next = (a / ckpt_steps + 1) * ckpt_steps;
    (next.div_ceil(slots) * slots).min(end)
}

impl CellRunner for TrainCell {
    fn outputs(&self) -> &'static [&'static str] {
        &[files::TRAIN, files::TRAIN_EVAL, files::FINAL]
    }

    fn run(&self, ctx: &CellCtx) -> Result<u64> {
        Ok(run_cell(ctx.run_dir, self)?.steps_run)
    }
}
