//! An actor thread: builds its environments inside the thread (ALE handles are not `Send`),
//! acts epsilon-greedily with a local copy of the online network, and sends one message per
//! round.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use crossbeam::channel::{SendTimeoutError, Sender};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::board::Board;
use super::{set_torch_threads, Frame, SlotRole, Timeline};
use crate::env::Environment;
use crate::nn::{Architecture, Model};
use crate::rl::{act, Exploration};
use crate::seed::derive;

/// Builds the environment of a slot; called inside the actor thread that steps it.
pub type EnvFactory<'a> = dyn Fn(usize) -> Result<Box<dyn Environment>> + Sync + 'a;

/// One call an actor made on a slot's environment since that environment's last full
/// restart (a reset after game over or truncation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvCall {
    /// `reset(seed)`.
    Reset(u64),
    /// `step(action)`.
    Step(u32),
}

/// What a slot carries from one run of the runtime to the next (a checkpoint): making the
/// same calls on a new environment restores its state exactly, emulator and preprocessing
/// included, because environments are deterministic given their calls.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotState {
    /// Episodes begun by the slot (its next reset seed derives from this count).
    pub episodes: u64,
    /// The slot's exploration generator.
    pub rng: ChaCha8Rng,
    /// The calls since the environment's last full restart.
    pub calls: Vec<EnvCall>,
    /// Whether the slot is mid-episode (otherwise its next round resets).
    pub has_obs: bool,
}

/// What every actor shares.
pub struct ActorSpec<'a> {
    /// The Q-network (its weights arrive as snapshots).
    pub arch: Architecture,
    /// How slots explore.
    pub exploration: Exploration,
    /// Seed of the episode seeds and exploration draws (differs between a run and its
    /// resumptions).
    pub seed: u64,
    /// Builds a slot's environment.
    pub make_env: &'a EnvFactory<'a>,
    /// The slots' states at the end of the previous run (empty: fresh slots).
    pub resume: &'a [SlotState],
}

/// One slot's step in a round.
#[derive(Debug)]
pub struct EnvOutcome<T> {
    /// The environment slot (actor x envs per actor + env).
    pub slot: usize,
    /// The newest frame of a fresh episode's first observation, when the slot reset before
    /// acting.
    pub start_frame: Option<Vec<T>>,
    /// The action taken.
    pub action: u8,
    /// The learner's reward (clipped when the preset says so).
    pub reward: f32,
    /// The game's raw score change.
    pub score: f64,
    /// The step ended the learner's episode by the task's rules.
    pub terminated: bool,
    /// The step hit the frame cap or time limit.
    pub truncated: bool,
    /// The real game is over (a lost life can terminate without ending the game).
    pub game_over: bool,
    /// The newest frame of the next observation.
    pub next_frame: Vec<T>,
    /// The exploration epsilon the action was drawn with.
    pub epsilon: f64,
}

/// One actor's round.
#[derive(Debug)]
pub struct RoundMsg<T> {
    /// The round.
    pub round: u64,
    /// Active slots in slot order.
    pub outcomes: Vec<EnvOutcome<T>>,
}

/// Per-slot state inside an actor.
struct Slot<T> {
    index: usize,
    env: Box<dyn Environment>,
    /// The stacked observation to act from, `None` when the slot must reset first.
    obs: Option<Vec<T>>,
    episodes: u64,
    rng: ChaCha8Rng,
    calls: Vec<EnvCall>,
}

impl<T: Frame> Slot<T> {
    /// Plays `action`, records the call, and returns what happened; the slot keeps the new
    /// observation unless the episode ended.
    fn step(
        &mut self,
        action: usize,
        start_frame: Option<Vec<T>>,
        epsilon: f64,
        frame_len: usize,
    ) -> Result<EnvOutcome<T>> {
        let step = self.env.step(action);
        self.calls.push(EnvCall::Step(action as u32));
        if step.game_over || step.truncated {
            // The next reset restarts the emulator: nothing before it matters.
            self.calls.clear();
        }
        let stack = T::unpack(step.obs)
            .ok_or_else(|| anyhow!("the environment returned the wrong kind of observation"))?;
        let next_frame = newest(&stack, frame_len);
        let ended = step.terminated || step.truncated;
        self.obs = (!ended).then_some(stack);
        Ok(EnvOutcome {
            slot: self.index,
            start_frame,
            action: action as u8,
            reward: step.reward as f32,
            score: step.score,
            terminated: step.terminated,
            truncated: step.truncated,
            game_over: step.game_over || step.truncated,
            next_frame,
            epsilon,
        })
    }
}

fn newest<T: Copy>(stack: &[T], frame_len: usize) -> Vec<T> {
    stack[stack.len() - frame_len..].to_vec()
}

/// Everything one actor thread needs.
pub(super) struct ActorRun<'a, T> {
    pub actor: usize,
    pub envs: usize,
    pub threads: usize,
    pub frame_len: usize,
    pub timeline: Timeline,
    pub spec: &'a ActorSpec<'a>,
    pub board: &'a Board,
    pub tx: Sender<RoundMsg<T>>,
    pub sent: &'a AtomicU64,
    /// Where the actor leaves its slots' states when its rounds are done.
    pub out: &'a std::sync::Mutex<Vec<Option<SlotState>>>,
}

