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
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// The trained online network of a finished cell, in the cell's folder.
pub const FINAL: &str = "final.safetensors";

use super::episode::{observation_tensor, play, EpsilonGreedy};
use crate::defense::DefensePoints;
use crate::env::{ale::action_counts, AtariEnv, ClassicEnv, Environment, Mode, Observation};
use crate::manifest::{Family, GameId, TrainCell};
use crate::nn::checkpoint::CheckpointFolder;
use crate::nn::{Architecture, MlpConfig};
use crate::progress::TrainProgress;
use crate::record::{read_rows, write_table, CsvAppender};
use crate::rl::{DoubleDqn, Replay};
use crate::runtime::{
    self, ActorSpec, EnvCall, EpisodeEnd, Frame, GameTally, Hooks, LearnerState, SlotState,
    StepContext,
};
use crate::seed::derive;
use crate::table::{TrainEvalRow, TrainRow};

/// What a checkpoint's description (`state-<step>.toml`) holds besides the tensors and the
/// replay file: every counter and generator the rest of the run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CheckpointInfo {
    cell: String,
    step: u64,
    updates: u64,
    finished: bool,
    tensors: String,
    replay: String,
    /// The replay sampler's ChaCha8 generator.
    rng: RngRecord,
    /// Update statistics since the last train row: loss sum, mean-Q sum, updates.
    window_loss: f64,
    window_q: f64,
    window_n: u64,
    /// Per slot: the game in progress.
    games: Vec<GameTally>,
    /// Per slot: what its environment and explorer need to continue exactly.
    slots: Vec<SlotRecord>,
}

/// A ChaCha8 generator's state: seed (hex), stream, word position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RngRecord {
    seed: String,
    stream: String,
    word_pos: String,
}

