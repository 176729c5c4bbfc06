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
mod error;
mod grid;
mod plan;
mod robustness;
mod train;

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use cifar::{CifarEvalJob, CifarTrainJob, Variant, PAPER_LAMBDAS};
pub use error::{did_you_mean, ManifestError};
pub use grid::AgentEval;
pub use plan::{
    AgentCell, CellKind, CifarEvalCell, CifarTrainCell, NetworkSource, PlanCell, Stage,
};
pub use robustness::{AttackSpec, RobustnessJob, Task};
pub use train::{default_runtime, DdqnSettings, OptimizerKind, PeriodUnit, TrainCell, TrainJob};

use crate::env::{games::game_names, AtariSettings, ClassicGame, Game, Preset};
use error::suggestion;

/// Which environment family a job runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Atari 2600 games through ALE.
    Atari,
    /// Classic-control tasks (gym-rs).
    Classic,
}

impl Family {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Family::Atari => "atari",
            Family::Classic => "classic",
        }
    }
}

/// The policy an evaluation job plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Uniformly random actions: the baseline for normalised scores.
    #[default]
    Random,
    /// A trained Double DQN agent under a defense x attack x lambda grid.
    Agent,
}

impl PolicyKind {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Random => "random",
            PolicyKind::Agent => "agent",
        }
    }
}

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

