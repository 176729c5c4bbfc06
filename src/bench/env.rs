//! `sap bench env`: emulator frames/s of a bare ALE `act()` loop against the full
//! preprocessing pipeline on the same game, measured side by side in one run on one thread.

use std::time::Instant;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::env::ale::{AleHandle, StagedRom};
use crate::env::{AtariEnv, Environment, Game, Mode, Preset};

/// One game's measurement.
#[derive(Clone, Debug)]
pub struct EnvBench {
    /// The game.
    pub game: Game,
    /// Best frames/s of the bare loop over the rounds.
    pub bare_fps: f64,
    /// Best frames/s of the pipeline over the rounds.
    pub pipeline_fps: f64,
}

impl EnvBench {
    /// Pipeline speed as a fraction of bare ALE speed.
    pub fn ratio(&self) -> f64 {
        self.pipeline_fps / self.bare_fps
    }
}

/// Random minimal-set actions on bare ALE for `frames` frames; resets with `reset_game`.
fn bare_loop(game: Game, sticky: f32, frames: u64, seed: u64) -> Result<f64> {
    let rom = StagedRom::new(game)?;
    let mut ale = AleHandle::new();
    rom.load_into(&mut ale, game, seed as i32, sticky)?;
    let actions = ale.minimal_actions();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    for _ in 0..frames {
        ale.act(actions[rng.gen_range(0..actions.len())]);
        if ale.game_over() {
            ale.reset_game();
        }
    }
    Ok(frames as f64 / start.elapsed().as_secs_f64())
}

/// Random actions through the whole `dopamine-v5` pipeline for at least `frames` frames.
fn pipeline_loop(game: Game, frames: u64, seed: u64) -> Result<f64> {
    let mut env = AtariEnv::new(game, Preset::DopamineV5.settings(), Mode::Eval, seed)?;
    let n = env.num_actions();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    let mut done = 0u64;
    let mut episode = 0;
    env.reset(seed)?;
    while done < frames {
        let step = env.step(rng.gen_range(0..n));
        done += step.frames as u64;
        if step.terminated || step.truncated {
            episode += 1;
            env.reset(seed + episode)?;
        }
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Measures each game: `rounds` alternating rounds of both loops, best of each kept (the
/// least disturbed by other work on a shared machine).
pub fn bench_env(games: &[Game], frames: u64, rounds: u32) -> Result<Vec<EnvBench>> {
    let sticky = Preset::DopamineV5.settings().repeat_action_probability;
    games
        .iter()
        .map(|&game| {
            let (mut bare, mut pipe) = (0f64, 0f64);
            for round in 0..rounds as u64 {
                bare = bare.max(bare_loop(game, sticky, frames, round)?);
                pipe = pipe.max(pipeline_loop(game, frames, round)?);
            }
            Ok(EnvBench {
                game,
                bare_fps: bare,
                pipeline_fps: pipe,
            })
        })
        .collect()
}
