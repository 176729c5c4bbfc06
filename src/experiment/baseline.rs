//! The random-policy baseline: uniformly random actions, needed for normalised scores
//! `(mean - random) / (dense_clean - random)` (docs/ARCHITECTURE.md section 7).

use std::collections::HashSet;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::episode::{play_lockstep, Finished, Lane, Lockstep};
use super::{CellCtx, CellRunner};
use crate::env::{AtariEnv, ClassicEnv, Environment, Mode};
use crate::manifest::{Cell, GameId, PolicyKind};
use crate::progress::Progress;
use crate::record::{read_rows, CsvAppender};
use crate::run_dir::files;
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

/// Uniformly random actions, each episode from its own generator, and where the rows go.
struct RandomPlay<'a> {
    cell: &'a Cell,
    job: &'a str,
    sink: &'a mut CsvAppender<EpisodeRow>,
    progress: &'a mut Progress,
    what: String,
}

impl Lockstep for RandomPlay<'_> {
    type State = ChaCha8Rng;

    /// The episode depends only on the environment's settings and the cell's seed.
    fn start(&mut self, episode: u32) -> (u64, ChaCha8Rng) {
        self.progress
            .running(&format!("{} episode {episode}", self.what));
        let episode_seed = seed::derive(self.cell.seed, "episode", episode as u64);
        let policy = ChaCha8Rng::seed_from_u64(seed::derive(episode_seed, "policy", 0));
        (seed::derive(episode_seed, "env", 0), policy)
    }

    fn actions(&mut self, lanes: &mut [Lane<ChaCha8Rng>], actions: usize) -> Result<Vec<usize>> {
        Ok(lanes
            .iter_mut()
            .map(|lane| lane.state.gen_range(0..actions))
            .collect())
    }

    fn finished(&mut self, done: Finished<ChaCha8Rng>) -> Result<()> {
        let (cell, ep) = (self.cell, done.result);
        self.sink.append(&EpisodeRow {
            job: self.job.to_owned(),
            family: cell.game.family(),
            game: cell.game.name().to_owned(),
            preset: cell.preset_name().to_owned(),
            seed: cell.seed,
            policy: cell.policy,
            episode: done.episode,
            episode_return: ep.score,
            frames: ep.frames,
            truncated: ep.truncated,
        })?;
        self.progress.episode_done(
            &format!("{} episode {}", self.what, done.episode),
            ep.score,
            ep.frames,
            done.seconds,
        );
        Ok(())
    }
}

/// Plays the cell's episodes that are not in `done`, appending one row each (labelled with
/// `job`); returns how many it played. One environment suffices: random actions need no
/// batched forward.
pub fn run_cell(
    cell: &Cell,
    job: &str,
    done: &HashSet<EpisodeKey>,
    sink: &mut CsvAppender<EpisodeRow>,
    progress: &mut Progress,
) -> Result<u64> {
    if cell.policy != PolicyKind::Random {
        bail!("agent episodes run in agent cells");
    }
    let todo: Vec<u32> = (0..cell.episodes)
        .filter(|&e| !done.contains(&row_key(cell, e)))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let mut envs = vec![make_env(cell)?];
    let mut play = RandomPlay {
        cell,
        job,
        sink,
        progress,
        what: format!("{} {} s{}", cell.game.name(), cell.preset_name(), cell.seed),
    };
    play_lockstep(&mut envs, &todo, &mut play)?;
    Ok(todo.len() as u64)
}

impl CellRunner for Cell {
    fn outputs(&self) -> &'static [&'static str] {
        &[files::EPISODES]
    }

    fn run(&self, ctx: &CellCtx) -> Result<u64> {
        let path = ctx.file(files::EPISODES);
        let recorded: Vec<EpisodeRow> = read_rows(&path)?;
        let done: HashSet<_> = recorded.iter().map(EpisodeRow::key).collect();
        let mut sink = CsvAppender::open(&path, &EpisodeRow::sample())?;
        let todo = self.episodes as u64 - recorded.len().min(self.episodes as usize) as u64;
        let mut progress = Progress::new(todo);
        let job = &ctx.manifest.eval[self.job].name;
        let n = run_cell(self, job, &done, &mut sink, &mut progress)?;
        progress.finish();
        Ok(n)
    }
}