impl RngRecord {
    fn of(rng: &ChaCha8Rng) -> Self {
        RngRecord {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream().to_string(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    fn restore(&self) -> Result<ChaCha8Rng> {
        let bytes = (0..self.seed.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(self.seed.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .context("the generator seed is not hex")?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the generator seed is not 32 bytes"))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream.parse().context("the generator stream")?);
        rng.set_word_pos(self.word_pos.parse().context("the word position")?);
        Ok(rng)
    }
}

/// A slot's [`SlotState`] in a checkpoint; `calls` reads `R<seed>` for a reset and the
/// action index for a step, space-separated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SlotRecord {
    episodes: u64,
    has_obs: bool,
    rng: RngRecord,
    calls: String,
}

impl SlotRecord {
    fn of(s: &SlotState) -> Self {
        let calls: Vec<String> = s
            .calls
            .iter()
            .map(|c| match c {
                EnvCall::Reset(seed) => format!("R{seed}"),
                EnvCall::Step(a) => a.to_string(),
            })
            .collect();
        SlotRecord {
            episodes: s.episodes,
            has_obs: s.has_obs,
            rng: RngRecord::of(&s.rng),
            calls: calls.join(" "),
        }
    }

    fn restore(&self) -> Result<SlotState> {
        let calls = self
            .calls
            .split_whitespace()
            .map(|c| match c.strip_prefix('R') {
                Some(seed) => seed.parse().map(EnvCall::Reset),
                None => c.parse().map(EnvCall::Step),
            })
            .collect::<Result<Vec<_>, _>>()
            .context("a slot's calls are not `R<seed>` or action numbers")?;
        Ok(SlotState {
            episodes: self.episodes,
            rng: self.rng.restore()?,
            calls,
            has_obs: self.has_obs,
        })
    }
}

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

fn run_typed<T: Frame>(run_dir: &Path, cell: &TrainCell) -> Result<TrainOutcome> {
    let id = cell.id();
    let dir = run_dir.join("cells").join(&id);
    let ckpt_dir = dir.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let job = &cell.job;
    let d = &job.ddqn;
    let end_step = job.steps(job.frames);
    let train_path = dir.join("train.csv");
    let eval_path = dir.join("train_eval.csv");
    let resumed = CheckpointFolder::new(&ckpt_dir)
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
    let start_step = resumed.as_ref().map_or(0, |(info, _)| info.step);
    // CRUCIAL for resume: rows after the checkpoint are played again, so cut them first.
    let kept_games = cut_rows_after::<TrainRow>(&train_path, start_step)?;
    cut_rows_after::<TrainEvalRow>(&eval_path, start_step)?;
    if let Some((info, _)) = resumed.as_ref().filter(|(info, _)| info.finished) {
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
    // Fixed for the whole cell: episode seeds continue from the slots' counters.
    let actor_seed = derive(cell.seed, "actors", 0);
    let factory = |slot: usize| make_env(cell, Mode::Train, derive(actor_seed, "ale", slot as u64));
    let mut hooks = CellHooks {
        cell,
        id: id.clone(),
        ckpt_dir,
        end_step,
        eval_steps: job.steps(job.eval_every).max(1),
        train_sink: CsvAppender::open(&train_path, &sample_train_row())?,
        eval_sink: CsvAppender::open(&eval_path, &sample_eval_row())?,
        games: kept_games as u64,
        window,
        eval_env: None,
        last_eval_mean: None,
        progress: TrainProgress::new(
            &id,
            start_step * job.frame_skip(),
            end_step * job.frame_skip(),
        ),
    };
    // Training runs in segments that end at checkpoints (rounded up to whole rounds). Each
    // segment starts from what the previous one left (networks, optimiser, replay, slots),
    // so a run resumed from a checkpoint continues exactly as an uninterrupted run does.
    let ckpt_steps = job.steps(job.checkpoint_every).max(1);
    let mut a = start_step;
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
        slot_states = runtime::run(&job.runtime, timeline, &spec, &mut learner, &mut hooks)
            .with_context(|| format!("training {id}"))?;
        hooks.checkpoint(&learner, &slot_states, b == end_step)?;
        a = b;
    }
    hooks.progress.finish();
    Ok(TrainOutcome {
        dir,
        steps_run: end_step - start_step,
        steps: end_step,
        games: hooks.games as usize,
        last_eval_mean: hooks.last_eval_mean,
    })
}

/// The end of the segment that starts at agent step `a`: the first checkpoint step after
/// `a`, rounded up to a whole round of `slots` steps, at most `end`.
fn segment_end(a: u64, ckpt_steps: u64, slots: u64, end: u64) -> u64 {
    let next = (a / ckpt_steps + 1) * ckpt_steps;
    (next.div_ceil(slots) * slots).min(end)
}

/// Loads a checkpoint into the learner, the row window and the slots.
fn restore<T: Frame>(
    learner: &mut LearnerState<T>,
    window: &mut Window,
    slot_states: &mut Vec<SlotState>,
    info: &CheckpointInfo,
    path: &Path,
) -> Result<()> {
    let tensors = Tensor::read_safetensors(path.with_file_name(&info.tensors))
        .with_context(|| format!("reading checkpoint {}", path.display()))?;
    learner.ddqn.load_state(&tensors).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; the checkpoint was written by another network or version",
            path.display()
        )
    })?;
    let replay_path = path.with_file_name(&info.replay);
    learner
        .replay
        .load(&replay_path)
        .with_context(|| format!("reading replay {}", replay_path.display()))?;
    learner.rng = info
        .rng
        .restore()
        .with_context(|| format!("{}", path.display()))?;
    learner.games = info.games.clone();
    (window.loss, window.q, window.n) = (info.window_loss, info.window_q, info.window_n);
    window.rate_updates = info.updates;
    *slot_states = info
        .slots
        .iter()
        .map(SlotRecord::restore)
        .collect::<Result<_>>()
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}

fn sample_train_row() -> TrainRow {
    TrainRow {
        family: Family::Atari,
        game: String::new(),
        preset: String::new(),
        seed: 0,
        step: 0,
        frames: 0,
        episode: 0,
        episode_return: 0.0,
        length: 0,
        epsilon: 0.0,
        loss: None,
        mean_q: None,
        agent_steps_per_s: 0.0,
        updates_per_s: 0.0,
    }
}

fn sample_eval_row() -> TrainEvalRow {
    TrainEvalRow {
        family: Family::Atari,
        game: String::new(),
        preset: String::new(),
        seed: 0,
        step: 0,
        frames: 0,
        episode: 0,
        episode_return: 0.0,
        length: 0,
        epsilon: 0.0,
        truncated: false,
    }
}

/// Row types that carry the training step they were written at.
trait AtStep {
    fn step(&self) -> u64;
}

impl AtStep for TrainRow {
    fn step(&self) -> u64 {
        self.step
    }
}

impl AtStep for TrainEvalRow {
    fn step(&self) -> u64 {
        self.step
    }
}

/// Rewrites `path` (atomically) without the rows after `step`; returns the rows kept.
fn cut_rows_after<R>(path: &Path, step: u64) -> Result<usize>
where
    R: AtStep + Serialize + serde::de::DeserializeOwned,
{
    if !path.exists() {
        return Ok(0);
    }
    let rows: Vec<R> = read_rows(path)?;
    let total = rows.len();
    let kept: Vec<R> = rows.into_iter().filter(|r| r.step() <= step).collect();
    if kept.len() != total || std::fs::read(path)?.last() != Some(&b'\n') {
        write_table(path, &kept)?;
    }
    Ok(kept.len())
}

/// The mean return of the last evaluation recorded in a `train_eval.csv`.
pub(crate) fn last_eval_mean(path: &Path) -> Result<Option<f64>> {
    let rows: Vec<TrainEvalRow> = read_rows(path)?;
    let Some(last) = rows.last().map(|r| r.step) else {
        return Ok(None);
    };
    let returns: Vec<f64> = rows
        .iter()
        .filter(|r| r.step == last)
        .map(|r| r.episode_return)
        .collect();
    Ok(Some(returns.iter().sum::<f64>() / returns.len() as f64))
}

/// Update statistics since the previous train row, and a rate window of at least
/// [`RATE_WINDOW_S`] seconds of wall time (rates over a few milliseconds mean nothing).
struct Window {
    loss: f64,
    q: f64,
    n: u64,
    rate_steps: u64,
    rate_updates: u64,
    rate_since: Instant,
}

/// Shortest wall time the rates of a train row are measured over, in seconds.
const RATE_WINDOW_S: f64 = 5.0;

impl Window {
    fn new(steps: u64, updates: u64) -> Self {
        Self {
            loss: 0.0,
            q: 0.0,
            n: 0,
            rate_steps: steps,
            rate_updates: updates,
            rate_since: Instant::now(),
        }
    }

