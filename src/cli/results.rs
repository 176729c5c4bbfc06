//! `sap collect`, `sap report` and `sap synth-cifar`: tables, plots and data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::tables::print_collected;
use crate::manifest::Manifest;
use crate::run_dir;

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

/// Plot a run's tables (PNG and SVG) and summarise them in markdown and one HTML page
/// (RUN_DIR/report/index.html). A run still going is reported from its complete cells and
/// the rows of running ones, marked partial.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Redraw every SECONDS until every cell is complete and collected (the page reloads
    /// itself as often).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
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
    let c = run_dir::collect(&run_dir, &m, &m.plan(), allow_mixed)?;
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
    let ReportArgs { run_dir, watch } = args;
    let options = crate::report::ReportOptions { refresh: watch };
    let Some(seconds) = watch else {
        let r = crate::report::write_report_with(&run_dir, options)?;
        for f in &r.files {
            crate::outln!("{}", f.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    // Since when every cell has been complete but the run not collected.
    let mut uncollected: Option<std::time::Instant> = None;
    loop {
        let r = crate::report::write_report_with(&run_dir, options)?;
        let page = r.dir.join("index.html");
        if r.finished {
            crate::outln!(
                "{}: finished, all {} cells complete and collected",
                page.display(),
                r.cells
            );
            return Ok(ExitCode::SUCCESS);
        }
        crate::outln!(
            "{}: {} of {} cells complete; next redraw in {seconds} s",
            page.display(),
            r.complete,
            r.cells
        );
        uncollected = match uncollected {
            Some(t) if r.complete == r.cells => Some(t),
            None if r.complete == r.cells => Some(std::time::Instant::now()),
            _ => None,
        };
        // `sap run` collects as soon as its last cell completes; a run left uncollected
        // for a minute (another scheduler, or a killed `sap run`) is not waited for.
        if uncollected.is_some_and(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
            crate::outln!(
                "every cell is complete but the run has not been collected: `sap collect {}` \
                 writes its tables, then `sap report` draws them",
                run_dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs(seconds));
    }
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
