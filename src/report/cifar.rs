//! The CIFAR-10 part of `sap report`:
//!
//! - `accuracy-<job>-<attack>.{png,svg}`: test accuracy against lambda, one line per network
//!   variant x defense (dense, sap-100, adv, adv + sap-100, ...), with a 95% band;
//!   `ece-<job>-<attack>` the expected calibration error the same way.
//! - `reliability-<job>-<attack>-l<lambda>.{png,svg}`: reliability diagrams, accuracy
//!   against mean confidence per confidence bin, one line per variant x defense.
//! - `cifar-training-<job>.{png,svg}`: test and training-batch accuracy after each epoch
//!   against SGD iterations, one pair of lines per variant and seed.
//!
//! Rows of several seeds are pooled: accuracy is correct / images over the pooled rows, and
//! bins add their counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{both, draw_lines, legend_and_present, slug, trim, Report, Series, PALETTE};
use crate::defense::Defense;
use crate::manifest::Variant;
use crate::record::read_rows;
use crate::run_dir::{cifar_train_key, files, PartialRows};
use crate::table::{AttackName, Treatment};
use crate::table::{CifarEvalRow, CifarTrainRow, ReliabilityRow};

/// A line's label: the network variant and the defense's label (`dense`, `sap-100`, `adv`,
/// `adv + sap-100`; a `checkpoints` label as `<label> + <defense>`). `None`: no defense.
fn line_label(variant: &str, treatment: Option<&Treatment>) -> String {
    let defense = treatment
        .filter(|t| t.defense() != Some(Defense::Dense))
        .map(Treatment::defense_label);
    let network = (variant != Variant::Dense.name()).then_some(variant);
    match (network, defense) {
        (None, None) => Variant::Dense.name().to_owned(),
        (None, Some(d)) => d,
        (Some(v), None) => v.to_owned(),
        (Some(v), Some(d)) => format!("{v} + {d}"),
    }
}

fn row_label(r: &CifarEvalRow) -> String {
    line_label(&r.variant, Some(&r.treatment))
}

/// Pooled accuracy or ECE per (line, lambda) of one job and attack, with the clean rows
/// (attack `none`) at lambda 0.
fn metric_series(rows: &[&CifarEvalRow], ece: bool) -> (Vec<f64>, Vec<Series>) {
    let mut lambdas: Vec<f64> = rows.iter().map(|r| r.treatment.lambda).collect();
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup();
    let mut order: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, usize), Vec<&CifarEvalRow>> = BTreeMap::new();
    for r in rows {
        let label = row_label(r);
        if !order.contains(&label) {
            order.push(label.clone());
        }
        let x = lambdas
            .iter()
            .position(|&l| l == r.treatment.lambda)
            .expect("listed");
        cells.entry((label, x)).or_default().push(r);
    }
    let series = order
        .into_iter()
        .map(|label| {
            let mut points = Vec::new();
            let mut band = Vec::new();
            for x in 0..lambdas.len() {
                let Some(members) = cells.get(&(label.clone(), x)) else {
                    continue;
                };
                let n: f64 = members.iter().map(|r| r.n as f64).sum();
                let value = |f: fn(&CifarEvalRow) -> f64| {
                    members.iter().map(|r| f(r) * r.n as f64).sum::<f64>() / n
                };
                if ece {
                    points.push((x as f64, value(|r| r.ece)));
                } else {
                    let p = value(|r| r.accuracy);
                    // Normal approximation of the binomial over the pooled test images.
                    let half = 1.96 * (p * (1.0 - p) / n).sqrt();
                    points.push((x as f64, p));
                    band.push((x as f64, (p - half).max(0.0), (p + half).min(1.0)));
                }
            }
            Series {
                label,
                points,
                band,
            }
        })
        .collect();
    (lambdas, series)
}

/// One line of a reliability diagram: label and (mean confidence, accuracy, examples) per
/// non-empty bin.
type Curve = (String, Vec<(f64, f64, f64)>);

/// Bins with fewer examples than this are drawn hollow: their accuracy is too noisy to read.
pub const SMALL_BIN: f64 = 10.0;

