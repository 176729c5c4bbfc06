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
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::experiment::files;
use crate::record::write_atomic;

/// Where PNG text comes from unless `SAP_FONT` names another TrueType file.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

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

/// Registers the PNG font once per process.
pub(crate) fn register_font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var("SAP_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_owned());
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "PNG plots need a TrueType font: {path}: {e}; install Debian's fonts-dejavu-core \
                 or set SAP_FONT to a .ttf file"
            )
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a TrueType font"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
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

/// One line of a plot: label, points (x, y) and the band (x, low, high).
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    band: Vec<(f64, f64, f64)>,
}

/// Draws `series` on `area`: x positions are indices into `x_ticks` (lambdas are spread
/// evenly whatever their values), labelled with the values.
fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_ticks: &[f64],
    series: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ys = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
        })
        .filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(0.05);
    let n = x_ticks.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.3..(n as f64 - 0.7), (lo - pad)..(hi + pad))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ticks = x_ticks.to_vec();
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(n + 1)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ticks.len() {
                trim(ticks[i as usize])
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if s.band.len() > 1 {
            let mut poly: Vec<(f64, f64)> = s.band.iter().map(|b| (b.0, b.2)).collect();
            poly.extend(s.band.iter().rev().map(|b| (b.0, b.1)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(0.18).filled(),
                )))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .copied()
                .chain(s.band.iter().flat_map(|b| [(b.0, b.1), (b.0, b.2)]))
        })
        .collect();
    legend_and_present(&mut chart, area, &points)
}

/// Draws the legend (series labels) in the corner of the plot that holds the fewest of
/// `points` (data coordinates; lines between them count through their points), so that it
/// covers as little data as it can, and writes the drawing out.
fn legend_and_present<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    area: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x, y) = (chart.x_range(), chart.y_range());
    chart
        .configure_series_labels()
        .position(emptiest_corner(points, (x.start, x.end), (y.start, y.end)))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The corner whose box (the outer 45% of each axis) holds the fewest points; ties go to
/// upper right, upper left, lower right, lower left, in that order.
fn emptiest_corner(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let share = |v: f64, (lo, hi): (f64, f64)| (v - lo) / (hi - lo).max(f64::MIN_POSITIVE);
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let count = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|&&(px, py)| {
                let (sx, sy) = (share(px, x), share(py, y));
                (if right { sx >= 0.55 } else { sx <= 0.45 })
                    && (if upper { sy >= 0.55 } else { sy <= 0.45 })
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| count(right, upper))
        .map(|c| c.0)
        .expect("four corners")
}

/// Writes `<base>.png` with `png` and `<base>.svg` with `svg` (the same drawing on two
/// backends).
fn both(
    base: &Path,
    files: &mut Vec<PathBuf>,
    png: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    svg: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let png_path = base.with_extension("png");
    png(&BitMapBackend::new(&png_path, (900, 600)).into_drawing_area())
        .with_context(|| format!("drawing {}", png_path.display()))?;
    let svg_path = base.with_extension("svg");
    svg(&SVGBackend::new(&svg_path, (900, 600)).into_drawing_area())
        .with_context(|| format!("drawing {}", svg_path.display()))?;
    files.push(png_path);
    files.push(svg_path);
    Ok(())
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
    register_font()?;
    let manifest = crate::manifest::Manifest::load_run(run_dir)?;
    let plan = manifest.plan();
    let complete = plan
        .iter()
        .filter(|c| crate::experiment::is_done(run_dir, &c.id()))
        .count();
    let dir = run_dir.join("report");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let scratch = dir.join(PARTIAL_TABLES);
    let whole = crate::experiment::Collection {
        cells: plan.len(),
        complete: plan.len(),
    };
    let official =
        complete == plan.len() && crate::experiment::last_collection(run_dir) == Some(whole);
    let (tables, partial) = if official {
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("removing {}", scratch.display()))?;
        }
        (
            run_dir.to_path_buf(),
            crate::experiment::PartialRows::default(),
        )
    } else {
        let c = crate::experiment::collect_partial(run_dir, &manifest, &scratch)?;
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
fn progress_section(out: &Report, partial: &crate::experiment::PartialRows, md: &mut String) {
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
