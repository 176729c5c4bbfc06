//! The learner: reads the actors' rounds in a fixed order, fills replay, updates on schedule,
//! publishes snapshots, and calls the experiment's hooks (CSV rows, evaluation, checkpoints).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use crossbeam::channel::{bounded, Receiver, RecvTimeoutError};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::actor::{ActorRun, ActorSpec, RoundMsg, SlotState};
use super::board::{Board, Snapshot};
use super::{set_torch_threads, Frame, RuntimeConfig, SlotRole, Timeline};
use crate::rl::{Batch, DoubleDqn, Replay, UpdateStats};

/// What the learner owns between runs (and what a checkpoint saves).
pub struct LearnerState<T> {
    /// Networks and optimiser.
    pub ddqn: DoubleDqn,
    /// The replay buffer (saved whole in training checkpoints).
    pub replay: Replay<T>,
    /// Draws the replay batches.
    pub rng: ChaCha8Rng,
    /// Agent steps counted so far.
    pub steps: u64,
    /// Transitions per update.
    pub batch_size: usize,
    /// Per slot: the game in progress (empty before the first run: all idle).
    pub games: Vec<GameTally>,
}

/// A finished game of one slot (all its lives), in agent steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeEnd {
    /// The environment slot.
    pub slot: usize,
    /// Agent steps counted when the game ended (this step included).
    pub step: u64,
    /// Sum of the game's raw scores.
    pub episode_return: f64,
    /// Agent steps the game lasted.
    pub length: u64,
    /// Updates done when the game ended.
    pub updates: u64,
    /// Epsilon of the last action.
    pub epsilon: f64,
    /// The game hit the frame cap or time limit.
    pub truncated: bool,
}

/// What the hooks see after each counted step.
pub struct StepContext<'a> {
    /// The update done after this step, if one was due.
    pub update: Option<UpdateStats>,
    sent: &'a [AtomicU64],
    received: &'a [u64],
}

impl StepContext<'_> {
    /// The most rounds any actor has sent that the learner has not read yet.
    pub fn rounds_in_flight(&self) -> u64 {
        self.sent
            .iter()
            .zip(self.received)
            .map(|(s, r)| s.load(Ordering::Acquire).saturating_sub(*r))
            .max()
            .unwrap_or(0)
    }
}

/// The experiment's side of training.
pub trait Hooks<T> {
    /// A game ended.
    fn on_episode(&mut self, end: &EpisodeEnd) -> Result<()>;
    /// Called after every counted agent step and its update, if any.
    fn after_step(&mut self, learner: &mut LearnerState<T>, ctx: &StepContext) -> Result<()>;
}

/// Per-slot game bookkeeping: a game spans episodes when lives end them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GameTally {
    /// A game is in progress.
    pub in_game: bool,
    /// Raw score so far.
    pub score: f64,
    /// Agent steps so far.
    pub length: u64,
}

/// Runs the actors and the learner until `timeline.end_step` agent steps are counted;
/// returns the slots' states, from which a later run continues exactly (`spec.resume`).
///
/// The learner runs on the calling thread; actors on scoped threads. The first error or
/// panic of any thread stops all of them and is returned.
pub fn run<T: Frame, H: Hooks<T>>(
    config: &RuntimeConfig,
    timeline: Timeline,
    spec: &ActorSpec,
    learner: &mut LearnerState<T>,
    hooks: &mut H,
) -> Result<Vec<SlotState>> {
    if config.actors == 0 || config.envs_per_actor == 0 {
        bail!("the runtime needs at least one actor with at least one environment");
    }
    let board = Board::new(
        config.actors,
        timeline.base_version(),
        Snapshot::of(&learner.ddqn.online),
    );
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let fail = |e: anyhow::Error| {
        let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        board.stop();
    };
    if !spec.resume.is_empty() && spec.resume.len() != config.slots() {
        bail!(
            "{} saved slot states for {} environment slots",
            spec.resume.len(),
            config.slots()
        );
    }
    let sent: Vec<AtomicU64> = (0..config.actors).map(|_| AtomicU64::new(0)).collect();
    let out: Mutex<Vec<Option<SlotState>>> = Mutex::new(vec![None; config.slots()]);
    let frame_len = learner.replay.frame_len();
    let previous_threads = tch::get_num_threads();
    std::thread::scope(|scope| {
        let mut receivers = Vec::new();
        for (actor, sent) in sent.iter().enumerate() {
            let (tx, rx) = bounded(config.channel_capacity.max(1));
            receivers.push(rx);
            let run = ActorRun {
                actor,
                envs: config.envs_per_actor,
                threads: config.actor_threads,
                frame_len,
                timeline,
                spec,
                board: &board,
                tx,
                sent,
                out: &out,
            };
            let fail = &fail;
            std::thread::Builder::new()
                .name(format!("actor-{actor}"))
                .spawn_scoped(scope, move || {
                    match catch_unwind(AssertUnwindSafe(|| run.run())) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => fail(e.context(format!("actor {actor}"))),
                        Err(panic) => {
                            fail(anyhow!("actor {actor} panicked: {}", panic_text(&panic)))
                        }
                    }
                })
                .expect("spawning an actor thread");
        }
        set_torch_threads(config.learner_threads);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            learn(&timeline, &board, &receivers, &sent, learner, hooks)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(e),
            Err(panic) => fail(anyhow!("the learner panicked: {}", panic_text(&panic))),
        }
        // Normal end: every actor has finished its rounds. Otherwise wake them to exit.
        board.stop();
    });
    tch::set_num_threads(previous_threads);
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| anyhow!("slot {i} did not report its state")))
        .collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Receives actor `a`'s next round, waking every 100 ms to check for a stop.
