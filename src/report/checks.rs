//! The report's adaptive-evaluation sections: the worst case over a job's attacks and the
//! gradient-masking checks, failures first and with their numbers.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::record::read_rows;
use crate::run_dir::checks::CheckRow;
use crate::run_dir::files;
use crate::table::WorstCaseRow;

/// Appends the worst-case table, if the run has one.
pub(super) fn worst_case_section(tables: &Path, md: &mut String) -> Result<()> {
    let rows: Vec<WorstCaseRow> = read_rows(&tables.join(files::WORST_CASE))?;
    if rows.is_empty() {
        return Ok(());
    }
    *md += "## Worst case over attacks\n\n";
    *md += "An image counts as correct only if every attack of its job left it correct \
            (AutoAttack's convention); optimistic: correct if any single one of the `samples` \
            passes was, under every attack (Athalye et al. 2018), reported beside, never \
            instead.\n\n";
    *md += "| job | network | defense | lambda | n | accuracy | optimistic | attacks |\n";
    *md += "|---|---|---|---:|---:|---:|---:|---|\n";
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {} |",
            r.job,
            r.variant,
            r.treatment.defense_label(),
            r.treatment.lambda,
            r.n,
            r.accuracy,
            r.optimistic_accuracy,
            r.attacks
        );
    }
    *md += "\n";
    Ok(())
}

/// Appends the gradient-masking checks, if the run has any: the count, then every failed
/// check with its numbers.
pub(super) fn checks_section(tables: &Path, md: &mut String) -> Result<()> {
    let rows: Vec<CheckRow> = read_rows(&tables.join(files::CHECKS))?;
    if rows.is_empty() {
        return Ok(());
    }
    let failed: Vec<&CheckRow> = rows.iter().filter(|r| !r.passed).collect();
    *md += "## Gradient-masking checks\n\n";
    *md += "Scores must not rise with lambda for one attack; an iterative attack must do no \
            worse than FGSM, the strongest white-box attack no worse than a transfer attack, \
            and at lambda >= 128 the strongest attack must reach chance (one over the classes, \
            or the random policy's mean return). A check fails when the score exceeds its \
            reference by more than 1.96 standard errors of the difference (`checks.csv`).\n\n";
    if failed.is_empty() {
        let _ = writeln!(md, "All {} checks passed.\n", rows.len());
        return Ok(());
    }
    let _ = writeln!(
        md,
        "**{} of {} checks FAILED**: the evaluation may be masking gradients; the numbers \
         below are upper bounds on robustness until a stronger attack explains them.\n",
        failed.len(),
        rows.len()
    );
    *md += "| check | job | subject | defense | attack | lambda | score | reference | reference score | tolerance |\n";
    *md += "|---|---|---|---|---|---:|---:|---|---:|---:|\n";
    for r in failed {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {} | {:.4} | {:.4} |",
            r.check.name(),
            r.job,
            r.subject,
            r.defense,
            r.attack,
            r.lambda,
            r.value,
            r.reference,
            r.reference_value,
            r.tolerance
        );
    }
    *md += "\n";
    Ok(())
}

/// One point of an attack line: (lambda, accuracy, images).
type Point = (f64, f64, usize);

/// The lines of one plot, in first-seen order: (label, points).
type Lines = Vec<(String, Vec<Point>)>;

/// Per (network, defense) of the CIFAR-10 rows, when the run has two attacks or more: one
/// plot of accuracy against lambda with a line per (job, attack) and the worst case of each
/// job, so that the paper's attacks and the adaptive suite are read side by side. Lambda 0
/// of every line is its job's clean row.
pub(super) fn attacks_section(
    tables: &Path,
    out: &mut super::Report,
    md: &mut String,
) -> Result<()> {
    use crate::table::{AttackName, CifarEvalRow};
    use std::collections::BTreeMap;
    let rows: Vec<CifarEvalRow> = read_rows(&tables.join(files::CIFAR_EVAL))?;
    let worst: Vec<WorstCaseRow> = read_rows(&tables.join(files::WORST_CASE))?;
    if super::distinct_attacks(rows.iter().map(|r| &r.treatment)) < 2 {
        return Ok(());
    }
    // (network, defense) -> line -> points; lines in first-seen order.
    let mut plots: BTreeMap<(String, String), Lines> = BTreeMap::new();
    let mut push = |key: (String, String), line: String, point: Point| {
        let lines = plots.entry(key).or_default();
        match lines.iter_mut().find(|(l, _)| *l == line) {
            Some((_, points)) => points.push(point),
            None => lines.push((line, vec![point])),
        }
    };
    for r in rows
        .iter()
        .filter(|r| r.treatment.attack != AttackName::None)
    {
        let key = (r.variant.clone(), r.treatment.defense_label());
        let line = format!("{}: {}", r.job, r.treatment.attack_label());
        push(key, line, (r.treatment.lambda, r.accuracy, r.n));
    }
    for r in &worst {
        let key = (r.variant.clone(), r.treatment.defense_label());
        push(
            key,
            format!("{}: worst case", r.job),
            (r.treatment.lambda, r.accuracy, r.n),
        );
    }
    *md += "### All attacks side by side\n\n";
    *md += "Per network and defense, accuracy against lambda under every attack of every job \
            (the paper's protocol and the adaptive suite), with each job's worst case; lambda 0 \
            is the clean row. Bands: 95% normal-approximation intervals.\n\n";
    for ((network, defense), mut lines) in plots {
        for (line, points) in &mut lines {
            let job = line.split(": ").next().unwrap_or_default();
            let clean = rows.iter().find(|r| {
                r.job == job
                    && r.variant == network
                    && r.treatment.attack == AttackName::None
                    && r.treatment.defense_label() == defense
            });
            if let Some(c) = clean {
                points.push((0.0, c.accuracy, c.n));
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
        }
        let mut lambdas: Vec<f64> = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.0))
            .collect();
        lambdas.sort_by(f64::total_cmp);
        lambdas.dedup();
        let series: Vec<super::Series> = lines
            .iter()
            .map(|(label, points)| {
                let at = |l: f64| lambdas.iter().position(|&x| x == l).expect("listed") as f64;
                super::Series {
                    label: label.clone(),
                    points: points.iter().map(|&(l, a, _)| (at(l), a)).collect(),
                    band: points
                        .iter()
                        .map(|&(l, a, n)| {
                            let half = 1.96 * (a * (1.0 - a) / n.max(1) as f64).sqrt();
                            (at(l), (a - half).max(0.0), (a + half).min(1.0))
                        })
                        .collect(),
                }
            })
            .collect();
        let data = super::cifar::data_title(super::cifar::all_synthetic(&rows));
        let title = format!("{data} ResNet-20 {network}, {defense}: every attack");
        let name = format!(
            "attacks-{}-{}",
            super::slug(&network),
            super::slug(&defense)
        );
        let x = "lambda (L-inf radius, pixel units 0..255)";
        let y = "test accuracy";
        super::both(
            &out.dir.join(&name),
            &mut out.files,
            |a| super::draw_lines(a, &title, x, y, &lambdas, &series),
            |a| super::draw_lines(a, &title, x, y, &lambdas, &series),
        )?;
        let _ = writeln!(md, "![{title}]({name}.png)\n");
    }
    Ok(())
}
