//! Classic-control tasks from gym-rs behind the [`Environment`] trait, with Gym's time
//! limits (CartPole-v1: 500 steps, MountainCar-v0: 200 steps) as truncation.

use gym_rs::core::Env;
use gym_rs::envs::classical_control::cartpole::{CartPoleEnv, CartPoleObservation};
use gym_rs::envs::classical_control::mountain_car::MountainCarEnv;
use gym_rs::spaces::BoxR;
use gym_rs::utils::renderer::RenderMode;
use ordered_float::OrderedFloat;
use serde::{Deserialize, Serialize};

use super::{EnvError, Environment, Observation, Step};

/// A classic-control task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClassicGame {
    /// Balance a pole on a cart (Barto et al. 1983); Gym's CartPole-v1.
    CartPole,
    /// Drive an underpowered car up a hill (Moore 1990); Gym's MountainCar-v0.
    MountainCar,
}

impl ClassicGame {
    /// Every classic task.
    pub const ALL: [ClassicGame; 2] = [ClassicGame::CartPole, ClassicGame::MountainCar];

    /// The CamelCase name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ClassicGame::CartPole => "CartPole",
            ClassicGame::MountainCar => "MountainCar",
        }
    }

    /// Looks a task up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Gym's time limit in steps.
    pub fn max_steps(self) -> u32 {
        match self {
            ClassicGame::CartPole => 500,
            ClassicGame::MountainCar => 200,
        }
    }
}

impl std::fmt::Display for ClassicGame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

enum Inner {
    CartPole(Box<CartPoleEnv>),
    MountainCar(Box<MountainCarEnv>),
}

/// A classic-control environment.
pub struct ClassicEnv {
    game: ClassicGame,
    inner: Inner,
    steps: u32,
}

fn features(v: impl Into<Vec<f64>>) -> Observation {
    Observation::Features(v.into().into_iter().map(|x| x as f32).collect())
}

impl ClassicEnv {
    /// Builds the task without rendering.
    pub fn new(game: ClassicGame) -> Self {
        let inner = match game {
            ClassicGame::CartPole => Inner::CartPole(Box::new(CartPoleEnv::new(RenderMode::None))),
            ClassicGame::MountainCar => {
                Inner::MountainCar(Box::new(MountainCarEnv::new(RenderMode::None)))
            }
        };
        Self {
            game,
            inner,
            steps: 0,
        }
    }

    /// The task.
    pub fn game(&self) -> ClassicGame {
        self.game
    }
}

impl Environment for ClassicEnv {
    fn reset(&mut self, seed: u64) -> Result<Observation, EnvError> {
        self.steps = 0;
        Ok(match &mut self.inner {
            Inner::CartPole(env) => {
                // Gym draws every state variable from U(-0.05, 0.05); gym-rs's default range
                // is U(-0.5, 0.5), past the 12-degree failure angle, so pass Gym's range.
                let b = OrderedFloat(0.05);
                let high = CartPoleObservation::new(b, b, b, b);
                let low = CartPoleObservation::new(-b, -b, -b, -b);
                features(env.reset(Some(seed), false, Some(BoxR::new(low, high))).0)
            }
            Inner::MountainCar(env) => features(env.reset(Some(seed), false, None).0),
        })
    }

    fn step(&mut self, action: usize) -> Step {
        assert!(action < self.num_actions(), "action {action} out of range");
        self.steps += 1;
        let (obs, reward, done) = match &mut self.inner {
            Inner::CartPole(env) => {
                let r = env.step(action);
                (features(r.observation), r.reward.into_inner(), r.done)
            }
            Inner::MountainCar(env) => {
                let r = env.step(action);
                (features(r.observation), r.reward.into_inner(), r.done)
            }
        };
        Step {
            obs,
            reward,
            score: reward,
            terminated: done,
            truncated: !done && self.steps >= self.game.max_steps(),
            game_over: done,
            lives: 0,
            frames: 1,
        }
    }

    fn num_actions(&self) -> usize {
        match self.game {
            ClassicGame::CartPole => 2,
            ClassicGame::MountainCar => 3,
        }
    }

    fn observation_shape(&self) -> Vec<usize> {
        vec![match self.game {
            ClassicGame::CartPole => 4,
            ClassicGame::MountainCar => 2,
        }]
    }

    fn episode_frames(&self) -> u64 {
        self.steps as u64
    }
}
