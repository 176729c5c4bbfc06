//! `[[eval]]` jobs with `policy = "agent"`: trained Double DQN agents evaluated under every
//! defense x attack x lambda (the Atari robustness grid).
//!
//! ```toml
//! [[eval]]
//! policy = "agent"
//! family = "atari"
//! train = "ddqn"              # the [[train]] job whose final networks are evaluated
//! # checkpoints = { Pong = "models/pong.safetensors" }   # or networks from files
//! episodes = 10               # per cell
//! samples = 10                # Q-value passes averaged per action (stochastic defenses)
//! max_batch = 128             # rows per forward pass when passes are stacked
//! parallel_episodes = 1       # episodes played in lockstep (capped at `episodes`)
//! record = 1                  # the first episodes of every cell as animated GIFs (default 0)
//! defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0 }]
//! attacks = [{ kind = "fgsm", gradient_samples = 10 }]
//! lambdas = [0, 1, 2, 4, 8, 16, 32, 64]   # pixel units
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use toml::Spanned;

use super::defense_attack::{RawAttack, RawDefense};
use super::{AttackSpec, ManifestError, Resolver, TrainJob};
use crate::defense::Defense;

/// Episodes an agent cell plays in lockstep unless the manifest says otherwise: one, so that
/// each episode's forward passes have shapes of their own and its row is the same on any CPU
/// for any `--jobs` and after a resume (kernels round differently at other batch sizes).
pub const DEFAULT_PARALLEL_EPISODES: u32 = 1;

/// The largest `parallel_episodes`: each running episode holds an emulator.
pub const MAX_PARALLEL_EPISODES: u32 = 1024;

/// What an agent evaluation job evaluates and how.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentEval {
    /// The `[[train]]` job whose final networks are evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// Networks from files, per game (paths relative to the manifest).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checkpoints: BTreeMap<String, String>,
    /// Q-value passes averaged per action (stochastic defenses).
    pub samples: u32,
    /// Rows per forward pass when a prediction's `samples` passes and a gradient's
    /// `gradient_samples` passes are stacked along the batch (the draws do not depend on it).
    pub max_batch: u32,
    /// Episodes played in lockstep by an agent cell (one batched forward per step over the
    /// episodes still running); a cell with fewer episodes plays them all at once. Above 1,
    /// an episode's row depends on which episodes ran beside it through the rounding of
    /// batch-size-dependent kernels, so it can differ with another value or after a resume.
    pub parallel_episodes: u32,
    /// The first `record` episodes of every cell are written as animated GIFs
    /// (`cells/<cell>/episode-<e>.gif`, see [`crate::video`]); 0 records none.
    #[serde(skip_serializing_if = "is_zero")]
    pub record: u32,
    /// Probability of a uniformly random action at each step (the preset's evaluation
    /// epsilon by default).
    pub epsilon: f64,
    /// Random-policy episodes per game and seed, the baseline of normalised scores.
    pub random_episodes: u32,
    /// Defenses, each evaluated under every attack and lambda.
    pub defenses: Vec<Defense>,
    /// Attacks without their radius.
    pub attacks: Vec<AttackSpec>,
    /// Attack radii, pixel units.
    pub lambdas: Vec<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AgentEval {
    /// Whether the grid itself holds the dense network without attack (dense at lambda 0);
    /// otherwise the plan adds that reference cell.
    pub fn has_dense_clean(&self) -> bool {
        self.defenses.contains(&Defense::Dense) && self.lambdas.contains(&0.0)
    }
}

/// The keys only agent evaluation takes.
#[derive(Default)]
pub(super) struct RawAgentKeys {
    pub train: Option<Spanned<String>>,
    pub checkpoints: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub samples: Option<Spanned<u32>>,
    pub max_batch: Option<Spanned<u32>>,
    pub parallel_episodes: Option<Spanned<u32>>,
    pub record: Option<Spanned<u32>>,
    pub epsilon: Option<Spanned<f64>>,
    pub random_episodes: Option<Spanned<u32>>,
    pub defenses: Option<Spanned<Vec<Spanned<RawDefense>>>>,
    pub attacks: Option<Spanned<Vec<Spanned<RawAttack>>>>,
    pub lambdas: Option<Spanned<Vec<Spanned<f64>>>>,
}

