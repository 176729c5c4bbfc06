//! `sap bench ddqn`: Pong, Nature CNN, batch 32, one update per 4 agent steps, on CPU.
//! Measured side by side in one run:
//! - learner-only updates/s (replay filled with real Pong frames, no actors);
//! - actors-only agent steps/s (the real runtime with no update due: stepping, inference,
//!   channels and replay insertion);
//! - end-to-end agent steps/s after the warm-up (the real runtime, updates on schedule);
//! - actors-only steps/s when the actors ask one batched inference thread instead of using
//!   local network copies (the alternative design, measured here to justify the choice);
//! - bytes per stored transition of the replay buffer;
//! - the learner's update at 1 and 2 torch threads against the same update in PyTorch
//!   (`scripts/ddqn_reference.py`, run with the project's venv), once with the allocator as
//!   PyTorch users run it and once with the settings `sap` gives itself
//!   ([`crate::memory`]).

use std::time::Instant;

use anyhow::Result;
use crossbeam::channel::{bounded, Sender};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use crate::defense::DefensePoints;
use crate::env::{ale::action_counts, AtariEnv, Environment, Game, Mode, Preset};
use crate::manifest::DdqnSettings;
use crate::nn::{Architecture, Model};
use crate::rl::{Cadence, DoubleDqn, Replay};
use crate::runtime::{
    self, set_torch_threads, ActorSpec, EpisodeEnd, Hooks, LearnerState, RuntimeConfig,
    StepContext, Timeline,
};

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct DdqnBench {
    /// Runtime settings measured.
    pub config: RuntimeConfig,
    /// Updates/s of the learner alone.
    pub learner_updates_per_s: f64,
    /// Agent steps/s of the actors with no updates.
    pub actor_steps_per_s: f64,
    /// Agent steps/s of the whole runtime after the warm-up.
    pub end_to_end_steps_per_s: f64,
    /// Agent steps/s of the actors through one batched inference thread.
    pub batched_inference_steps_per_s: f64,
    /// Replay bytes per stored transition.
    pub bytes_per_transition: f64,
    /// The learner's updates/s at 1 and at 2 torch threads (best of the rounds).
    pub learner_by_threads: Vec<(i32, f64)>,
}

/// PyTorch's rate of the same update (`scripts/ddqn_reference.py`).
#[derive(Clone, Debug, PartialEq)]
pub struct TorchUpdates {
    /// torch threads.
    pub threads: i32,
    /// Updates/s with glibc's default allocator settings.
    pub default_allocator: f64,
    /// Updates/s with the allocator settings `sap` gives itself.
    pub same_allocator: f64,
    /// torch's version.
    pub version: String,
}

/// Runs `scripts/ddqn_reference.py` with the project's venv at each thread count, with the
/// default allocator settings and with `sap`'s ([`crate::memory`]); `updates` per round, best
/// of `rounds`.
pub fn pytorch_ddqn_reference(
    updates: u64,
    rounds: u32,
    threads: &[i32],
) -> Result<Vec<TorchUpdates>> {
    use anyhow::Context;
    let run = |threads: i32, same_allocator: bool| -> Result<(f64, String)> {
        let args = [
            ("--updates", updates.to_string()),
            ("--rounds", rounds.to_string()),
            ("--threads", threads.to_string()),
        ];
        let out = super::run_reference_script("ddqn_reference.py", &args, |cmd| {
            cmd.env_remove("GLIBC_TUNABLES");
            if same_allocator {
                cmd.env(
                    "GLIBC_TUNABLES",
                    format!(
                        "glibc.malloc.mmap_threshold={}:glibc.malloc.trim_threshold={}",
                        crate::memory::MMAP_THRESHOLD,
                        crate::memory::TRIM_THRESHOLD
                    ),
                );
            }
        })?;
        parse_reference_line(out.trim())
            .with_context(|| format!("ddqn_reference.py: output `{}`", out.trim()))
    };
    threads
        .iter()
        .map(|&t| {
            let (default_allocator, version) = run(t, false)?;
            let (same_allocator, _) = run(t, true)?;
            Ok(TorchUpdates {
                threads: t,
                default_allocator,
                same_allocator,
                version,
            })
        })
        .collect()
}

/// `scripts/ddqn_reference.py`'s line: updates/s, threads, torch's version.
fn parse_reference_line(line: &str) -> Result<(f64, String)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [rate, _threads, version] = f[..] else {
        anyhow::bail!(
            "expected 3 fields (updates/s, threads, version), found {}",
            f.len()
        );
    };
    let rate: f64 = rate.parse()?;
    Ok((rate, version.to_owned()))
}

impl DdqnBench {
    /// End-to-end steps/s over 4 x learner-only updates/s (target >= 0.85).
    pub fn ratio(&self) -> f64 {
        self.end_to_end_steps_per_s / (4.0 * self.learner_updates_per_s)
    }
}

