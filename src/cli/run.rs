//! `sap run`, `sap run-cell` and `sap slurm`: a manifest's cells in child processes, one
//! cell in this process, and Slurm array scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{at_least_one, node_thread_count, tables::print_collected, thread_count};
use crate::experiment;
use crate::manifest::Manifest;
use crate::run_dir::{self, RunOptions};

/// Where a run directory is: a new one under `--out`, or an existing one to resume.
#[derive(Debug, Args)]
pub struct RunDirArgs {
    /// Base folder for run directories.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Run id (default: a UTC timestamp). An existing run of the same manifest resumes.
    #[arg(long, conflicts_with = "resume")]
    pub run_id: Option<String>,
    /// Resume this run directory: complete cells are skipped, interrupted ones continue.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
}

impl RunDirArgs {
    /// Loads `manifest`, enters the reproducible mode when it asks for it, and creates (or
    /// checks, to resume) the run directory for cells of `threads` torch threads. The run
    /// folder's lock is held until the returned lock is dropped.
    fn open(
        self,
        manifest: &std::path::Path,
        threads: u32,
    ) -> Result<(Manifest, PathBuf, run_dir::lock::FolderLock)> {
        let m = Manifest::load(manifest)?;
        enter_mode(manifest, &m)?;
        let options = RunOptions::new(self.out, self.run_id, self.resume, threads);
        let (dir, lock) = run_dir::prepare_run_dir(manifest, &m, &options)?;
        Ok((m, dir, lock))
    }
}

/// Run every cell of a manifest (each as a child process) and write CSVs under the run
/// directory.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The manifest (TOML).
    pub manifest: PathBuf,
    /// Cells run at once, each a child process.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub jobs: u32,
    /// torch threads of each cell. Rows depend on it (torch's reductions round
    /// differently with other counts), never on --jobs; keep jobs x threads <= cores.
    #[arg(long, default_value_t = 1, value_parser = thread_count)]
    pub threads_per_job: u32,
    /// When every cell completed, also write the plots and report.md (`sap report`).
    #[arg(long)]
    pub report: bool,
    /// Where the run directory is.
    #[command(flatten)]
    pub run_dir: RunDirArgs,
}

/// Run one cell of a manifest in this process (what `sap run` children and Slurm array
/// tasks do).
#[derive(Debug, Args)]
pub struct RunCellArgs {
    /// The manifest (TOML), needed only to start a new run directory: an existing one is
    /// run from its own copy (`manifest.resolved.toml`).
    pub manifest: Option<PathBuf>,
    /// The cell's number (`sap plan` lists them).
    #[arg(long)]
    pub cell: usize,
    /// The run directory (created with the manifest's copies if missing).
    #[arg(long, value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// torch threads of the cell (rows depend on it; `sap run` and Slurm scripts pass
    /// theirs).
    #[arg(long, default_value_t = 1, value_parser = thread_count)]
    pub threads: u32,
    /// Report progress as `@progress` lines on stdout (for `sap run`).
    #[arg(long)]
    pub progress_lines: bool,
}

/// Write (and with --submit, submit) Slurm array scripts: one array task per cell.
#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The manifest (TOML).
    pub manifest: PathBuf,
    /// Array tasks running at once (the `%` limit of each array).
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    pub max_parallel: u32,
    /// torch threads of each cell (rows depend on it; the same as `sap run`'s
    /// --threads-per-job gives the same rows). At most 1024: the nodes' cores, not this
    /// machine's, bound it; each task checks its own node.
    #[arg(long, default_value_t = 1, value_parser = node_thread_count)]
    pub threads_per_job: u32,
    /// CPUs per task (default: --threads-per-job).
    #[arg(long, value_parser = node_thread_count)]
    pub cpus_per_task: Option<u32>,
    /// Time limit per task, e.g. 2-00:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// Partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Memory per task, e.g. 16G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Generic resources per task, e.g. gpu:1.
    #[arg(long)]
    pub gres: Option<String>,
    /// Submit the scripts with sbatch (training first, evaluations after it).
    #[arg(long)]
    pub submit: bool,
    /// Where the run directory is.
    #[command(flatten)]
    pub run_dir: RunDirArgs,
}

