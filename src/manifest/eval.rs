//! `[[eval]]` jobs: a policy played on games and seeds, and the environment settings they
//! override; agent jobs add the grid of `grid.rs`.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::defense_attack;
use super::games::{RawEnvOverrides, RawGames};
use super::resolver::Resolver;
use super::{
    grid, train, AgentEval, DdqnSettings, Family, GameId, Manifest, ManifestError, PolicyKind,
    TrainJob,
};
use crate::env::{AtariSettings, Preset};

/// One evaluation job: a policy on several games and seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalJob {
    /// The name in CSV rows; `eval<i>` by default.
    pub name: String,
    /// The environment family.
    pub family: Family,
    /// Game names (checked against the family's games).
    pub games: Vec<String>,
    /// Atari preset (Atari only).
    pub preset: Option<Preset>,
    /// The policy.
    pub policy: PolicyKind,
    /// Episodes per cell.
    pub episodes: u32,
    /// Evaluation seeds; each is one cell per game.
    pub seeds: Vec<u64>,
    /// Fully resolved Atari settings (Atari only).
    pub env: Option<AtariSettings>,
    /// The grid of a trained agent (`policy = "agent"`).
    pub agent: Option<AgentEval>,
}

impl Serialize for EvalJob {
    /// As the job is written in a manifest: the games of a job with `checkpoints` are that
    /// table's keys, so they are left out (the manifest must not give both).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Written<'a> {
            name: &'a str,
            family: Family,
            #[serde(skip_serializing_if = "Option::is_none")]
            games: Option<&'a Vec<String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            preset: Option<Preset>,
            policy: PolicyKind,
            episodes: u32,
            seeds: &'a Vec<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            env: Option<&'a AtariSettings>,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            agent: Option<&'a AgentEval>,
        }
        let from_files = self
            .agent
            .as_ref()
            .is_some_and(|a| !a.checkpoints.is_empty());
        Written {
            name: &self.name,
            family: self.family,
            games: (!from_files).then_some(&self.games),
            preset: self.preset,
            policy: self.policy,
            episodes: self.episodes,
            seeds: &self.seeds,
            env: self.env.as_ref(),
            agent: self.agent.as_ref(),
        }
        .serialize(s)
    }
}

/// One unit of work: a job on one game with one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Position in the plan, from 0.
    pub index: usize,
    /// Index of the job in the manifest's `eval` list.
    pub job: usize,
    /// The game.
    pub game: GameId,
    /// The Atari preset (Atari only).
    pub preset: Option<Preset>,
    /// The Atari settings (Atari only).
    pub settings: Option<AtariSettings>,
    /// The policy.
    pub policy: PolicyKind,
    /// Episodes to play.
    pub episodes: u32,
    /// The evaluation seed.
    pub seed: u64,
}

impl Cell {
    /// A name that identifies the cell in logs and file names.
    pub fn id(&self) -> String {
        let preset = self.preset.map_or("-", Preset::name);
        format!(
            "{:03}-{}-{}-{}-s{}",
            self.index,
            self.game.name(),
            preset,
            self.policy.name(),
            self.seed
        )
    }

    /// The preset name recorded in CSV rows (`none` outside Atari).
    pub fn preset_name(&self) -> &'static str {
        self.preset.map_or("none", Preset::name)
    }
}

/// The names in a checked list of games.
pub(super) fn names(games: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
    games
        .get_ref()
        .iter()
        .map(|g| g.get_ref().clone())
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvalJob {
    name: Option<Spanned<String>>,
    family: Family,
    games: Option<RawGames>,
    preset: Option<Spanned<Preset>>,
    policy: Option<Spanned<PolicyKind>>,
    episodes: Spanned<u32>,
    seeds: Option<Spanned<Vec<u64>>>,
    env: Option<Spanned<RawEnvOverrides>>,
    train: Option<Spanned<String>>,
    checkpoints: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    samples: Option<Spanned<u32>>,
    max_batch: Option<Spanned<u32>>,
    parallel_episodes: Option<Spanned<u32>>,
    record: Option<Spanned<u32>>,
    epsilon: Option<Spanned<f64>>,
    random_episodes: Option<Spanned<u32>>,
    defenses: Option<Spanned<Vec<Spanned<defense_attack::RawDefense>>>>,
    attacks: Option<Spanned<Vec<Spanned<defense_attack::RawAttack>>>>,
    lambdas: Option<Spanned<Vec<Spanned<f64>>>>,
}

impl Manifest {
    /// Expands the random-policy `[[eval]]` jobs into cells: jobs in file order, then games,
    /// then seeds. [`Manifest::plan`] numbers them after the training cells.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for (job_index, job) in self.eval.iter().enumerate() {
            if job.policy != PolicyKind::Random {
                continue;
            }
            for name in &job.games {
                let game = train::game_id(job.family, name);
                for &seed in &job.seeds {
                    cells.push(Cell {
                        index: cells.len(),
                        job: job_index,
                        game,
                        preset: job.preset,
                        settings: job.env,
                        policy: job.policy,
                        episodes: job.episodes,
                        seed,
                    });
                }
            }
        }
        cells
    }
}