const BATCH: usize = 32;

/// Updates per round of the comparison with PyTorch, ours and theirs.
pub const REFERENCE_UPDATES: u64 = 100;

/// Rounds of the comparison with PyTorch (best kept).
pub const REFERENCE_ROUNDS: u32 = 3;

fn settings() -> DdqnSettings {
    DdqnSettings::defaults(Some(Preset::DopamineV5))
}

fn pong_factory(seed: u64) -> impl Fn(usize) -> Result<Box<dyn Environment>> + Sync {
    move |slot| {
        let env = AtariEnv::new(
            Game::from_name("Pong").expect("bundled"),
            Preset::DopamineV5.settings(),
            Mode::Train,
            seed + slot as u64,
        )?;
        Ok(Box::new(env) as Box<dyn Environment>)
    }
}

fn learner(capacity: usize, slots: usize, actions: i64) -> Result<LearnerState<u8>> {
    let d = settings();
    Ok(LearnerState {
        games: Vec::new(),
        ddqn: DoubleDqn::new(
            Architecture::NatureCnn { actions },
            Device::Cpu,
            d.optimizer_config(),
            d.gamma,
            d.loss,
            1,
        ),
        replay: Replay::new(capacity, slots, 84 * 84, 4)?,
        rng: ChaCha8Rng::seed_from_u64(2),
        steps: 0,
        batch_size: BATCH,
    })
}

/// Times the counted steps after `from`.
struct Clock {
    from: u64,
    start: Option<Instant>,
    steps: u64,
}

impl Hooks<u8> for Clock {
    fn on_episode(&mut self, _: &EpisodeEnd) -> Result<()> {
        Ok(())
    }

    fn after_step(&mut self, l: &mut LearnerState<u8>, _: &StepContext) -> Result<()> {
        if l.steps == self.from {
            self.start = Some(Instant::now());
        }
        self.steps = l.steps;
        Ok(())
    }
}

fn runtime_steps_per_s(
    config: &RuntimeConfig,
    actions: i64,
    warm_up: u64,
    steps: u64,
    learning_starts: u64,
) -> Result<(f64, LearnerState<u8>)> {
    let factory = pong_factory(7);
    let spec = ActorSpec {
        resume: &[],
        arch: Architecture::NatureCnn { actions },
        exploration: settings().exploration(),
        seed: 3,
        make_env: &factory,
    };
    // Half the steps: the buffer is full when measured, so its bytes are all in use.
    let capacity = (steps as usize / 2).max(config.slots() * 8);
    let mut state = learner(capacity, config.slots(), actions)?;
    let timeline = Timeline {
        slots: config.slots() as u64,
        start_step: 0,
        end_step: warm_up + steps,
        cadence: Cadence {
            learning_starts,
            update_period: 4,
            target_period: settings().target_period_updates(),
        },
        sync_period: config.sync_period,
    };
    let mut clock = Clock {
        from: warm_up,
        start: None,
        steps: 0,
    };
    runtime::run(config, timeline, &spec, &mut state, &mut clock)?;
    let secs = clock.start.expect("warm-up passed").elapsed().as_secs_f64();
    Ok(((clock.steps - warm_up) as f64 / secs, state))
}