impl<T: Frame> ActorRun<'_, T> {
    /// The actor's loop; returns when its rounds are done or the board stops.
    pub fn run(self) -> Result<()> {
        set_torch_threads(self.threads);
        let spec = self.spec;
        let slots = self.timeline.slots as usize;
        let mut state = self.build_slots()?;
        let mut model = Model::new(spec.arch.clone(), Device::Cpu);
        let mut held = None;
        let obs_shape = spec.arch.input_shape();
        for round in 0..self.timeline.rounds() {
            let version = self.timeline.version_for_round(round);
            if held != Some(version) {
                match self.board.wait(self.actor, version) {
                    Ok(snapshot) => snapshot.load_into(&mut model),
                    Err(_) => return Ok(()),
                }
                held = Some(version);
            }
            let roles: Vec<SlotRole> = state
                .iter()
                .map(|s| self.timeline.role(round, s.index))
                .collect();
            let mut start_frames = Vec::with_capacity(state.len());
            let mut inputs = Vec::new();
            let mut active = Vec::new();
            for (s, role) in state.iter_mut().zip(&roles) {
                if *role == SlotRole::Idle {
                    continue;
                }
                let mut start_frame = None;
                if s.obs.is_none() {
                    let seed = derive(derive(spec.seed, "episode", s.index as u64), "", s.episodes);
                    s.episodes += 1;
                    s.calls.push(EnvCall::Reset(seed));
                    let obs = T::unpack(s.env.reset(seed)?).ok_or_else(|| {
                        anyhow!("the environment returned the wrong kind of observation")
                    })?;
                    start_frame = Some(newest(&obs, self.frame_len));
                    s.obs = Some(obs);
                }
                inputs.extend_from_slice(s.obs.as_ref().expect("set above"));
                active.push(s.index);
                start_frames.push(start_frame);
            }
            let greedy = greedy_actions(&model, &inputs, active.len(), &obs_shape);
            let mut msg = RoundMsg {
                round,
                outcomes: Vec::with_capacity(active.len()),
            };
            let mut k = 0;
            for (s, role) in state.iter_mut().zip(&roles) {
                let step_index = match *role {
                    SlotRole::Idle => continue,
                    SlotRole::Train(step) => step,
                };
                let epsilon = spec.exploration.epsilon(s.index, slots, step_index);
                let actions = s.env.num_actions();
                let action =
                    act::explore(&mut s.rng, epsilon, actions).unwrap_or(greedy[k] as usize);
                msg.outcomes.push(s.step(
                    action,
                    start_frames[k].take(),
                    epsilon,
                    self.frame_len,
                )?);
                k += 1;
            }
            if !self.send(msg) {
                return Ok(());
            }
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for s in state {
            out[s.index] = Some(SlotState {
                episodes: s.episodes,
                rng: s.rng,
                calls: s.calls,
                has_obs: s.obs.is_some(),
            });
        }
        Ok(())
    }

    /// The actor's slots: new ones, or those `spec.resume` saved.
    fn build_slots(&self) -> Result<Vec<Slot<T>>> {
        let spec = self.spec;
        (0..self.envs)
            .map(|e| {
                let index = self.actor * self.envs + e;
                let env = (spec.make_env)(index)
                    .with_context(|| format!("building the environment of slot {index}"))?;
                match spec.resume.get(index) {
                    None => Ok(Slot {
                        index,
                        env,
                        obs: None,
                        episodes: 0,
                        rng: ChaCha8Rng::seed_from_u64(derive(spec.seed, "explore", index as u64)),
                        calls: Vec::new(),
                    }),
                    Some(saved) => restore(index, env, saved),
                }
            })
            .collect()
    }

    /// Sends a round, blocking while the channel is full; `false` when the run stopped.
    fn send(&self, mut msg: RoundMsg<T>) -> bool {
        loop {
            match self.tx.send_timeout(msg, Duration::from_millis(100)) {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Release);
                    return true;
                }
                Err(SendTimeoutError::Timeout(m)) => {
                    if self.board.stopped() {
                        return false;
                    }
                    msg = m;
                }
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }
}

/// A slot whose new environment has replayed `saved.calls`, so it stands where the saved
/// one stood.
fn restore<T: Frame>(
    index: usize,
    mut env: Box<dyn Environment>,
    saved: &SlotState,
) -> Result<Slot<T>> {
    let mut last = None;
    for call in &saved.calls {
        last = Some(match *call {
            EnvCall::Reset(seed) => env.reset(seed)?,
            EnvCall::Step(a) => {
                if a as usize >= env.num_actions() {
                    anyhow::bail!("slot {index}: saved action {a} is out of range");
                }
                env.step(a as usize).obs
            }
        });
    }
    let obs = match (saved.has_obs, last) {
        (false, _) => None,
        (true, Some(obs)) => Some(
            T::unpack(obs)
                .ok_or_else(|| anyhow!("the environment returned the wrong kind of observation"))?,
        ),
        (true, None) => anyhow::bail!("slot {index}: mid-episode state without its calls"),
    };
    Ok(Slot {
        index,
        env,
        obs,
        episodes: saved.episodes,
        rng: saved.rng.clone(),
        calls: saved.calls.clone(),
    })
}

/// Greedy actions of `n` stacked observations in one forward pass.
fn greedy_actions<T: Frame>(model: &Model, inputs: &[T], n: usize, shape: &[i64]) -> Vec<i64> {
    if n == 0 {
        return Vec::new();
    }
    let dims: Vec<i64> = std::iter::once(n as i64)
        .chain(shape.iter().copied())
        .collect();
    act::greedy_dense(model, &Tensor::from_slice(inputs).view(&dims[..]))
}
