//! `sap report RUN_DIR`: plots (PNG and SVG, plotters) and a markdown summary of a run's
//! collected tables, under `RUN_DIR/report/`.
//!
//! - `relative_reward-<job>-<game>-<attack>.{png,svg}`: relative reward against lambda, one
//!   line per defense with its 95% confidence band (the returns' Student-t interval divided
//!   by the dense clean mean); `normalized_reward-...` the same for the random-normalised
//!   form.
//! - `learning-<game>-<preset>.{png,svg}`: training returns against emulator frames, one line
//!   per seed (a moving mean over 10 games), with the evaluation means as points.
//! - CIFAR-10 accuracy, ECE and reliability diagrams ([`cifar`]).
//! - `report.md`: the tables behind the plots, and links to them.
//! - `index.html`: one page with every plot, the tables of `report.md` and the run's CSV
//!   tables, plain HTML that opens from the folder (or a copy of it) without a server.
//!
//! A run that is still going is reported too: see [`write_report_with`].
//!
//! PNG text needs a TrueType font: DejaVu Sans (Debian's `fonts-dejavu-core`, which
//! `scripts/setup.sh` installs) or the file `SAP_FONT` names. SVG text needs none.

mod checks;
mod cifar;
mod html;
mod rl;
mod videos;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::manifest::{Manifest, PlanCell};
use crate::plot::{both, draw_lines, legend_and_present, register_font, trim, Series, PALETTE};
use crate::record::write_atomic;
use crate::run_dir::files;

/// What `sap report` wrote.
#[derive(Debug, Default)]
pub struct Report {
    /// The folder.
    pub dir: PathBuf,
    /// Every file written (plots, the markdown and the HTML page).
    pub files: Vec<PathBuf>,
    /// Cells in the run's plan.
    pub cells: usize,
    /// Complete cells.
    pub complete: usize,
    /// Whether the report shows the run's own tables: every cell complete and collected.
    pub finished: bool,
}

/// A file-name-safe version of `s`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How many distinct attacks (by label) the treatments were under, clean inputs aside: the
/// side-by-side plots need two or more.
fn distinct_attacks<'a>(treatments: impl Iterator<Item = &'a crate::table::Treatment>) -> usize {
    let labels: std::collections::BTreeSet<String> = treatments
        .filter(|t| t.attack != crate::table::AttackName::None)
        .map(|t| t.attack_label())
        .collect();
    labels.len()
}

/// How a report is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// Seconds between redraws under `sap report --watch`: `index.html` asks the browser to
    /// reload it as often (a `meta` refresh, no script).
    pub refresh: Option<u64>,
}

/// Writes the plots, `report.md` and `index.html` of a run under `run_dir/report/`.
pub fn write_report(run_dir: &Path) -> Result<Report> {
    write_report_with(run_dir, ReportOptions::default())
}

/// Writes the report of `run_dir`, finished or not. A run whose every cell is complete and
/// collected is reported from its own tables. Otherwise the report collects into
/// `report/tables/` (never touching the run's tables) the rows of complete cells and those
/// recorded so far by cells that have started, and marks what is partial: a progress table
/// of the unfinished cells, "(partial)" in plot titles, *(partial)* in table rows.
pub fn write_report_with(run_dir: &Path, options: ReportOptions) -> Result<Report> {
    if !run_dir.join(files::RESOLVED).is_file() {
        bail!(
            "{} is not a run directory (no {}); pass results/<manifest>/<run id>",
            run_dir.display(),
            files::RESOLVED
        );
    }
    let manifest = crate::manifest::Manifest::load_run(run_dir)?;
    write_report_for(run_dir, &manifest, &manifest.plan(), options)
}

/// [`write_report_with`] for a run whose manifest and plan the caller holds.
pub fn write_report_for(
    run_dir: &Path,
    manifest: &Manifest,
    plan: &[PlanCell],
    options: ReportOptions,
) -> Result<Report> {
    register_font()?;
    let complete = plan
        .iter()
        .filter(|c| crate::run_dir::is_done(run_dir, &c.id()))
        .count();
    let dir = run_dir.join("report");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let scratch = dir.join(PARTIAL_TABLES);
    let whole = crate::run_dir::Collection {
        cells: plan.len(),
        complete: plan.len(),
    };
    let official =
        complete == plan.len() && crate::run_dir::last_collection(run_dir) == Some(whole);
    let (tables, partial) = if official {
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("removing {}", scratch.display()))?;
        }
        (
            run_dir.to_path_buf(),
            crate::run_dir::PartialRows::default(),
        )
    } else {
        let c = crate::run_dir::collect_partial(run_dir, manifest, plan, &scratch)?;
        (scratch.clone(), c.partial)
    };
    let mut out = Report {
        dir: dir.clone(),
        files: Vec::new(),
        cells: plan.len(),
        complete,
        finished: official,
    };
    let mut md = format!("# Report: {}\n\n", run_dir.display());
    if !official {
        progress_section(&out, &partial, &mut md);
    }

    let relative = rl::relative_section(&tables, &partial, &mut out, &mut md)?;
    rl::attacks_section(&tables, &partial, &mut out, &mut md)?;
    let training = rl::training_section(&tables, &partial, &mut out, &mut md)?;
    cifar::section(run_dir, &tables, &partial, &mut out, &mut md)?;
    checks::attacks_section(&tables, &mut out, &mut md)?;
    checks::worst_case_section(&tables, &mut md)?;
    checks::checks_section(&tables, &mut md)?;
    videos::section(run_dir, &mut out, &mut md)?;
    let has_cifar =
        tables.join(files::CIFAR_EVAL).is_file() || tables.join(files::CIFAR_TRAIN).is_file();
    if !relative && !training && !has_cifar {
        md += "No relative rewards or training rows yet.\n";
    }
    let md_path = dir.join("report.md");
    write_atomic(&md_path, md.as_bytes())?;
    out.files.push(md_path);
    let html_path = dir.join("index.html");
    let page = html::page(run_dir, &tables, &out, &md, options)?;
    write_atomic(&html_path, page.as_bytes())?;
    out.files.push(html_path);
    Ok(out)
}

/// Where a report of an unfinished run keeps the tables it collected, under `report/`.
pub const PARTIAL_TABLES: &str = "tables";

/// The opening of an unfinished run's report: how far it is, and which cells are partial.
fn progress_section(out: &Report, partial: &crate::run_dir::PartialRows, md: &mut String) {
    use std::fmt::Write as _;
    if out.complete == out.cells {
        let _ = writeln!(
            md,
            "**Every cell is complete, but `sap collect` has not collected them all**: this \
             report's tables were collected into `report/{PARTIAL_TABLES}/` by the report \
             itself; `sap collect` writes the run's own.\n"
        );
        return;
    }
    let _ = writeln!(
        md,
        "**Partial report: the run is not finished.** Cells complete: {} of {}. Started but \
         not complete: {} (their rows so far are included, marked *partial* in tables and \
         \"(partial)\" in plot titles). Not started: {}. The tables behind this report are \
         in `report/{PARTIAL_TABLES}/`; the run's own tables are written by `sap collect`.\n",
        out.complete,
        out.cells,
        partial.cells.len(),
        partial.not_started
    );
    if partial.cells.is_empty() {
        return;
    }
    *md += "| partial cell | rows so far |\n|---|---|\n";
    for (id, counts) in &partial.cells {
        let rows = if counts.is_empty() {
            "none yet".to_string()
        } else {
            counts
                .iter()
                .map(|(f, n)| format!("{f}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(md, "| `{id}` | {rows} |");
    }
    *md += "\n";
}
