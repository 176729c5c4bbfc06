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
//!
//! PNG text needs a TrueType font: DejaVu Sans (Debian's `fonts-dejavu-core`, which
//! `scripts/setup.sh` installs) or the file `SAP_FONT` names. SVG text needs none.

mod cifar;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::experiment::files;
use crate::record::{read_rows, write_atomic};
use crate::table::{AttackName, RelativeRow, TrainEvalRow, TrainRow};

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
    /// Every file written (plots and the markdown).
    pub files: Vec<PathBuf>,
}

/// Registers the PNG font once per process.
fn register_font() -> Result<()> {
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
    legend_and_present(&mut chart, area)
}

/// Draws the legend (series labels) and writes the drawing out.
fn legend_and_present<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
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

/// Relative rewards of one (job, game, attack): lambdas and one series per defense, for the
/// paper's ratio (`normalized = false`) or the random-normalised form.
fn reward_series(rows: &[&RelativeRow], normalized: bool) -> (Vec<f64>, Vec<Series>) {
    let mut lambdas: Vec<f64> = rows.iter().map(|r| r.treatment.lambda).collect();
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup();
    let mut by_defense: BTreeMap<String, Vec<&RelativeRow>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for r in rows {
        let label = r.treatment.defense_label();
        if !by_defense.contains_key(&label) {
            order.push(label.clone());
        }
        by_defense.entry(label).or_default().push(r);
    }
    let series = order
        .into_iter()
        .map(|label| {
            let mut points = Vec::new();
            let mut band = Vec::new();
            for r in &by_defense[&label] {
                let x = lambdas
                    .iter()
                    .position(|&l| l == r.treatment.lambda)
                    .expect("listed") as f64;
                let (value, scale) = match (normalized, r.dense_clean_mean, r.random_mean) {
                    (false, Some(d), _) if d != 0.0 => (r.relative_reward, Some((0.0, d))),
                    (true, Some(d), Some(rand)) if d != rand => {
                        (r.normalized_reward, Some((rand, d - rand)))
                    }
                    _ => (None, None),
                };
                let (Some(v), Some((shift, div))) = (value, scale) else {
                    continue;
                };
                points.push((x, v));
                if let (Some(lo), Some(hi)) = (r.ci95_low, r.ci95_high) {
                    let (a, b) = ((lo - shift) / div, (hi - shift) / div);
                    band.push((x, a.min(b), a.max(b)));
                }
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            band.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label,
                points,
                band,
            }
        })
        .collect();
    (lambdas, series)
}

/// A moving mean over `w` values.
fn moving_mean(xs: &[f64], w: usize) -> Vec<f64> {
    (0..xs.len())
        .map(|i| {
            let lo = (i + 1).saturating_sub(w);
            xs[lo..=i].iter().sum::<f64>() / (i + 1 - lo) as f64
        })
        .collect()
}

/// What one relative-reward plot shows: job, game, preset, attack.
type PlotKey = (String, String, String, AttackName);

/// One seed's learning curve: the seed, (frames, smoothed return) per training game and
/// (frames, mean return) per evaluation.
type Curve = (u64, Vec<(f64, f64)>, Vec<(f64, f64)>);

fn learning_curve<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    runs: &[Curve],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let all = runs.iter().flat_map(|(_, g, e)| g.iter().chain(e.iter()));
    let (x_hi, y_lo, y_hi) = all.fold((0.0f64, f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.max(p.0), a.1.min(p.1), a.2.max(p.1))
    });
    let (y_lo, y_hi) = if y_lo.is_finite() {
        (y_lo, y_hi)
    } else {
        (0.0, 1.0)
    };
    let pad = ((y_hi - y_lo) * 0.08).max(0.5);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_hi.max(1e-3) * 1.02, (y_lo - pad)..(y_hi + pad))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("return per game (raw score)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (seed, games, evals)) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(games.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("seed {seed}: training games (mean of 10)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                evals
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 6, color.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("seed {seed}: evaluation mean"))
            .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, color.filled()));
    }
    legend_and_present(&mut chart, area)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// Writes the plots and `report.md` of a collected run under `run_dir/report/`.