    /// Agent steps/s and updates/s since the rate window began, then a new window when this
    /// one has lasted long enough.
    fn rates(&mut self, steps: u64, updates: u64) -> (f64, f64) {
        let secs = self.rate_since.elapsed().as_secs_f64().max(1e-9);
        let rates = (
            (steps - self.rate_steps) as f64 / secs,
            (updates - self.rate_updates) as f64 / secs,
        );
        if secs >= RATE_WINDOW_S {
            self.rate_steps = steps;
            self.rate_updates = updates;
            self.rate_since = Instant::now();
        }
        rates
    }
}

struct CellHooks<'a> {
    cell: &'a TrainCell,
    id: String,
    ckpt_dir: PathBuf,
    end_step: u64,
    eval_steps: u64,
    train_sink: CsvAppender<TrainRow>,
    eval_sink: CsvAppender<TrainEvalRow>,
    games: u64,
    window: Window,
    eval_env: Option<Box<dyn Environment>>,
    last_eval_mean: Option<f64>,
    progress: TrainProgress,
}

impl CellHooks<'_> {
    fn preset(&self) -> String {
        self.cell.job.preset.map_or("none", |p| p.name()).to_owned()
    }

    /// Plays the evaluation episodes with the online network and `eval_epsilon`.
    fn evaluate<T: Frame>(&mut self, learner: &LearnerState<T>) -> Result<()> {
        let job = &self.cell.job;
        let preset = self.preset();
        if job.eval_episodes == 0 {
            return Ok(());
        }
        if self.eval_env.is_none() {
            let seed = derive(self.cell.seed, "eval-ale", 0);
            self.eval_env = Some(make_env(self.cell, Mode::Eval, seed)?);
        }
        let env = self.eval_env.as_mut().expect("built above");
        let model = &learner.ddqn.online;
        let shape: Vec<i64> = std::iter::once(1).chain(model.arch.input_shape()).collect();
        let epsilon = job.ddqn.eval_epsilon;
        let phase = derive(self.cell.seed, "eval", learner.steps);
        let mut sum = 0.0;
        for episode in 0..job.eval_episodes {
            let mut policy = EpsilonGreedy {
                rng: ChaCha8Rng::seed_from_u64(derive(phase, "explore", episode as u64)),
                epsilon,
                greedy: |obs: &Observation| {
                    let x = observation_tensor(obs, &shape).to(model.device());
                    let q = tch::no_grad(|| model.forward(&x, false, &mut DefensePoints::dense()));
                    Ok(q.argmax(1, false).int64_value(&[0]) as usize)
                },
            };
            let reset = derive(phase, "episode", episode as u64);
            let ep = play(env.as_mut(), reset, &mut policy, |_| {})?;
            let (ret, length, truncated) = (ep.score, ep.agent_steps, ep.truncated);
            sum += ret;
            self.eval_sink.append(&TrainEvalRow {
                family: job.family,
                game: self.cell.game.name().into(),
                preset: preset.clone(),
                seed: self.cell.seed,
                step: learner.steps,
                frames: learner.steps * job.frame_skip(),
                episode,
                episode_return: ret,
                length,
                epsilon,
                truncated,
            })?;
        }
        let mean = sum / job.eval_episodes as f64;
        self.last_eval_mean = Some(mean);
        self.progress
            .evaluated(learner.steps * job.frame_skip(), mean);
        Ok(())
    }

    /// Writes checkpoint `state-<step>`: tensors, replay, then the description, which makes
    /// it count; then removes older checkpoints.
    fn checkpoint<T: Frame>(
        &self,
        learner: &LearnerState<T>,
        slots: &[SlotState],
        finished: bool,
    ) -> Result<()> {
        let step = learner.steps;
        let folder = CheckpointFolder::new(&self.ckpt_dir);
        let stem = CheckpointFolder::stem(step);
        let tensors_name = format!("{stem}.safetensors");
        let tensors: Vec<(String, Tensor)> = learner
            .ddqn
            .state()
            .into_iter()
            .map(|(k, t)| (k, t.to_device(Device::Cpu).contiguous()))
            .collect();
        crate::nn::checkpoint::write_tensors(&folder.file(&tensors_name), &tensors)?;
        let replay_name = format!("{stem}.replay");
        let replay_path = folder.file(&replay_name);
        learner
            .replay
            .save(&replay_path)
            .with_context(|| format!("writing {}", replay_path.display()))?;
        if finished {
            crate::nn::checkpoint::save(
                &learner.ddqn.online,
                &self.ckpt_dir.parent().expect("cell dir").join(FINAL),
            )?;
        }
        let info = CheckpointInfo {
            cell: self.id.clone(),
            step,
            updates: learner.ddqn.updates(),
            finished,
            tensors: tensors_name,
            replay: replay_name,
            rng: RngRecord::of(&learner.rng),
            window_loss: self.window.loss,
            window_q: self.window.q,
            window_n: self.window.n,
            games: learner.games.clone(),
            slots: slots.iter().map(SlotRecord::of).collect(),
        };
        // The description last: a checkpoint counts only once it is there; older ones go
        // (their replay can take gigabytes).
        folder.commit(step, &info)?;
        Ok(())
    }
}

