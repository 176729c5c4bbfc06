//! Rows of the reinforcement-learning tables: baseline episodes and their summaries,
//! training games, evaluations during training, agent episodes under attack, and relative
//! rewards.

use serde::{Deserialize, Serialize};

use super::treated_row;
use crate::vocab::{Family, PolicyKind};

/// One evaluation episode of a baseline policy (`episodes.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRow {
    /// The `[[eval]]` job's name (a random baseline carries its agent job's name).
    pub job: String,
    /// `atari` or `classic`.
    pub family: Family,
    /// CamelCase game name.
    pub game: String,
    /// Atari preset, `none` for classic games.
    pub preset: String,
    /// Evaluation seed of the cell.
    pub seed: u64,
    /// The policy played.
    pub policy: PolicyKind,
    /// Episode index within the cell, from 0.
    pub episode: u32,
    /// Undiscounted sum of raw (unclipped) rewards.
    #[serde(rename = "return")]
    pub episode_return: f64,
    /// Emulator frames (Atari, no-op starts included) or steps (classic).
    pub frames: u64,
    /// The episode hit the frame cap or time limit rather than ending.
    pub truncated: bool,
}

/// What identifies a recorded episode: (game, preset, seed, policy, episode).
pub type EpisodeKey = (String, String, u64, PolicyKind, u32);

impl EpisodeRow {
    /// What identifies the episode for resuming.
    pub fn key(&self) -> EpisodeKey {
        (
            self.game.clone(),
            self.preset.clone(),
            self.seed,
            self.policy,
            self.episode,
        )
    }

    /// A row used only to learn the header.
    pub fn sample() -> Self {
        EpisodeRow {
            job: String::new(),
            family: Family::Atari,
            game: String::new(),
            preset: String::new(),
            seed: 0,
            policy: PolicyKind::Random,
            episode: 0,
            episode_return: 0.0,
            frames: 0,
            truncated: false,
        }
    }
}

/// Per game x preset x policy statistics of episode returns (`summary.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The `[[eval]]` job's name.
    pub job: String,
    /// `atari` or `classic`.
    pub family: Family,
    /// CamelCase game name.
    pub game: String,
    /// Atari preset, `none` for classic games.
    pub preset: String,
    /// The policy played.
    pub policy: PolicyKind,
    /// Episodes.
    pub n: usize,
    /// Mean return.
    pub mean: f64,
    /// Sample standard deviation (empty when n < 2).
    pub std: Option<f64>,
    /// Lower end of the Student-t 95% CI of the mean (empty when n < 2).
    pub ci95_low: Option<f64>,
    /// Upper end of the Student-t 95% CI of the mean (empty when n < 2).
    pub ci95_high: Option<f64>,
    /// Episodes cut by the frame cap or time limit.
    pub truncated: usize,
    /// Human-normalised score of the mean, `(mean - random) / (human - random)` with the
    /// Nature DQN table's scores ([`crate::env::scores`]); empty for games it lacks.
    pub hns: Option<f64>,
}

/// One training game (`train.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRow {
    /// `atari` or `classic`.
    pub family: Family,
    /// Game name.
    pub game: String,
    /// Atari preset, `none` for classic games.
    pub preset: String,
    /// Training seed.
    pub seed: u64,
    /// Agent steps counted when the game ended.
    pub step: u64,
    /// `step` x frame_skip.
    pub frames: u64,
    /// Game index in the cell, from 0.
    pub episode: u64,
    /// Raw score of the whole game (all lives, never clipped).
    #[serde(rename = "return")]
    pub episode_return: f64,
    /// Agent steps of the game.
    pub length: u64,
    /// Exploration epsilon of the game's last action.
    pub epsilon: f64,
    /// Mean loss of the updates since the previous row (empty when there were none).
    pub loss: Option<f64>,
    /// Mean `Q(s, a)` of those updates' batches.
    pub mean_q: Option<f64>,
    /// Agent steps per second of wall time, measured over at least the last 5 s.
    pub agent_steps_per_s: f64,
    /// Updates per second of wall time, measured over at least the last 5 s.
    pub updates_per_s: f64,
}