fn reliability_diagram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[Curve],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("mean confidence in the bin (15 equal-width bins)")
        .y_desc("accuracy in the bin")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.5),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
    // A marker's area grows with its bin's examples; bins under SMALL_BIN are hollow.
    let most = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.2))
        .fold(1.0f64, f64::max);
    let radius = |n: f64| 2 + (10.0 * (n / most).sqrt()).round() as i32;
    for (i, (label, points)) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(xy, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&(x, y, n)| {
                let style = if n < SMALL_BIN {
                    color.stroke_width(2)
                } else {
                    color.filled()
                };
                Circle::new((x, y), radius(n), style)
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let all: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| (p.0, p.1)))
        .chain([(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)])
        .collect();
    legend_and_present(&mut chart, area, &all)
}

/// Pooled reliability curves of one job, attack and lambda.
fn reliability_curves(rows: &[&ReliabilityRow]) -> Vec<Curve> {
    let mut order: Vec<String> = Vec::new();
    // (count, correct, confidence sum) per line and bin.
    let mut sums: BTreeMap<(String, usize), (f64, f64, f64)> = BTreeMap::new();
    for r in rows {
        let label = line_label(&r.variant, Some(&r.treatment));
        if !order.contains(&label) {
            order.push(label.clone());
        }
        let e = sums.entry((label, r.bin)).or_default();
        let c = r.count as f64;
        e.0 += c;
        e.1 += r.accuracy.unwrap_or(0.0) * c;
        e.2 += r.mean_confidence.unwrap_or(0.0) * c;
    }
    order
        .into_iter()
        .map(|label| {
            let points = sums
                .range((label.clone(), 0)..(label.clone(), usize::MAX))
                .filter(|(_, s)| s.0 > 0.0)
                .map(|(_, s)| (s.2 / s.0, s.1 / s.0, s.0))
                .collect();
            (label, points)
        })
        .collect()
}

/// One training curve: label, whether it is the (thinner) training-batch accuracy, and
/// (iterations, accuracy) points.
type TrainCurve = (String, bool, Vec<(f64, f64)>);

fn training_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    curves: &[TrainCurve],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let x_hi = curves
        .iter()
        .flat_map(|c| c.2.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_hi * 1.02, 0.0..1.0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("accuracy")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (label, thin, points)) in curves.iter().enumerate() {
        let color = PALETTE[(i / 2) % PALETTE.len()];
        let width = if *thin { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let all: Vec<(f64, f64)> = curves.iter().flat_map(|c| c.2.iter().copied()).collect();
    legend_and_present(&mut chart, area, &all)
}

/// What a plot title calls the data: `CIFAR-10`, or the synthetic stand-in when every row
/// came from it.
pub(super) fn data_title(synthetic: bool) -> &'static str {
    if synthetic {
        "synthetic CIFAR-10 stand-in"
    } else {
        "CIFAR-10"
    }
}

/// Whether the rows were all evaluated on the synthetic stand-in (`dataset` column).
pub(super) fn all_synthetic(rows: &[CifarEvalRow]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.dataset == "cifar10-synthetic")
}

/// The `data` folder of every `[[cifar_train]]` job of the run's resolved manifest, by job
/// name, and whether it holds the synthetic stand-in.
fn synthetic_training_data(run_dir: &Path) -> Result<BTreeMap<String, bool>> {
    let mut out = BTreeMap::new();
    let Some(folder) = crate::run_dir::manifest_folder(run_dir)? else {
        return Ok(out);
    };
    let path = run_dir.join(files::RESOLVED);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let jobs = table.get("cifar_train").and_then(toml::Value::as_array);
    for job in jobs.into_iter().flatten() {
        let (Some(name), Some(data)) = (
            job.get("name").and_then(toml::Value::as_str),
            job.get("data").and_then(toml::Value::as_str),
        ) else {
            continue;
        };
        let synthetic = crate::data::cifar::is_synthetic(&folder.join(data));
        out.insert(name.to_owned(), synthetic);
    }
    Ok(out)
}