pub fn write_report(run_dir: &Path) -> Result<Report> {
    if !run_dir.join(files::RESOLVED).is_file() {
        bail!(
            "{} is not a run directory (no {}); pass results/<manifest>/<run id>",
            run_dir.display(),
            files::RESOLVED
        );
    }
    register_font()?;
    let dir = run_dir.join("report");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Report {
        dir: dir.clone(),
        files: Vec::new(),
    };
    let mut md = format!("# Report: {}\n\n", run_dir.display());

    let relative: Vec<RelativeRow> = read_rows(&run_dir.join(files::RELATIVE_REWARD))?;
    let mut groups: Vec<(PlotKey, Vec<&RelativeRow>)> = Vec::new();
    for r in &relative {
        let key = (
            r.job.clone(),
            r.game.clone(),
            r.preset.clone(),
            r.treatment.attack,
        );
        if r.treatment.attack == AttackName::None {
            continue; // the dense clean reference: lambda 0 of every attack's plot
        }
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    if !relative.is_empty() {
        md += "## Relative reward under attack\n\n";
        md += "Relative reward = mean return / mean return of the dense network without \
               attack (Dhillon et al. 2018); normalised = (mean - random) / (dense clean - \
               random). Lambda is the L-infinity radius in pixel units (0..255). Bands and \
               intervals: Student-t 95% CI of the mean return, scaled the same way.\n\n";
    }
    for ((job, game, preset, attack), rows) in &groups {
        // The dense clean reference belongs at lambda 0 of every attack's plot.
        let mut rows = rows.clone();
        for r in &relative {
            if r.job == *job && r.game == *game && r.treatment.attack == AttackName::None {
                rows.push(r);
            }
        }
        let base = format!("{}-{}-{}", slug(job), slug(game), slug(attack.name()));
        let title_for = |what: &str| format!("{game} ({preset}): {what} under {attack}");
        let mut links = Vec::new();
        for (name, normalized, y) in [
            (
                "relative_reward",
                false,
                "relative reward (mean / dense clean mean)",
            ),
            (
                "normalized_reward",
                true,
                "(mean - random) / (dense clean - random)",
            ),
        ] {
            let (lambdas, series) = reward_series(&rows, normalized);
            if series.iter().all(|s| s.points.is_empty()) {
                continue;
            }
            let title = title_for(if normalized {
                "normalised reward"
            } else {
                "relative reward"
            });
            let x = "lambda (L-inf radius, pixel units 0..255)";
            let path = dir.join(format!("{name}-{base}"));
            both(
                &path,
                &mut out.files,
                |a| draw_lines(a, &title, x, y, &lambdas, &series),
                |a| draw_lines(a, &title, x, y, &lambdas, &series),
            )?;
            links.push(format!("![{title}]({name}-{base}.png)"));
        }
        let _ = writeln!(md, "### {game} ({preset}), {attack}, job `{job}`\n");
        md += "| defense | lambda | n | mean return | 95% CI | relative | normalised |\n";
        md += "|---|---:|---:|---:|---|---:|---:|\n";
        for r in &rows {
            let ci = match (r.ci95_low, r.ci95_high) {
                (Some(a), Some(b)) => format!("[{a:.2}, {b:.2}]"),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {ci} | {} | {} |",
                r.treatment.defense_label(),
                trim(r.treatment.lambda),
                r.n,
                r.mean,
                opt(r.relative_reward),
                opt(r.normalized_reward)
            );
        }
        if let Some(r) = rows.first() {
            let _ = writeln!(
                md,
                "\nDense clean mean {}, random-policy mean {} ({} episodes).\n",
                opt(r.dense_clean_mean),
                opt(r.random_mean),
                r.random_n
            );
            if let (Some(d), Some(rand)) = (r.dense_clean_mean, r.random_mean) {
                if d <= rand {
                    md += "The dense agent does not beat the random policy here, so the \
                           normalised reward (mean - random) / (dense clean - random) is \
                           meaningless and left empty.\n\n";
                }
            }
        }
        for l in links {
            let _ = writeln!(md, "{l}\n");
        }
    }

    let games: Vec<TrainRow> = read_rows(&run_dir.join(files::TRAIN))?;
    let evals: Vec<TrainEvalRow> = read_rows(&run_dir.join(files::TRAIN_EVAL))?;
    let mut curves: Vec<((String, String), Vec<u64>)> = Vec::new();
    for g in &games {
        let key = (g.game.clone(), g.preset.clone());
        match curves.iter_mut().find(|(k, _)| *k == key) {
            Some((_, seeds)) if !seeds.contains(&g.seed) => seeds.push(g.seed),
            Some(_) => {}
            None => curves.push((key, vec![g.seed])),
        }
    }
    if !curves.is_empty() {
        md += "## Training\n\n| game | preset | seed | games | last frames | last evaluation mean |\n";
        md += "|---|---|---:|---:|---:|---:|\n";
    }
    let mut curve_links = Vec::new();
    let max_frames = games.iter().map(|g| g.frames).max().unwrap_or(0);
    let (unit, x_desc) = if max_frames >= 1_000_000 {
        (1e6, "emulator frames (millions)")
    } else {
        (1e3, "emulator frames (thousands)")
    };
    for ((game, preset), seeds) in &curves {
        let mut runs = Vec::new();
        for &seed in seeds {
            let mine: Vec<&TrainRow> = games
                .iter()
                .filter(|g| g.game == *game && g.preset == *preset && g.seed == seed)
                .collect();
            let returns: Vec<f64> = mine.iter().map(|g| g.episode_return).collect();
            let smooth = moving_mean(&returns, 10);
            let points: Vec<(f64, f64)> = mine
                .iter()
                .zip(smooth)
                .map(|(g, m)| (g.frames as f64 / unit, m))
                .collect();
            let mut eval_points: Vec<(f64, f64)> = Vec::new();
            let mut steps: Vec<u64> = Vec::new();
            for e in evals
                .iter()
                .filter(|e| e.game == *game && e.preset == *preset && e.seed == seed)
            {
                if !steps.contains(&e.frames) {
                    steps.push(e.frames);
                }
            }
            for f in steps {
                let r: Vec<f64> = evals
                    .iter()
                    .filter(|e| e.game == *game && e.seed == seed && e.frames == f)
                    .map(|e| e.episode_return)
                    .collect();
                eval_points.push((f as f64 / unit, r.iter().sum::<f64>() / r.len() as f64));
            }
            let _ = writeln!(
                md,
                "| {game} | {preset} | {seed} | {} | {} | {} |",
                mine.len(),
                mine.last().map_or(0, |g| g.frames),
                opt(eval_points.last().map(|p| p.1))
            );
            runs.push((seed, points, eval_points));
        }
        let title = format!("{game} ({preset}): Double DQN training");
        let base = format!("learning-{}-{}", slug(game), slug(preset));
        both(
            &dir.join(&base),
            &mut out.files,
            |a| learning_curve(a, &title, x_desc, &runs),
            |a| learning_curve(a, &title, x_desc, &runs),
        )?;
        curve_links.push(format!("![{title}]({base}.png)"));
    }
    if !curve_links.is_empty() {
        md += "\n";
        for l in curve_links {
            let _ = writeln!(md, "{l}\n");
        }
    }
    cifar::section(run_dir, &dir, &mut out, &mut md)?;
    let has_cifar =
        run_dir.join(files::CIFAR_EVAL).is_file() || run_dir.join(files::CIFAR_TRAIN).is_file();
    if groups.is_empty() && curves.is_empty() && !has_cifar {
        md += "No relative rewards or training rows yet: run `sap collect` once cells are \
               complete.\n";
    }
    let md_path = dir.join("report.md");
    write_atomic(&md_path, md.as_bytes())?;
    out.files.push(md_path);
    Ok(out)
}
