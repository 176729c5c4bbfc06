//! What a training checkpoint holds besides its tensors and replay file, how a learner is
//! restored from one, and how rows written after it are cut before training continues.

use std::path::Path;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::window::Window;
use crate::record::{read_rows, write_table};
use crate::runtime::{EnvCall, Frame, GameTally, LearnerState, SlotState};
use crate::table::{TrainEvalRow, TrainRow};

/// What a checkpoint's description (`state-<step>.toml`) holds besides the tensors and the
/// replay file: every counter and generator the rest of the run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointInfo {
    pub(super) cell: String,
    pub(super) step: u64,
    pub(super) updates: u64,
    pub(super) finished: bool,
    pub(super) tensors: String,
    pub(super) replay: String,
    /// The replay sampler's ChaCha8 generator.
    pub(super) rng: RngRecord,
    /// Update statistics since the last train row: loss sum, mean-Q sum, updates.
    pub(super) window_loss: f64,
    pub(super) window_q: f64,
    pub(super) window_n: u64,
    /// Per slot: the game in progress.
    pub(super) games: Vec<GameTally>,
    /// Per slot: what its environment and explorer need to continue exactly.
    pub(super) slots: Vec<SlotRecord>,
}

/// A ChaCha8 generator's state: seed (hex), stream, word position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct RngRecord {
    pub(super) seed: String,
    pub(super) stream: String,
    pub(super) word_pos: String,
}

impl RngRecord {
    pub(super) fn of(rng: &ChaCha8Rng) -> Self {
        RngRecord {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream().to_string(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub(super) fn restore(&self) -> Result<ChaCha8Rng> {
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
pub(super) struct SlotRecord {
    pub(super) episodes: u64,
    pub(super) has_obs: bool,
    pub(super) rng: RngRecord,
    pub(super) calls: String,
}

impl SlotRecord {
    pub(super) fn of(s: &SlotState) -> Self {
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

    pub(super) fn restore(&self) -> Result<SlotState> {
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

/// Loads a checkpoint into the learner, the row window and the slots.
pub(super) fn restore<T: Frame>(
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

/// Row types that carry the training step they were written at.
pub(super) trait AtStep {
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
pub(super) fn cut_rows_after<R>(path: &Path, step: u64) -> Result<usize>
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