/// Learning curves and the last epoch of each CIFAR-10 training cell, from the tables in
/// `tables`; runs still training are marked partial.
fn training_section(
    run_dir: &Path,
    tables: &Path,
    partial: &PartialRows,
    out: &mut Report,
    md: &mut String,
) -> Result<()> {
    let dir = out.dir.clone();
    let rows: Vec<CifarTrainRow> = read_rows(&tables.join(files::CIFAR_TRAIN))?;
    if rows.is_empty() {
        return Ok(());
    }
    let synthetic = synthetic_training_data(run_dir)?;
    *md += "## CIFAR-10 training\n\n";
    if synthetic.values().any(|&s| s) {
        *md += "**Trained on the synthetic stand-in for CIFAR-10 (`sap synth-cifar`), not on \
                CIFAR-10**: these figures show the pipeline, not the paper's numbers.\n\n";
    }
    *md +=
        "| job | variant | seed | epochs | iterations | loss | train accuracy | test accuracy |\n";
    *md += "|---|---|---:|---:|---:|---:|---:|---:|\n";
    let mut jobs: Vec<&str> = Vec::new();
    for r in &rows {
        if !jobs.contains(&r.job.as_str()) {
            jobs.push(&r.job);
        }
    }
    for job in jobs {
        let last = rows
            .iter()
            .filter(|r| r.job == job)
            .map(|r| r.iteration)
            .max();
        let (unit, x_desc) = if last.unwrap_or(0) >= 1_000 {
            (1e3, "SGD iterations (thousands; one row per epoch)")
        } else {
            (1.0, "SGD iterations (one row per epoch)")
        };
        let mut curves: Vec<TrainCurve> = Vec::new();
        let mut still = false;
        let mut runs: Vec<(Variant, u64)> = Vec::new();
        for r in rows.iter().filter(|r| r.job == job) {
            if !runs.contains(&(r.variant, r.seed)) {
                runs.push((r.variant, r.seed));
            }
        }
        for (variant, seed) in runs {
            let mine: Vec<&CifarTrainRow> = rows
                .iter()
                .filter(|r| r.job == job && r.variant == variant && r.seed == seed)
                .collect();
            let x = |r: &CifarTrainRow| r.iteration as f64 / unit;
            let name = line_label(variant.name(), None);
            curves.push((
                format!("{name} seed {seed}: test"),
                false,
                mine.iter().map(|r| (x(r), r.test_accuracy)).collect(),
            ));
            curves.push((
                format!("{name} seed {seed}: training batches"),
                true,
                mine.iter().map(|r| (x(r), r.train_accuracy)).collect(),
            ));
            if let Some(last) = mine.last() {
                let running = partial.cifar_training.contains(&cifar_train_key(last));
                still |= running;
                let _ = writeln!(
                    md,
                    "| {job} | {variant} | {seed}{} | {} | {} | {:.4} | {:.4} | {:.4} |",
                    if running { " *(partial)*" } else { "" },
                    last.epoch,
                    last.iteration,
                    last.loss,
                    last.train_accuracy,
                    last.test_accuracy
                );
            }
        }
        let data = data_title(synthetic.get(job).copied().unwrap_or(false));
        let suffix = if still { " (partial)" } else { "" };
        let title = format!("{data} ResNet-20 training, job {job}{suffix}");
        let base = format!("cifar-training-{}", slug(job));
        both(
            &dir.join(&base),
            &mut out.files,
            |a| training_curves(a, &title, x_desc, &curves),
            |a| training_curves(a, &title, x_desc, &curves),
        )?;
        let _ = writeln!(md, "\n![{title}]({base}.png)\n");
    }
    Ok(())
}