/// Actors that send their observations to one inference thread, which answers each round
/// with one forward pass over every actor's batch.
fn batched_inference_steps_per_s(config: &RuntimeConfig, actions: i64, steps: u64) -> Result<f64> {
    type Request = (Vec<u8>, usize, Sender<Vec<i64>>);
    let actors = config.actors;
    let n_envs = config.envs_per_actor;
    let rounds = steps.div_ceil((actors * n_envs) as u64);
    let (tx, rx) = bounded::<Request>(actors);
    let factory = pong_factory(9);
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let server = scope.spawn(move || {
            set_torch_threads(config.learner_threads);
            let model = Model::new(Architecture::NatureCnn { actions }, Device::Cpu);
            while let Ok(first) = rx.recv() {
                let mut requests = vec![first];
                while requests.len() < actors {
                    match rx.recv() {
                        Ok(r) => requests.push(r),
                        Err(_) => break,
                    }
                }
                let n: usize = requests.iter().map(|r| r.1).sum();
                let obs: Vec<u8> = requests.iter().flat_map(|r| r.0.iter().copied()).collect();
                let q = tch::no_grad(|| {
                    let x = Tensor::from_slice(&obs).view([n as i64, 4, 84, 84]);
                    model.forward(&x, false, &mut DefensePoints::dense())
                });
                let greedy = Vec::<i64>::try_from(q.argmax(1, false)).expect("i64");
                let mut at = 0;
                for (_, k, reply) in requests {
                    let _ = reply.send(greedy[at..at + k].to_vec());
                    at += k;
                }
            }
        });
        let mut handles = Vec::new();
        for a in 0..actors {
            let tx = tx.clone();
            let factory = &factory;
            handles.push(scope.spawn(move || -> Result<()> {
                set_torch_threads(config.actor_threads);
                let mut envs: Vec<Box<dyn Environment>> = (0..n_envs)
                    .map(|e| factory(a * n_envs + e))
                    .collect::<Result<_>>()?;
                let mut obs: Vec<Vec<u8>> = Vec::new();
                for env in &mut envs {
                    obs.push(crate::runtime::Frame::unpack(env.reset(1)?).expect("pixels"));
                }
                let mut rng = ChaCha8Rng::seed_from_u64(a as u64);
                let (reply_tx, reply_rx) = bounded(1);
                for _ in 0..rounds {
                    let flat: Vec<u8> = obs.iter().flatten().copied().collect();
                    tx.send((flat, envs.len(), reply_tx.clone()))?;
                    let greedy = reply_rx.recv()?;
                    for (k, env) in envs.iter_mut().enumerate() {
                        let action = if rng.gen::<f64>() < 0.1 {
                            rng.gen_range(0..env.num_actions())
                        } else {
                            greedy[k] as usize
                        };
                        let step = env.step(action);
                        obs[k] = if step.terminated || step.truncated {
                            crate::runtime::Frame::unpack(env.reset(2)?).expect("pixels")
                        } else {
                            crate::runtime::Frame::unpack(step.obs).expect("pixels")
                        };
                    }
                }
                Ok(())
            }));
        }
        drop(tx);
        for h in handles {
            h.join().expect("actor thread")?;
        }
        server.join().expect("server thread");
        Ok(())
    })?;
    Ok((rounds * (actors * n_envs) as u64) as f64 / start.elapsed().as_secs_f64())
}

/// Runs the four measurements with `steps` agent steps each (updates: `steps / 4`).
pub fn bench_ddqn(config: RuntimeConfig, steps: u64) -> Result<DdqnBench> {
    let (minimal, _) = action_counts(Game::from_name("Pong").expect("bundled"))?;
    let actions = minimal as i64;
    // Actors only: the warm-up never ends, so no update is due.
    let (actor_steps_per_s, filled) =
        runtime_steps_per_s(&config, actions, 200, steps, u64::MAX / 2)?;
    let bytes_per_transition = filled.replay.bytes() as f64 / filled.replay.transitions() as f64;
    // Learner only, on the frames the actors stored.
    let mut state = filled;
    set_torch_threads(config.learner_threads);
    let mut batch = crate::rl::Batch::default();
    let updates = (steps / 4).max(5);
    state.replay.sample(BATCH, &mut state.rng, &mut batch);
    state.ddqn.update(&batch); // first-call allocations off the clock
    let start = Instant::now();
    for _ in 0..updates {
        state.replay.sample(BATCH, &mut state.rng, &mut batch);
        state.ddqn.update(&batch);
    }
    let learner_updates_per_s = updates as f64 / start.elapsed().as_secs_f64();
    // The same at 1 and 2 threads, best of three rounds, as the PyTorch reference runs.
    let mut learner_by_threads = Vec::new();
    for threads in [1, 2] {
        set_torch_threads(threads as usize);
        let mut best = 0f64;
        for _ in 0..REFERENCE_ROUNDS {
            let start = Instant::now();
            for _ in 0..REFERENCE_UPDATES {
                state.replay.sample(BATCH, &mut state.rng, &mut batch);
                state.ddqn.update(&batch);
            }
            best = best.max(REFERENCE_UPDATES as f64 / start.elapsed().as_secs_f64());
        }
        learner_by_threads.push((threads, best));
    }
    set_torch_threads(config.learner_threads);
    // End to end: updates from step 400 on, timed from step 600.
    let (end_to_end_steps_per_s, _) = runtime_steps_per_s(&config, actions, 600, steps, 400)?;
    let batched_inference_steps_per_s = batched_inference_steps_per_s(&config, actions, steps)?;
    Ok(DdqnBench {
        config,
        learner_updates_per_s,
        actor_steps_per_s,
        end_to_end_steps_per_s,
        batched_inference_steps_per_s,
        bytes_per_transition,
        learner_by_threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_line_gives_the_rate_and_version_and_a_short_one_is_refused() {
        let (rate, version) = parse_reference_line("20.5 1 2.13.0+cpu").unwrap();
        assert_eq!((rate, version.as_str()), (20.5, "2.13.0+cpu"));
        assert!(parse_reference_line("20.5 1").is_err());
        assert!(parse_reference_line("fast 1 2.13.0").is_err());
    }
}
