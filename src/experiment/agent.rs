//! Agent cells of the Atari robustness grid: a trained Q-network, wrapped with a defense and
//! an attack, plays evaluation episodes; one row per episode in `rl_eval.csv`.
//!
//! The attack perturbs the stacked observation the network sees at every step, white box
//! against the defended policy (DESIGN section 6); the emulator is not altered. Episode `e`
//! depends only on the cell's seed and `e` (its start, exploration and defense draws), so an
//! interrupted cell resumes at the first missing episode with the same rows, and cells of
//! one grid share their episode starts (common random numbers across defenses and radii).

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::episode::{pixels, play, EpsilonGreedy};
use crate::env::{ale::action_counts, ActionSet, AtariEnv, Mode, Observation};
use crate::manifest::{AgentCell, NetworkSource};
use crate::nn::{checkpoint, Architecture, Model};
use crate::policy::PolicyWrapper;
use crate::progress::Progress;
use crate::record::{read_rows, CsvAppender};
use crate::seed::derive;
use crate::table::{AgentRow, Treatment};

/// A row with every column that does not depend on the episode filled from `cell`.
fn template(cell: &AgentCell, checkpoint: &str, wrapper: &PolicyWrapper) -> AgentRow {
    AgentRow {
        job: cell.job_name.clone(),
        game: cell.game.name().to_owned(),
        preset: cell.preset.name().to_owned(),
        checkpoint: checkpoint.to_owned(),
        train_seed: cell.network.train_seed(),
        eval_seed: cell.seed,
        treatment: Treatment::new(
            &cell.defense,
            cell.attack.as_ref(),
            wrapper.effective_samples(),
        ),
        epsilon: cell.epsilon,
        max_episode_frames: cell.settings.max_episode_frames,
        episode: 0,
        episode_return: 0.0,
        frames: 0,
        agent_steps: 0,
        truncated: false,
    }
}

/// Loads the Nature CNN of `cell`'s game and action set from its network file.
fn load_network(run_dir: &Path, manifest_dir: &Path, cell: &AgentCell) -> Result<(Model, String)> {
    let (path, name) = cell.network.file(run_dir, manifest_dir);
    if !path.is_file() {
        match &cell.network {
            NetworkSource::Train { id, .. } => bail!(
                "{} does not exist: training cell {id} has not finished; run it first (`sap run` \
                 orders cells, and Slurm evaluation arrays wait for the training array)",
                path.display()
            ),
            NetworkSource::File(_) => bail!("checkpoint {} does not exist", path.display()),
        }
    }
    let (minimal, full) = action_counts(cell.game)?;
    let actions = match cell.settings.action_set {
        ActionSet::Minimal => minimal,
        ActionSet::Full => full,
    };
    let arch = Architecture::NatureCnn {
        actions: actions as i64,
    };
    let mut model = Model::new(arch, Device::cuda_if_available());
    checkpoint::load(&mut model, &path).with_context(|| {
        format!(
            "loading the {} Q-network of {} ({actions} actions)",
            cell.game.name(),
            path.display()
        )
    })?;
    Ok((model, name))
}

/// Plays the episodes of `cell` that `path` lacks, appending one row each; returns how
/// many it played.
pub fn run_cell(
    run_dir: &Path,
    manifest_dir: &Path,
    cell: &AgentCell,
    path: &Path,
    progress: &mut Progress,
) -> Result<u64> {
    let recorded: Vec<AgentRow> = read_rows(path)?;
    let done: HashSet<u32> = recorded.iter().map(|r| r.episode).collect();
    let todo: Vec<u32> = (0..cell.episodes).filter(|e| !done.contains(e)).collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let (mut model, checkpoint_name) = load_network(run_dir, manifest_dir, cell)?;
    let mut env = AtariEnv::new(
        cell.game,
        cell.settings,
        Mode::Eval,
        derive(cell.seed, "ale", 0),
    )?;
    // At lambda = 0 every attack returns its input: skip the gradient passes.
    let attack = cell.attack.filter(|a| a.lambda > 0.0);
    let mut sink: Option<CsvAppender<AgentRow>> = None;
    let what = format!(
        "{} {} {} lambda {}",
        cell.game.name(),
        cell.defense.label(),
        cell.attack_name(),
        cell.lambda()
    );
    for &episode in &todo {
        let start = Instant::now();
        progress.running(&format!("{what} episode {episode}"));
        let episode_seed = derive(cell.seed, "episode", episode as u64);
        let mut wrapper = PolicyWrapper::new(
            model,
            cell.defense,
            attack,
            cell.samples,
            derive(episode_seed, "defense", 0),
        )?
        .with_max_batch(cell.max_batch as usize);
        let row_template = template(cell, &checkpoint_name, &wrapper);
        let mut policy = EpsilonGreedy {
            rng: ChaCha8Rng::seed_from_u64(derive(episode_seed, "explore", 0)),
            epsilon: cell.epsilon,
            greedy: |obs: &Observation| {
                let x = Tensor::from_slice(pixels(obs)?).view([1, 4, 84, 84]);
                Ok(wrapper.act(&x)[0] as usize)
            },
        };
        let reset = derive(episode_seed, "env", 0);
        let ep = play(&mut env, reset, &mut policy, |step| {
            progress.frames(step.frames as u64)
        })?;
        let (score, frames) = (ep.score, ep.frames);
        let row = AgentRow {
            episode,
            episode_return: score,
            frames,
            agent_steps: ep.agent_steps,
            truncated: ep.truncated,
            ..row_template
        };
        if sink.is_none() {
            sink = Some(CsvAppender::open(path, &row)?);
        }
        sink.as_mut().expect("opened above").append(&row)?;
        progress.episode_done(
            &format!("{what} episode {episode}"),
            score,
            frames,
            start.elapsed().as_secs_f64(),
        );
        model = wrapper.into_model();
    }
    Ok(todo.len() as u64)
}
