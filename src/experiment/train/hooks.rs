//! The runtime hooks of a training cell: rows of training games, evaluation episodes during
//! training, checkpoints and progress.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::checkpoint::{CheckpointInfo, RngRecord, SlotRecord};
use super::make_env;
use super::window::Window;
use crate::env::{Environment, Mode};
use crate::experiment::episode::{
    batch_of, explore, fill, play_lockstep, Finished, Lane, Lockstep,
};
use crate::manifest::TrainCell;
use crate::nn::checkpoint::CheckpointFolder;
use crate::nn::Model;
use crate::progress::TrainProgress;
use crate::record::CsvAppender;
use crate::run_dir::files::FINAL;
use crate::runtime::{EpisodeEnd, Frame, Hooks, LearnerState, SlotState, StepContext};
use crate::seed::derive;
use crate::table::{TrainEvalRow, TrainRow};

pub(super) struct CellHooks<'a> {
    pub(super) cell: &'a TrainCell,
    pub(super) id: String,
    pub(super) ckpt_dir: PathBuf,
    pub(super) end_step: u64,
    pub(super) eval_steps: u64,
    pub(super) train_sink: CsvAppender<TrainRow>,
    pub(super) eval_sink: CsvAppender<TrainEvalRow>,
    pub(super) games: u64,
    pub(super) window: Window,
    /// The evaluation phases' environments, one per episode in lockstep (made on first use).
    pub(super) eval_envs: Vec<Box<dyn Environment>>,
    pub(super) last_eval_mean: Option<f64>,
    pub(super) progress: TrainProgress,
}

impl CellHooks<'_> {
    pub(super) fn preset(&self) -> String {
        self.cell.job.preset.map_or("none", |p| p.name()).to_owned()
    }

    /// Plays the evaluation episodes with the online network and `eval_epsilon`, up to
    /// [`EVAL_LANES`] in lockstep (one batched forward per step); episode `e` of a phase draws
    /// from the cell's seed, the phase's step and `e`. A phase always runs whole, from the
    /// same network, so a resumed cell plays it with the same batches.
    pub(super) fn evaluate<T: Frame>(&mut self, learner: &LearnerState<T>) -> Result<()> {
        let job = &self.cell.job;
        if job.eval_episodes == 0 {
            return Ok(());
        }
        let lanes = job.eval_episodes.min(EVAL_LANES) as usize;
        while self.eval_envs.len() < lanes {
            let seed = derive(self.cell.seed, "eval-ale", 0);
            self.eval_envs.push(make_env(self.cell, Mode::Eval, seed)?);
        }
        let model = &learner.ddqn.online;
        let mut play = EvalPlay {
            model,
            shape: model.arch.input_shape(),
            epsilon: job.ddqn.eval_epsilon,
            phase: derive(self.cell.seed, "eval", learner.steps),
            sum: 0.0,
            template: TrainEvalRow {
                family: job.family,
                game: self.cell.game.name().into(),
                preset: self.preset(),
                seed: self.cell.seed,
                step: learner.steps,
                frames: learner.steps * job.frame_skip(),
                episode: 0,
                episode_return: 0.0,
                length: 0,
                epsilon: job.ddqn.eval_epsilon,
                truncated: false,
            },
            sink: &mut self.eval_sink,
        };
        let episodes: Vec<u32> = (0..job.eval_episodes).collect();
        play_lockstep(&mut self.eval_envs[..lanes], &episodes, &mut play)?;
        let mean = play.sum / job.eval_episodes as f64;
        self.last_eval_mean = Some(mean);
        self.progress
            .evaluated(learner.steps * job.frame_skip(), mean);
        Ok(())
    }

    /// Writes checkpoint `state-<step>`: tensors, replay, then the description, which makes
    /// it count; then removes older checkpoints.
    pub(super) fn checkpoint<T: Frame>(
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

/// Episodes of a training cell's evaluation phase played in lockstep.
pub const EVAL_LANES: u32 = 8;

/// The online network, epsilon-greedy, in an evaluation phase; one row per episode.
struct EvalPlay<'a> {
    model: &'a Model,
    shape: Vec<i64>,
    epsilon: f64,
    /// The phase's seed: episode `e` resets and explores from it and `e`.
    phase: u64,
    sum: f64,
    template: TrainEvalRow,
    sink: &'a mut CsvAppender<TrainEvalRow>,
}

impl Lockstep for EvalPlay<'_> {
    type State = ChaCha8Rng;

    fn start(&mut self, episode: u32) -> (u64, ChaCha8Rng) {
        let explore = ChaCha8Rng::seed_from_u64(derive(self.phase, "explore", episode as u64));
        (derive(self.phase, "episode", episode as u64), explore)
    }

    fn actions(&mut self, lanes: &mut [Lane<ChaCha8Rng>], actions: usize) -> Result<Vec<usize>> {
        let (chosen, greedy) = explore(lanes, self.epsilon, actions, |rng| rng);
        if greedy.is_empty() {
            return Ok(fill(chosen, []));
        }
        let x = batch_of(lanes, &greedy, &self.shape)?.to(self.model.device());
        let best = crate::rl::act::greedy_dense(self.model, &x);
        Ok(fill(chosen, best.into_iter().map(|a| a as usize)))
    }

    fn finished(&mut self, done: Finished<ChaCha8Rng>) -> Result<()> {
        let ep = done.result;
        self.sum += ep.score;
        self.sink.append(&TrainEvalRow {
            episode: done.episode,
            episode_return: ep.score,
            length: ep.agent_steps,
            truncated: ep.truncated,
            ..self.template.clone()
        })?;
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
        if step.is_multiple_of(self.eval_steps) || step == self.end_step {
            self.evaluate(learner)?;
        }
        Ok(())
    }
}