impl<T: Frame> Hooks<T> for CellHooks<'_> {
    fn on_episode(&mut self, end: &EpisodeEnd) -> Result<()> {
        let job = &self.cell.job;
        let mean = |sum: f64| (self.window.n > 0).then(|| sum / self.window.n as f64);
        let (loss, mean_q) = (mean(self.window.loss), mean(self.window.q));
        let (agent_steps_per_s, updates_per_s) = self.window.rates(end.step, end.updates);
        let row = TrainRow {
            family: job.family,
            game: self.cell.game.name().into(),
            preset: self.preset(),
            seed: self.cell.seed,
            step: end.step,
            frames: end.step * job.frame_skip(),
            episode: self.games,
            episode_return: end.episode_return,
            length: end.length,
            epsilon: end.epsilon,
            loss,
            mean_q,
            agent_steps_per_s,
            updates_per_s,
        };
        self.train_sink.append(&row)?;
        self.games += 1;
        (self.window.loss, self.window.q, self.window.n) = (0.0, 0.0, 0);
        self.progress.game_done(row.episode_return);
        Ok(())
    }

    fn after_step(&mut self, learner: &mut LearnerState<T>, ctx: &StepContext) -> Result<()> {
        if let Some(u) = ctx.update {
            if !(u.loss.is_finite() && u.mean_q.is_finite()) {
                bail!(
                    "training diverged at agent step {} (update {}): loss {}, mean Q {}; no \
                     rows after it are written. Lower ddqn.lr or check the reward scale",
                    learner.steps,
                    learner.ddqn.updates(),
                    u.loss,
                    u.mean_q
                );
            }
            self.window.loss += u.loss;
            self.window.q += u.mean_q;
            self.window.n += 1;
        }
        let step = learner.steps;
        let fs = self.cell.job.frame_skip();
        self.progress.advance(step * fs, learner.ddqn.updates());
        if step % self.eval_steps == 0 || step == self.end_step {
            self.evaluate(learner)?;
        }
        Ok(())
    }
}
