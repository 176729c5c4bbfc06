//! The `sap` command line: subcommands and what each prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::env::{ale::action_counts, ClassicEnv, ClassicGame, Environment, Game};
use crate::experiment::{self, RunOptions, SummaryRow};
use crate::manifest::{did_you_mean, CellKind, Manifest, Stage};

/// Stochastic Activation Pruning experiment harness.
#[derive(Debug, Parser)]
#[command(name = "sap", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every cell of a manifest (each as a child process) and write CSVs under the run
    /// directory.
    #[command(after_help = "Examples:\n  sap run experiments/quickstart.toml\n  \
                            sap run experiments/quickstart.toml --run-id first   # resumes if it exists\n  \
                            sap run experiments/paper_atari.toml --jobs 8\n  \
                            sap run experiments/paper_atari.toml --resume results/paper_atari/20261124-101500")]
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
        /// Base folder for run directories.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Run id (default: a UTC timestamp). An existing run of the same manifest resumes.
        #[arg(long, conflicts_with = "resume")]
        run_id: Option<String>,
        /// Resume this run directory: complete cells are skipped, interrupted ones continue.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Cells run at once, each a child process.
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        jobs: u32,
        /// torch threads of each cell. Rows depend on it (torch's reductions round
        /// differently with other counts), never on --jobs; keep jobs x threads <= cores.
        #[arg(long, default_value_t = 1, value_parser = thread_count)]
        threads_per_job: u32,
    },
    /// Run one cell of a manifest in this process (what `sap run` children and Slurm array
    /// tasks do).
    #[command(
        after_help = "Examples:\n  sap run-cell --cell 3 --run-dir results/quickstart/first\n  \
                      sap run-cell experiments/quickstart.toml --cell 3 --run-dir results/quickstart/new   # starts the run directory"
    )]
    RunCell {
        /// The manifest (TOML), needed only to start a new run directory: an existing one is
        /// run from its own copy (`manifest.resolved.toml`).
        manifest: Option<PathBuf>,
        /// The cell's number (`sap plan` lists them).
        #[arg(long)]
        cell: usize,
        /// The run directory (created with the manifest's copies if missing).
        #[arg(long, value_name = "RUN_DIR")]
        run_dir: PathBuf,
        /// torch threads of the cell (rows depend on it; `sap run` and Slurm scripts pass
        /// theirs).
        #[arg(long, default_value_t = 1, value_parser = thread_count)]
        threads: u32,
        /// Report progress as `@progress` lines on stdout (for `sap run`).
        #[arg(long)]
        progress_lines: bool,
    },
    /// Write (and with --submit, submit) Slurm array scripts: one array task per cell.
    #[command(
        after_help = "Examples:\n  sap slurm experiments/paper_atari.toml --max-parallel 50 --time 2-00:00:00\n  \
                            sap slurm experiments/paper_atari.toml --run-id paper --submit\n  \
                            sap collect results/paper_atari/paper   # when the arrays are done"
    )]
    Slurm {
        /// The manifest (TOML).
        manifest: PathBuf,
        /// Base folder for run directories.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Run id (default: a UTC timestamp).
        #[arg(long, conflicts_with = "resume")]
        run_id: Option<String>,
        /// Resubmit the incomplete cells of this run directory (complete ones exit at once).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Array tasks running at once (the `%` limit of each array).
        #[arg(long, default_value_t = 8, value_parser = at_least_one)]
        max_parallel: u32,
        /// torch threads of each cell (rows depend on it; the same as `sap run`'s
        /// --threads-per-job gives the same rows). At most 1024: the nodes' cores, not this
        /// machine's, bound it; each task checks its own node.
        #[arg(long, default_value_t = 1, value_parser = node_thread_count)]
        threads_per_job: u32,
        /// CPUs per task (default: --threads-per-job).
        #[arg(long, value_parser = node_thread_count)]
        cpus_per_task: Option<u32>,
        /// Time limit per task, e.g. 2-00:00:00.
        #[arg(long)]
        time: Option<String>,
        /// Partition.
        #[arg(long)]
        partition: Option<String>,
        /// Memory per task, e.g. 16G.
        #[arg(long)]
        mem: Option<String>,
        /// Generic resources per task, e.g. gpu:1.
        #[arg(long)]
        gres: Option<String>,
        /// Submit the scripts with sbatch (training first, evaluations after it).
        #[arg(long)]
        submit: bool,
    },
    /// Plot a run's tables (PNG and SVG) and summarise them in markdown, under
    /// RUN_DIR/report/.
    #[command(after_help = "Example:\n  sap report results/quickstart/first")]
    Report {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Write a synthetic CIFAR-10 in the binary version's exact format (6 files of 10,000
    /// records), for trying the classifier family where the real files cannot be fetched.
    #[command(after_help = "Example:\n  sap synth-cifar data/cifar-synth --seed 1")]
    SynthCifar {
        /// The folder to write (created if needed).
        dir: PathBuf,
        /// Seed of labels, shifts and noise.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Merge the complete cells' CSVs of a run into its tables and summaries.
    #[command(after_help = "Example:\n  sap collect results/quickstart/first")]
    Collect {
        /// The run directory.
        run_dir: PathBuf,
        /// Merge cells computed under different settings that rows depend on (CPU kind
        /// outside the reproducible mode, build, threads, device), with a warning; by
        /// default such a run is refused.
        #[arg(long)]
        allow_mixed: bool,
    },
    /// Check a manifest and report the first problem, with file, line, column and key.
    #[command(after_help = "Example:\n  sap validate experiments/quickstart.toml")]
    Validate {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Print the numbered cells a manifest expands into.
    #[command(after_help = "Example:\n  sap plan experiments/quickstart.toml")]
    Plan {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// List every game: bundled Atari ROMs with minimal and full action counts, and the
    /// classic-control tasks.
    #[command(after_help = "Example:\n  sap games")]
    Games,
    /// Measure throughput; prints ratios measured side by side in one run.
    #[command(
        after_help = "Examples:\n  sap bench env --games Pong,Breakout --frames 200000\n  \
                            sap bench defense --rounds 3 --iterations 5\n  \
                            sap bench ddqn --steps 2000 --actors 1 --envs-per-actor 4\n  \
                            sap bench jobs --jobs 2 --rounds 1\n  \
                            sap bench cifar --iterations 10 --rounds 2 --workers 2 --eval-images 100"
    )]
    Bench {
        /// What to measure.
        target: BenchTarget,
        /// Atari games to measure.
        #[arg(long, value_delimiter = ',', default_values_t = ["Pong".to_string(), "Breakout".to_string()])]
        games: Vec<String>,
        /// Emulator frames per loop and round.
        #[arg(long, default_value_t = 100_000)]
        frames: u64,
        /// Alternating rounds; the best of each loop is kept.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Batches per workload and round (`defense`).
        #[arg(long, default_value_t = 5)]
        iterations: u32,
        /// Agent steps per measurement (`ddqn`).
        #[arg(long, default_value_t = 2_000)]
        steps: u64,
        /// Actor threads (`ddqn`).
        #[arg(long, default_value_t = 1)]
        actors: usize,
        /// Environments per actor (`ddqn`).
        #[arg(long, default_value_t = 4)]
        envs_per_actor: usize,
        /// torch threads of the learner (`ddqn`).
        #[arg(long, default_value_t = 1)]
        learner_threads: usize,
        /// Cells at once, compared with 1 (`jobs`).
        #[arg(long, default_value_t = 2, value_parser = at_least_one)]
        jobs: u32,
        /// Episode cap in emulator frames of the grid's cells (`jobs`).
        #[arg(long, default_value_t = 2_000)]
        cap: u64,
        /// Background batch threads (`cifar`).
        #[arg(long, default_value_t = 2, value_parser = at_least_one)]
        workers: u32,
        /// Test images per evaluation setting and round (`cifar`; 0 skips the evaluation
        /// part).
        #[arg(long, default_value_t = 200)]
        eval_images: u32,
        /// Internal (`reproducible`): measure once in this mode and print the rates.
        #[arg(long, hide = true)]
        child_mode: Option<crate::bench::reproducible::Mode>,
    },
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
    if run_dir.join(experiment::files::RESOLVED).exists() {
        let m = Manifest::load_run(run_dir)?;
        let recorded = experiment::manifest_folder(run_dir)?;
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
            experiment::files::RESOLVED,
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

/// A count flag: an integer >= 1.
fn at_least_one(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not allowed; allowed: an integer >= 1")),
    }
}

/// A torch thread count: 1 to 4 x this machine's cores (more only slows a cell down, and
/// huge counts crash torch).
fn thread_count(s: &str) -> Result<u32, String> {
    let n = at_least_one(s)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as u32;
    let max = 4 * cores;
    if n > max {
        return Err(format!(
            "`{s}` is not allowed; allowed: 1..={max} torch threads (4 x this machine's {cores} \
             cores)"
        ));
    }
    Ok(n)
}

/// A torch thread count for cluster nodes, whose cores this machine cannot know: 1..=1024.
fn node_thread_count(s: &str) -> Result<u32, String> {
    match at_least_one(s)? {
        n if n <= 1024 => Ok(n),
        _ => Err(format!(
            "`{s}` is not allowed; allowed: 1..=1024 (threads or CPUs of one task on one node)"
        )),
    }
}

/// Benchmark targets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchTarget {
    /// Bare ALE `act()` loop against the full preprocessing pipeline.
    Env,
    /// Dense, SAP-100 exact and independent forward passes, and FGSM with 10 gradient
    /// samples, on ResNet-20 (batch 128) and the Nature CNN (batch 32).
    Defense,
    /// Double DQN on Pong: learner-only updates/s, actors-only and end-to-end agent
    /// steps/s, and batched inference against local network copies.
    Ddqn,
    /// Multi-game scaling of `sap run`: cells per hour of a fixed tiny grid with --jobs 1
    /// and --jobs N.
    Jobs,
    /// ResNet-20 training steps (batch 128) on a synthetic CIFAR-10: images/s with the
    /// background batch pipeline against batches made beforehand (--iterations steps).
    Cifar,
    /// The cost of the reproducible mode: dense and SAP-100 forwards and Double DQN updates,
    /// each round in a child with the default kernels and one in the reproducible mode.
    Reproducible,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            manifest,
            out,
            run_id,
            resume,
            jobs,
            threads_per_job,
        } => {
            let m = Manifest::load(&manifest)?;
            // Children inherit the mode's environment.
            enter_mode(&manifest, &m)?;
            let dir = experiment::prepare_run_dir(
                &manifest,
                &m,
                &RunOptions::new(out, run_id, resume, threads_per_job),
            )?;
            let exe = std::env::current_exe().context("finding the sap executable")?;
            let opts =
                crate::runner::LocalOptions::new(jobs as usize, threads_per_job as usize, exe);
            if let Some(cores) = opts.oversubscribes() {
                tracing::warn!(
                    "{jobs} jobs x {threads_per_job} torch threads exceed the {cores} cores; \
                     cells will compete for them"
                );
            }
            let plan = m.plan();
            let report = crate::runner::run_local(&dir, &plan, &opts)?;
            let collected = experiment::collect(&dir, &m, false)?;
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
        }
        Command::RunCell {
            manifest,
            cell,
            run_dir,
            threads,
            progress_lines,
        } => {
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
                .unwrap_or_else(|| run_dir.join(experiment::files::RESOLVED));
            enter_mode(&origin, &m)?;
            tch::set_num_threads(threads as i32);
            if !run_dir.join(experiment::files::RESOLVED).exists() {
                experiment::create_run_dir(&origin, &m, &run_dir, threads)?;
            }
            let o = experiment::run_cell(&run_dir, &folder, &m, &plan, cell)
                .with_context(|| format!("cell {cell}"))?;
            crate::outln!("{}: complete ({} new)", o.id, o.work);
        }
        Command::Slurm {
            manifest,
            out,
            run_id,
            resume,
            max_parallel,
            threads_per_job,
            cpus_per_task,
            time,
            partition,
            mem,
            gres,
            submit,
        } => {
            let m = Manifest::load(&manifest)?;
            // The run's provenance records the mode; array tasks enter it themselves.
            enter_mode(&manifest, &m)?;
            let dir = experiment::prepare_run_dir(
                &manifest,
                &m,
                &RunOptions::new(out, run_id, resume, threads_per_job),
            )?;
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
            let scripts =
                crate::slurm::write_scripts(&exe, &manifest, &m.name, &dir, &plan, &opts)?;
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
        }
        Command::SynthCifar { dir, seed } => {
            crate::data::cifar::synthesize(&dir, seed)?;
            let train = crate::data::cifar::load(&dir, crate::data::cifar::Split::Train)?;
            let test = crate::data::cifar::load(&dir, crate::data::cifar::Split::Test)?;
            crate::outln!(
                "{}: {} training and {} test images in the CIFAR-10 binary format",
                dir.display(),
                train.len(),
                test.len()
            );
        }
        Command::Report { run_dir } => {
            let r = crate::report::write_report(&run_dir)?;
            for f in &r.files {
                crate::outln!("{}", f.display());
            }
        }
        Command::Collect {
            run_dir,
            allow_mixed,
        } => {
            let m = Manifest::load_run(&run_dir)?;
            let c = experiment::collect(&run_dir, &m, allow_mixed)?;
            print_collected(&c);
            crate::outln!(
                "{} of {} cells complete; tables in {}",
                c.complete,
                c.cells,
                run_dir.display()
            );
        }
        Command::Validate { manifest } => {
            let m = Manifest::load(&manifest)?;
            let plan = m.plan();
            let count = |f: fn(&CellKind) -> bool| plan.iter().filter(|c| f(&c.kind)).count();
            crate::outln!(
                "{}: ok ({} train cells, {} eval cells, {} agent cells, {} robustness cells, {} \
                 cifar train cells, {} cifar eval cells)",
                manifest.display(),
                count(|k| matches!(k, CellKind::Train(_))),
                count(|k| matches!(k, CellKind::Episodes(_))),
                count(|k| matches!(k, CellKind::Agent(_))),
                count(|k| matches!(k, CellKind::Robustness { .. })),
                count(|k| matches!(k, CellKind::CifarTrain(_))),
                count(|k| matches!(k, CellKind::CifarEval(_))),
            );
        }
        Command::Plan { manifest } => {
            let (m, warnings) = Manifest::load_for_plan(&manifest)?;
            for w in &warnings {
                tracing::warn!("{w}\n(`sap plan` lists the cells anyway; `sap validate` and `sap run` refuse the manifest until this is fixed)");
            }
            let plan = m.plan();
            let (mut train_frames, mut eval_frames) = (0u64, 0u64);
            let (mut train_images, mut eval_passes) = (0u64, 0u64);
            for c in &plan {
                let deps = if c.deps.is_empty() {
                    String::new()
                } else {
                    let d: Vec<String> = c.deps.iter().map(|d| d.to_string()).collect();
                    format!("  (after {})", d.join(", "))
                };
                let mut cost = String::new();
                if let Some(f) = c.frames_bound() {
                    cost = format!("; <= {} frames", human(f));
                    match c.stage() {
                        Stage::Train => train_frames += f,
                        Stage::Eval => eval_frames += f,
                    }
                }
                if let Some(p) = c.passes_per_step() {
                    cost += &format!(", {p} network passes (forward or backward) per agent step");
                }
                match &c.kind {
                    CellKind::CifarTrain(t) => {
                        train_images += t.settings.iterations * t.settings.batch_size as u64;
                    }
                    CellKind::CifarEval(e) => {
                        eval_passes += e.examples as u64 * c.passes_per_image().unwrap_or(0) as u64;
                    }
                    _ => {}
                }
                crate::outln!("{:>4}  {}: {}{cost}{deps}", c.index, c.id(), c.describe(&m));
            }
            let train = plan.iter().filter(|c| c.stage() == Stage::Train).count();
            if plan.iter().any(|c| c.frames_bound().is_some()) {
                crate::outln!(
                    "{} cells: {train} training (<= {} frames), {} evaluation (<= {} frames; \
                     bounds assume every episode runs to its frame cap)",
                    plan.len(),
                    human(train_frames),
                    plan.len() - train,
                    human(eval_frames)
                );
            } else {
                crate::outln!(
                    "{} cells: {train} training, {} evaluation",
                    plan.len(),
                    plan.len() - train
                );
            }
            if train_images + eval_passes > 0 {
                crate::outln!(
                    "CIFAR-10: {} training images (SGD passes), {} image passes in evaluation",
                    human(train_images),
                    human(eval_passes)
                );
            }
            if m.reproducible {
                crate::outln!(
                    "reproducible mode: cells pin libtorch's kernels to AVX2 with deterministic \
                     algorithms (the same rows on any x86-64 CPU with AVX2; slower)"
                );
            }
        }
        Command::Games => {
            crate::outln!(
                "{:<8} {:<18} {:>7} {:>5}",
                "family",
                "game",
                "minimal",
                "full"
            );
            for game in Game::all() {
                let (minimal, full) = action_counts(game)?;
                crate::outln!("{:<8} {:<18} {minimal:>7} {full:>5}", "atari", game.name());
            }
            for game in ClassicGame::ALL {
                let n = ClassicEnv::new(game).num_actions();
                crate::outln!("{:<8} {:<18} {n:>7} {n:>5}", "classic", game.name());
            }
        }
        Command::Bench {
            target: BenchTarget::Env,
            games,
            frames,
            rounds,
            ..
        } => {
            let games = games
                .iter()
                .map(|name| {
                    Game::from_name(name).with_context(|| {
                        let hint = did_you_mean(name, crate::env::games::game_names())
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        format!(
                            "--games: unknown Atari game `{name}`{hint} (`sap games` lists them)"
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if frames == 0 || rounds == 0 {
                anyhow::bail!("--frames and --rounds must be at least 1");
            }
            crate::outln!("env pipeline vs bare ALE, one thread, {frames} frames x {rounds} rounds (best kept)");
            crate::outln!(
                "{:<14} {:>14} {:>16} {:>7}",
                "game",
                "bare frames/s",
                "pipeline fr/s",
                "ratio"
            );
            for b in crate::bench::bench_env(&games, frames, rounds)? {
                crate::outln!(
                    "{:<14} {:>14.0} {:>16.0} {:>7.3}",
                    b.game.name(),
                    b.bare_fps,
                    b.pipeline_fps,
                    b.ratio()
                );
            }
        }
        Command::Bench {
            target: BenchTarget::Ddqn,
            steps,
            actors,
            envs_per_actor,
            learner_threads,
            ..
        } => {
            if steps < 100 || actors == 0 || envs_per_actor == 0 || learner_threads == 0 {
                anyhow::bail!(
                    "--steps must be at least 100; --actors, --envs-per-actor and \
                     --learner-threads at least 1"
                );
            }
            let config = crate::runtime::RuntimeConfig {
                actors,
                envs_per_actor,
                sync_period: 50,
                channel_capacity: 8,
                actor_threads: 1,
                learner_threads,
            };
            print_ddqn_bench(&crate::bench::bench_ddqn(config, steps)?);
        }
        Command::Bench {
            target: BenchTarget::Jobs,
            jobs,
            rounds,
            cap,
            ..
        } => {
            if rounds == 0 || cap < 100 {
                anyhow::bail!("--rounds must be at least 1 and --cap at least 100 frames");
            }
            let exe = std::env::current_exe().context("finding the sap executable")?;
            let (one, many) = crate::bench::bench_jobs(&exe, jobs as usize, rounds, cap)?;
            crate::outln!(
                "local runner: fixed grid of {} cells (Pong, Breakout; dense and SAP-100 under \
                 FGSM, lambda 0 and 4; 2 episodes of <= {cap} frames), best of {rounds} rounds",
                one.cells
            );
            crate::outln!(
                "{:<8} {:>14} {:>10} {:>12}",
                "jobs",
                "torch threads",
                "seconds",
                "cells/hour"
            );
            for b in [&one, &many] {
                crate::outln!(
                    "{:<8} {:>14} {:>10.1} {:>12.0}",
                    b.jobs,
                    b.threads_per_job,
                    b.seconds,
                    b.cells_per_hour()
                );
            }
            crate::outln!(
                "cells/hour with --jobs {} / with --jobs 1 = {:.3}",
                many.jobs,
                many.cells_per_hour() / one.cells_per_hour()
            );
        }
        Command::Bench {
            target: BenchTarget::Cifar,
            iterations,
            rounds,
            workers,
            eval_images,
            ..
        } => {
            if rounds == 0 || iterations == 0 {
                anyhow::bail!("--rounds and --iterations must be at least 1");
            }
            let b = crate::bench::bench_cifar(iterations as usize, rounds, workers as usize)?;
            crate::outln!(
                "ResNet-20 training, batch {}, SGD momentum 0.9, on {:?} with {} torch threads; \
                 {} batch threads (crop + flip); {iterations} steps x {rounds} rounds, best kept",
                b.batch,
                tch::Device::cuda_if_available(),
                b.torch_threads,
                b.workers
            );
            crate::outln!("{:<36} {:>10}", "measurement", "images/s");
            crate::outln!(
                "{:<36} {:>10.1}",
                "model only (batches made beforehand)",
                b.model_only_images_per_s
            );
            crate::outln!(
                "{:<36} {:>10.1}",
                "with the batch pipeline",
                b.pipeline_images_per_s
            );
            crate::outln!(
                "pipeline-on / model-only = {:.3}   (target >= 0.95: the model never waits for data)",
                b.ratio()
            );
            if eval_images > 0 {
                let rates = crate::bench::bench_cifar_eval(eval_images as usize, 100, rounds)?;
                crate::outln!(
                    "\nResNet-20 evaluation (untrained weights), {eval_images} test images in \
                     batches of 100, FGSM lambda 8; {rounds} rounds, best kept"
                );
                crate::outln!(
                    "{:<52} {:>7} {:>10} {:>9}",
                    "setting",
                    "passes",
                    "images/s",
                    "vs dense"
                );
                let dense = rates[0].images_per_s;
                for r in &rates {
                    crate::outln!(
                        "{:<52} {:>7} {:>10.1} {:>9.3}",
                        r.what,
                        r.passes_per_image,
                        r.images_per_s,
                        r.images_per_s / dense
                    );
                }
            }
        }
        Command::Bench {
            target: BenchTarget::Reproducible,
            rounds,
            iterations,
            child_mode,
            ..
        } => {
            if rounds == 0 || iterations == 0 {
                anyhow::bail!("--rounds and --iterations must be at least 1");
            }
            match child_mode {
                Some(mode) => {
                    if mode == crate::bench::reproducible::Mode::Reproducible {
                        crate::provenance::enter_reproducible_mode()?;
                    }
                    crate::bench::reproducible::measure_child(iterations);
                }
                None => {
                    crate::provenance::check_cpu_for_reproducible_mode()?;
                    let exe = std::env::current_exe().context("finding the sap executable")?;
                    let b = crate::bench::bench_reproducible(&exe, rounds, iterations)?;
                    print_reproducible_bench(&b, rounds, iterations);
                }
            }
        }
        Command::Bench {
            target: BenchTarget::Defense,
            rounds,
            iterations,
            ..
        } => {
            if rounds == 0 || iterations == 0 {
                anyhow::bail!("--rounds and --iterations must be at least 1");
            }
            print_defense_bench(rounds, iterations);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the reproducible mode's cost: per workload the median rates of both modes and the
/// time ratio's median and range over the rounds.
fn print_reproducible_bench(b: &crate::bench::ReproducibleBench, rounds: u32, iterations: u32) {
    let p = crate::provenance::Provenance::current(1);
    crate::outln!(
        "reproducible mode vs default kernels on {} ({}; default ATen kernels: {}), 1 torch \
         thread, {iterations} batches (DDQN MLP: {} updates) per workload, {rounds} rounds, \
         each a child process per mode",
        p.cpu,
        p.cpu_features,
        p.aten_cpu_capability,
        iterations * 4
    );
    crate::outln!(
        "{:<58} {:>10} {:>12} {:>9} {:>17}",
        "workload (items/s: images or updates)",
        "default",
        "reproducible",
        "time x",
        "range over rounds"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    for (w, ratios) in b.time_ratios().into_iter().enumerate() {
        let d = median(b.default.iter().map(|r| r[w]).collect());
        let r = median(b.reproducible.iter().map(|r| r[w]).collect());
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        crate::outln!(
            "{:<58} {:>10.1} {:>12.1} {:>9.3} {:>8.3}..{:<8.3}",
            crate::bench::reproducible::WORKLOADS[w],
            d,
            r,
            median(ratios),
            lo,
            hi
        );
    }
    crate::outln!("time x = reproducible time / default time, median over rounds (> 1: slower)");
}

/// Prints what a run's tables hold: training lines, the random-policy summary, relative
/// rewards and classifier rows.
fn print_collected(c: &experiment::Collected) {
    for t in &c.training {
        let eval = t
            .last_eval_mean
            .map_or("-".to_owned(), |m| format!("{m:.2}"));
        let state = if t.done { "" } else { " (incomplete)" };
        crate::outln!(
            "{}{state}: {} training games up to agent step {}, last evaluation mean return {eval}",
            t.cell,
            t.games,
            t.last_step
        );
    }
    if !c.summary.is_empty() {
        crate::outln!("{}", summary_table(&c.summary));
    }
    if !c.relative.is_empty() {
        crate::outln!("{}", relative_table(&c.relative));
    }
    if !c.classifier.is_empty() {
        crate::outln!("{}", classifier_table(&c.classifier));
    }
    for (id, done, last) in &c.cifar_training {
        let state = if *done { "" } else { " (incomplete)" };
        match last {
            Some(r) => crate::outln!(
                "{id}{state}: epoch {} (iteration {}), loss {:.4}, train accuracy {:.4}, test \
                 accuracy {:.4}",
                r.epoch,
                r.iteration,
                r.loss,
                r.train_accuracy,
                r.test_accuracy
            ),
            None => crate::outln!("{id}{state}: no epoch finished"),
        }
    }
    if !c.cifar.is_empty() {
        crate::outln!("{}", cifar_table(&c.cifar));
    }
}

/// CIFAR-10 accuracy and calibration rows as an aligned text table.
pub fn cifar_table(rows: &[experiment::cifar::CifarEvalRow]) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:<16} {:<8} {:>7} {:>6} {:>9} {:>10} {:>7} {:>7}",
        "job",
        "variant",
        "defense",
        "attack",
        "lambda",
        "n",
        "accuracy",
        "confidence",
        "ece",
        "nll"
    );
    for r in rows {
        let defense = match (&r.frac, r.p, r.sigma) {
            (Some(f), _, _) => format!("sap {f}"),
            (_, Some(p), _) => format!("dropout p={p}"),
            (_, _, Some(s)) => format!("gaussian {s}"),
            _ => r.defense.clone(),
        };
        out.push_str(&format!(
            "\n{:<12} {:<8} {:<16} {:<8} {:>7} {:>6} {:>9.4} {:>10.4} {:>7.4} {:>7.3}",
            r.job,
            r.variant,
            defense,
            r.attack,
            r.lambda,
            r.n,
            r.accuracy,
            r.mean_confidence,
            r.ece,
            r.nll
        ));
    }
    out
}

/// Relative rewards as an aligned text table.
pub fn relative_table(rows: &[experiment::RelativeRow]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:<22} {:<6} {:>7} {:>4} {:>10} {:>9} {:>10}",
        "game", "preset", "defense", "attack", "lambda", "n", "mean", "relative", "normalized"
    );
    for r in rows {
        let defense = match (&r.frac, &r.sampling, r.p, r.sigma) {
            (Some(f), Some(s), _, _) => format!("sap {f} {s}"),
            (_, _, Some(p), _) => format!("dropout p={p}"),
            (_, _, _, Some(s)) => format!("gaussian sigma={s}"),
            _ => r.defense.clone(),
        };
        out.push_str(&format!(
            "\n{:<14} {:<12} {:<22} {:<6} {:>7} {:>4} {:>10.2} {:>9} {:>10}",
            r.game,
            r.preset,
            defense,
            r.attack,
            r.lambda,
            r.n,
            r.mean,
            opt(r.relative_reward),
            opt(r.normalized_reward)
        ));
    }
    out
}

fn print_ddqn_bench(b: &crate::bench::DdqnBench) {
    let c = &b.config;
    crate::outln!(
        "Double DQN on Pong (dopamine-v5), Nature CNN, batch 32, 1 update per 4 agent steps, \
         CPU; {} actors x {} envs, {} learner torch threads, 1 per actor",
        c.actors,
        c.envs_per_actor,
        c.learner_threads
    );
    crate::outln!("{:<44} {:>12}", "measurement", "rate");
    for (what, v) in [
        ("learner only, updates/s", b.learner_updates_per_s),
        (
            "actors only (local copies), agent steps/s",
            b.actor_steps_per_s,
        ),
        (
            "actors only (batched inference), steps/s",
            b.batched_inference_steps_per_s,
        ),
        ("end to end, agent steps/s", b.end_to_end_steps_per_s),
    ] {
        crate::outln!("{what:<44} {v:>12.1}");
    }
    crate::outln!(
        "end-to-end / (4 x learner-only) = {:.3}   (target >= 0.85: the learner is never \
         starved)",
        b.ratio()
    );
    crate::outln!(
        "local copies / batched inference = {:.3}",
        b.actor_steps_per_s / b.batched_inference_steps_per_s
    );
    crate::outln!(
        "replay: {:.1} bytes per stored transition ({:.4} x one 84x84 frame)",
        b.bytes_per_transition,
        b.bytes_per_transition / 7056.0
    );
}

fn print_defense_bench(rounds: u32, iterations: u32) {
    crate::outln!(
        "defended networks on {:?}, {} torch threads, {iterations} batches x {rounds} rounds \
         (best kept)",
        tch::Device::cuda_if_available(),
        tch::get_num_threads()
    );
    crate::outln!(
        "{:<11} {:>5}  {:<34} {:>10} {:>12}",
        "network",
        "batch",
        "workload",
        "images/s",
        "time/dense"
    );
    for b in crate::bench::bench_defense(rounds, iterations) {
        for (w, ips) in &b.rows {
            let ratio = b.time_ratio(*w).map_or("-".into(), |r| format!("{r:.3}"));
            crate::outln!(
                "{:<11} {:>5}  {:<34} {:>10.1} {:>12}",
                b.arch.name(),
                b.batch,
                w.label(),
                ips,
                ratio
            );
        }
    }
    crate::outln!("targets: SAP-100 exact forward time/dense <= 1.5; independent <= 1.3");
}

/// A frame count with a unit: 950, 12.3k, 4.5M, 1.2G.
fn human(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        n.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// Classifier rows as an aligned text table: accuracy and ECE per defense and lambda.
pub fn classifier_table(rows: &[experiment::robustness::ClassifierRow]) -> String {
    let mut out = format!(
        "{:<8} {:>5} {:<10} {:<18} {:<6} {:>7} {:>5} {:>9} {:>7}",
        "task", "seed", "defense", "params", "attack", "lambda", "n", "accuracy", "ece"
    );
    for r in rows {
        let params = match (&r.frac, &r.sampling, r.p, r.sigma) {
            (Some(f), Some(s), _, _) => format!("{f} {s}"),
            (_, _, Some(p), _) => format!("p={p}"),
            (_, _, _, Some(s)) => format!("sigma={s}"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "\n{:<8} {:>5} {:<10} {:<18} {:<6} {:>7} {:>5} {:>9.4} {:>7.4}",
            r.task, r.train_seed, r.defense, params, r.attack, r.lambda, r.n, r.accuracy, r.ece
        ));
    }
    out
}

/// The summary as an aligned text table.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut out = format!(
        "{:<10} {:<8} {:<16} {:<12} {:<7} {:>4} {:>10} {:>9} {:>21}",
        "job", "family", "game", "preset", "policy", "n", "mean", "std", "95% CI"
    );
    for r in rows {
        let ci = match (r.ci95_low, r.ci95_high) {
            (Some(lo), Some(hi)) => format!("[{lo:.2}, {hi:.2}]"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "\n{:<10} {:<8} {:<16} {:<12} {:<7} {:>4} {:>10.2} {:>9} {:>21}",
            r.job,
            r.family,
            r.game,
            r.preset,
            r.policy,
            r.n,
            r.mean,
            opt(r.std),
            ci
        ));
    }
    out
}
