//! From a manifest to result files: the run directory, the cells in plan order, resuming
//! a run that stopped, and the summary.

pub mod agent;
pub mod baseline;
pub mod checks;
pub mod cifar;
pub mod collect;
pub mod episode;
pub mod lock;
pub mod robustness;
pub mod train;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::env::Game;
use crate::manifest::{CellKind, Family, Manifest, PlanCell, PolicyKind};
use crate::progress::Progress;
use crate::provenance::{self, Provenance, RomRecord};
use crate::record::{read_rows, write_atomic, CsvAppender};
use crate::stats::summarize;
use crate::table::{AgentRow, ClassifierRow, EpisodeRow, SummaryRow};

pub use collect::{
    cifar_train_key, collect, collect_partial, last_collection, relative_key, train_key, Collected,
    Collection, PartialRows, TrainSummary, TABLES,
};

/// File names inside a run directory.
pub mod files {
    /// The manifest as the user wrote it.
    pub const MANIFEST: &str = "manifest.toml";
    /// The absolute folder of the manifest the run was started from: relative paths in the
    /// manifest (data folders, checkpoints) are relative to it.
    pub const SOURCE: &str = "source.toml";
    /// The manifest with every default resolved.
    pub const RESOLVED: &str = "manifest.resolved.toml";
    /// One row per episode.
    pub const EPISODES: &str = "episodes.csv";
    /// One row per game x preset x policy.
    pub const SUMMARY: &str = "summary.csv";
    /// One row per classifier x defense x attack x lambda (`[[robustness]]` jobs).
    pub const CLASSIFIER_EVAL: &str = "classifier_eval.csv";
    /// One row per training game, every training cell (merged from `cells/*/train.csv`).
    pub const TRAIN: &str = "train.csv";
    /// One row per evaluation episode during training (merged from the cells).
    pub const TRAIN_EVAL: &str = "train_eval.csv";
    /// One row per episode of an agent under a defense, attack and lambda.
    pub const RL_EVAL: &str = "rl_eval.csv";
    /// One row per game x defense x attack x lambda (from `rl_eval.csv`).
    pub const RELATIVE_REWARD: &str = "relative_reward.csv";
    /// A cell's completion mark, written atomically once its rows are complete.
    pub const DONE: &str = "done.toml";
    /// A cell's log (stderr of its process).
    pub const LOG: &str = "log.txt";
    /// The folder of per-cell files.
    pub const CELLS: &str = "cells";
    /// One row per epoch of every CIFAR-10 training cell.
    pub const CIFAR_TRAIN: &str = super::cifar::train::TRAIN_FILE;
    /// One row per network x defense x attack x lambda on CIFAR-10.
    pub const CIFAR_EVAL: &str = super::cifar::eval::EVAL_FILE;
    /// One row per confidence bin of each CIFAR-10 evaluation row.
    pub const RELIABILITY: &str = super::cifar::eval::RELIABILITY_FILE;
    /// A CIFAR-10 evaluation cell's per-image predictions.
    pub const CIFAR_EVAL_PREDICTIONS: &str = super::cifar::eval::PREDICTIONS;
    /// One row per CIFAR-10 network x defense x lambda of a job with two attacks or more:
    /// correct only under every attack.
    pub const WORST_CASE: &str = "worst_case.csv";
    /// The gradient-masking checks of every evaluation, passed or failed.
    pub const CHECKS: &str = "checks.csv";
    /// What the last `sap collect` collected (cells in the plan, complete cells).
    pub const COLLECTED: &str = "collected.toml";
}

/// What a summary row groups by: (job, family, game, preset, policy).
type GroupKey = (String, Family, String, String, PolicyKind);

