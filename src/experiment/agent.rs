//! Agent cells of the Atari robustness grid: a trained Q-network, wrapped with a defense and
//! an attack, plays evaluation episodes; one row per episode in `rl_eval.csv`.
//!
//! The attack perturbs the stacked observation the network sees at every step, white box
//! against the defended policy (docs/ARCHITECTURE.md section 6); the emulator is not altered. Episode `e`
//! depends only on the cell's seed and `e` (its start, exploration and defense draws), so an
//! interrupted cell resumes at the first missing episode with the same rows, and cells of
//! one grid share their episode starts (common random numbers across defenses and radii).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::episode::{batch_of, explore, fill, play_lockstep, Finished, Lane, Lockstep};
use super::{CellCtx, CellRunner};
use crate::defense::DefenseRng;
use crate::env::{ale::action_counts, ActionSet, AtariEnv, Environment, Mode, Observation, Step};
use crate::manifest::{AgentCell, NetworkSource};
use crate::nn::{checkpoint, Architecture, Model};
use crate::policy::PolicyWrapper;
use crate::progress::Progress;
use crate::record::{read_rows, CsvAppender};
use crate::run_dir::files;
use crate::seed::derive;
use crate::table::AgentRow;
use crate::video::{self, EpisodeVideo};

/// A row with every column that does not depend on the episode filled from `cell`.
fn template(cell: &AgentCell, checkpoint: &str, wrapper: &PolicyWrapper) -> AgentRow {
    AgentRow {
        job: cell.job_name.clone(),
        game: cell.game.name().to_owned(),
        preset: cell.preset.name().to_owned(),
        checkpoint: checkpoint.to_owned(),
        train_seed: cell.network.train_seed(),
        eval_seed: cell.condition.seed,
        treatment: cell.condition.treatment(wrapper.effective_samples()),
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
    let model = load_q_network(cell, &path)?;
    Ok((model, name))
}

/// The Nature CNN Q-network of `cell`'s game and action set, from `path`.
fn load_q_network(cell: &AgentCell, path: &Path) -> Result<Model> {
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
    checkpoint::load(&mut model, path).with_context(|| {
        format!(
            "loading the {} Q-network of {} ({actions} actions)",
            cell.game.name(),
            path.display()
        )
    })?;
    Ok(model)
}

/// An agent's per-episode generators.
struct Draws {
    /// Exploration draws: the probability first, then the action when exploring.
    explore: ChaCha8Rng,
    /// The defense's and the attack's draws.
    defense: DefenseRng,
}

/// A recorded episode: its video, and what its next frame shows besides the screen.
struct Recording {
    video: EpisodeVideo,
    /// The newest clean frame, the same frame as the network saw it, and the action of the
    /// step about to be taken.
    clean: Vec<u8>,
    seen: Vec<f32>,
    score: f64,
    steps: u64,
}

/// The defended, attacked agent of a cell and where its rows go.
struct AgentPlay<'a> {
    cell: &'a AgentCell,
    wrapper: PolicyWrapper,
    template: AgentRow,
    path: &'a Path,
    sink: Option<CsvAppender<AgentRow>>,
    progress: &'a mut Progress,
    what: String,
    /// Where the videos of the first `cell.record` episodes go, and those in play.
    video_dir: PathBuf,
    recordings: BTreeMap<u32, Recording>,
}

/// The file of episode `episode`'s video in a cell's folder.
pub fn video_file(cell_dir: &Path, episode: u32) -> PathBuf {
    cell_dir.join(format!("episode-{episode}.gif"))
}

/// The newest of a stacked observation's frames.
fn newest_frame(obs: &Observation) -> Result<&[u8]> {
    let side = video::SIDE * video::SIDE;
    match obs {
        Observation::Pixels(p) if p.len() >= side => Ok(&p[p.len() - side..]),
        _ => bail!("an agent cell records Atari frames only"),
    }
}

