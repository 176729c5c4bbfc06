//! `sap collect`, `sap report` and `sap synth-cifar`: tables, plots and data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::tables::print_collected;
use crate::experiment;
use crate::manifest::Manifest;

/// Merge the complete cells' CSVs of a run into its tables and summaries.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Merge cells computed under different settings that rows depend on (CPU kind
    /// outside the reproducible mode, build, threads, device), with a warning; by
    /// default such a run is refused.
    #[arg(long)]
    pub allow_mixed: bool,
}

/// Plot a run's tables (PNG and SVG) and summarise them in markdown, under
/// RUN_DIR/report/.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Write a synthetic CIFAR-10 in the binary version's exact format (6 files of 10,000
/// records), for trying the classifier family where the real files cannot be fetched.
#[derive(Debug, Args)]
pub struct SynthCifarArgs {
    /// The folder to write (created if needed).
    pub dir: PathBuf,
    /// Seed of labels, shifts and noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `sap collect`: the complete cells merged into the run's tables.
pub(super) fn collect(args: CollectArgs) -> Result<ExitCode> {
    let CollectArgs {
        run_dir,
        allow_mixed,
    } = args;
    let m = Manifest::load_run(&run_dir)?;
    let c = experiment::collect(&run_dir, &m, allow_mixed)?;
    print_collected(&c);
    crate::outln!(
        "{} of {} cells complete; tables in {}",
        c.complete,
        c.cells,
        run_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `sap report`: plots and markdown under RUN_DIR/report/.
pub(super) fn report(args: ReportArgs) -> Result<ExitCode> {
    let ReportArgs { run_dir } = args;
    let r = crate::report::write_report(&run_dir)?;
    for f in &r.files {
        crate::outln!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `sap synth-cifar`: a synthetic CIFAR-10 in the binary format.
pub(super) fn synth_cifar(args: SynthCifarArgs) -> Result<ExitCode> {
    let SynthCifarArgs { dir, seed } = args;
    crate::data::cifar::synthesize(&dir, seed)?;
    let train = crate::data::cifar::load(&dir, crate::data::cifar::Split::Train)?;
    let test = crate::data::cifar::load(&dir, crate::data::cifar::Split::Test)?;
    crate::outln!(
        "{}: {} training and {} test images in the CIFAR-10 binary format",
        dir.display(),
        train.len(),
        test.len()
    );
    Ok(ExitCode::SUCCESS)
}
