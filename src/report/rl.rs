//! The reinforcement-learning sections of a report: relative rewards under attack (one plot
//! per job, game and attack) and Double DQN learning curves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{both, draw_lines, legend_and_present, slug, trim, Report, Series, PALETTE};
use crate::manifest::Family;
use crate::record::read_rows;
use crate::run_dir::{files, relative_key, train_key, PartialRows};
use crate::table::{AttackName, RelativeRow, TrainEvalRow, TrainRow};

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
type PlotKey = (String, String, String, String);

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
    let points: Vec<(f64, f64)> = runs
        .iter()
        .flat_map(|(_, g, e)| g.iter().chain(e.iter()).copied())
        .collect();
    legend_and_present(&mut chart, area, &points)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// The table behind one relative-reward plot, with the references it is scaled by.
fn relative_table(rows: &[&RelativeRow], partial: &PartialRows, md: &mut String) {
    *md += "| defense | lambda | n | mean return | 95% CI | relative | normalised | HNS |\n";
    *md += "|---|---:|---:|---:|---|---:|---:|---:|\n";
    for r in rows {
        let ci = match (r.ci95_low, r.ci95_high) {
            (Some(a), Some(b)) => format!("[{a:.2}, {b:.2}]"),
            _ => "-".to_owned(),
        };
        let mark = if is_partial(partial, r) {
            " *(partial)*"
        } else {
            ""
        };
        let _ = writeln!(
            md,
            "| {}{mark} | {} | {} | {:.2} | {ci} | {} | {} | {} |",
            r.treatment.defense_label(),
            trim(r.treatment.lambda),
            r.n,
            r.mean,
            opt(r.relative_reward),
            opt(r.normalized_reward),
            opt(r.hns)
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
                *md += "The dense agent does not beat the random policy here, so the \
                       normalised reward (mean - random) / (dense clean - random) is \
                       meaningless and left empty.\n\n";
            }
        }
    }
}

/// Whether a relative-reward row, or the dense clean or random mean it is scaled by, holds
/// episodes of cells that have not completed.
fn is_partial(partial: &PartialRows, r: &RelativeRow) -> bool {
    let key = relative_key(&r.job, &r.game, &r.preset, &r.treatment, r.epsilon);
    partial.relative.contains(&key)
        || partial
            .references
            .contains(&format!("{}|{}", r.job, r.game))
}

/// " (partial)" when any of `rows` holds episodes of cells that have not completed.
fn partial_suffix(partial: &PartialRows, rows: &[&RelativeRow]) -> &'static str {
    if rows.iter().any(|r| is_partial(partial, r)) {
        " (partial)"
    } else {
        ""
    }
}

/// The relative-reward section: per job, game and attack, the plots against lambda and the
/// table behind them, from the tables in `tables`. Returns whether the run has relative
/// rewards.
pub(super) fn relative_section(
    tables: &Path,
    partial: &PartialRows,
    out: &mut Report,
    md: &mut String,
) -> Result<bool> {
    let relative: Vec<RelativeRow> = read_rows(&tables.join(files::RELATIVE_REWARD))?;
    let mut groups: Vec<(PlotKey, Vec<&RelativeRow>)> = Vec::new();
    for r in &relative {
        let key = (
            r.job.clone(),
            r.game.clone(),
            r.preset.clone(),
            r.treatment.attack_label(),
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
        *md += "## Relative reward under attack\n\n";
        *md += "Relative reward = mean return / mean return of the dense network without \
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
        let base = format!("{}-{}-{}", slug(job), slug(game), slug(attack));
        let suffix = partial_suffix(partial, &rows);
        let title_for = |what: &str| format!("{game} ({preset}): {what} under {attack}{suffix}");
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
            let path = out.dir.join(format!("{name}-{base}"));
            both(
                &path,
                &mut out.files,
                |a| draw_lines(a, &title, x, y, &lambdas, &series),
                |a| draw_lines(a, &title, x, y, &lambdas, &series),
            )?;
            links.push(format!("![{title}]({name}-{base}.png)"));
        }
        let _ = writeln!(md, "### {game} ({preset}), {attack}, job `{job}`\n");
        relative_table(&rows, partial, md);
        for l in links {
            let _ = writeln!(md, "{l}\n");
        }
    }

    Ok(!groups.is_empty())
}