/// The largest manifest read, in bytes: manifests are short text files.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Reads a manifest's text: a regular file of at most [`MAX_MANIFEST_BYTES`] (a pipe such as
/// `<(cat m.toml)` is read too), UTF-8, errors naming the file and `what` it is.
fn read_text(path: &Path, what: &str) -> Result<String, ManifestError> {
    use std::io::Read;
    let fail = |msg: String| ManifestError::whole_file(path, msg);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if meta.is_dir() {
        return Err(fail(format!(
            "is a directory; allowed: {what} as a TOML file"
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(fail(format!(
            "is larger than {} MiB; allowed: {what} as a TOML file of at most that size",
            MAX_MANIFEST_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        ManifestError::at(
            path,
            &text,
            Some(valid..valid),
            error::key_at(&text, valid),
            format!("invalid UTF-8 at byte {valid}; allowed: {what} as UTF-8 text"),
        )
    })
}

/// The names in a checked list of games.
fn names(games: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
    games
        .get_ref()
        .iter()
        .map(|g| g.get_ref().clone())
        .collect()
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
    cifar_eval: Vec<cifar::RawCifarEval>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvalJob {
    name: Option<Spanned<String>>,
    family: Family,
    games: Option<Spanned<Vec<Spanned<String>>>>,
    preset: Option<Spanned<Preset>>,
    policy: Option<Spanned<PolicyKind>>,
    episodes: Spanned<u32>,
    seeds: Option<Spanned<Vec<u64>>>,
    env: Option<Spanned<RawEnvOverrides>>,
    train: Option<Spanned<String>>,
    checkpoints: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    samples: Option<Spanned<u32>>,
    epsilon: Option<Spanned<f64>>,
    random_episodes: Option<Spanned<u32>>,
    defenses: Option<Spanned<Vec<Spanned<robustness::RawDefense>>>>,
    attacks: Option<Spanned<Vec<Spanned<robustness::RawAttack>>>>,
    lambdas: Option<Spanned<Vec<Spanned<f64>>>>,
}

/// Overrides of a preset's settings; absent keys keep the preset's value.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEnvOverrides {
    frame_skip: Option<Spanned<u32>>,
    repeat_action_probability: Option<Spanned<f32>>,
    noop_max: Option<Spanned<u32>>,
    fire_on_reset: Option<bool>,
    life_loss_terminal: Option<bool>,
    clip_rewards: Option<bool>,
    max_episode_frames: Option<Spanned<u64>>,
    action_set: Option<crate::env::ActionSet>,
}

/// Numbers a manifest may hold: floats must be finite (TOML allows `nan` and `inf`, which no
/// key accepts).
pub(super) trait Finite {
    /// False for NaN and the infinities.
    fn is_finite_number(&self) -> bool;
}

macro_rules! always_finite {
    ($($t:ty),*) => {$(impl Finite for $t {
        fn is_finite_number(&self) -> bool {
            true
        }
    })*};
}
always_finite!(u32, u64, usize, i64);

impl Finite for f64 {
    fn is_finite_number(&self) -> bool {
        self.is_finite()
    }
}

impl Finite for f32 {
    fn is_finite_number(&self) -> bool {
        self.is_finite()
    }
}

/// How the files a manifest names (data folders, checkpoints) are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileChecks {
    /// A missing or bad file is an error (`validate`, `run`).
    Require,
    /// A missing or bad file is a warning (`plan`, a dry run).
    Warn,
    /// Not looked at (a run's own copy, whose paths belong to the original's folder).
    Skip,
}

struct Resolver<'a> {
    path: &'a Path,
    text: &'a str,
    files: FileChecks,
    /// File problems found under [`FileChecks::Warn`].
    warnings: std::cell::RefCell<Vec<ManifestError>>,
}

impl Resolver<'_> {
    /// Whether files the manifest names are looked at.
    fn check_files(&self) -> bool {
        self.files != FileChecks::Skip
    }

    /// A problem with a file the manifest names: an error, or a warning in a dry run.
    fn file_problem(&self, error: ManifestError) -> Result<(), ManifestError> {
        match self.files {
            FileChecks::Warn => {
                self.warnings.borrow_mut().push(error);
                Ok(())
            }
            _ => Err(error),
        }
    }

    /// Checks a checkpoint file a manifest names: a readable safetensors file with finite
    /// values (its shapes are checked against the network when a cell loads it).
    fn checkpoint_file(
        &self,
        path: &Path,
        span: Range<usize>,
        key: String,
        allowed: &str,
    ) -> Result<(), ManifestError> {
        if !self.check_files() {
            return Ok(());
        }
        let problem = match crate::record::not_a_file(path) {
            Some(p) => Some(format!(
                "checkpoint {} {p} (paths are relative to the manifest's folder); allowed: \
                 {allowed}",
                path.display()
            )),
            None => crate::nn::checkpoint::read_tensors(path)
                .err()
                .map(|e| e.to_string()),
        };
        match problem {
            Some(msg) => self.file_problem(self.error(span, key, msg)),
            None => Ok(()),
        }
    }

    fn error(&self, span: Range<usize>, key: String, message: String) -> ManifestError {
        ManifestError::at(self.path, self.text, Some(span), Some(key), message)
    }

    fn check_range<T: PartialOrd + Copy + std::fmt::Display + Finite>(
        &self,
        value: &Spanned<T>,
        key: String,
        allowed: Range<T>,
        inclusive_end: bool,
        what: &str,
    ) -> Result<T, ManifestError> {
        let v = *value.get_ref();
        self.finite(value, &key)?;
        let above = if inclusive_end {
            v > allowed.end
        } else {
            v >= allowed.end
        };
        if v < allowed.start || above {
            let close = if inclusive_end { "]" } else { ")" };
            let msg = format!(
                "{v} is out of range; allowed: {what} in [{}, {}{close}",
                allowed.start, allowed.end
            );
            return Err(self.error(value.span(), key, msg));
        }
        Ok(v)
    }

    /// Rejects NaN and the infinities, naming the key.
    fn finite<T: Finite + std::fmt::Display>(
        &self,
        value: &Spanned<T>,
        key: &str,
    ) -> Result<(), ManifestError> {
        if value.get_ref().is_finite_number() {
            return Ok(());
        }
        let msg = format!(
            "{} is not allowed; allowed: a finite number (nan and inf are never valid)",
            value.get_ref()
        );
        Err(self.error(value.span(), key.to_owned(), msg))
    }

    /// A name that can be part of a folder name: letters, digits, '-', '_' and '.',
    /// starting with a letter or digit.
    fn plain_name(&self, name: &Spanned<String>, key: String) -> Result<String, ManifestError> {
        let n = name.get_ref();
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            let msg = format!(
                "{n:?} cannot name a results folder; allowed: letters, digits, '-', '_' and \
                 '.', starting with a letter or digit"
            );
            return Err(self.error(name.span(), key, msg));
        }
        Ok(n.clone())
    }

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

    /// One error when two jobs of `table` share a name.
    fn unique_names<'n>(
        &self,
        table: &str,
        names: impl Iterator<Item = &'n str>,
    ) -> Result<(), ManifestError> {
        let mut seen = HashSet::new();
        for (i, n) in names.enumerate() {
            if !seen.insert(n) {
                let msg = format!("two [[{table}]] jobs are named `{n}`; names must differ");
                return Err(ManifestError::keyed(
                    self.path,
                    format!("{table}[{i}].name"),
                    msg,
                ));
            }
        }
        Ok(())
    }

    fn resolve_job(
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
            epsilon: job.epsilon,
            random_episodes: job.random_episodes,
            defenses: job.defenses,
            attacks: job.attacks,
            lambdas: job.lambdas,
        };
        let seeds = self.seed_list(job.seeds, key("seeds"), seed)?;
        if policy == PolicyKind::Random {
            if let Some((k, span)) = agent_keys.first_present() {
                let msg =
                    format!("`{k}` applies to policy = \"agent\" only; this job plays random");
                return Err(self.error(span, key(k), msg));
            }
        } else if job.family != Family::Atari {
            let msg = "agent evaluation under attack is defined for Atari games (pixel \
                       observations, lambda in pixel units); allowed: family = \"atari\""
                .to_owned();
            return Err(self.error(policy_span, key("policy"), msg));
        }
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
                self.check_games(&prefix, job.family, games)?;
                let (preset, env) = match job.family {
                    Family::Atari => {
                        let preset = job.preset.map(Spanned::into_inner).unwrap_or_default();
                        let env = self.apply_overrides(&prefix, preset.settings(), overrides)?;
                        (Some(preset), Some(env))
                    }
                    Family::Classic => (None, None),
                };
                (names(games), preset, env, None)
            }
            Some(grid::Source::Train(t)) => {
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
                if let Some(p) = &job.preset {
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
                let games = match &job.games {
                    None => t.games.clone(),
                    Some(games) => {
                        self.check_games(&prefix, job.family, games)?;
                        for (g, game) in games.get_ref().iter().enumerate() {
                            if !t.games.contains(game.get_ref()) {
                                let msg = format!(
                                    "[[train]] job `{}` does not train `{}`; it trains {}",
                                    t.name,
                                    game.get_ref(),
                                    t.games.join(", ")
                                );
                                return Err(self.error(
                                    game.span(),
                                    key(&format!("games[{g}]")),
                                    msg,
                                ));
                            }
                        }
                        names(games)
                    }
                };
                let base = t.env.expect("Atari train jobs have settings");
                let env = self.apply_overrides(&prefix, base, overrides)?;
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
                if let Some(g) = &job.games {
                    let msg = "with `checkpoints` the games are its keys; remove `games`".into();
                    return Err(self.error(g.span(), key("games"), msg));
                }
                let preset = job.preset.map(Spanned::into_inner).unwrap_or_default();
                let env = self.apply_overrides(&prefix, preset.settings(), overrides)?;
                let epsilon = DdqnSettings::defaults(Some(preset)).eval_epsilon;
                let mut grid =
                    self.resolve_agent_grid(&prefix, &agent_keys, epsilon, episodes, policy_span)?;
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

    /// Checks a job's `games`: non-empty, no repeats, each a game of `family`.
    fn check_games(
        &self,
        prefix: &str,
        family: Family,
        games: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<(), ManifestError> {
        if games.get_ref().is_empty() {
            let msg = "the list is empty; name at least one game".to_owned();
            return Err(self.error(games.span(), format!("{prefix}.games"), msg));
        }
        let mut seen = HashSet::new();
        for (g, game) in games.get_ref().iter().enumerate() {
            let game_key = format!("{prefix}.games[{g}]");
            let name = game.get_ref().as_str();
            if !seen.insert(name) {
                return Err(self.error(game.span(), game_key, format!("`{name}` is listed twice")));
            }
            self.check_game(family, name, game.span(), game_key)?;
        }
        Ok(())
    }

    /// A classic-control job may not name a preset or Atari settings.
    fn reject_atari_keys(
        &self,
        prefix: &str,
        preset: &Option<Spanned<Preset>>,
        env: &Option<Spanned<RawEnvOverrides>>,
    ) -> Result<(), ManifestError> {
        if let Some(p) = preset {
            let msg = "presets apply to Atari games only; remove it for family \"classic\"";
            return Err(self.error(p.span(), format!("{prefix}.preset"), msg.into()));
        }
        if let Some(e) = env {
            let table = prefix.split('[').next().unwrap_or(prefix);
            let msg = format!(
                "environment settings apply to Atari games only; remove [{table}.env] for family \
                 \"classic\""
            );
            return Err(self.error(e.span(), format!("{prefix}.env"), msg));
        }
        Ok(())
    }

    /// A job's `seeds`, or the manifest seed when absent.
    fn seed_list(
        &self,
        seeds: Option<Spanned<Vec<u64>>>,
        key: String,
        seed: u64,
    ) -> Result<Vec<u64>, ManifestError> {
        match seeds {
            None => Ok(vec![seed]),
            Some(seeds) => {
                let mut unique = HashSet::new();
                if seeds.get_ref().is_empty() || !seeds.get_ref().iter().all(|s| unique.insert(*s))
                {
                    let msg = "allowed: a non-empty list of distinct seeds".to_owned();
                    return Err(self.error(seeds.span(), key, msg));
                }
                Ok(seeds.into_inner())
            }
        }
    }

    fn check_game(
        &self,
        family: Family,
        name: &str,
        span: Range<usize>,
        key: String,
    ) -> Result<(), ManifestError> {
        let classic_names: Vec<&str> = ClassicGame::ALL.iter().map(|g| g.name()).collect();
        let (known, other_family) = match family {
            Family::Atari => (
                Game::from_name(name).is_some(),
                ClassicGame::from_name(name).is_some(),
            ),
            Family::Classic => (
                ClassicGame::from_name(name).is_some(),
                Game::from_name(name).is_some(),
            ),
        };
        if known {
            return Ok(());
        }
        let msg = if other_family {
            let other = if family == Family::Atari {
                "classic"
            } else {
                "atari"
            };
            format!(
                "`{name}` is not a {} game; it belongs to family \"{other}\"",
                family.name()
            )
        } else {
            match family {
                Family::Atari => format!(
                    "unknown Atari game `{name}`{}; `sap games` lists the {} bundled games",
                    suggestion(name, game_names()),
                    game_names().len()
                ),
                Family::Classic => format!(
                    "unknown classic game `{name}`; allowed: {}{}",
                    classic_names.join(", "),
                    suggestion(name, classic_names.iter().copied())
                ),
            }
        };
        Err(self.error(span, key, msg))
    }

    /// Applies `[<prefix>.env]` overrides to a preset's settings.
    fn apply_overrides(
        &self,
        prefix: &str,
        mut s: AtariSettings,
        o: RawEnvOverrides,
    ) -> Result<AtariSettings, ManifestError> {
        let key = |k: &str| format!("{prefix}.env.{k}");
        if let Some(v) = &o.frame_skip {
            s.frame_skip = self.check_range(v, key("frame_skip"), 1..64, true, "frames")?;
        }
        if let Some(v) = &o.repeat_action_probability {
            let what = "a probability";
            s.repeat_action_probability =
                self.check_range(v, key("repeat_action_probability"), 0.0..1.0, false, what)?;
        }
        if let Some(v) = &o.noop_max {
            s.noop_max = self.check_range(v, key("noop_max"), 0..10_000, true, "frames")?;
        }
        if let Some(v) = &o.max_episode_frames {
            let what = "frames";
            s.max_episode_frames =
                self.check_range(v, key("max_episode_frames"), 1..u64::MAX, true, what)?;
        }
        s.fire_on_reset = o.fire_on_reset.unwrap_or(s.fire_on_reset);
        s.life_loss_terminal = o.life_loss_terminal.unwrap_or(s.life_loss_terminal);
        s.clip_rewards = o.clip_rewards.unwrap_or(s.clip_rewards);
        s.action_set = o.action_set.unwrap_or(s.action_set);
        Ok(s)
    }
}