/// `sap run`: every cell of the manifest in child processes, then the tables.
pub(super) fn run(args: RunArgs) -> Result<ExitCode> {
    let RunArgs {
        manifest,
        jobs,
        threads_per_job,
        report: write_report,
        run_dir,
    } = args;
    // Children inherit the mode's environment. The run folder stays locked until this
    // function returns; each child locks its own cell.
    let (m, dir, _lock) = run_dir.open(&manifest, threads_per_job)?;
    let exe = std::env::current_exe().context("finding the sap executable")?;
    let opts = crate::runner::LocalOptions::new(jobs as usize, threads_per_job as usize, exe);
    if let Some(cores) = opts.oversubscribes() {
        tracing::warn!(
            "{jobs} jobs x {threads_per_job} torch threads exceed the {cores} cores; \
             cells will compete for them"
        );
    }
    let plan = m.plan();
    let report = crate::runner::run_local(&dir, &plan, &opts)?;
    let collected = run_dir::collect(&dir, &m, &plan, false)?;
    print_collected(&collected);
    crate::outln!(
        "{} cells run, {} already complete, {} failed ({} jobs x {} torch threads)",
        report.ran,
        report.already_done,
        report.failed.len(),
        opts.jobs,
        opts.threads_per_job
    );
    crate::outln!("results in {}", dir.display());
    if !report.failed.is_empty() {
        for f in &report.failed {
            crate::errln!(
                "error: cell {}: {} (log: {})",
                f.id,
                f.message,
                f.log.display()
            );
        }
        crate::errln!(
            "error: {} of {} cells did not complete; fix the cause and resume with \
             `sap run {} --resume {}`",
            report.failed.len(),
            plan.len(),
            manifest.display(),
            dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if write_report {
        let options = crate::report::ReportOptions::default();
        let r = crate::report::write_report_for(&dir, &m, &plan, options)?;
        crate::outln!(
            "report in {} ({} files)",
            r.dir.join("report.md").display(),
            r.files.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sap run-cell`: one cell in this process.
pub(super) fn run_cell(args: RunCellArgs) -> Result<ExitCode> {
    let RunCellArgs {
        manifest,
        cell,
        run_dir,
        threads,
        progress_lines,
    } = args;
    if progress_lines {
        crate::progress::report_as_lines();
    }
    let (m, folder) = cell_manifest(manifest.as_deref(), &run_dir)?;
    let plan = m.plan();
    if cell >= plan.len() {
        bail!(
            "--cell {cell} is out of range; allowed: 0..={} (`sap plan` lists the cells)",
            plan.len().saturating_sub(1)
        );
    }
    // Before any tensor work: the mode's environment must be there from the start.
    let origin = manifest
        .clone()
        .unwrap_or_else(|| run_dir.join(run_dir::files::RESOLVED));
    enter_mode(&origin, &m)?;
    tch::set_num_threads(threads as i32);
    if !run_dir.join(run_dir::files::RESOLVED).exists() {
        run_dir::create_run_dir(&origin, &m, &run_dir, threads)?;
    }
    let o = experiment::run_cell(&run_dir, &folder, &m, &plan, cell)
        .with_context(|| format!("cell {cell}"))?;
    crate::outln!("{}: complete ({} new)", o.id, o.work);
    Ok(ExitCode::SUCCESS)
}

/// `sap slurm`: array scripts, submitted with `--submit`.
pub(super) fn slurm(args: SlurmArgs) -> Result<ExitCode> {
    let SlurmArgs {
        manifest,
        max_parallel,
        threads_per_job,
        cpus_per_task,
        time,
        partition,
        mem,
        gres,
        submit,
        run_dir,
    } = args;
    // The run's provenance records the mode; array tasks enter it themselves and lock their
    // own cells.
    let (m, dir, _lock) = run_dir.open(&manifest, threads_per_job)?;
    let exe = std::env::current_exe().context("finding the sap executable")?;
    let opts = crate::slurm::SlurmOptions {
        max_parallel,
        threads: threads_per_job,
        cpus_per_task: cpus_per_task.unwrap_or(threads_per_job),
        time,
        partition,
        mem,
        gres,
    };
    let plan = m.plan();
    let scripts = crate::slurm::write_scripts(&exe, &manifest, &m.name, &dir, &plan, &opts)?;
    for s in &scripts {
        crate::outln!(
            "{}: cells {}..={} ({} array tasks, at most {max_parallel} at once)",
            s.path.display(),
            s.first,
            s.first + s.count - 1,
            s.count
        );
    }
    let submit_path = dir.join("slurm").join("submit.sh");
    crate::record::write_atomic(
        &submit_path,
        crate::slurm::submit_commands(&scripts).as_bytes(),
    )?;
    if submit {
        for (s, id) in scripts.iter().zip(crate::slurm::submit(&scripts)?) {
            crate::outln!("submitted job {id}: {}", s.path.display());
        }
    } else {
        crate::outln!("submit with: bash {}", submit_path.display());
    }
    crate::outln!(
        "when the arrays are done: sap collect {}   (sap run {} --resume {} runs what is \
         left locally)",
        dir.display(),
        manifest.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Enters the reproducible mode when the manifest asks for it (this may execute `sap` again
/// with the mode's environment); see [`crate::provenance`].
fn enter_mode(path: &std::path::Path, m: &Manifest) -> Result<()> {
    if m.reproducible {
        crate::provenance::enter_reproducible_mode()
            .with_context(|| format!("{}: key `reproducible`", path.display()))?;
    }
    Ok(())
}

/// The manifest a `run-cell` runs and the folder its relative paths start from: an existing
/// run directory's own copy (a `manifest` given too is only compared, with a warning when it
/// has changed since), or else `manifest`, which starts the run directory.
fn cell_manifest(
    manifest: Option<&std::path::Path>,
    run_dir: &std::path::Path,
) -> Result<(Manifest, PathBuf)> {
    if run_dir.join(run_dir::files::RESOLVED).exists() {
        let m = Manifest::load_run(run_dir)?;
        let recorded = run_dir::manifest_folder(run_dir)?;
        if let Some(path) = manifest {
            let same = Manifest::load(path).is_ok_and(|given| given.to_toml() == m.to_toml());
            if !same {
                tracing::warn!(
                    "{} differs from (or no longer resolves like) the manifest {} was started \
                     with; the cell runs the run directory's copy",
                    path.display(),
                    run_dir.display()
                );
            }
        }
        let folder = recorded
            .or_else(|| manifest.map(folder_of))
            .unwrap_or_else(|| PathBuf::from("."));
        return Ok((m, folder));
    }
    let Some(path) = manifest else {
        bail!(
            "{} is not a run directory (no {}); give the manifest to start one: sap run-cell \
             MANIFEST --cell N --run-dir {}",
            run_dir.display(),
            run_dir::files::RESOLVED,
            run_dir.display()
        );
    };
    let m = Manifest::load(path)?;
    Ok((m, folder_of(path)))
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