/// Groups episode rows by job, game, preset and policy (in first-seen order) and summarises
/// each group's returns.
pub fn summarize_episodes(rows: &[EpisodeRow]) -> Vec<SummaryRow> {
    let mut groups: Vec<(GroupKey, Vec<&EpisodeRow>)> = Vec::new();
    for row in rows {
        let key = (
            row.job.clone(),
            row.family,
            row.game.clone(),
            row.preset.clone(),
            row.policy,
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
        .into_iter()
        .map(|((job, family, game, preset, policy), members)| {
            let returns: Vec<f64> = members.iter().map(|r| r.episode_return).collect();
            let s = summarize(&returns);
            let hns = match family {
                Family::Atari => crate::env::scores::hns(&game, s.mean),
                Family::Classic => None,
            };
            SummaryRow {
                job,
                family,
                game,
                preset,
                policy,
                n: s.n,
                mean: s.mean,
                std: s.std,
                ci95_low: s.ci95.map(|c| c.0),
                ci95_high: s.ci95.map(|c| c.1),
                truncated: members.iter().filter(|r| r.truncated).count(),
                hns,
            }
        })
        .collect()
}

/// Where a run writes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Base folder (`results`).
    pub out: PathBuf,
    /// Run id; a new UTC timestamp when `None`. An existing run with the same manifest is
    /// resumed.
    pub run_id: Option<String>,
    /// An existing run directory to resume (instead of `out` and `run_id`).
    pub resume: Option<PathBuf>,
    /// torch threads of each cell (recorded in the run's provenance).
    pub threads: u32,
}

impl RunOptions {
    /// Options from the command line's `--out`, `--run-id`, `--resume` and threads per cell.
    pub fn new(
        out: PathBuf,
        run_id: Option<String>,
        resume: Option<PathBuf>,
        threads: u32,
    ) -> Self {
        RunOptions {
            out,
            run_id,
            resume,
            threads,
        }
    }
}

fn timestamp_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    now.format(&fmt).expect("timestamp formats")
}

/// The folder of cell `id` in a run directory.
pub fn cell_dir(run_dir: &Path, id: &str) -> PathBuf {
    run_dir.join(files::CELLS).join(id)
}

/// Whether a cell's completion mark exists.
pub fn is_done(run_dir: &Path, id: &str) -> bool {
    cell_dir(run_dir, id).join(files::DONE).is_file()
}

/// Checks that `dir` holds a run of `manifest` (its resolved manifest is identical).
pub fn check_run_dir(dir: &Path, manifest: &Manifest) -> Result<()> {
    let (old, resolved_path) = read_resolved(dir)?;
    if old != manifest.to_toml() {
        bail!("{}", other_manifest(dir, &resolved_path));
    }
    Ok(())
}

fn read_resolved(dir: &Path) -> Result<(String, PathBuf)> {
    let resolved_path = dir.join(files::RESOLVED);
    let old = std::fs::read_to_string(&resolved_path).with_context(|| {
        format!(
            "{} is not a run directory (no readable {})",
            dir.display(),
            files::RESOLVED
        )
    })?;
    Ok((old, resolved_path))
}

fn other_manifest(dir: &Path, resolved_path: &Path) -> String {
    format!(
        "{} holds a run of a different manifest ({} differs); pass a new --run-id to start \
         another run",
        dir.display(),
        resolved_path.display()
    )
}