/// One evaluation episode during training (`train_eval.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainEvalRow {
    /// `atari` or `classic`.
    pub family: Family,
    /// Game name.
    pub game: String,
    /// Atari preset, `none` for classic games.
    pub preset: String,
    /// Training seed.
    pub seed: u64,
    /// Agent steps of training when the evaluation ran.
    pub step: u64,
    /// `step` x frame_skip.
    pub frames: u64,
    /// Episode index within this evaluation.
    pub episode: u32,
    /// Raw score (evaluation plays whole games, unclipped).
    #[serde(rename = "return")]
    pub episode_return: f64,
    /// Agent steps.
    pub length: u64,
    /// The evaluation epsilon.
    pub epsilon: f64,
    /// The episode hit the frame cap or time limit.
    pub truncated: bool,
}

impl TrainRow {
    /// A row used only to learn the header.
    pub fn sample() -> Self {
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
}

impl TrainEvalRow {
    /// A row used only to learn the header.
    pub fn sample() -> Self {
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
}

treated_row! {
    /// One evaluation episode of an agent under a defense and an attack (`rl_eval.csv`).
    pub struct AgentRow {
        /// The `[[eval]]` job's name.
        pub job: String,
        /// CamelCase game name.
        pub game: String,
        /// Atari preset.
        pub preset: String,
        /// The network file evaluated (relative to the run directory when trained in the run).
        pub checkpoint: String,
        /// Seed of the training run (empty for a network from a file).
        pub train_seed: Option<u64>,
        /// Seed of the evaluation.
        pub eval_seed: u64,
        ..Treatment,
        /// Probability of a random action per step.
        pub epsilon: f64,
        /// Episode cap in emulator frames.
        pub max_episode_frames: u64,
        /// Episode index within the cell, from 0.
        pub episode: u32,
        /// Undiscounted sum of raw (unclipped) rewards over the whole game.
        pub episode_return: f64 as "return",
        /// Emulator frames, no-op starts included.
        pub frames: u64,
        /// Agent steps.
        pub agent_steps: u64,
        /// The episode hit the frame cap.
        pub truncated: bool,
    }
}

treated_row! {
    /// Per game x defense x attack x lambda of one `[[eval]]` agent job
    /// (`relative_reward.csv`).
    pub struct RelativeRow {
        /// The `[[eval]]` job's name.
        pub job: String,
        /// CamelCase game name.
        pub game: String,
        /// Atari preset.
        pub preset: String,
        ..Treatment,
        /// Probability of a random action per step.
        pub epsilon: f64,
        /// Distinct networks (training seeds or files) pooled.
        pub networks: usize,
        /// Distinct evaluation seeds pooled.
        pub eval_seeds: usize,
        /// Episodes.
        pub n: usize,
        /// Mean return.
        pub mean: f64,
        /// Sample standard deviation of the returns (empty when n < 2).
        pub std: Option<f64>,
        /// Lower end of the Student-t 95% CI of the mean (empty when n < 2).
        pub ci95_low: Option<f64>,
        /// Upper end of the Student-t 95% CI of the mean (empty when n < 2).
        pub ci95_high: Option<f64>,
        /// Mean return of the dense network without attack (lambda 0), same job, game and
        /// networks (empty until those episodes exist).
        pub dense_clean_mean: Option<f64>,
        /// Mean return of the random policy, same game, settings and seeds.
        pub random_mean: Option<f64>,
        /// Random-policy episodes behind `random_mean`.
        pub random_n: usize,
        /// `mean / dense_clean_mean` (Dhillon et al. 2018).
        pub relative_reward: Option<f64>,
        /// `(mean - random_mean) / (dense_clean_mean - random_mean)`; empty when the dense
        /// clean mean is not above the random mean, where it would be meaningless.
        pub normalized_reward: Option<f64>,
        /// Human-normalised score of the mean, `(mean - random) / (human - random)` with the
        /// Nature DQN table's scores ([`crate::env::scores`]); empty for games it lacks.
        pub hns: Option<f64>,
        /// Under attack, where the job ran two attacks or more on the same defense and
        /// lambda: whether this attack's mean return is the lowest of them (the per-attack
        /// stand-in for a worst case, which is not defined per episode); empty otherwise.
        pub worst_attack: Option<bool>,
    }
}