impl Resolver<'_> {
    pub(super) fn resolve_job(
        &self,
        i: usize,
        job: RawEvalJob,
        seed: u64,
        trains: &[TrainJob],
    ) -> Result<EvalJob, ManifestError> {
        let prefix = format!("eval[{i}]");
        let key = |k: &str| format!("eval[{i}].{k}");
        let name = match &job.name {
            None => format!("eval{i}"),
            Some(n) => self.plain_name(n, key("name"))?,
        };
        let policy = job
            .policy
            .as_ref()
            .map_or(PolicyKind::Random, |p| *p.get_ref());
        let policy_span = job
            .policy
            .as_ref()
            .map_or(job.episodes.span(), Spanned::span);
        let episodes = self.check_range(
            &job.episodes,
            key("episodes"),
            1..1_000_000,
            true,
            "episodes",
        )?;
        let agent_keys = grid::RawAgentKeys {
            train: job.train,
            checkpoints: job.checkpoints,
            samples: job.samples,
            max_batch: job.max_batch,
            parallel_episodes: job.parallel_episodes,
            record: job.record,
            epsilon: job.epsilon,
            random_episodes: job.random_episodes,
            defenses: job.defenses,
            attacks: job.attacks,
            lambdas: job.lambdas,
        };
        let seeds = self.seed_list(job.seeds, key("seeds"), seed)?;
        self.check_policy_keys(&prefix, policy, job.family, &agent_keys, &policy_span)?;
        if job.family == Family::Classic {
            self.reject_atari_keys(&prefix, &job.preset, &job.env)?;
        }
        let overrides = job.env.map(Spanned::into_inner).unwrap_or_default();
        let source = match policy {
            PolicyKind::Agent => {
                Some(self.agent_source(&prefix, &agent_keys, trains, policy_span.clone())?)
            }
            PolicyKind::Random => None,
        };
        let (games, preset, env, agent) = match source {
            None => {
                let Some(games) = &job.games else {
                    let msg = "missing `games`: name the games to play".to_owned();
                    return Err(self.error(policy_span, key("games"), msg));
                };
                let (preset, env) =
                    self.played_games_env(&prefix, job.family, games, job.preset, overrides)?;
                (names(games), preset, env, None)
            }
            Some(grid::Source::Train(t)) => {
                let (games, env) = self.trained_games_env(
                    &prefix,
                    (job.preset.as_ref(), job.games.as_ref()),
                    overrides,
                    t,
                    &agent_keys,
                    policy_span.clone(),
                )?;
                let grid = self.resolve_agent_grid(
                    &prefix,
                    &agent_keys,
                    t.ddqn.eval_epsilon,
                    episodes,
                    policy_span,
                )?;
                (games, t.preset, Some(env), Some(grid))
            }
            Some(grid::Source::Files(files)) => {
                let (preset, env, mut grid) = self.file_agents(
                    &prefix,
                    (job.preset.as_ref(), job.games.as_ref()),
                    overrides,
                    &agent_keys,
                    episodes,
                    policy_span,
                )?;
                let games = files.keys().cloned().collect();
                grid.checkpoints = files;
                (games, Some(preset), Some(env), Some(grid))
            }
        };
        Ok(EvalJob {
            name,
            family: job.family,
            games,
            preset,
            policy,
            episodes,
            seeds,
            env,
            agent,
        })
    }

    /// The preset and settings of a random-policy job over the games it lists (checked
    /// here): an Atari preset with the job's overrides, none for classic control.
    fn played_games_env(
        &self,
        prefix: &str,
        family: Family,
        games: &RawGames,
        preset: Option<Spanned<Preset>>,
        overrides: RawEnvOverrides,
    ) -> Result<(Option<Preset>, Option<AtariSettings>), ManifestError> {
        self.check_games(prefix, family, games)?;
        Ok(match family {
            Family::Atari => {
                let preset = preset.map(Spanned::into_inner).unwrap_or_default();
                let env = self.apply_overrides(prefix, preset.settings(), overrides)?;
                (Some(preset), Some(env))
            }
            Family::Classic => (None, None),
        })
    }

    /// Refuses agent keys in a random-policy job, and agent evaluation outside Atari.
    fn check_policy_keys(
        &self,
        prefix: &str,
        policy: PolicyKind,
        family: Family,
        agent_keys: &grid::RawAgentKeys,
        policy_span: &Range<usize>,
    ) -> Result<(), ManifestError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if policy == PolicyKind::Random {
            if let Some((k, span)) = agent_keys.first_present() {
                let msg =
                    format!("`{k}` applies to policy = \"agent\" only; this job plays random");
                return Err(self.error(span, key(k), msg));
            }
        } else if family != Family::Atari {
            let msg = "agent evaluation under attack is defined for Atari games (pixel \
                       observations, lambda in pixel units); allowed: family = \"atari\""
                .to_owned();
            return Err(self.error(policy_span.clone(), key("policy"), msg));
        }
        Ok(())
    }

    /// The preset, settings and grid of an agent job over network files (`checkpoints`),
    /// whose keys are the games (so `games` may not be given).
    fn file_agents(
        &self,
        prefix: &str,
        (preset, games): (Option<&Spanned<Preset>>, Option<&RawGames>),
        overrides: RawEnvOverrides,
        agent_keys: &grid::RawAgentKeys,
        episodes: u32,
        policy_span: Range<usize>,
    ) -> Result<(Preset, AtariSettings, AgentEval), ManifestError> {
        if let Some(g) = games {
            let msg = "with `checkpoints` the games are its keys; remove `games`".into();
            return Err(self.error(g.span(), format!("{prefix}.games"), msg));
        }
        let preset = preset.map(|p| *p.get_ref()).unwrap_or_default();
        let env = self.apply_overrides(prefix, preset.settings(), overrides)?;
        let epsilon = DdqnSettings::defaults(Some(preset)).eval_epsilon;
        let grid = self.resolve_agent_grid(prefix, agent_keys, epsilon, episodes, policy_span)?;
        Ok((preset, env, grid))
    }

    /// The games and settings of an agent job that evaluates the networks of `[[train]]`
    /// job `t`: its games (or the subset `games` names) under its preset, with the job's
    /// overrides.
    fn trained_games_env(
        &self,
        prefix: &str,
        (preset, games): (Option<&Spanned<Preset>>, Option<&RawGames>),
        overrides: RawEnvOverrides,
        t: &TrainJob,
        agent_keys: &grid::RawAgentKeys,
        policy_span: Range<usize>,
    ) -> Result<(Vec<String>, AtariSettings), ManifestError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if t.family != Family::Atari {
            let msg = format!(
                "[[train]] job `{}` trains {} agents; agent evaluation under attack \
                 needs family \"atari\"",
                t.name,
                t.family.name()
            );
            let span = agent_keys.train.as_ref().map_or(policy_span, Spanned::span);
            return Err(self.error(span, key("train"), msg));
        }
        if let Some(p) = preset {
            if Some(*p.get_ref()) != t.preset {
                let msg = format!(
                    "the networks of [[train]] job `{}` were trained under preset `{}`; \
                     evaluation follows the training protocol, so leave `preset` out",
                    t.name,
                    t.preset.map_or("none", crate::env::Preset::name)
                );
                return Err(self.error(p.span(), key("preset"), msg));
            }
        }
        let games = match games {
            None => t.games.clone(),
            Some(games) => {
                self.check_games(prefix, Family::Atari, games)?;
                for (g, game) in games.get_ref().iter().enumerate() {
                    if !t.games.contains(game.get_ref()) {
                        let msg = format!(
                            "[[train]] job `{}` does not train `{}`; it trains {}",
                            t.name,
                            game.get_ref(),
                            t.games.join(", ")
                        );
                        return Err(self.error(game.span(), key(&format!("games[{g}]")), msg));
                    }
                }
                names(games)
            }
        };
        let base = t.env.expect("Atari train jobs have settings");
        let env = self.apply_overrides(prefix, base, overrides)?;
        Ok((games, env))
    }
}
