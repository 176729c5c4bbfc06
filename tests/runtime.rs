//! The actor-learner runtime on a stand-in environment: determinism whatever the threads do,
//! the exact replay ratio, back-pressure, and failures that end the run instead of hanging.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sap_harness::env::{EnvError, Environment, Observation, Step};
use sap_harness::nn::{Architecture, MlpConfig};
use sap_harness::rl::{
    Cadence, DoubleDqn, Exploration, LinearSchedule, Loss, OptimizerConfig, Replay,
};
use sap_harness::runtime::{
    self, ActorSpec, EpisodeEnd, Hooks, LearnerState, RuntimeConfig, Snapshot, StepContext,
    Timeline,
};

/// Episodes of `length` steps whose observation encodes the step and the last action;
/// reward 1 for action 1. Panics at step `panic_at` when set.
struct Counter {
    t: u32,
    length: u32,
    seed: u64,
    panic_at: Option<u32>,
    total: u32,
}

impl Environment for Counter {
    fn reset(&mut self, seed: u64) -> Result<Observation, EnvError> {
        self.t = 0;
        self.seed = seed;
        Ok(Observation::Features(vec![
            0.0,
            (seed % 7) as f32,
            0.0,
            1.0,
        ]))
    }

    fn step(&mut self, action: usize) -> Step {
        self.t += 1;
        self.total += 1;
        if Some(self.total) == self.panic_at {
            panic!("the stand-in environment broke at step {}", self.total);
        }
        let done = self.t >= self.length;
        Step {
            obs: Observation::Features(vec![
                self.t as f32 / 10.0,
                (self.seed % 7) as f32,
                action as f32,
                1.0,
            ]),
            reward: action as f64,
            score: action as f64,
            terminated: done,
            truncated: false,
            game_over: done,
            lives: 0,
            frames: 1,
        }
    }

    fn num_actions(&self) -> usize {
        2
    }

    fn observation_shape(&self) -> Vec<usize> {
        vec![4]
    }

    fn episode_frames(&self) -> u64 {
        self.t as u64
    }
}

/// A boxed [`Counter`] with episodes of `length` steps.
fn counter(length: u32, panic_at: Option<u32>) -> Box<dyn Environment> {
    Box::new(Counter {
        t: 0,
        length,
        seed: 0,
        panic_at,
        total: 0,
    })
}

fn arch() -> Architecture {
    Architecture::Mlp(MlpConfig {
        inputs: 4,
        hidden: vec![16],
        outputs: 2,
        input_scale: 1.0,
    })
}

fn learner(slots: usize) -> LearnerState<f32> {
    let optimizer = OptimizerConfig::Adam {
        lr: 1e-3,
        eps: 1e-8,
        beta1: 0.9,
        beta2: 0.999,
    };
    LearnerState {
        games: Vec::new(),
        ddqn: DoubleDqn::new(arch(), tch::Device::Cpu, optimizer, 0.9, Loss::Huber, 7),
        replay: Replay::new(2_000, slots, 4, 1).unwrap(),
        rng: ChaCha8Rng::seed_from_u64(5),
        steps: 0,
        batch_size: 8,
    }
}

fn config(actors: usize, envs: usize, capacity: usize) -> RuntimeConfig {
    RuntimeConfig {
        actors,
        envs_per_actor: envs,
        sync_period: 3,
        channel_capacity: capacity,
        actor_threads: 1,
        learner_threads: 1,
    }
}

fn timeline(cfg: &RuntimeConfig, end_step: u64, learning_starts: u64) -> Timeline {
    Timeline {
        slots: cfg.slots() as u64,
        start_step: 0,
        end_step,
        cadence: Cadence {
            learning_starts,
            update_period: 2,
            target_period: 10,
        },
        sync_period: cfg.sync_period,
    }
}

fn exploration() -> Exploration {
    Exploration::Linear(LinearSchedule {
        start: 1.0,
        end: 0.1,
        decay_steps: 200,
    })
}

/// Records episodes; optionally sleeps once to let the actors run ahead.
#[derive(Default)]
struct Recorder {
    episodes: Vec<(usize, u64, f64, u64)>,
    updates: u64,
    stall_at: Option<u64>,
    in_flight_during_stall: Vec<u64>,
}

impl Hooks<f32> for Recorder {
    fn on_episode(&mut self, end: &EpisodeEnd) -> Result<()> {
        self.episodes
            .push((end.slot, end.step, end.episode_return, end.length));
        Ok(())
    }