/// The training section: per game and preset, the learning curves of every seed and a
/// table of each run's last figures, from the tables in `tables`. Returns whether the run
/// has training rows.
pub(super) fn training_section(
    tables: &Path,
    partial: &PartialRows,
    out: &mut Report,
    md: &mut String,
) -> Result<bool> {
    let games: Vec<TrainRow> = read_rows(&tables.join(files::TRAIN))?;
    let evals: Vec<TrainEvalRow> = read_rows(&tables.join(files::TRAIN_EVAL))?;
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
        *md += "## Training\n\nAtari curves are in emulator frames; classic-control ones in \
                agent steps (one step is one frame there).\n\n";
        *md += "| game | preset | seed | games | last frames or steps | last evaluation mean |\n";
        *md += "|---|---|---:|---:|---:|---:|\n";
    }
    let mut curve_links = Vec::new();
    for ((game, preset), seeds) in &curves {
        let classic = games
            .iter()
            .any(|g| g.game == *game && g.preset == *preset && g.family == Family::Classic);
        // Atari: emulator frames; classic control: agent steps.
        let x_of = |step: u64, frames: u64| if classic { step } else { frames };
        let max_x = games
            .iter()
            .filter(|g| g.game == *game && g.preset == *preset)
            .map(|g| x_of(g.step, g.frames))
            .max()
            .unwrap_or(0);
        let what = if classic {
            "agent steps"
        } else {
            "emulator frames"
        };
        let (unit, x_desc) = if max_x >= 1_000_000 {
            (1e6, format!("{what} (millions)"))
        } else {
            (1e3, format!("{what} (thousands)"))
        };
        let x_desc = x_desc.as_str();
        let mut runs = Vec::new();
        let mut training = Vec::new();
        for &seed in seeds {
            let still = partial.training.contains(&train_key(game, preset, seed));
            if still {
                training.push(seed.to_string());
            }
            let mine: Vec<&TrainRow> = games
                .iter()
                .filter(|g| g.game == *game && g.preset == *preset && g.seed == seed)
                .collect();
            let returns: Vec<f64> = mine.iter().map(|g| g.episode_return).collect();
            let smooth = moving_mean(&returns, 10);
            let points: Vec<(f64, f64)> = mine
                .iter()
                .zip(smooth)
                .map(|(g, m)| (x_of(g.step, g.frames) as f64 / unit, m))
                .collect();
            let mut eval_points: Vec<(f64, f64)> = Vec::new();
            let mut at: Vec<u64> = Vec::new();
            for e in evals
                .iter()
                .filter(|e| e.game == *game && e.preset == *preset && e.seed == seed)
            {
                if !at.contains(&x_of(e.step, e.frames)) {
                    at.push(x_of(e.step, e.frames));
                }
            }
            for x in at {
                let r: Vec<f64> = evals
                    .iter()
                    .filter(|e| e.game == *game && e.seed == seed && x_of(e.step, e.frames) == x)
                    .map(|e| e.episode_return)
                    .collect();
                eval_points.push((x as f64 / unit, r.iter().sum::<f64>() / r.len() as f64));
            }
            let _ = writeln!(
                md,
                "| {game} | {preset} | {seed}{} | {} | {} | {} |",
                if still { " *(partial)*" } else { "" },
                mine.len(),
                mine.last().map_or(0, |g| x_of(g.step, g.frames)),
                opt(eval_points.last().map(|p| p.1))
            );
            runs.push((seed, points, eval_points));
        }
        let title = match training.as_slice() {
            [] => format!("{game} ({preset}): Double DQN training"),
            [one] => {
                format!("{game} ({preset}): Double DQN training (partial: seed {one} unfinished)")
            }
            many => format!(
                "{game} ({preset}): Double DQN training (partial: seeds {} unfinished)",
                many.join(", ")
            ),
        };
        let base = format!("learning-{}-{}", slug(game), slug(preset));
        both(
            &out.dir.join(&base),
            &mut out.files,
            |a| learning_curve(a, &title, x_desc, &runs),
            |a| learning_curve(a, &title, x_desc, &runs),
        )?;
        curve_links.push(format!("![{title}]({base}.png)"));
    }
    if !curve_links.is_empty() {
        *md += "\n";
        for l in curve_links {
            let _ = writeln!(md, "{l}\n");
        }
    }
    Ok(!curves.is_empty())
}

