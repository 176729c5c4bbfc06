//! Experiment manifests: TOML files, checked at load time, expanded deterministically into
//! numbered cells.
//!
//! ```toml
//! name = "quickstart"
//! seed = 1
//!
//! [[eval]]                  # one evaluation job: every game x every seed is a cell
//! family = "atari"
//! games = ["Pong", "Breakout"]
//! preset = "dopamine-v5"
//! policy = "random"
//! episodes = 3
//! [eval.env]                # optional overrides of the preset's settings
//! max_episode_frames = 108_000
//! ```
//!
//! Every error names the file, line and column, the key and what is allowed
//! ([`ManifestError`]). The resolved manifest (defaults filled in, presets expanded) is
//! itself a valid manifest and is saved in each run directory.

mod cifar;
mod cifar_eval;
mod condition;
mod ddqn;
mod defense_attack;
mod error;
mod eval;
mod expand;
mod games;
mod grid;
mod plan;
mod resolver;
mod robustness;
mod train;

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use crate::vocab::{Family, PolicyKind, Variant};
pub use cifar::{CifarTrainJob, PAPER_LAMBDAS};
pub use cifar_eval::CifarEvalJob;
pub use condition::Condition;
pub use ddqn::{DdqnSettings, OptimizerKind, PeriodUnit};
pub use defense_attack::AttackSpec;
pub use error::{did_you_mean, ManifestError};
pub use eval::{Cell, EvalJob};
pub use grid::{AgentEval, DEFAULT_PARALLEL_EPISODES};
pub use plan::{
    AgentCell, CellKind, CifarEvalCell, CifarTrainCell, NetworkSource, PlanCell, RobustnessCell,
    Stage,
};
pub use resolver::MAX_MANIFEST_BYTES;
pub use robustness::{RobustnessJob, Task};
pub use train::{default_runtime, TrainCell, TrainJob};

use crate::env::{ClassicGame, Game};
use error::suggestion;
use eval::RawEvalJob;
use games::RawEnvOverrides;
use resolver::{read_text, FileChecks, Finite, Resolver};

/// A game of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GameId {
    /// An Atari game.
    Atari(Game),
    /// A classic-control task.
    Classic(ClassicGame),
}

impl GameId {
    /// The CamelCase name.
    pub fn name(self) -> &'static str {
        match self {
            GameId::Atari(g) => g.name(),
            GameId::Classic(g) => g.name(),
        }
    }

    /// The family.
    pub fn family(self) -> Family {
        match self {
            GameId::Atari(_) => Family::Atari,
            GameId::Classic(_) => Family::Classic,
        }
    }
}

/// A checked manifest with every default resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    /// Name of the experiment; the run directory is `results/<name>/<run id>/`.
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The seed every job uses unless it lists its own `seeds`.
    pub seed: u64,
    /// Cells compute in the reproducible mode (see [`crate::provenance`]): the same rows on
    /// any x86-64 CPU with AVX2, at some cost in speed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reproducible: bool,
    /// Double DQN training jobs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub train: Vec<TrainJob>,
    /// Evaluation jobs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub eval: Vec<EvalJob>,
    /// Defense x attack x lambda jobs on classifiers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub robustness: Vec<RobustnessJob>,
    /// ResNet-20 training on CIFAR-10.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cifar_train: Vec<CifarTrainJob>,
    /// CIFAR-10 evaluation grids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cifar_eval: Vec<CifarEvalJob>,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = read_text(path, "the manifest")?;
        Self::parse(path, &text)
    }

    /// Checks a manifest's text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        Self::parse_with(path, text, FileChecks::Require).map(|(m, _)| m)
    }

    /// Reads and checks a manifest for a dry run (`sap plan`): files it names that are
    /// missing or unreadable (data folders, checkpoints) are returned as warnings instead
    /// of failing, so the plan can still be shown.
    pub fn load_for_plan(path: &Path) -> Result<(Self, Vec<ManifestError>), ManifestError> {
        let text = read_text(path, "the manifest")?;
        Self::parse_with(path, &text, FileChecks::Warn)
    }

    /// Reads the resolved manifest a run directory holds (files it names are not looked
    /// for: their paths are relative to the original manifest's folder).
    pub fn load_run(run_dir: &Path) -> Result<Self, ManifestError> {
        let path = run_dir.join("manifest.resolved.toml");
        if !path.exists() {
            return Err(ManifestError::whole_file(
                &path,
                format!(
                    "no such file; is {} a run directory (made by `sap run` or `sap slurm`)?",
                    run_dir.display()
                ),
            ));
        }
        let text = read_text(&path, "the run's manifest")?;
        Self::parse_with(&path, &text, FileChecks::Skip).map(|(m, _)| m)
    }

    fn parse_with(
        path: &Path,
        text: &str,
        files: FileChecks,
    ) -> Result<(Self, Vec<ManifestError>), ManifestError> {
        if let Some((offset, c)) = text
            .char_indices()
            .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            let msg = format!(
                "control character U+{:04X} is not allowed in a manifest; allowed: printable \
                 text, tabs and line breaks (write it as an escape such as \\u{:04X} inside a \
                 string)",
                c as u32, c as u32
            );
            return Err(ManifestError::at(
                path,
                text,
                Some(offset..offset + 1),
                error::key_at(text, offset),
                msg,
            ));
        }
        let de = toml::Deserializer::new(text);
        let raw: RawManifest = serde_path_to_error::deserialize(de).map_err(|e| {
            // `Spanned` values add a private path segment; drop it.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let offset = inner.span().map_or(text.len(), |s| s.start);
            let key = match (key != ".").then_some(key) {
                Some(k) => Some(k),
                None => error::key_at(text, offset),
            };
            ManifestError::at(
                path,
                text,
                inner.span(),
                key,
                error::explain_toml_message(inner.message(), text, offset),
            )
        })?;
        let resolver = Resolver {
            path,
            text,
            files,
            warnings: std::cell::RefCell::new(Vec::new()),
        };
        let m = resolver.resolve(raw)?;
        Ok((m, resolver.warnings.into_inner()))
    }

    /// The resolved manifest as TOML (a valid manifest itself).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a resolved manifest always serialises")
    }

    /// Expands the `[[train]]` jobs into numbered training cells: jobs in file order, then
    /// games, then seeds.
    pub fn train_cells(&self) -> Vec<TrainCell> {
        let mut cells = Vec::new();
        for (job_index, job) in self.train.iter().enumerate() {
            for name in &job.games {
                for &seed in &job.seeds {
                    cells.push(TrainCell {
                        index: cells.len(),
                        job_index,
                        game: train::game_id(job.family, name),
                        seed,
                        job: job.clone(),
                    });
                }
            }
        }
        cells
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    seed: u64,
    #[serde(default)]
    reproducible: bool,
    #[serde(default)]
    train: Vec<train::RawTrainJob>,
    #[serde(default)]
    eval: Vec<RawEvalJob>,
    #[serde(default)]
    robustness: Vec<robustness::RawRobustnessJob>,
    #[serde(default)]
    cifar_train: Vec<cifar::RawCifarTrain>,
    #[serde(default)]
    cifar_eval: Vec<cifar_eval::RawCifarEval>,
}