    fn after_step(&mut self, learner: &mut LearnerState<f32>, ctx: &StepContext) -> Result<()> {
        self.updates += ctx.update.is_some() as u64;
        if Some(learner.steps) == self.stall_at {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                self.in_flight_during_stall.push(ctx.rounds_in_flight());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

fn run(
    cfg: RuntimeConfig,
    end_step: u64,
    panic_at: Option<(usize, u32)>,
    hooks: &mut Recorder,
) -> Result<LearnerState<f32>> {
    let factory = move |slot: usize| -> Result<Box<dyn Environment>> {
        Ok(counter(
            5 + slot as u32,
            panic_at.filter(|p| p.0 == slot).map(|p| p.1),
        ))
    };
    let spec = ActorSpec {
        resume: &[],
        arch: arch(),
        exploration: exploration(),
        seed: 11,
        make_env: &factory,
    };
    let mut state = learner(cfg.slots());
    runtime::run(&cfg, timeline(&cfg, end_step, 40), &spec, &mut state, hooks)?;
    Ok(state)
}

fn weights(state: &LearnerState<f32>) -> Vec<Vec<f32>> {
    Snapshot::of(&state.ddqn.online)
        .tensors
        .into_iter()
        .map(|t| t.2)
        .collect()
}

#[test]
fn two_runs_with_three_actors_give_identical_episodes_and_weights() {
    let cfg = config(3, 2, 4);
    let mut a = Recorder::default();
    let mut b = Recorder::default();
    let first = run(cfg, 600, None, &mut a).unwrap();
    // A different channel capacity changes how far actors run ahead, not what they do.
    let second = run(config(3, 2, 1), 600, None, &mut b).unwrap();
    assert_eq!(a.episodes, b.episodes);
    assert!(a.episodes.len() > 50, "{} episodes", a.episodes.len());
    assert_eq!(weights(&first), weights(&second));
}

#[test]
fn the_learner_holds_the_replay_ratio_exactly_for_any_number_of_actors() {
    for actors in [1, 3] {
        let cfg = config(actors, 1, 4);
        let mut rec = Recorder::default();
        let state = run(cfg, 301, None, &mut rec).unwrap();
        assert_eq!(state.steps, 301);
        // (301 - 40) / 2 updates after the 40-step warm-up.
        assert_eq!(rec.updates, 130, "{actors} actors");
        assert_eq!(state.ddqn.updates(), 130);
    }
}

#[test]
fn a_full_channel_blocks_the_actors_instead_of_growing() {
    let cfg = config(2, 1, 3);
    let mut rec = Recorder {
        stall_at: Some(10),
        ..Recorder::default()
    };
    // Warm-up past the budget: no updates, so only the channel can hold the actors back.
    let factory = |_: usize| -> Result<Box<dyn Environment>> { Ok(counter(4, None)) };
    let spec = ActorSpec {
        resume: &[],
        arch: arch(),
        exploration: exploration(),
        seed: 1,
        make_env: &factory,
    };
    let mut state = learner(cfg.slots());
    let t = timeline(&cfg, 400, 10_000);
    runtime::run(&cfg, t, &spec, &mut state, &mut rec).unwrap();
    let max = rec.in_flight_during_stall.iter().max().copied().unwrap();
    assert_eq!(max, 3, "rounds in flight while the learner stalled");
    assert_eq!(rec.in_flight_during_stall.last(), Some(&3));
}

/// Runs `f` on a thread and fails the test if it takes longer than `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the run hung instead of ending with the error")
}

#[test]
fn a_panicking_actor_ends_the_run_with_its_message() {
    let err = within(60, || {
        let mut rec = Recorder::default();
        run(config(2, 2, 2), 5_000, Some((3, 57)), &mut rec)
            .err()
            .map(|e| format!("{e:#}"))
    })
    .expect("the run should fail");
    assert!(err.contains("actor 1 panicked"), "{err}");
    assert!(err.contains("broke at step 57"), "{err}");
}

#[test]
fn an_actor_that_cannot_build_its_environment_ends_the_run_with_that_error() {
    let err = within(60, || {
        let factory = |slot: usize| -> Result<Box<dyn Environment>> {
            if slot == 1 {
                anyhow::bail!("no ROM for slot {slot}");
            }
            Ok(counter(4, None))
        };
        let spec = ActorSpec {
            resume: &[],
            arch: arch(),
            exploration: exploration(),
            seed: 1,
            make_env: &factory,
        };
        let cfg = config(2, 1, 2);
        let mut state = learner(2);
        let mut rec = Recorder::default();
        runtime::run(&cfg, timeline(&cfg, 1_000, 40), &spec, &mut state, &mut rec)
            .err()
            .map(|e| format!("{e:#}"))
    })
    .expect("the run should fail");
    assert!(err.contains("no ROM for slot 1"), "{err}");
    assert!(err.contains("actor 1"), "{err}");
}
