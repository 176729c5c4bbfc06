//! The run folder: its file names, the cell folders, their completion marks and the records
//! of what each complete cell wrote, the locks that keep one writer per folder, creating and
//! resuming a run, and collecting the cells' rows into the run's tables.
//!
//! ```text
//! results/<manifest name>/<run id>/
//!   manifest.toml  manifest.resolved.toml  source.toml  provenance.toml  .lock
//!   cells/<cell id>/    rows (rl_eval.csv, ...), done.toml, log.txt, .lock
//!   relative_reward.csv  summary.csv  ...   (sap collect)
//! ```
//!
//! Nothing here runs a cell: [`crate::experiment`] does, through this module.

pub mod checks;
pub mod collect;
mod done;
pub mod lock;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;
use crate::provenance::{self, Provenance};
use crate::record::write_atomic;

pub use collect::{
    cifar_train_key, collect, collect_partial, last_collection, relative_key, summarize_episodes,
    train_key, Collected, Collection, PartialRows, TrainSummary, TABLES,
};
pub use done::{damaged_outputs, mark_done, DoneMark, OutputRecord};

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
    /// A training cell's last network (DDQN and CIFAR-10 training).
    pub const FINAL: &str = "final.safetensors";
    /// A training cell's checkpoint folder.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// One row per epoch of every CIFAR-10 training cell.
    pub const CIFAR_TRAIN: &str = "cifar_train.csv";
    /// One row per network x defense x attack x lambda on CIFAR-10.
    pub const CIFAR_EVAL: &str = "cifar_eval.csv";
    /// One row per confidence bin of each CIFAR-10 evaluation row.
    pub const RELIABILITY: &str = "reliability.csv";
    /// A CIFAR-10 evaluation cell's per-image predictions.
    pub const CIFAR_EVAL_PREDICTIONS: &str = "predictions.csv";
    /// One row per CIFAR-10 network x defense x lambda of a job with two attacks or more:
    /// correct only under every attack.
    pub const WORST_CASE: &str = "worst_case.csv";
    /// The gradient-masking checks of every evaluation, passed or failed.
    pub const CHECKS: &str = "checks.csv";
    /// What the last `sap collect` collected (cells in the plan, complete cells).
    pub const COLLECTED: &str = "collected.toml";
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