impl Resolver<'_> {
    fn resolve(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        let name = self.plain_name(&raw.name, "name".into())?;
        if raw.train.is_empty()
            && raw.eval.is_empty()
            && raw.robustness.is_empty()
            && raw.cifar_train.is_empty()
            && raw.cifar_eval.is_empty()
        {
            let end = self.text.len();
            return Err(ManifestError::at(
                self.path,
                self.text,
                Some(end..end),
                None,
                "the manifest defines no jobs; add at least one [[train]], [[eval]], \
                 [[robustness]], [[cifar_train]] or [[cifar_eval]] table",
            ));
        }
        let train = raw
            .train
            .into_iter()
            .enumerate()
            .map(|(i, job)| self.resolve_train(i, job, raw.seed))
            .collect::<Result<_, _>>()?;
        let train: Vec<TrainJob> = train;
        let mut seen = HashSet::new();
        for (i, t) in train.iter().enumerate() {
            if !seen.insert(t.name.as_str()) {
                let msg = format!(
                    "two [[train]] jobs are named `{}`; names must differ",
                    t.name
                );
                return Err(ManifestError::keyed(
                    self.path,
                    format!("train[{i}].name"),
                    msg,
                ));
            }
        }
        let eval: Vec<EvalJob> = raw
            .eval
            .into_iter()
            .enumerate()
            .map(|(i, job)| self.resolve_job(i, job, raw.seed, &train))
            .collect::<Result<_, _>>()?;
        let mut seen = HashSet::new();
        for (i, e) in eval.iter().enumerate() {
            if !seen.insert(e.name.as_str()) {
                let msg = format!(
                    "two [[eval]] jobs are named `{}`; names must differ",
                    e.name
                );
                return Err(ManifestError::keyed(
                    self.path,
                    format!("eval[{i}].name"),
                    msg,
                ));
            }
        }
        let robustness = raw
            .robustness
            .into_iter()
            .enumerate()
            .map(|(i, job)| self.resolve_robustness(i, job, raw.seed))
            .collect::<Result<_, _>>()?;
        let cifar_train: Vec<CifarTrainJob> = raw
            .cifar_train
            .into_iter()
            .enumerate()
            .map(|(i, job)| self.resolve_cifar_train(i, job, raw.seed))
            .collect::<Result<_, _>>()?;
        self.unique_names("cifar_train", cifar_train.iter().map(|j| j.name.as_str()))?;
        let cifar_eval: Vec<CifarEvalJob> = raw
            .cifar_eval
            .into_iter()
            .enumerate()
            .map(|(i, job)| self.resolve_cifar_eval(i, job, raw.seed, &cifar_train))
            .collect::<Result<_, _>>()?;
        self.unique_names("cifar_eval", cifar_eval.iter().map(|j| j.name.as_str()))?;
        Ok(Manifest {
            name: name.clone(),
            description: raw.description,
            seed: raw.seed,
            reproducible: raw.reproducible,
            train,
            eval,
            robustness,
            cifar_train,
            cifar_eval,
        })
    }
}