/// Adds the CIFAR-10 plots and tables of `run_dir` to the report, from the tables in
/// `tables`.
pub(super) fn section(
    run_dir: &Path,
    tables: &Path,
    partial: &PartialRows,
    out: &mut Report,
    md: &mut String,
) -> Result<()> {
    training_section(run_dir, tables, partial, out, md)?;
    let dir = out.dir.clone();
    let dir = dir.as_path();
    let rows: Vec<CifarEvalRow> = read_rows(&tables.join(files::CIFAR_EVAL))?;
    let bins: Vec<ReliabilityRow> = read_rows(&tables.join(files::RELIABILITY))?;
    if rows.is_empty() {
        return Ok(());
    }
    *md += "## CIFAR-10: accuracy and calibration under attack\n\n";
    let synthetic = all_synthetic(&rows);
    if rows.iter().any(|r| r.dataset == "cifar10-synthetic") {
        *md += "**Rows with `dataset = cifar10-synthetic` come from the synthetic stand-in for \
                CIFAR-10 (`sap synth-cifar`), not from CIFAR-10**: they show the pipeline, not \
                the paper's numbers.\n\n";
    }
    *md += "Lambda is the L-infinity radius in pixel units (0..255); lambda 0 is the clean test \
            set. Accuracy bands: 95% normal-approximation interval of the pooled accuracy over \
            the test images. ECE: 15 equal-width confidence bins. adv: adversarially trained \
            network; sap-100: stochastic activation pruning with as many draws as units. \
            Reliability diagrams: a marker's area grows with the examples in its bin; hollow \
            markers are bins of fewer than 10 examples, too few to read.\n\n";
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.treatment.attack != AttackName::None)
    {
        let k = (r.job.clone(), r.treatment.attack_label());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (job, attack) in &keys {
        let mine: Vec<&CifarEvalRow> = rows
            .iter()
            .filter(|r| {
                r.job == *job
                    && (r.treatment.attack == AttackName::None
                        || r.treatment.attack_label() == *attack)
            })
            .collect();
        let base = format!("{}-{}", slug(job), slug(attack));
        let x = "lambda (L-inf radius, pixel units 0..255)";
        let _ = writeln!(md, "### Job `{job}`, attack {attack}\n");
        for (name, ece, y) in [
            ("accuracy", false, "test accuracy"),
            ("ece", true, "expected calibration error (15 bins)"),
        ] {
            let (lambdas, series) = metric_series(&mine, ece);
            let title = format!(
                "{} ResNet-20: {} under {attack}",
                data_title(synthetic),
                if ece { "ECE" } else { "accuracy" }
            );
            let path = dir.join(format!("{name}-{base}"));
            both(
                &path,
                &mut out.files,
                |a| draw_lines(a, &title, x, y, &lambdas, &series),
                |a| draw_lines(a, &title, x, y, &lambdas, &series),
            )?;
            let _ = writeln!(md, "![{title}]({name}-{base}.png)\n");
        }
        *md += "| network | lambda | n | accuracy | mean confidence | ECE | NLL |\n";
        *md += "|---|---:|---:|---:|---:|---:|---:|\n";
        for r in &mine {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                row_label(r),
                trim(r.treatment.lambda),
                r.n,
                r.accuracy,
                r.mean_confidence,
                r.ece,
                r.nll
            );
        }
        *md += "\n";
        let mut lambdas: Vec<f64> = mine.iter().map(|r| r.treatment.lambda).collect();
        lambdas.sort_by(f64::total_cmp);
        lambdas.dedup();
        for lambda in lambdas {
            let chosen: Vec<&ReliabilityRow> = bins
                .iter()
                .filter(|b| {
                    let t = &b.treatment;
                    b.job == *job
                        && t.lambda == lambda
                        && (t.attack_label() == *attack
                            || (lambda == 0.0 && t.attack == AttackName::None))
                })
                .collect();
            let curves = reliability_curves(&chosen);
            if curves.is_empty() {
                continue;
            }
            let what = if lambda == 0.0 {
                "clean".to_owned()
            } else {
                format!("{attack} lambda {}", trim(lambda))
            };
            let title = format!("Reliability, {} ResNet-20, {what}", data_title(synthetic));
            let name = format!("reliability-{base}-l{}", trim(lambda));
            both(
                &dir.join(&name),
                &mut out.files,
                |a| reliability_diagram(a, &title, &curves),
                |a| reliability_diagram(a, &title, &curves),
            )?;
            let _ = writeln!(md, "![{title}]({name}.png)\n");
        }
    }
    Ok(())
}
