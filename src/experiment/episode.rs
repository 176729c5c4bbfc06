//! The one episode loop: whole games played in lockstep by a [`Lockstep`] policy, for random
//! baselines, agents under attack and the evaluation phases of training.
//!
//! Up to one episode per environment is in play at a time; at every step the policy chooses
//! the actions of all of them at once (one batched forward for a network). Each episode owns
//! its state (its generators), made from its index alone by [`Lockstep::start`], so what it
//! does is the same whatever ran beside it, and finished episodes are handed back in episode
//! order whatever order they ended in.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Result};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::env::{Environment, Observation, Step};

/// One episode in play: its index, its latest observation and the policy's state for it.
pub struct Lane<S> {
    /// The episode's index in its cell.
    pub episode: u32,
    /// What the policy acts on next.
    pub obs: Observation,
    /// The policy's own state for this episode (its generators).
    pub state: S,
    env: usize,
    score: f64,
    agent_steps: u64,
    started: Instant,
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

/// A finished episode with its index, its policy state and its wall time.
pub struct Finished<S> {
    /// The episode's index in its cell.
    pub episode: u32,
    /// What it scored and how long it ran.
    pub result: Episode,
    /// The policy's state for it, as it ended.
    pub state: S,
    /// Wall seconds from its reset to its end.
    pub seconds: f64,
}

/// A policy that plays several episodes at once, and what is done with them.
pub trait Lockstep {
    /// The policy's state for one episode.
    type State;
    /// Starts `episode`: the seed its environment resets with, and its state.
    fn start(&mut self, episode: u32) -> (u64, Self::State);
    /// The action of every lane, in the lanes' order (indices into `actions` actions).
    fn actions(&mut self, lanes: &mut [Lane<Self::State>], actions: usize) -> Result<Vec<usize>>;
    /// Sees every step of every episode (progress, recording): `episode` took `action` on
    /// `env`, which returned `step`.
    fn step(
        &mut self,
        _episode: u32,
        _env: &dyn Environment,
        _action: usize,
        _step: &Step,
    ) -> Result<()> {
        Ok(())
    }
    /// Takes a finished episode; called in the order of the episodes given to
    /// [`play_lockstep`].
    fn finished(&mut self, done: Finished<Self::State>) -> Result<()>;
}

/// Plays `episodes` with `policy`, one in play per environment of `envs`, each from
/// `env.reset(seed)` until the game is over or cut (a lost life never ends it here).
pub fn play_lockstep<P: Lockstep>(
    envs: &mut [Box<dyn Environment>],
    episodes: &[u32],
    policy: &mut P,
) -> Result<()> {
    if envs.is_empty() && !episodes.is_empty() {
        bail!("no environment to play {} episodes on", episodes.len());
    }
    let mut queue = episodes.iter().copied();
    let mut lanes: Vec<Lane<P::State>> = Vec::with_capacity(envs.len());
    for (env, episode) in (0..envs.len()).zip(queue.by_ref()) {
        lanes.push(start(envs, env, episode, policy)?);
    }
    let mut finished: BTreeMap<u32, Finished<P::State>> = BTreeMap::new();
    let mut handed = 0usize;
    while !lanes.is_empty() {
        let n = envs[lanes[0].env].num_actions();
        let chosen = policy.actions(&mut lanes, n)?;
        if chosen.len() != lanes.len() {
            bail!("{} actions for {} episodes", chosen.len(), lanes.len());
        }
        let mut i = 0;
        for action in chosen {
            let lane = &mut lanes[i];
            let env = &mut envs[lane.env];
            let step = env.step(action);
            policy.step(lane.episode, &**env, action, &step)?;
            lane.score += step.score;
            lane.agent_steps += 1;
            if !(step.game_over || step.truncated) {
                lane.obs = step.obs;
                i += 1;
                continue;
            }
            let result = Episode {
                score: lane.score,
                frames: env.episode_frames(),
                agent_steps: lane.agent_steps,
                truncated: step.truncated,
            };
            let env = lane.env;
            let ended = match queue.next() {
                Some(next) => {
                    i += 1;
                    std::mem::replace(&mut lanes[i - 1], start(envs, env, next, policy)?)
                }
                None => lanes.remove(i),
            };
            finished.insert(
                ended.episode,
                Finished {
                    episode: ended.episode,
                    result,
                    seconds: ended.started.elapsed().as_secs_f64(),
                    state: ended.state,
                },
            );
        }
        while let Some(done) = episodes.get(handed).and_then(|e| finished.remove(e)) {
            policy.finished(done)?;
            handed += 1;
        }
    }
    Ok(())
}

/// Resets environment `env` for `episode`.
fn start<P: Lockstep>(
    envs: &mut [Box<dyn Environment>],
    env: usize,
    episode: u32,
    policy: &mut P,
) -> Result<Lane<P::State>> {
    let (seed, state) = policy.start(episode);
    let started = Instant::now();
    let obs = envs[env].reset(seed)?;
    Ok(Lane {
        episode,
        obs,
        state,
        env,
        score: 0.0,
        agent_steps: 0,
        started,
    })
}

/// Epsilon-greedy choices for `lanes`: each lane's `explore(state)` generator draws the
/// probability first, then the action when exploring. Returns the actions chosen so far
/// (`None` where the greedy action is wanted) and the indices of those lanes.
pub fn explore<S>(
    lanes: &mut [Lane<S>],
    epsilon: f64,
    actions: usize,
    explore: impl Fn(&mut S) -> &mut ChaCha8Rng,
) -> (Vec<Option<usize>>, Vec<usize>) {
    let mut chosen = vec![None; lanes.len()];
    let mut greedy = Vec::new();
    for (i, lane) in lanes.iter_mut().enumerate() {
        chosen[i] = crate::rl::act::explore(explore(&mut lane.state), epsilon, actions);
        if chosen[i].is_none() {
            greedy.push(i);
        }
    }
    (chosen, greedy)
}

/// The observations of `lanes[i]` for `i` in `which`, as one batch shaped
/// `[which.len(), shape...]`: bytes for pixels, floats for features.
pub fn batch_of<S>(lanes: &[Lane<S>], which: &[usize], shape: &[i64]) -> Result<Tensor> {
    let dims: Vec<i64> = std::iter::once(which.len() as i64)
        .chain(shape.iter().copied())
        .collect();
    let Some(&first) = which.first() else {
        bail!("an empty batch of observations");
    };
    match &lanes[first].obs {
        Observation::Pixels(_) => {
            let mut all = Vec::new();
            for &i in which {
                all.extend_from_slice(pixels(&lanes[i].obs)?);
            }
            Ok(Tensor::from_slice(&all).view(dims.as_slice()))
        }
        Observation::Features(_) => {
            let mut all = Vec::new();
            for &i in which {
                match &lanes[i].obs {
                    Observation::Features(f) => all.extend_from_slice(f),
                    Observation::Pixels(_) => bail!("an environment mixed pixels and features"),
                }
            }
            Ok(Tensor::from_slice(&all).view(dims.as_slice()))
        }
    }
}

/// An Atari observation's pixels, or an error naming what came instead.
pub fn pixels(obs: &Observation) -> Result<&[u8]> {
    match obs {
        Observation::Pixels(p) => Ok(p),
        Observation::Features(_) => bail!("an Atari environment returned features, not pixels"),
    }
}

/// Fills `chosen`'s gaps, in order, with `greedy_actions`.
pub fn fill(
    chosen: Vec<Option<usize>>,
    greedy_actions: impl IntoIterator<Item = usize>,
) -> Vec<usize> {
    let mut greedy_actions = greedy_actions.into_iter();
    chosen
        .into_iter()
        .map(|c| {
            c.or_else(|| greedy_actions.next())
                .expect("one greedy action per lane without an exploring one")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvError;
    use rand::{Rng, SeedableRng};

    /// A game whose episode lasts as long as its reset seed says, scoring each action taken.
    struct Countdown {
        left: u64,
        frames: u64,
    }

    impl Environment for Countdown {
        fn reset(&mut self, seed: u64) -> Result<Observation, EnvError> {
            (self.left, self.frames) = (1 + seed % 7, 0);
            Ok(Observation::Features(vec![self.left as f32]))
        }
        fn step(&mut self, action: usize) -> Step {
            self.left -= 1;
            self.frames += 2;
            Step {
                obs: Observation::Features(vec![self.left as f32]),
                reward: 0.0,
                score: action as f64,
                terminated: self.left == 0,
                truncated: false,
                game_over: self.left == 0,
                lives: 0,
                frames: 2,
            }
        }
        fn num_actions(&self) -> usize {
            5
        }
        fn observation_shape(&self) -> Vec<usize> {
            vec![1]
        }
        fn episode_frames(&self) -> u64 {
            self.frames
        }
    }

    /// Random actions from each episode's own generator; records what finishes.
    struct Recorder(Vec<(u32, Episode)>);

    impl Lockstep for Recorder {
        type State = ChaCha8Rng;
        fn start(&mut self, episode: u32) -> (u64, ChaCha8Rng) {
            (
                episode as u64 * 3,
                ChaCha8Rng::seed_from_u64(episode as u64),
            )
        }
        fn actions(&mut self, lanes: &mut [Lane<ChaCha8Rng>], n: usize) -> Result<Vec<usize>> {
            Ok(lanes.iter_mut().map(|l| l.state.gen_range(0..n)).collect())
        }
        fn finished(&mut self, done: Finished<ChaCha8Rng>) -> Result<()> {
            self.0.push((done.episode, done.result));
            Ok(())
        }
    }

    fn played(lanes: usize, episodes: &[u32]) -> Vec<(u32, Episode)> {
        let mut envs: Vec<Box<dyn Environment>> = (0..lanes)
            .map(|_| Box::new(Countdown { left: 0, frames: 0 }) as Box<dyn Environment>)
            .collect();
        let mut rec = Recorder(Vec::new());
        play_lockstep(&mut envs, episodes, &mut rec).unwrap();
        rec.0
    }

    #[test]
    fn episodes_finish_in_their_given_order_with_the_same_results_for_any_number_of_lanes() {
        let episodes = [0, 1, 2, 4, 5, 6, 7, 9, 10, 11];
        let one = played(1, &episodes);
        let order: Vec<u32> = one.iter().map(|(e, _)| *e).collect();
        assert_eq!(order, episodes);
        // Lengths differ (1 + 3e mod 7 steps), so lanes finish out of order.
        let lengths: std::collections::BTreeSet<u64> =
            one.iter().map(|(_, r)| r.agent_steps).collect();
        assert!(lengths.len() > 3, "{lengths:?}");
        assert!(one.iter().all(|(_, r)| r.frames == 2 * r.agent_steps));
        for lanes in [2, 3, 8, 16] {
            assert_eq!(played(lanes, &episodes), one, "{lanes} lanes");
        }
    }

    #[test]
    fn playing_no_episodes_does_nothing_and_episodes_without_environments_are_refused() {
        assert!(played(3, &[]).is_empty());
        let mut rec = Recorder(Vec::new());
        let err = play_lockstep(&mut [], &[0], &mut rec).unwrap_err();
        assert!(err.to_string().contains("no environment"), "{err}");
    }
}
