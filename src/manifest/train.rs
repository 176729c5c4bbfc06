//! `[[train]]` jobs: Double DQN on Atari games or classic control, one cell per game x seed.
//!
//! ```toml
//! [[train]]
//! family = "atari"
//! games = ["Pong"]
//! preset = "dopamine-v5"      # also fixes the DDQN defaults (docs/ARCHITECTURE.md section 4)
//! frames = 10_000_000          # emulator frames = agent steps x frame_skip
//! [train.ddqn]                 # optional overrides; every key is listed in the README
//! learning_starts = 20_000     # agent steps
//! [train.runtime]
//! actors = 2
//! ```

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::ddqn::{DdqnSettings, OptimizerKind, PeriodUnit};
use super::{Family, GameId, ManifestError, RawEnvOverrides, Resolver};
use crate::env::{AtariSettings, ClassicGame, Game, Preset};
use crate::rl::Loss;
use crate::runtime::RuntimeConfig;

/// The runtime defaults: one actor with one environment, one torch thread per role.
pub fn default_runtime(family: Family) -> RuntimeConfig {
    RuntimeConfig {
        actors: 1,
        envs_per_actor: 1,
        sync_period: match family {
            Family::Atari => 50,
            Family::Classic => 1,
        },
        channel_capacity: 8,
        actor_threads: 1,
        learner_threads: 1,
    }
}

/// A checked `[[train]]` job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainJob {
    /// The name evaluation jobs refer to (`train = "..."`); `train<i>` by default.
    pub name: String,
    /// The environment family.
    pub family: Family,
    /// Game names.
    pub games: Vec<String>,
    /// Atari preset (Atari only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Training budget in emulator frames (agent steps x frame_skip; classic: steps).
    pub frames: u64,
    /// Training seeds; each is one cell per game.
    pub seeds: Vec<u64>,
    /// Frames between evaluation phases.
    pub eval_every: u64,
    /// Episodes per evaluation phase (0: none).
    pub eval_episodes: u32,
    /// Frames between checkpoints.
    pub checkpoint_every: u64,
    /// Fully resolved Atari settings (Atari only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<AtariSettings>,
    /// Double DQN hyperparameters.
    pub ddqn: DdqnSettings,
    /// Threads and channels.
    pub runtime: RuntimeConfig,
}

impl TrainJob {
    /// Emulator frames per agent step.
    pub fn frame_skip(&self) -> u64 {
        self.env.map_or(1, |e| e.frame_skip as u64)
    }

    /// A frame count in agent steps (rounded down).
    pub fn steps(&self, frames: u64) -> u64 {
        frames / self.frame_skip()
    }
}

/// One training run: a job on one game with one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainCell {
    /// Position among the training cells, from 0.
    pub index: usize,
    /// Index of the job in the manifest's `train` list.
    pub job_index: usize,
    /// The game.
    pub game: GameId,
    /// The seed.
    pub seed: u64,
    /// The job.
    pub job: TrainJob,
}