impl RawAgentKeys {
    /// The first key present, for "only with policy = agent" messages.
    pub fn first_present(&self) -> Option<(&'static str, std::ops::Range<usize>)> {
        let spans = [
            ("train", self.train.as_ref().map(Spanned::span)),
            ("checkpoints", self.checkpoints.as_ref().map(Spanned::span)),
            ("samples", self.samples.as_ref().map(Spanned::span)),
            ("max_batch", self.max_batch.as_ref().map(Spanned::span)),
            (
                "parallel_episodes",
                self.parallel_episodes.as_ref().map(Spanned::span),
            ),
            ("record", self.record.as_ref().map(Spanned::span)),
            ("epsilon", self.epsilon.as_ref().map(Spanned::span)),
            (
                "random_episodes",
                self.random_episodes.as_ref().map(Spanned::span),
            ),
            ("defenses", self.defenses.as_ref().map(Spanned::span)),
            ("attacks", self.attacks.as_ref().map(Spanned::span)),
            ("lambdas", self.lambdas.as_ref().map(Spanned::span)),
        ];
        spans.into_iter().find_map(|(k, s)| s.map(|s| (k, s)))
    }
}

/// Where the networks of an agent job come from, as the resolver found it.
pub(super) enum Source<'a> {
    /// A `[[train]]` job.
    Train(&'a TrainJob),
    /// Files per game.
    Files(BTreeMap<String, String>),
}