impl AgentPlay<'_> {
    /// The actions of the `greedy` lanes, and the input the network saw when one of them
    /// is recorded (the draws are the same either way).
    fn greedy(
        &self,
        lanes: &mut [Lane<Draws>],
        greedy: &[usize],
    ) -> Result<(Vec<i64>, Option<Tensor>)> {
        let x = batch_of(lanes, greedy, &[4, 84, 84])?;
        let mut rngs: Vec<DefenseRng> = greedy
            .iter()
            .map(|&i| lanes[i].state.defense.clone())
            .collect();
        let recorded = greedy.iter().any(|&i| lanes[i].episode < self.cell.record);
        let (acts, seen) = if recorded {
            let (acts, seen) = self.wrapper.act_rows_seen(&x, &mut rngs);
            (acts, Some(seen))
        } else {
            (self.wrapper.act_rows(&x, &mut rngs), None)
        };
        for (&i, rng) in greedy.iter().zip(rngs) {
            lanes[i].state.defense = rng;
        }
        Ok((acts, seen))
    }

    /// Keeps, for each recorded episode in play, the frame its next action is chosen on:
    /// clean, and as the network sees it (attacked when greedy, clean when exploring).
    fn note_frames(
        &mut self,
        lanes: &[Lane<Draws>],
        greedy: &[usize],
        seen: Option<&Tensor>,
    ) -> Result<()> {
        for (i, lane) in lanes.iter().enumerate() {
            if lane.episode >= self.cell.record {
                continue;
            }
            let clean = newest_frame(&lane.obs)?.to_vec();
            let seen = match (greedy.iter().position(|&g| g == i), seen) {
                (Some(row), Some(seen)) => {
                    let newest = seen.get(row as i64).get(3).to_device(Device::Cpu);
                    Vec::<f32>::try_from(newest.flatten(0, -1))?
                }
                _ => clean.iter().map(|&v| v as f32).collect(),
            };
            if !self.recordings.contains_key(&lane.episode) {
                let title = format!(
                    "{}  {}  {} lambda {}  episode {}",
                    self.cell.game.name(),
                    self.cell.condition.defense.label(),
                    self.cell.condition.attack_label(),
                    self.cell.condition.lambda(),
                    lane.episode
                );
                let path = video_file(&self.video_dir, lane.episode);
                let video = EpisodeVideo::create(&path, &title, self.cell.condition.lambda())?;
                let recording = Recording {
                    video,
                    clean: Vec::new(),
                    seen: Vec::new(),
                    score: 0.0,
                    steps: 0,
                };
                self.recordings.insert(lane.episode, recording);
            }
            let recording = self.recordings.get_mut(&lane.episode).expect("inserted");
            recording.clean = clean;
            recording.seen = seen;
        }
        Ok(())
    }
}

impl Lockstep for AgentPlay<'_> {
    type State = Draws;

    fn start(&mut self, episode: u32) -> (u64, Draws) {
        self.progress
            .running(&format!("{} episode {episode}", self.what));
        let episode_seed = derive(self.cell.condition.seed, "episode", episode as u64);
        let draws = Draws {
            explore: ChaCha8Rng::seed_from_u64(derive(episode_seed, "explore", 0)),
            defense: DefenseRng::seed_from_u64(derive(episode_seed, "defense", 0)),
        };
        (derive(episode_seed, "env", 0), draws)
    }

    /// Epsilon-greedy; the greedy actions from one batched [`PolicyWrapper::act_rows`], each
    /// row drawing from its episode's defense generator.
    fn actions(&mut self, lanes: &mut [Lane<Draws>], actions: usize) -> Result<Vec<usize>> {
        let (chosen, greedy) = explore(lanes, self.cell.epsilon, actions, |d| &mut d.explore);
        let (acts, seen) = if greedy.is_empty() {
            (Vec::new(), None)
        } else {
            self.greedy(lanes, &greedy)?
        };
        if self.cell.record > 0 {
            self.note_frames(lanes, &greedy, seen.as_ref())?;
        }
        Ok(fill(chosen, acts.into_iter().map(|a| a as usize)))
    }

    fn step(
        &mut self,
        episode: u32,
        env: &dyn Environment,
        action: usize,
        step: &Step,
    ) -> Result<()> {
        self.progress.frames(step.frames as u64);
        let Some(recording) = self.recordings.get_mut(&episode) else {
            return Ok(());
        };
        recording.score += step.score;
        recording.steps += 1;
        let screen = env
            .screen()
            .ok_or_else(|| anyhow::anyhow!("an agent cell records Atari screens only"))?;
        recording.video.push(&video::Frame {
            screen,
            clean: &recording.clean,
            seen: &recording.seen,
            score: recording.score,
            action: &env.action_name(action),
            step: recording.steps,
        })?;
        if step.game_over || step.truncated {
            let done = self.recordings.remove(&episode).expect("present");
            done.video.finish()?;
        }
        Ok(())
    }

    fn finished(&mut self, done: Finished<Draws>) -> Result<()> {
        let ep = done.result;
        let row = AgentRow {
            episode: done.episode,
            episode_return: ep.score,
            frames: ep.frames,
            agent_steps: ep.agent_steps,
            truncated: ep.truncated,
            ..self.template.clone()
        };
        self.progress.episode_done(
            &format!("{} episode {}", self.what, done.episode),
            ep.score,
            ep.frames,
            done.seconds,
        );
        if self.sink.is_none() {
            self.sink = Some(CsvAppender::open(self.path, &row)?);
        }
        self.sink.as_mut().expect("opened above").append(&row)?;
        Ok(())
    }
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
    let todo = episodes_todo(path, cell.episodes)?;
    play(run_dir, manifest_dir, cell, path, &todo, progress)
}

