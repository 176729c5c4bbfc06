//! Agent cells of the Atari robustness grid: a trained Q-network, wrapped with a defense and
//! an attack, plays evaluation episodes; one row per episode in `rl_eval.csv`.
//!
//! The attack perturbs the stacked observation the network sees at every step, white box
//! against the defended policy (DESIGN section 6); the emulator is not altered. Episode `e`
//! depends only on the cell's seed and `e` (its start, exploration and defense draws), so an
//! interrupted cell resumes at the first missing episode with the same rows, and cells of
//! one grid share their episode starts (common random numbers across defenses and radii).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::episode::pixels;
use crate::defense::DefenseRng;
use crate::env::{ale::action_counts, ActionSet, AtariEnv, Environment, Mode, Observation};
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

/// One episode in play.
struct Slot {
    episode: u32,
    obs: Observation,
    /// Exploration draws: the probability first, then the action when exploring.
    explore: ChaCha8Rng,
    /// The defense's and the attack's draws.
    defense: DefenseRng,
    score: f64,
    agent_steps: u64,
    start: Instant,
}

/// Plays the episodes of `cell` that `path` lacks, appending one row each in episode order;
/// returns how many it played.
///
/// Up to `parallel_episodes` episodes run in lockstep, one emulator each: at every step the
/// episodes not exploring act through one batched forward (and one batched attack), each
/// row drawing from its episode's own generators ([`PolicyWrapper::act_rows`]). An episode's
/// start, exploration and defense draws are keyed by (cell seed, episode), so its row is the
/// same whatever ran beside it; finished rows wait for the episodes before them, so the file
/// is the same for any `parallel_episodes` and after a kill and resume.
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
    let (model, checkpoint_name) = load_network(run_dir, manifest_dir, cell)?;
    let lanes = (cell.parallel_episodes as usize).clamp(1, todo.len());
    let mut envs = (0..lanes)
        .map(|_| {
            AtariEnv::new(
                cell.game,
                cell.settings,
                Mode::Eval,
                derive(cell.seed, "ale", 0),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let actions = envs[0].num_actions();
    // At lambda = 0 every attack returns its input: skip the gradient passes.
    let attack = cell.attack.filter(|a| a.lambda > 0.0);
    // The wrapper's own generator is not used: every episode draws from its own.
    let wrapper = PolicyWrapper::new(model, cell.defense, attack, cell.samples, 0)?
        .with_max_batch(cell.max_batch as usize);
    let row_template = template(cell, &checkpoint_name, &wrapper);
    let what = format!(
        "{} {} {} lambda {}",
        cell.game.name(),
        cell.defense.label(),
        cell.attack_name(),
        cell.lambda()
    );
    let mut sink: Option<CsvAppender<AgentRow>> = None;
    let mut queue = todo.iter().copied();
    let mut slots: Vec<Option<Slot>> = (0..lanes).map(|_| None).collect();
    let mut finished: BTreeMap<u32, AgentRow> = BTreeMap::new();
    let mut written = 0usize;
    loop {
        for (slot, env) in slots.iter_mut().zip(envs.iter_mut()) {
            if slot.is_none() {
                if let Some(episode) = queue.next() {
                    progress.running(&format!("{what} episode {episode}"));
                    *slot = Some(start_episode(cell.seed, episode, env)?);
                }
            }
        }
        if slots.iter().all(Option::is_none) {
            break;
        }
        let chosen = choose_actions(&wrapper, &mut slots, cell.epsilon, actions)?;
        for ((slot, env), action) in slots.iter_mut().zip(envs.iter_mut()).zip(chosen) {
            let Some(s) = slot.as_mut() else { continue };
            let step = env.step(action.expect("an action for every episode in play"));
            s.score += step.score;
            s.agent_steps += 1;
            progress.frames(step.frames as u64);
            if !(step.game_over || step.truncated) {
                s.obs = step.obs;
                continue;
            }
            let frames = env.episode_frames();
            let row = AgentRow {
                episode: s.episode,
                episode_return: s.score,
                frames,
                agent_steps: s.agent_steps,
                truncated: step.truncated,
                ..row_template.clone()
            };
            progress.episode_done(
                &format!("{what} episode {}", s.episode),
                s.score,
                frames,
                s.start.elapsed().as_secs_f64(),
            );
            finished.insert(s.episode, row);
            *slot = None;
        }
        while let Some(row) = todo.get(written).and_then(|e| finished.remove(e)) {
            if sink.is_none() {
                sink = Some(CsvAppender::open(path, &row)?);
            }
            sink.as_mut().expect("opened above").append(&row)?;
            written += 1;
        }
    }
    Ok(todo.len() as u64)
}

/// Starts `episode` of a cell seeded `cell_seed` on `env`.
fn start_episode(cell_seed: u64, episode: u32, env: &mut AtariEnv) -> Result<Slot> {
    let episode_seed = derive(cell_seed, "episode", episode as u64);
    let obs = env.reset(derive(episode_seed, "env", 0))?;
    Ok(Slot {
        episode,
        obs,
        explore: ChaCha8Rng::seed_from_u64(derive(episode_seed, "explore", 0)),
        defense: DefenseRng::seed_from_u64(derive(episode_seed, "defense", 0)),
        score: 0.0,
        agent_steps: 0,
        start: Instant::now(),
    })
}

/// Each episode in play's action (epsilon-greedy, as [`super::episode::EpsilonGreedy`]
/// draws): the greedy ones from one batched [`PolicyWrapper::act_rows`].
fn choose_actions(
    wrapper: &PolicyWrapper,
    slots: &mut [Option<Slot>],
    epsilon: f64,
    actions: usize,
) -> Result<Vec<Option<usize>>> {
    let mut chosen: Vec<Option<usize>> = vec![None; slots.len()];
    let mut greedy = Vec::new();
    for (i, s) in slots.iter_mut().enumerate() {
        let Some(s) = s else { continue };
        if s.explore.gen::<f64>() < epsilon {
            chosen[i] = Some(s.explore.gen_range(0..actions));
        } else {
            greedy.push(i);
        }
    }
    if greedy.is_empty() {
        return Ok(chosen);
    }
    let mut pixels_all = Vec::with_capacity(greedy.len() * 4 * 84 * 84);
    let mut rngs = Vec::with_capacity(greedy.len());
    for &i in &greedy {
        let s = slots[i].as_ref().expect("a greedy episode is in play");
        pixels_all.extend_from_slice(pixels(&s.obs)?);
        rngs.push(s.defense.clone());
    }
    let x = Tensor::from_slice(&pixels_all).view([greedy.len() as i64, 4, 84, 84]);
    let acts = wrapper.act_rows(&x, &mut rngs);
    for ((&i, rng), a) in greedy.iter().zip(rngs).zip(acts) {
        slots[i].as_mut().expect("in play").defense = rng;
        chosen[i] = Some(a as usize);
    }
    Ok(chosen)
}