impl TrainCell {
    /// A name for logs and folders: `train-000-Pong-dopamine-v5-s1`.
    pub fn id(&self) -> String {
        let preset = self.job.preset.map_or("none", Preset::name);
        format!(
            "train-{:03}-{}-{preset}-s{}",
            self.index,
            self.game.name(),
            self.seed
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrainJob {
    name: Option<Spanned<String>>,
    family: Family,
    games: Spanned<Vec<Spanned<String>>>,
    preset: Option<Spanned<Preset>>,
    frames: Spanned<u64>,
    seeds: Option<Spanned<Vec<u64>>>,
    eval_every: Option<Spanned<u64>>,
    eval_episodes: Option<u32>,
    checkpoint_every: Option<Spanned<u64>>,
    env: Option<Spanned<RawEnvOverrides>>,
    ddqn: Option<Spanned<RawDdqn>>,
    runtime: Option<RawRuntime>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDdqn {
    batch_size: Option<Spanned<usize>>,
    gamma: Option<Spanned<f64>>,
    update_period: Option<Spanned<u64>>,
    replay_capacity: Option<Spanned<usize>>,
    learning_starts: Option<Spanned<u64>>,
    target_period: Option<Spanned<u64>>,
    target_period_unit: Option<PeriodUnit>,
    optimizer: Option<OptimizerKind>,
    lr: Option<Spanned<f64>>,
    optimizer_eps: Option<Spanned<f64>>,
    loss: Option<Loss>,
    epsilon_start: Option<Spanned<f64>>,
    epsilon_end: Option<Spanned<f64>>,
    epsilon_decay_steps: Option<u64>,
    apex_epsilons: Option<bool>,
    eval_epsilon: Option<Spanned<f64>>,
    hidden: Option<Spanned<Vec<i64>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    actors: Option<Spanned<usize>>,
    envs_per_actor: Option<Spanned<usize>>,
    sync_period: Option<Spanned<u64>>,
    channel_capacity: Option<Spanned<usize>>,
    actor_threads: Option<Spanned<usize>>,
    learner_threads: Option<Spanned<usize>>,
}

impl Resolver<'_> {
    pub(super) fn resolve_train(
        &self,
        i: usize,
        job: RawTrainJob,
        seed: u64,
    ) -> Result<TrainJob, ManifestError> {
        let key = |k: &str| format!("train[{i}].{k}");
        let name = match &job.name {
            None => format!("train{i}"),
            Some(n) => self.plain_name(n, key("name"))?,
        };
        self.check_games(&format!("train[{i}]"), job.family, &job.games)?;
        let seeds = self.seed_list(job.seeds, key("seeds"), seed)?;
        let (preset, env) = match job.family {
            Family::Atari => {
                let preset = job.preset.map(Spanned::into_inner).unwrap_or_default();
                let overrides = job.env.map(Spanned::into_inner).unwrap_or_default();
                let prefix = format!("train[{i}]");
                (
                    Some(preset),
                    Some(self.apply_overrides(&prefix, preset.settings(), overrides)?),
                )
            }
            Family::Classic => {
                self.reject_atari_keys(&format!("train[{i}]"), &job.preset, &job.env)?;
                (None, None)
            }
        };
        let frame_skip = env.map_or(1, |e| e.frame_skip as u64);
        let ddqn_span = job.ddqn.as_ref().map(Spanned::span);
        let raw = job.ddqn.map(Spanned::into_inner).unwrap_or_default();
        let capacity_span = raw
            .replay_capacity
            .as_ref()
            .map(Spanned::span)
            .or(ddqn_span)
            .unwrap_or(job.frames.span());
        let ddqn = self.resolve_ddqn(i, job.family, preset, raw)?;
        let runtime = self.resolve_runtime(i, job.family, job.runtime.unwrap_or_default())?;
        let stack = if job.family == Family::Atari { 4 } else { 1 };
        let min_capacity = ddqn.batch_size.max(runtime.slots() * (stack + 2));
        if ddqn.replay_capacity < min_capacity {
            return Err(self.error(
                capacity_span,
                key("ddqn.replay_capacity"),
                format!(
                    "{} transitions is smaller than a batch or than the {} environment slots \
                     need; allowed: at least {min_capacity}",
                    ddqn.replay_capacity,
                    runtime.slots()
                ),
            ));
        }
        let frames = *job.frames.get_ref();
        if frames / frame_skip <= ddqn.learning_starts {
            let msg = format!(
                "{frames} frames are {} agent steps (frame_skip {frame_skip}), not more than the \
                 warm-up of {} agent steps (ddqn.learning_starts): training would never update; \
                 allowed: more than {} frames",
                frames / frame_skip,
                ddqn.learning_starts,
                ddqn.learning_starts * frame_skip
            );
            return Err(self.error(job.frames.span(), key("frames"), msg));
        }
        let every = |v: &Option<Spanned<u64>>, k: &str, default: u64| match v {
            None => Ok(default.min(frames)),
            Some(v) => self.check_range(v, key(k), frame_skip..u64::MAX, true, "frames"),
        };
        let (eval_default, checkpoint_default) = match job.family {
            Family::Atari => (1_000_000, 1_000_000),
            Family::Classic => (10_000, 10_000),
        };
        let eval_every = every(&job.eval_every, "eval_every", eval_default)?;
        let checkpoint_every = every(
            &job.checkpoint_every,
            "checkpoint_every",
            checkpoint_default,
        )?;
        let games = job
            .games
            .into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect();
        Ok(TrainJob {
            name,
            family: job.family,
            games,
            preset,
            frames,
            seeds,
            eval_every,
            eval_episodes: job.eval_episodes.unwrap_or(10),
            checkpoint_every,
            env,
            ddqn,
            runtime,
        })
    }

    fn resolve_ddqn(
        &self,
        i: usize,
        family: Family,
        preset: Option<Preset>,
        raw: RawDdqn,
    ) -> Result<DdqnSettings, ManifestError> {
        let key = |k: &str| format!("train[{i}].ddqn.{k}");
        let mut d = DdqnSettings::defaults(preset);
        let count = |v: &Option<Spanned<u64>>, k: &str, default: u64| {
            self.or_positive(v, key(k), default, "an integer >= 1")
        };
        let size = |v: &Option<Spanned<usize>>, k: &str, default: usize| {
            self.or_positive(v, key(k), default, "an integer >= 1")
        };
        let unit = |v: &Option<Spanned<f64>>, k: &str, default: f64| {
            self.or_in_range(v, key(k), default, 0.0..1.0, true, "a value")
        };
        d.batch_size = size(&raw.batch_size, "batch_size", d.batch_size)?;
        d.gamma = unit(&raw.gamma, "gamma", d.gamma)?;
        d.update_period = count(&raw.update_period, "update_period", d.update_period)?;
        d.replay_capacity = size(&raw.replay_capacity, "replay_capacity", d.replay_capacity)?;
        if let Some(v) = &raw.learning_starts {
            d.learning_starts = *v.get_ref();
        }
        if d.learning_starts < d.batch_size as u64 {
            let span = raw
                .learning_starts
                .as_ref()
                .map(Spanned::span)
                .or(raw.batch_size.as_ref().map(Spanned::span));
            return Err(self.error(
                span.unwrap_or(0..0),
                key("learning_starts"),
                format!(
                    "{} agent steps cannot fill one batch of {}; allowed: at least batch_size",
                    d.learning_starts, d.batch_size
                ),
            ));
        }
        self.resolve_target_period(&raw, &mut d, &key)?;
        if let Some(o) = raw.optimizer {
            if o != d.optimizer {
                // Another optimiser: its own usual defaults unless given.
                let other = match o {
                    OptimizerKind::Adam => DdqnSettings::defaults(Some(Preset::DopamineV5)),
                    OptimizerKind::Rmsprop => DdqnSettings::defaults(Some(Preset::Nature)),
                };
                d.optimizer = o;
                d.lr = other.lr;
                d.optimizer_eps = other.optimizer_eps;
            }
        }
        if let Some(v) = &raw.lr {
            d.lr = self.positive(v, key("lr"), "a learning rate > 0")?;
        }
        if let Some(v) = &raw.optimizer_eps {
            d.optimizer_eps = self.positive(v, key("optimizer_eps"), "a value > 0")?;
        }
        d.loss = raw.loss.unwrap_or(d.loss);
        d.epsilon_start = unit(&raw.epsilon_start, "epsilon_start", d.epsilon_start)?;
        d.epsilon_end = unit(&raw.epsilon_end, "epsilon_end", d.epsilon_end)?;
        d.epsilon_decay_steps = raw.epsilon_decay_steps.unwrap_or(d.epsilon_decay_steps);
        d.apex_epsilons = raw.apex_epsilons.unwrap_or(d.apex_epsilons);
        d.eval_epsilon = unit(&raw.eval_epsilon, "eval_epsilon", d.eval_epsilon)?;
        if let Some(h) = &raw.hidden {
            if family == Family::Atari {
                let msg = "Atari agents use the Nature network; `hidden` applies to classic \
                           control only";
                return Err(self.error(h.span(), key("hidden"), msg.into()));
            }
            if h.get_ref().is_empty() || h.get_ref().iter().any(|&w| !(1..=65_536).contains(&w)) {
                let msg = "allowed: a non-empty list of widths in 1..=65536".to_owned();
                return Err(self.error(h.span(), key("hidden"), msg));
            }
            d.hidden = h.get_ref().clone();
        }
        Ok(d)
    }

    /// The target-network copy period with its unit (both given, or neither: the preset's),
    /// a whole number of updates when counted in agent steps.
    fn resolve_target_period(
        &self,
        raw: &RawDdqn,
        d: &mut DdqnSettings,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ManifestError> {
        match (&raw.target_period, raw.target_period_unit) {
            (None, None) => {}
            (Some(v), Some(u)) => {
                d.target_period = self.positive(v, key("target_period"), "an integer >= 1")?;
                d.target_period_unit = u;
            }
            (Some(v), None) => {
                let msg = "give its unit too: target_period_unit = \"agent_steps\" or \"updates\"";
                return Err(self.error(v.span(), key("target_period"), msg.into()));
            }
            (None, Some(_)) => {
                return Err(ManifestError::keyed(
                    self.path,
                    key("target_period_unit"),
                    "set target_period with its unit, e.g. target_period = 8000",
                ))
            }
        }
        if d.target_period_unit == PeriodUnit::AgentSteps
            && !d.target_period.is_multiple_of(d.update_period)
        {
            let span = raw
                .target_period
                .as_ref()
                .map(Spanned::span)
                .or(raw.update_period.as_ref().map(Spanned::span))
                .unwrap_or(0..0);
            let msg = format!(
                "{} agent steps is not a whole number of updates (update_period {}); allowed: a \
                 multiple of update_period",
                d.target_period, d.update_period
            );
            return Err(self.error(span, key("target_period"), msg));
        }
        Ok(())
    }

    fn resolve_runtime(
        &self,
        i: usize,
        family: Family,
        raw: RawRuntime,
    ) -> Result<RuntimeConfig, ManifestError> {
        let key = |k: &str| format!("train[{i}].runtime.{k}");
        let mut r = default_runtime(family);
        let fields: [(&Option<Spanned<usize>>, &str, &mut usize); 5] = [
            (&raw.actors, "actors", &mut r.actors),
            (&raw.envs_per_actor, "envs_per_actor", &mut r.envs_per_actor),
            (
                &raw.channel_capacity,
                "channel_capacity",
                &mut r.channel_capacity,
            ),
            (&raw.actor_threads, "actor_threads", &mut r.actor_threads),
            (
                &raw.learner_threads,
                "learner_threads",
                &mut r.learner_threads,
            ),
        ];
        for (value, name, target) in fields {
            if let Some(v) = value {
                *target = self.check_range(v, key(name), 1..4096, true, "an integer")?;
            }
        }
        if let Some(v) = &raw.sync_period {
            r.sync_period = self.positive(v, key("sync_period"), "updates >= 1")?;
        }
        Ok(r)
    }
}

/// The game of a checked name.
pub(super) fn game_id(family: Family, name: &str) -> GameId {
    match family {
        Family::Atari => GameId::Atari(Game::from_name(name).expect("checked")),
        Family::Classic => GameId::Classic(ClassicGame::from_name(name).expect("checked")),
    }
}