fn receive<T>(board: &Board, rx: &Receiver<RoundMsg<T>>, actor: usize) -> Result<RoundMsg<T>> {
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(msg) => return Ok(msg),
            Err(RecvTimeoutError::Timeout) => {
                if board.stopped() {
                    bail!("stopped while waiting for actor {actor}");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                // An actor that failed has recorded its error; give it a moment to land.
                std::thread::sleep(Duration::from_millis(50));
                bail!("actor {actor} stopped before its last round");
            }
        }
    }
}

fn learn<T: Frame, H: Hooks<T>>(
    timeline: &Timeline,
    board: &Board,
    receivers: &[Receiver<RoundMsg<T>>],
    sent: &[AtomicU64],
    learner: &mut LearnerState<T>,
    hooks: &mut H,
) -> Result<()> {
    if learner.games.is_empty() {
        learner.games = vec![GameTally::default(); timeline.slots as usize];
    }
    let mut received = vec![0u64; receivers.len()];
    let mut batch = Batch::default();
    let sync_period = timeline.sync_period;
    for round in 0..timeline.rounds() {
        for (actor, rx) in receivers.iter().enumerate() {
            let msg = receive(board, rx, actor)?;
            received[actor] += 1;
            if msg.round != round {
                bail!(
                    "actor {actor} sent round {} when {round} was due",
                    msg.round
                );
            }
            for out in msg.outcomes {
                let game = &mut learner.games[out.slot];
                if let Some(frame) = &out.start_frame {
                    learner.replay.begin_episode(out.slot, frame);
                    if !game.in_game {
                        // A new game (not a new life of the same game).
                        *game = GameTally {
                            in_game: true,
                            score: 0.0,
                            length: 0,
                        };
                    }
                }
                learner.replay.record_step(
                    out.slot,
                    out.action,
                    out.reward,
                    out.terminated,
                    &out.next_frame,
                );
                game.score += out.score;
                game.length += 1;
                let counted = matches!(timeline.role(round, out.slot), SlotRole::Train(_));
                if out.game_over {
                    game.in_game = false;
                }
                if !counted {
                    continue;
                }
                learner.steps += 1;
                if out.game_over {
                    hooks.on_episode(&EpisodeEnd {
                        slot: out.slot,
                        step: learner.steps,
                        episode_return: game.score,
                        length: game.length,
                        updates: learner.ddqn.updates(),
                        epsilon: out.epsilon,
                        truncated: out.truncated,
                    })?;
                }
                let update = learner.ddqn.after_step(
                    &timeline.cadence,
                    learner.steps,
                    &learner.replay,
                    learner.batch_size,
                    &mut learner.rng,
                    &mut batch,
                );
                if update.is_some() {
                    let u = learner.ddqn.updates();
                    if u.is_multiple_of(sync_period) {
                        board.publish(u / sync_period, Snapshot::of(&learner.ddqn.online));
                    }
                }
                let ctx = StepContext {
                    update,
                    sent,
                    received: &received,
                };
                hooks.after_step(learner, &ctx)?;
            }
        }
    }
    Ok(())
}