/// When the run has two attacks or more: per (game, preset, defense), the relative reward
/// against lambda under every attack of every job, side by side (the paper's FGSM and the
/// adaptive suite). Each line's lambda 0 is its own clean cell.
pub(super) fn attacks_section(
    tables: &Path,
    partial: &PartialRows,
    out: &mut Report,
    md: &mut String,
) -> Result<()> {
    let relative: Vec<RelativeRow> = read_rows(&tables.join(files::RELATIVE_REWARD))?;
    if super::distinct_attacks(relative.iter().map(|r| &r.treatment)) < 2 {
        return Ok(());
    }
    type Lines<'a> = Vec<(String, Vec<&'a RelativeRow>)>;
    let mut plots: BTreeMap<(String, String, String), Lines> = BTreeMap::new();
    for r in relative
        .iter()
        .filter(|r| r.treatment.attack != AttackName::None && r.relative_reward.is_some())
    {
        let key = (
            r.game.clone(),
            r.preset.clone(),
            r.treatment.defense_label(),
        );
        let line = format!("{}: {}", r.job, r.treatment.attack_label());
        let lines = plots.entry(key).or_default();
        match lines.iter_mut().find(|(l, _)| *l == line) {
            Some((_, rows)) => rows.push(r),
            None => lines.push((line, vec![r])),
        }
    }
    if plots.is_empty() {
        return Ok(());
    }
    *md += "### All attacks side by side\n\n";
    *md += "Per game and defense, the relative reward against lambda under every attack of \
            every job (the paper's protocol and the adaptive suite); bands: Student-t 95% CI \
            of the mean return, scaled the same way.\n\n";
    for ((game, preset, defense), lines) in plots {
        let mut lambdas: Vec<f64> = lines
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r.treatment.lambda))
            .collect();
        lambdas.sort_by(f64::total_cmp);
        lambdas.dedup();
        let at = |l: f64| lambdas.iter().position(|&x| x == l).expect("listed") as f64;
        let series: Vec<Series> = lines
            .iter()
            .map(|(label, rows)| {
                let mut rows = rows.clone();
                rows.sort_by(|a, b| a.treatment.lambda.total_cmp(&b.treatment.lambda));
                // Two attacks that are the same against this defense (BPDA on a dense
                // network) share a label: one point per lambda.
                rows.dedup_by(|a, b| a.treatment.lambda == b.treatment.lambda);
                let points = rows
                    .iter()
                    .filter_map(|r| Some((at(r.treatment.lambda), r.relative_reward?)))
                    .collect();
                let band = rows
                    .iter()
                    .filter_map(|r| {
                        let d = r.dense_clean_mean.filter(|d| *d != 0.0)?;
                        let (lo, hi) = (r.ci95_low? / d, r.ci95_high? / d);
                        Some((at(r.treatment.lambda), lo.min(hi), lo.max(hi)))
                    })
                    .collect();
                Series {
                    label: label.clone(),
                    points,
                    band,
                }
            })
            .collect();
        let all: Vec<&RelativeRow> = lines.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        let suffix = partial_suffix(partial, &all);
        let title = format!("{game} ({preset}), {defense}: every attack{suffix}");
        let name = format!(
            "attacks-{}-{}-{}",
            slug(&game),
            slug(&preset),
            slug(&defense)
        );
        let x = "lambda (L-inf radius, pixel units 0..255)";
        let y = "relative reward (mean / dense clean mean)";
        both(
            &out.dir.join(&name),
            &mut out.files,
            |a| draw_lines(a, &title, x, y, &lambdas, &series),
            |a| draw_lines(a, &title, x, y, &lambdas, &series),
        )?;
        let _ = writeln!(md, "![{title}]({name}.png)\n");
    }
    Ok(())
}
