//! The random-policy baseline: uniformly random actions, needed for normalised scores
//! `(mean - random) / (dense_clean - random)` (DESIGN section 7).

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::episode::{play, Episode, RandomPolicy};
use crate::env::{AtariEnv, ClassicEnv, Environment, Mode};
use crate::manifest::{Cell, GameId, PolicyKind};
use crate::progress::Progress;
use crate::record::CsvAppender;
use crate::seed;
use crate::table::{EpisodeKey, EpisodeRow};

/// The key under which episode `episode` of `cell` is recorded.
pub fn row_key(cell: &Cell, episode: u32) -> EpisodeKey {
    (
        cell.game.name().to_owned(),
        cell.preset_name().to_owned(),
        cell.seed,
        cell.policy,
        episode,
    )
}

/// Builds a cell's environment in evaluation mode.
pub fn make_env(cell: &Cell) -> Result<Box<dyn Environment>> {
    Ok(match cell.game {
        GameId::Atari(game) => {
            let settings = cell.settings.expect("Atari cells carry settings");
            Box::new(AtariEnv::new(game, settings, Mode::Eval, cell.seed)?)
        }
        GameId::Classic(game) => Box::new(ClassicEnv::new(game)),
    })
}

/// Plays one episode of a random policy. The episode depends only on the environment's
/// settings and `episode_seed`.
pub fn play_random_episode(env: &mut dyn Environment, episode_seed: u64) -> Result<Episode> {
    let mut policy = RandomPolicy(ChaCha8Rng::seed_from_u64(seed::derive(
        episode_seed,
        "policy",
        0,
    )));
    play(
        env,
        seed::derive(episode_seed, "env", 0),
        &mut policy,
        |_| {},
    )
}

/// Plays the cell's episodes that are not in `done`, appending one row each (labelled with
/// `job`); returns how many it played.
pub fn run_cell(
    cell: &Cell,
    job: &str,
    done: &HashSet<EpisodeKey>,
    sink: &mut CsvAppender<EpisodeRow>,
    progress: &mut Progress,
) -> Result<u64> {
    let todo: Vec<u32> = (0..cell.episodes)
        .filter(|&e| !done.contains(&row_key(cell, e)))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let mut env = make_env(cell)?;
    let what = format!("{} {} s{}", cell.game.name(), cell.preset_name(), cell.seed);
    for &episode in &todo {
        progress.running(&format!("{what} episode {episode}"));
        let start = Instant::now();
        let episode_seed = seed::derive(cell.seed, "episode", episode as u64);
        let ep = match cell.policy {
            PolicyKind::Random => play_random_episode(env.as_mut(), episode_seed)?,
            PolicyKind::Agent => anyhow::bail!("agent episodes run in agent cells"),
        };
        sink.append(&EpisodeRow {
            job: job.to_owned(),
            family: cell.game.family(),
            game: cell.game.name().to_owned(),
            preset: cell.preset_name().to_owned(),
            seed: cell.seed,
            policy: cell.policy,
            episode,
            episode_return: ep.score,
            frames: ep.frames,
            truncated: ep.truncated,
        })?;
        progress.episode_done(
            &format!("{what} episode {episode}"),
            ep.score,
            ep.frames,
            start.elapsed().as_secs_f64(),
        );
    }
    Ok(todo.len() as u64)
}