impl Resolver<'_> {
    /// Radii in pixel units: a non-empty list of finite numbers >= 0.
    pub(super) fn resolve_lambdas(
        &self,
        prefix: &str,
        lambdas: &Spanned<Vec<Spanned<f64>>>,
    ) -> Result<Vec<f64>, ManifestError> {
        if lambdas.get_ref().is_empty() {
            let msg = "the list is empty; allowed: radii >= 0 in pixel units".to_owned();
            return Err(self.error(lambdas.span(), format!("{prefix}.lambdas"), msg));
        }
        let mut out = Vec::new();
        for (l, v) in lambdas.get_ref().iter().enumerate() {
            let x = *v.get_ref();
            if !(x >= 0.0 && x.is_finite()) {
                let msg = format!("{x} is not allowed; allowed: a radius >= 0 in pixel units");
                return Err(self.error(v.span(), format!("{prefix}.lambdas[{l}]"), msg));
            }
            out.push(x);
        }
        Ok(out)
    }

    /// Finds the networks of an agent job: a `[[train]]` job by name, or files that exist.
    pub(super) fn agent_source<'t>(
        &self,
        prefix: &str,
        keys: &RawAgentKeys,
        trains: &'t [TrainJob],
        policy_span: std::ops::Range<usize>,
    ) -> Result<Source<'t>, ManifestError> {
        match (&keys.train, &keys.checkpoints) {
            (Some(_), Some(c)) => {
                let msg = "give either `train` or `checkpoints`, not both".to_owned();
                Err(self.error(c.span(), format!("{prefix}.checkpoints"), msg))
            }
            (None, None) => {
                let msg = "policy = \"agent\" needs the networks to evaluate: `train = \"<name of \
                           a [[train]] job>\"` or `checkpoints = { Game = \"file.safetensors\" }`"
                    .to_owned();
                Err(self.error(policy_span, format!("{prefix}.policy"), msg))
            }
            (Some(name), None) => {
                let names: Vec<&str> = trains.iter().map(|t| t.name.as_str()).collect();
                match trains.iter().find(|t| t.name == *name.get_ref()) {
                    Some(t) => Ok(Source::Train(t)),
                    None => {
                        let allowed = if names.is_empty() {
                            "the manifest has no [[train]] job; add one or give `checkpoints`"
                                .to_owned()
                        } else {
                            format!(
                                "allowed: {}{}",
                                names.join(", "),
                                super::suggestion(name.get_ref(), names.iter().copied())
                            )
                        };
                        let msg =
                            format!("no [[train]] job is named `{}`; {allowed}", name.get_ref());
                        Err(self.error(name.span(), format!("{prefix}.train"), msg))
                    }
                }
            }
            (None, Some(files)) => {
                if files.get_ref().is_empty() {
                    let msg = "the table is empty; allowed: Game = \"file.safetensors\"".into();
                    return Err(self.error(files.span(), format!("{prefix}.checkpoints"), msg));
                }
                let base = self.path.parent().unwrap_or(Path::new("."));
                let mut out = BTreeMap::new();
                for (game, file) in files.get_ref() {
                    let key = format!("{prefix}.checkpoints.{game}");
                    self.check_game(super::Family::Atari, game, file.span(), key.clone())?;
                    let path = base.join(file.get_ref());
                    let allowed = "a safetensors file of the game's Q-network, e.g. a \
                                   training cell's final.safetensors";
                    self.checkpoint_file(&path, file.span(), key, allowed)?;
                    out.insert(game.clone(), file.get_ref().clone());
                }
                Ok(Source::Files(out))
            }
        }
    }

    /// The defense x attack x lambda grid and its sampling settings.
    pub(super) fn resolve_agent_grid(
        &self,
        prefix: &str,
        keys: &RawAgentKeys,
        default_epsilon: f64,
        episodes: u32,
        policy_span: std::ops::Range<usize>,
    ) -> Result<AgentEval, ManifestError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let required = |k: &str, example: &str| {
            let msg = format!("policy = \"agent\" needs `{k}`, e.g. {k} = {example}");
            self.error(policy_span.clone(), key(k), msg)
        };
        let raw_defenses = keys
            .defenses
            .as_ref()
            .ok_or_else(|| required("defenses", "[{ kind = \"dense\" }]"))?;
        let defenses = self.resolve_defenses(
            prefix,
            raw_defenses,
            &super::defense_attack::NATURE_SMALLEST,
        )?;
        let raw_attacks = keys
            .attacks
            .as_ref()
            .ok_or_else(|| required("attacks", "[{ kind = \"fgsm\", gradient_samples = 10 }]"))?;
        let stochastic = defenses.iter().any(Defense::is_stochastic);
        let attacks = self.resolve_attacks(prefix, raw_attacks, stochastic)?;
        let lambdas = match &keys.lambdas {
            None => return Err(required("lambdas", "[0, 1, 2, 4, 8, 16, 32, 64]")),
            Some(l) => self.resolve_lambdas(prefix, l)?,
        };
        let samples = self.or_positive(&keys.samples, key("samples"), 1, "an integer >= 1")?;
        let max_batch = self.max_batch(&keys.max_batch, key("max_batch"))?;
        let parallel_episodes = self.or_in_range(
            &keys.parallel_episodes,
            key("parallel_episodes"),
            DEFAULT_PARALLEL_EPISODES,
            1..MAX_PARALLEL_EPISODES,
            true,
            "episodes in lockstep",
        )?;
        let record = self.or_in_range(
            &keys.record,
            key("record"),
            0,
            0..episodes,
            true,
            "episodes to record per cell (at most `episodes`)",
        )?;
        let epsilon = self.or_in_range(
            &keys.epsilon,
            key("epsilon"),
            default_epsilon,
            0.0..1.0,
            true,
            "a probability",
        )?;
        let random_episodes = self.or_positive(
            &keys.random_episodes,
            key("random_episodes"),
            episodes,
            "an integer >= 1",
        )?;
        Ok(AgentEval {
            train: keys.train.as_ref().map(|t| t.get_ref().clone()),
            checkpoints: BTreeMap::new(),
            samples,
            max_batch,
            parallel_episodes,
            record,
            epsilon,
            random_episodes,
            defenses,
            attacks,
            lambdas,
        })
    }
}