/// Checks that `dir` holds a run of `manifest`, or of the same manifest with smaller
/// training budgets: then the run's two manifest copies become `manifest_path`'s, and its
/// training cells continue to the raised `frames` from their newest checkpoint (a cell that
/// had finished loses its completion mark; the new end writes its final network again). Nothing a cell does depends on its budget before the budget is reached, so the
/// rows are those of a run given the raised budget from the start. Refused when an
/// evaluation cell has already started on a network that would change.
fn check_or_extend(manifest_path: &Path, dir: &Path, manifest: &Manifest) -> Result<()> {
    let (old, resolved_path) = read_resolved(dir)?;
    if old == manifest.to_toml() {
        return Ok(());
    }
    let Ok(recorded) = Manifest::load_run(dir) else {
        bail!("{}", other_manifest(dir, &resolved_path));
    };
    let mut raised = recorded.clone();
    let mut changes = Vec::new();
    for (job, new) in raised.train.iter_mut().zip(&manifest.train) {
        if new.frames > job.frames {
            changes.push((job.name.clone(), job.frames, new.frames));
            job.frames = new.frames;
        }
    }
    if changes.is_empty() || raised.to_toml() != manifest.to_toml() {
        bail!("{}", other_manifest(dir, &resolved_path));
    }
    let extended: Vec<(usize, String)> = manifest
        .train_cells()
        .into_iter()
        .filter(|c| recorded.train[c.job_index].frames != c.job.frames)
        .map(|c| (c.index, c.id()))
        .collect();
    for cell in manifest.plan() {
        let started = cell_dir(dir, &cell.id()).exists();
        if let Some((_, train)) = extended.iter().find(|(i, _)| cell.deps.contains(i)) {
            if started {
                bail!(
                    "{} differs from {} only in larger training budgets, but cell {} has \
                     already evaluated the network of training cell {train}; pass a new \
                     --run-id to train anew",
                    manifest_path.display(),
                    resolved_path.display(),
                    cell.id()
                );
            }
        }
    }
    // The completion marks go first: a crash before the manifests are rewritten leaves
    // finished cells that the old manifest marks done again (their final networks stay
    // until the new end overwrites them).
    for (_, id) in &extended {
        let path = cell_dir(dir, id).join(files::DONE);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let original = std::fs::read(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    write_atomic(&dir.join(files::MANIFEST), &original)?;
    write_atomic(&dir.join(files::RESOLVED), manifest.to_toml().as_bytes())?;
    for (job, from, to) in changes {
        tracing::info!(
            "{}: training job `{job}` raised from {from} to {to} frames; its unfinished cells \
             continue from their newest checkpoint",
            dir.display()
        );
    }
    Ok(())
}

/// Creates the run directory, or checks that an existing one holds the same manifest.
pub fn prepare_run_dir(
    manifest_path: &Path,
    manifest: &Manifest,
    opts: &RunOptions,
) -> Result<(PathBuf, lock::FolderLock)> {
    if let Some(dir) = &opts.resume {
        // Read-only first: a folder that is no run is refused before a lock file is made.
        read_resolved(dir)?;
        let held = lock::acquire(dir, RUN_HOLDER)?;
        check_or_extend(manifest_path, dir, manifest)?;
        warn_on_other_provenance(dir, opts.threads)?;
        return Ok((dir.clone(), held));
    }
    let run_id = opts.run_id.clone().unwrap_or_else(timestamp_id);
    if run_id.is_empty() || run_id.contains(['/', '\\']) || run_id.starts_with('.') {
        bail!("--run-id {run_id:?} must be a plain folder name");
    }
    let dir = opts.out.join(&manifest.name).join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let held = lock::acquire(&dir, RUN_HOLDER)?;
    if dir.join(files::RESOLVED).exists() {
        check_or_extend(manifest_path, &dir, manifest)?;
        warn_on_other_provenance(&dir, opts.threads)?;
        return Ok((dir, held));
    }
    create_run_dir(manifest_path, manifest, &dir, opts.threads)?;
    Ok((dir, held))
}

/// How a run folder's lock names `sap run` (and `sap slurm` while it prepares the folder).
const RUN_HOLDER: &str = "sap run";

/// Creates run directory `dir` with the manifest's two copies and the provenance of this
/// process for cells of `threads` torch threads.
pub fn create_run_dir(
    manifest_path: &Path,
    manifest: &Manifest,
    dir: &Path,
    threads: u32,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let original = std::fs::read(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    write_atomic(&dir.join(files::MANIFEST), &original)?;
    write_atomic(&dir.join(files::RESOLVED), manifest.to_toml().as_bytes())?;
    let folder = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let folder = std::path::absolute(folder)
        .with_context(|| format!("finding the folder of {}", manifest_path.display()))?;
    let mut source = toml::Table::new();
    source.insert(
        "folder".into(),
        toml::Value::String(folder.to_string_lossy().into_owned()),
    );
    write_atomic(&dir.join(files::SOURCE), source.to_string().as_bytes())?;
    Provenance::current(threads).write(&dir.join(provenance::FILE))?;
    Ok(())
}

/// The folder a run's manifest paths are relative to, as recorded in its `source.toml`
/// (`None` for a run directory made before that file existed).
pub fn manifest_folder(run_dir: &Path) -> Result<Option<PathBuf>> {
    let path = run_dir.join(files::SOURCE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    match table.get("folder").and_then(toml::Value::as_str) {
        Some(f) => Ok(Some(PathBuf::from(f))),
        None => bail!(
            "{}: key `folder` is missing or not a string",
            path.display()
        ),
    }
}

/// Warns when a run is resumed under settings its rows depend on (another CPU kind, build,
/// thread count or device) that differ from those it was started with.
pub fn warn_on_other_provenance(dir: &Path, threads: u32) -> Result<()> {
    let Some(recorded) = Provenance::read(&dir.join(provenance::FILE))? else {
        return Ok(());
    };
    let diff = Provenance::current(threads).differences(&recorded);
    if !diff.is_empty() {
        tracing::warn!(
            "resuming {} under other settings than it was started with (here vs there): {}; \
             rows of cells finished here may differ from those finished there, and \
             `sap collect` refuses to merge them",
            dir.display(),
            diff.join("; ")
        );
    }
    Ok(())
}

/// Records the provenance of a cell's computation in its folder at its first start, with
/// the ROM file of an Atari cell's game; a later start (a resume) under other settings is
/// warned about, and the record keeps the first. A cell started on another ROM file is
/// refused: its rows would mix two games.
fn record_cell_provenance(cell_dir: &Path, id: &str, game: Option<Game>) -> Result<()> {
    let path = cell_dir.join(provenance::FILE);
    let mut here = Provenance::current(tch::get_num_threads().max(1) as u32);
    here.rom = game.map(RomRecord::standard);
    match Provenance::read(&path)? {
        None => here.write(&path)?,
        Some(first) => {
            if let (Some(then), Some(now)) = (&first.rom, &here.rom) {
                if then.md5 != now.md5 {
                    bail!(
                        "cell {id} was started on another ROM file of {} (MD5 {}, recorded in \
                         {}) than the standard file this sap loads (MD5 {}); its rows cannot \
                         be continued on another game version. Delete the cell's folder to \
                         rerun it",
                        now.game,
                        then.md5,
                        path.display(),
                        now.md5
                    );
                }
            }
            let diff = here.differences(&first);
            if !diff.is_empty() {
                tracing::warn!(
                    "cell {id} resumes under other settings than it started with (here vs \
                     there): {}; its rows may mix both",
                    diff.join("; ")
                );
            }
        }
    }
    Ok(())
}

/// What one cell did in this call.
#[derive(Clone, Debug, PartialEq)]
pub struct CellOutcome {
    /// The cell id.
    pub id: String,
    /// Rows (episodes, evaluation rows, training agent steps) produced in this call; 0 when
    /// the cell was already complete.
    pub work: u64,
}

/// Runs (or resumes) cell `index` of the manifest's plan in this process, then marks it
/// complete. A complete cell is left as it is. Relative paths of the manifest are taken
/// relative to `manifest_dir`.
pub fn run_cell(
    run_dir: &Path,
    manifest_dir: &Path,
    manifest: &Manifest,
    plan: &[PlanCell],
    index: usize,
) -> Result<CellOutcome> {
    let cell = plan.get(index).with_context(|| {
        format!(
            "--cell {index} is out of range; allowed: 0..={} (`sap plan` lists the cells)",
            plan.len().saturating_sub(1)
        )
    })?;
    let id = cell.id();
    if is_done(run_dir, &id) {
        return Ok(CellOutcome { id, work: 0 });
    }
    for &dep in &cell.deps {
        let dep_id = plan[dep].id();
        if !is_done(run_dir, &dep_id) {
            bail!("cell {id} needs cell {dep_id}, which has not finished; run it first");
        }
    }
    if manifest.reproducible && !provenance::in_reproducible_mode() {
        bail!(
            "the manifest sets reproducible = true but this process is not in the reproducible \
             mode; run cells through `sap run` or `sap run-cell`, which enter it"
        );
    }
    let dir = cell_dir(run_dir, &id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _writer = lock::acquire(&dir, &format!("cell {id}"))?;
    // Another writer may have finished the cell while this one waited to start.
    if is_done(run_dir, &id) {
        return Ok(CellOutcome { id, work: 0 });
    }
    record_cell_provenance(&dir, &id, cell.atari_game())?;
    let (work, outputs): (u64, Vec<&str>) = match &cell.kind {
        CellKind::Train(t) => {
            let o = train::run_cell(run_dir, t)?;
            (
                o.steps_run,
                vec![files::TRAIN, files::TRAIN_EVAL, train::FINAL],
            )
        }
        CellKind::Episodes(c) => {
            let path = dir.join(files::EPISODES);
            let recorded: Vec<EpisodeRow> = read_rows(&path)?;
            let done: HashSet<_> = recorded.iter().map(EpisodeRow::key).collect();
            let mut sink = CsvAppender::open(&path, &EpisodeRow::sample())?;
            let todo = c.episodes as u64 - recorded.len().min(c.episodes as usize) as u64;
            let mut progress = Progress::new(todo);
            let job = &manifest.eval[c.job].name;
            let n = baseline::run_cell(c, job, &done, &mut sink, &mut progress)?;
            progress.finish();
            (n, vec![files::EPISODES])
        }
        CellKind::Agent(a) => {
            let path = dir.join(files::RL_EVAL);
            let recorded: Vec<AgentRow> = read_rows(&path)?;
            let todo = a.episodes as u64 - recorded.len().min(a.episodes as usize) as u64;
            let mut progress = Progress::new(todo);
            let n = agent::run_cell(run_dir, manifest_dir, a, &path, &mut progress)?;
            progress.finish();
            (n, vec![files::RL_EVAL])
        }
        CellKind::Robustness { job, seed, .. } => {
            let path = dir.join(files::CLASSIFIER_EVAL);
            let recorded: Vec<ClassifierRow> = read_rows(&path)?;
            let done: HashSet<String> = recorded.iter().map(|r| r.key()).collect();
            let mut sink = CsvAppender::open(&path, &robustness::header_row())?;
            let j = &manifest.robustness[*job];
            let n = robustness::run_cell(run_dir, manifest_dir, *job, j, *seed, &done, &mut sink)?;
            (n, vec![files::CLASSIFIER_EVAL])
        }
        CellKind::CifarTrain(c) => {
            let o = cifar::train::run_cell(run_dir, manifest_dir, &id, c)?;
            (
                o.iterations_run,
                vec![files::CIFAR_TRAIN, cifar::train::FINAL],
            )
        }
        CellKind::CifarEval(c) => {
            let n = cifar::eval::run_cell(run_dir, manifest_dir, &id, c)?;
            (n, vec![files::CIFAR_EVAL, files::RELIABILITY])
        }
    };
    // The rows reach the disk before the mark that says they are complete; the mark
    // records each output's size so that a file damaged later is found by `sap collect`.
    let mut mark = DoneMark {
        cell: id.clone(),
        index,
        outputs: BTreeMap::new(),
    };
    for name in outputs {
        let path = dir.join(name);
        if path.exists() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", path.display()))?;
            mark.outputs
                .insert(name.to_owned(), OutputRecord::of(&path)?);
        }
    }
    let text = toml::to_string(&mark).expect("completion marks serialise");
    write_atomic(&dir.join(files::DONE), text.as_bytes())?;
    Ok(CellOutcome { id, work })
}

/// A cell's completion mark (`done.toml`), with the size of each output it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoneMark {
    /// The cell id.
    pub cell: String,
    /// Its number in the plan.
    pub index: usize,
    /// Output file name -> what it held when the cell completed (absent in marks of an
    /// older sap, whose outputs cannot be checked).
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputRecord>,
}

/// The size of a cell's output when the cell completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Bytes.
    pub bytes: u64,
    /// Data rows (lines after the header) of a CSV file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

impl OutputRecord {
    /// What `path` holds now.
    pub fn of(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let is_csv = path.extension().is_some_and(|e| e == "csv");
        let rows = is_csv.then(|| {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            lines.saturating_sub(1)
        });
        Ok(OutputRecord {
            bytes: bytes.len() as u64,
            rows,
        })
    }

    /// "3 rows (412 bytes)" or "412 bytes".
    fn describe(&self) -> String {
        match self.rows {
            Some(r) => format!("{r} rows ({} bytes)", self.bytes),
            None => format!("{} bytes", self.bytes),
        }
    }
}

/// Checks a complete cell's outputs against its completion mark: each recorded file must
/// still exist with the recorded size and rows. Returns what differs, one line per file.
pub fn damaged_outputs(run_dir: &Path, id: &str) -> Result<Vec<String>> {
    let dir = cell_dir(run_dir, id);
    let path = dir.join(files::DONE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mark: DoneMark = toml::from_str(&text).with_context(|| {
        format!(
            "{}: not a completion mark; delete it to run the cell again",
            path.display()
        )
    })?;
    let mut damage = Vec::new();
    for (name, recorded) in &mark.outputs {
        let file = dir.join(name);
        if !file.exists() {
            damage.push(format!(
                "{name} is missing; it held {} when the cell completed",
                recorded.describe()
            ));
            continue;
        }
        let now = OutputRecord::of(&file)?;
        if now != *recorded {
            damage.push(format!(
                "{name} holds {}, but {} when the cell completed",
                now.describe(),
                recorded.describe()
            ));
        }
    }
    Ok(damage)
}
