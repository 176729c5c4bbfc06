//! The one episode loop: whole games played by a [`Policy`], for random baselines, agents
//! under attack and the evaluation phases of training.

use anyhow::{bail, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::env::{Environment, Observation, Step};

/// Chooses an action for each observation of an episode.
pub trait Policy {
    /// The index of the action to take on `obs`, among `actions`.
    fn action(&mut self, obs: &Observation, actions: usize) -> Result<usize>;
}

/// Uniformly random actions from its own generator.
pub struct RandomPolicy(pub ChaCha8Rng);

impl Policy for RandomPolicy {
    fn action(&mut self, _obs: &Observation, actions: usize) -> Result<usize> {
        Ok(self.0.gen_range(0..actions))
    }
}

/// With probability `epsilon` a uniformly random action, else the `greedy` rule's; both
/// draws come from `rng` (the probability first, then the action when exploring).
pub struct EpsilonGreedy<G> {
    /// The exploration generator.
    pub rng: ChaCha8Rng,
    /// Probability of a random action.
    pub epsilon: f64,
    /// The greedy action of an observation.
    pub greedy: G,
}

impl<G: FnMut(&Observation) -> Result<usize>> Policy for EpsilonGreedy<G> {
    fn action(&mut self, obs: &Observation, actions: usize) -> Result<usize> {
        if self.rng.gen::<f64>() < self.epsilon {
            Ok(self.rng.gen_range(0..actions))
        } else {
            (self.greedy)(obs)
        }
    }
}

/// An observation as a batch of one, shaped `shape` (its first dimension 1).
pub fn observation_tensor(obs: &Observation, shape: &[i64]) -> Tensor {
    match obs {
        Observation::Pixels(v) => Tensor::from_slice(v).view(shape),
        Observation::Features(v) => Tensor::from_slice(v).view(shape),
    }
}

/// An Atari observation's pixels, or an error naming what came instead.
pub fn pixels(obs: &Observation) -> Result<&[u8]> {
    match obs {
        Observation::Pixels(p) => Ok(p),
        Observation::Features(_) => bail!("an Atari environment returned features, not pixels"),
    }
}

/// One finished episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    /// Sum of the game's raw scores.
    pub score: f64,
    /// Emulator frames (Atari, no-op starts included) or simulator steps (classic).
    pub frames: u64,
    /// Actions taken.
    pub agent_steps: u64,
    /// Cut by the frame cap or time limit.
    pub truncated: bool,
}

/// Plays one whole game from `env.reset(reset_seed)` until it is over or cut (a lost life
/// never ends it here); `on_step` sees every step.
pub fn play(
    env: &mut dyn Environment,
    reset_seed: u64,
    policy: &mut impl Policy,
    mut on_step: impl FnMut(&Step),
) -> Result<Episode> {
    let mut obs = env.reset(reset_seed)?;
    let (mut score, mut agent_steps) = (0.0, 0u64);
    loop {
        let action = policy.action(&obs, env.num_actions())?;
        let step = env.step(action);
        score += step.score;
        agent_steps += 1;
        on_step(&step);
        if step.game_over || step.truncated {
            return Ok(Episode {
                score,
                frames: env.episode_frames(),
                agent_steps,
                truncated: step.truncated,
            });
        }
        obs = step.obs;
    }
}
