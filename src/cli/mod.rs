//! The `sap` command line: its arguments and a dispatcher. Each subcommand's work lives in
//! its own file; the tables they print in `tables`.

mod atari;
mod bench;
mod inspect;
mod results;
mod run;
mod tables;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use atari::{ConformanceArgs, GamesArgs};
pub use bench::{BenchArgs, BenchTarget};
pub use inspect::{PlanArgs, ValidateArgs};
pub use results::{CollectArgs, ReportArgs, SynthCifarArgs};
pub use run::{RunArgs, RunCellArgs, RunDirArgs, SlurmArgs};
pub use tables::{cifar_table, classifier_table, relative_table, summary_table};

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
    Run(RunArgs),
    /// Run one cell of a manifest in this process (what `sap run` children and Slurm array
    /// tasks do).
    #[command(
        after_help = "Examples:\n  sap run-cell --cell 3 --run-dir results/quickstart/first\n  \
                      sap run-cell experiments/quickstart.toml --cell 3 --run-dir results/quickstart/new   # starts the run directory"
    )]
    RunCell(RunCellArgs),
    /// Write (and with --submit, submit) Slurm array scripts: one array task per cell.
    #[command(
        after_help = "Examples:\n  sap slurm experiments/paper_atari.toml --max-parallel 50 --time 2-00:00:00\n  \
                            sap slurm experiments/paper_atari.toml --run-id paper --submit\n  \
                            sap collect results/paper_atari/paper   # when the arrays are done"
    )]
    Slurm(SlurmArgs),
    /// Plot a run's tables (PNG and SVG) and summarise them in markdown, under
    /// RUN_DIR/report/.
    #[command(after_help = "Example:\n  sap report results/quickstart/first")]
    Report(ReportArgs),
    /// Write a synthetic CIFAR-10 in the binary version's exact format (6 files of 10,000
    /// records), for trying the classifier family where the real files cannot be fetched.
    #[command(after_help = "Example:\n  sap synth-cifar data/cifar-synth --seed 1")]
    SynthCifar(SynthCifarArgs),
    /// Merge the complete cells' CSVs of a run into its tables and summaries.
    #[command(after_help = "Example:\n  sap collect results/quickstart/first")]
    Collect(CollectArgs),
    /// Check a manifest and report the first problem, with file, line, column and key.
    #[command(after_help = "Example:\n  sap validate experiments/quickstart.toml")]
    Validate(ValidateArgs),
    /// Print the numbered cells a manifest expands into.
    #[command(after_help = "Example:\n  sap plan experiments/quickstart.toml")]
    Plan(PlanArgs),
    /// List every game: the Atari games with their action counts, ROM file MD5 and
    /// conformance with ale-py, and the classic-control tasks; --check plays each Atari game
    /// in a child process.
    #[command(after_help = "Examples:\n  sap games\n  sap games --check\n  \
                            sap games --check --games Pong,BankHeist --frames 5000")]
    Games(GamesArgs),
    /// Compare every Atari game frame for frame with ale-py 0.12 (the ALE of Gymnasium,
    /// CleanRL, SB3 and Dopamine) and print where each first differs.
    #[command(after_help = "Examples:\n  sap conformance --games Pong,Breakout\n  \
                            sap conformance --write docs   # the committed table\n  \
                            sap conformance --games Pong --expect-recorded")]
    Conformance(ConformanceArgs),
    /// Measure throughput; prints ratios measured side by side in one run.
    #[command(
        after_help = "Examples:\n  sap bench env --games Pong,Breakout --frames 200000\n  \
                            sap bench defense --rounds 3 --iterations 5\n  \
                            sap bench ddqn --steps 2000 --actors 1 --envs-per-actor 4\n  \
                            sap bench jobs --jobs 2 --rounds 1\n  \
                            sap bench grid --rounds 2 --cap 400\n  \
                            sap bench cifar --iterations 10 --rounds 2 --workers 2 --eval-images 100"
    )]
    Bench(BenchArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::RunCell(a) => run::run_cell(a),
        Command::Slurm(a) => run::slurm(a),
        Command::Report(a) => results::report(a),
        Command::SynthCifar(a) => results::synth_cifar(a),
        Command::Collect(a) => results::collect(a),
        Command::Validate(a) => inspect::validate(a),
        Command::Plan(a) => inspect::plan(a),
        Command::Games(a) => atari::games(a),
        Command::Conformance(a) => atari::conformance(a),
        Command::Bench(a) => bench::run(a),
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