/// The episodes of `0..episodes` that `path` holds no row of.
fn episodes_todo(path: &Path, episodes: u32) -> Result<Vec<u32>> {
    let recorded: Vec<AgentRow> = read_rows(path)?;
    let done: HashSet<u32> = recorded.iter().map(|r| r.episode).collect();
    Ok((0..episodes).filter(|e| !done.contains(e)).collect())
}

/// Plays episodes `todo` of the cell, appending their rows to `path`.
fn play(
    run_dir: &Path,
    manifest_dir: &Path,
    cell: &AgentCell,
    path: &Path,
    todo: &[u32],
    progress: &mut Progress,
) -> Result<u64> {
    if todo.is_empty() {
        return Ok(0);
    }
    let (model, checkpoint_name) = load_network(run_dir, manifest_dir, cell)?;
    if let Some(a) = cell.condition.attack {
        let actions = model.arch.outputs();
        if actions < a.loss.min_classes() {
            bail!(
                "the {} loss needs at least {} actions and {} has {actions}; use loss = \"ce\" \
                 or \"margin\"",
                a.loss.name(),
                a.loss.min_classes(),
                cell.game.name()
            );
        }
    }
    let lanes = (cell.parallel_episodes as usize).clamp(1, todo.len());
    let mut envs = (0..lanes)
        .map(|_| -> Result<Box<dyn Environment>> {
            Ok(Box::new(AtariEnv::new(
                cell.game,
                cell.settings,
                Mode::Eval,
                derive(cell.condition.seed, "ale", 0),
            )?))
        })
        .collect::<Result<Vec<_>>>()?;
    // At lambda = 0 every attack returns its input: skip the gradient passes.
    let attack = cell.condition.attack.filter(|a| a.lambda > 0.0);
    // The wrapper's own generator is not used: every episode draws from its own.
    let mut wrapper = PolicyWrapper::new(model, cell.condition.defense, attack, cell.samples, 0)?
        .with_max_batch(cell.max_batch as usize);
    if let Some(file) = &cell.condition.source_checkpoint {
        let source = load_q_network(cell, &manifest_dir.join(file))
            .context("the transfer attack's surrogate network (the attack's `checkpoint`)")?;
        wrapper = wrapper.with_source(source);
    }
    let mut play = AgentPlay {
        cell,
        template: template(cell, &checkpoint_name, &wrapper),
        wrapper,
        path,
        sink: None,
        progress,
        video_dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
        recordings: BTreeMap::new(),
        what: format!(
            "{} {} {} lambda {}",
            cell.game.name(),
            cell.condition.defense.label(),
            cell.condition.attack_label(),
            cell.condition.lambda()
        ),
    };
    play_lockstep(&mut envs, todo, &mut play)?;
    Ok(todo.len() as u64)
}

impl CellRunner for AgentCell {
    fn outputs(&self) -> &'static [&'static str] {
        &[files::RL_EVAL]
    }

    fn run(&self, ctx: &CellCtx) -> Result<u64> {
        let path = ctx.file(files::RL_EVAL);
        let todo = episodes_todo(&path, self.episodes)?;
        let mut progress = Progress::new(todo.len() as u64);
        let n = play(
            ctx.run_dir,
            ctx.manifest_dir,
            self,
            &path,
            &todo,
            &mut progress,
        )?;
        progress.finish();
        Ok(n)
    }
}
