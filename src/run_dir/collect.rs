//! From per-cell files to the run's tables: every complete cell's rows concatenated in plan
//! order, then the summaries (`summary.csv`, `relative_reward.csv`).
//!
//! Only cells with a completion mark contribute, so the tables of a finished run do not
//! depend on how it was run (one process, `--jobs N`, Slurm, interrupted and resumed).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{cell_dir, files, is_done};
use crate::manifest::{CellKind, Manifest, PlanCell};
use crate::provenance::{self, Provenance, RomRecord};
use crate::record::{read_rows, write_atomic, write_table};
use crate::stats::{relative_reward, summarize};
use crate::table::{
    AgentRow, AttackName, CifarEvalRow, CifarTrainRow, ClassifierRow, EpisodeRow, PredictionRow,
    RelativeRow, SummaryRow, TrainEvalRow, TrainRow, Treatment, WorstCaseRow,
};
use crate::vocab::{Family, PolicyKind};

/// What a summary row groups by: (job, family, game, preset, policy).
type GroupKey = (String, Family, String, String, PolicyKind);

/// Groups episode rows by job, game, preset and policy (in first-seen order) and summarises
/// each group's returns.
pub fn summarize_episodes(rows: &[EpisodeRow]) -> Vec<SummaryRow> {
    let mut groups: Vec<(GroupKey, Vec<&EpisodeRow>)> = Vec::new();
    for row in rows {
        let key = (
            row.job.clone(),
            row.family,
            row.game.clone(),
            row.preset.clone(),
            row.policy,
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
        .into_iter()
        .map(|((job, family, game, preset, policy), members)| {
            let returns: Vec<f64> = members.iter().map(|r| r.episode_return).collect();
            let s = summarize(&returns);
            let hns = match family {
                Family::Atari => crate::env::scores::hns(&game, s.mean),
                Family::Classic => None,
            };
            SummaryRow {
                job,
                family,
                game,
                preset,
                policy,
                n: s.n,
                mean: s.mean,
                std: s.std,
                ci95_low: s.ci95.map(|c| c.0),
                ci95_high: s.ci95.map(|c| c.1),
                truncated: members.iter().filter(|r| r.truncated).count(),
                hns,
            }
        })
        .collect()
}

/// One line per training cell, from its files.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// The cell id.
    pub cell: String,
    /// Whether the cell is complete.
    pub done: bool,
    /// Training games recorded.
    pub games: usize,
    /// Agent steps at the last recorded game.
    pub last_step: u64,
    /// Mean return of the last evaluation.
    pub last_eval_mean: Option<f64>,
    /// Its human-normalised score (Atari games of the Nature DQN table).
    pub last_eval_hns: Option<f64>,
}

/// The run's tables after collecting.
#[derive(Debug, Default)]
pub struct Collected {
    /// Cells in the plan.
    pub cells: usize,
    /// Cells with a completion mark.
    pub complete: usize,
    /// `summary.csv`.
    pub summary: Vec<SummaryRow>,
    /// `relative_reward.csv`.
    pub relative: Vec<RelativeRow>,
    /// `classifier_eval.csv`.
    pub classifier: Vec<ClassifierRow>,
    /// One line per training cell.
    pub training: Vec<TrainSummary>,
    /// `cifar_eval.csv`.
    pub cifar: Vec<CifarEvalRow>,
    /// `worst_case.csv`.
    pub worst_case: Vec<WorstCaseRow>,
    /// `checks.csv`: the gradient-masking checks of every evaluation table.
    pub checks: Vec<super::checks::CheckRow>,
    /// The last epoch row of each CIFAR-10 training cell, with whether the cell is complete.
    pub cifar_training: Vec<(String, bool, Option<CifarTrainRow>)>,
    /// In a partial collection, which cells and rows are partial.
    pub partial: PartialRows,
}

/// What a partial collection ([`collect_partial`]) holds of cells that have not completed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartialRows {
    /// Each started cell without a completion mark, with the complete rows of each row file
    /// it has written so far.
    pub cells: Vec<(String, Vec<(&'static str, usize)>)>,
    /// Cells not started.
    pub not_started: usize,
    /// Keys ([`relative_key`]) of relative-reward rows that hold episodes of those cells.
    pub relative: BTreeSet<String>,
    /// `job|game` of the relative-reward rows whose reference is partial: the dense clean
    /// mean or the random-policy mean holds episodes of those cells.
    pub references: BTreeSet<String>,
    /// Keys ([`train_key`]) of the training runs among them.
    pub training: BTreeSet<String>,
    /// Keys ([`cifar_train_key`]) of the CIFAR-10 training runs among them.
    pub cifar_training: BTreeSet<String>,
}

/// What identifies a training run's rows (`train.csv`): game, preset and seed.
pub fn train_key(game: &str, preset: &str, seed: u64) -> String {
    format!("{game}|{preset}|{seed}")
}

/// What identifies a CIFAR-10 training run's rows (`cifar_train.csv`): job, variant, seed.
pub fn cifar_train_key(r: &CifarTrainRow) -> String {
    format!("{}|{:?}|{}", r.job, r.variant, r.seed)
}

/// Every table a collection writes, in the order a report's page lists them.
pub const TABLES: [&str; 12] = [
    files::RELATIVE_REWARD,
    files::SUMMARY,
    files::CIFAR_EVAL,
    files::CLASSIFIER_EVAL,
    files::WORST_CASE,
    files::CHECKS,
    files::CIFAR_TRAIN,
    files::TRAIN_EVAL,
    files::TRAIN,
    files::RL_EVAL,
    files::EPISODES,
    files::RELIABILITY,
];

/// The row files a cell may write, in the order progress lists them.
const ROW_FILES: [&str; 7] = [
    files::TRAIN,
    files::TRAIN_EVAL,
    files::CIFAR_TRAIN,
    files::EPISODES,
    files::RL_EVAL,
    files::CIFAR_EVAL_PREDICTIONS,
    files::CLASSIFIER_EVAL,
];

/// Complete data lines of a CSV file (its header and a torn last line not counted).
fn data_lines(path: &Path) -> Result<Option<usize>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t.matches('\n').count().saturating_sub(1))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The started cells of `plan` without a completion mark, and the keys of their rows.
fn partial_rows(
    run_dir: &Path,
    plan: &[crate::manifest::PlanCell],
    done: &[bool],
) -> Result<PartialRows> {
    let mut out = PartialRows::default();
    for (cell, &complete) in plan.iter().zip(done) {
        let dir = cell_dir(run_dir, &cell.id());
        if complete {
            continue;
        }
        if !dir.is_dir() {
            out.not_started += 1;
            continue;
        }
        let mut counts = Vec::new();
        for name in ROW_FILES {
            if let Some(n) = data_lines(&dir.join(name))? {
                counts.push((name, n));
            }
        }
        out.cells.push((cell.id(), counts));
        let agent: Vec<AgentRow> = read_rows(&dir.join(files::RL_EVAL))?;
        out.relative.extend(agent.iter().map(group_key));
        let reference = |job: &str, game: &str| format!("{job}|{game}");
        out.references.extend(
            agent
                .iter()
                .filter(|r| r.treatment.is_dense_clean())
                .map(|r| reference(&r.job, &r.game)),
        );
        let episodes: Vec<EpisodeRow> = read_rows(&dir.join(files::EPISODES))?;
        out.references
            .extend(episodes.iter().map(|e| reference(&e.job, &e.game)));
        let games: Vec<TrainRow> = read_rows(&dir.join(files::TRAIN))?;
        out.training
            .extend(games.iter().map(|g| train_key(&g.game, &g.preset, g.seed)));
        let epochs: Vec<CifarTrainRow> = read_rows(&dir.join(files::CIFAR_TRAIN))?;
        out.cifar_training
            .extend(epochs.iter().map(cifar_train_key));
    }
    Ok(out)
}

/// Concatenates `cells/<id>/<name>` over `ids` into `<out>/<name>`, atomically: the header
/// once, then every complete line of each cell in order (a line still being written is left
/// out). Returns whether any cell had the file.
fn merge(run_dir: &Path, out: &Path, ids: &[String], name: &str) -> Result<bool> {
    let mut header: Option<String> = None;
    let mut body = String::new();
    for id in ids {
        let path = cell_dir(run_dir, id).join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let mut lines = complete.split_inclusive('\n');
        if let Some(h) = lines.next() {
            let h = header.get_or_insert_with(|| h.to_owned());
            if complete.split_inclusive('\n').next() != Some(h.as_str()) {
                anyhow::bail!(
                    "{}: its header differs from the other cells' {name}",
                    path.display()
                );
            }
        }
        lines.for_each(|l| body.push_str(l));
    }
    match header {
        Some(h) => {
            write_atomic(&out.join(name), (h + &body).as_bytes())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The grouping key of a relative-reward row: every column of an agent row that is not
/// per network, seed or episode.
fn group_key(r: &AgentRow) -> String {
    relative_key(&r.job, &r.game, &r.preset, &r.treatment, r.epsilon)
}

/// What identifies a relative-reward row: its job, game, preset, treatment and epsilon.
pub fn relative_key(
    job: &str,
    game: &str,
    preset: &str,
    treatment: &Treatment,
    epsilon: f64,
) -> String {
    format!("{job}|{game}|{preset}|{treatment:?}|{epsilon}")
}

/// Relative rewards of agent rows: groups in first-seen order, each against the dense clean
/// mean of its job and game and the random mean of `random[(job, game)]`.
pub fn relative_rows(
    rows: &[AgentRow],
    random: &HashMap<(String, String), Vec<f64>>,
) -> Vec<RelativeRow> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<&AgentRow>> = HashMap::new();
    let mut clean: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for r in rows {
        let key = group_key(r);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
        if r.treatment.is_dense_clean() {
            clean
                .entry((r.job.clone(), r.game.clone()))
                .or_default()
                .push(r.episode_return);
        }
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let mut out: Vec<RelativeRow> = order
        .iter()
        .map(|key| {
            let members = &groups[key];
            let first = members[0];
            let jg = (first.job.clone(), first.game.clone());
            let returns: Vec<f64> = members.iter().map(|r| r.episode_return).collect();
            let dense = clean.get(&jg).map(|c| mean(c));
            let rand = random.get(&jg).filter(|r| !r.is_empty());
            let random_mean = rand.map(|r| mean(r));
            let rr = relative_reward(
                &returns,
                dense.unwrap_or(f64::NAN),
                random_mean.unwrap_or(f64::NAN),
            );
            let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
            let networks: BTreeSet<&str> = members.iter().map(|r| r.checkpoint.as_str()).collect();
            let seeds: BTreeSet<u64> = members.iter().map(|r| r.eval_seed).collect();
            RelativeRow {
                job: first.job.clone(),
                game: first.game.clone(),
                preset: first.preset.clone(),
                treatment: first.treatment.clone(),
                epsilon: first.epsilon,
                networks: networks.len(),
                eval_seeds: seeds.len(),
                n: rr.summary.n,
                mean: rr.summary.mean,
                std: rr.summary.std,
                ci95_low: rr.summary.ci95.map(|c| c.0),
                ci95_high: rr.summary.ci95.map(|c| c.1),
                dense_clean_mean: dense,
                random_mean,
                random_n: rand.map_or(0, Vec::len),
                relative_reward: finite(rr.relative),
                normalized_reward: finite(rr.normalized),
                hns: crate::env::scores::hns(&first.game, rr.summary.mean),
                worst_attack: None,
            }
        })
        .collect();
    mark_worst_attacks(&mut out);
    out
}

/// Sets `worst_attack` on the rows under attack whose (job, game, preset, defense, lambda,
/// epsilon) has two attacks or more: true for the lowest mean return (ties all true).
fn mark_worst_attacks(rows: &mut [RelativeRow]) {
    let key = |r: &RelativeRow| {
        let t = &r.treatment;
        let defense = t.defense_label();
        format!(
            "{}|{}|{}|{defense}|{}|{}",
            r.job, r.game, r.preset, t.lambda, r.epsilon
        )
    };
    let mut lowest: HashMap<String, (usize, f64)> = HashMap::new();
    for r in rows.iter().filter(|r| r.treatment.lambda > 0.0) {
        let entry = lowest.entry(key(r)).or_insert((0, f64::INFINITY));
        entry.0 += 1;
        entry.1 = entry.1.min(r.mean);
    }
    for r in rows.iter_mut().filter(|r| r.treatment.lambda > 0.0) {
        let (attacks, min) = lowest[&key(r)];
        if attacks >= 2 {
            r.worst_attack = Some(r.mean == min);
        }
    }
}

/// The worst case over the attacks of each `[[cifar_eval]]` job with two attacks or more:
/// per (job, network, seed, defense, lambda > 0) whose every attack cell is complete, an
/// image is correct only if every attack left it correct (its `predictions.csv` rows).
fn worst_case_rows(
    run_dir: &Path,
    manifest: &Manifest,
    plan: &[crate::manifest::PlanCell],
    done: &[bool],
) -> Result<Vec<WorstCaseRow>> {
    // Group key -> the group's cells (plan order).
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, cell) in plan.iter().enumerate() {
        let CellKind::CifarEval(c) = &cell.kind else {
            continue;
        };
        if c.condition.lambda() == 0.0 || manifest.cifar_eval[c.job].attacks.len() < 2 {
            continue;
        }
        let key = format!(
            "{}|{}|{:?}|{}|{}|{}",
            c.job,
            c.label,
            c.network,
            c.condition.seed,
            c.condition.defense.label(),
            c.condition.lambda()
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(i);
    }
    let mut out = Vec::new();
    for key in &order {
        let members = &groups[key];
        let CellKind::CifarEval(first) = &plan[members[0]].kind else {
            unreachable!("grouped CIFAR-10 evaluation cells");
        };
        if members.len() != manifest.cifar_eval[first.job].attacks.len()
            || !members.iter().all(|&i| done[i])
        {
            continue;
        }
        let mut correct: Option<Vec<(u64, bool, bool)>> = None;
        let mut labels = Vec::new();
        let mut row: Option<CifarEvalRow> = None;
        for &i in members {
            let id = plan[i].id();
            let dir = cell_dir(run_dir, &id);
            let preds: Vec<PredictionRow> = read_rows(&dir.join(files::CIFAR_EVAL_PREDICTIONS))?;
            let mut these: Vec<(u64, bool, bool)> = preds
                .iter()
                .map(|p| (p.example, p.predicted == p.label, p.any_pass_correct))
                .collect();
            these.sort_by_key(|t| t.0);
            correct = Some(match correct {
                None => these,
                Some(so_far) => {
                    let same = so_far.len() == these.len()
                        && so_far.iter().zip(&these).all(|(a, b)| a.0 == b.0);
                    if !same {
                        bail!(
                            "{}: its images differ from the other attacks' of the same network, \
                             defense and lambda; the worst case needs the same images",
                            dir.join(files::CIFAR_EVAL_PREDICTIONS).display()
                        );
                    }
                    so_far
                        .iter()
                        .zip(&these)
                        .map(|(a, b)| (a.0, a.1 && b.1, a.2 && b.2))
                        .collect()
                }
            });
            let rows: Vec<CifarEvalRow> = read_rows(&dir.join(files::CIFAR_EVAL))?;
            if let Some(r) = rows.into_iter().next() {
                labels.push(r.treatment.attack_label());
                row.get_or_insert(r);
            }
        }
        let (Some(correct), Some(r)) = (correct, row) else {
            continue;
        };
        let n = correct.len();
        let share = |f: fn(&(u64, bool, bool)) -> bool| {
            correct.iter().filter(|c| f(c)).count() as f64 / n.max(1) as f64
        };
        let mut treatment = Treatment::new(&first.condition.defense, None, r.treatment.samples);
        treatment.attack = AttackName::WorstCase;
        treatment.lambda = first.condition.lambda();
        out.push(WorstCaseRow {
            job: r.job,
            dataset: r.dataset,
            data: r.data,
            variant: r.variant,
            checkpoint: r.checkpoint,
            train_seed: r.train_seed,
            eval_seed: r.eval_seed,
            treatment,
            attacks: labels.join(" + "),
            n,
            accuracy: share(|c| c.1),
            optimistic_accuracy: share(|c| c.2),
        });
    }
    Ok(out)
}

/// Checks that the complete cells `ids` were computed under the same settings that rows
/// depend on ([`Provenance::rows_key`]); refuses a run that mixes them, or only warns with
/// `allow_mixed`.
fn check_provenance(run_dir: &Path, ids: &[String], allow_mixed: bool) -> Result<()> {
    let mut groups: Vec<(Option<Provenance>, Vec<&str>)> = Vec::new();
    let mut roms: Vec<(RomRecord, &str)> = Vec::new();
    for id in ids {
        let p = Provenance::read(&cell_dir(run_dir, id).join(provenance::FILE))?;
        if let Some(rom) = p.as_ref().and_then(|p| p.rom.clone()) {
            roms.push((rom, id));
        }
        let key = p.as_ref().map(Provenance::rows_key);
        match groups
            .iter_mut()
            .find(|(g, _)| g.as_ref().map(Provenance::rows_key) == key)
        {
            Some((_, cells)) => cells.push(id),
            None => groups.push((p, vec![id])),
        }
    }
    check_roms(run_dir, &roms)?;
    if groups.len() <= 1 {
        return Ok(());
    }
    let describe = |cells: &[&str]| {
        let more = if cells.len() > 3 { ", ..." } else { "" };
        format!(
            "{} cells ({}{more})",
            cells.len(),
            cells[..cells.len().min(3)].join(", ")
        )
    };
    let mut msg = format!(
        "the complete cells of {} were computed under different settings that their rows \
         depend on:\n  group 1: {}\n",
        run_dir.display(),
        describe(&groups[0].1)
    );
    for (i, (p, cells)) in groups.iter().enumerate().skip(1) {
        let diff = match (&groups[0].0, p) {
            (Some(a), Some(b)) => a.differences(b).join("; "),
            _ => format!(
                "one group has no {} (cells of an older sap)",
                provenance::FILE
            ),
        };
        msg += &format!(
            "  group {}: {}, differs from group 1 in {diff}\n",
            i + 1,
            describe(cells)
        );
    }
    if allow_mixed {
        tracing::warn!("{msg}merging them anyway (--allow-mixed)");
        return Ok(());
    }
    bail!(
        "{msg}so their rows are not comparable. Rerun one group's cells under the other's \
         settings (delete their folders under cells/ and resume), set reproducible = true in \
         the manifest to run across CPU kinds, or merge anyway with `sap collect {} \
         --allow-mixed`",
        run_dir.display()
    )
}

/// Refuses to merge cells of one game that played different ROM files (`--allow-mixed`
/// does not lift this: two ROM files are two games).
fn check_roms(run_dir: &Path, roms: &[(RomRecord, &str)]) -> Result<()> {
    for (i, (first, first_id)) in roms.iter().enumerate() {
        if let Some((other, other_id)) = roms[i + 1..]
            .iter()
            .find(|(r, _)| r.game == first.game && r.md5 != first.md5)
        {
            bail!(
                "cells of {} in {} played different ROM files: cell {first_id} played {} (MD5 \
                 {}), cell {other_id} played {} (MD5 {}); their rows are of two versions of \
                 the game and are not merged. Rerun the cells of one ROM (delete their folders \
                 under cells/ and resume)",
                first.game,
                run_dir.display(),
                first.file,
                first.md5,
                other.file,
                other.md5
            );
        }
    }
    Ok(())
}

/// Refuses to merge when a complete cell's outputs changed after it completed (truncated,
/// emptied, deleted or appended to), naming every such cell and file.
fn check_outputs(run_dir: &Path, ids: &[String]) -> Result<()> {
    let mut msg = String::new();
    let mut damaged = 0;
    for id in ids {
        for d in super::damaged_outputs(run_dir, id)? {
            msg += &format!("\n  cell {id}: {d}");
            damaged += 1;
        }
    }
    if damaged > 0 {
        bail!(
            "{} has complete cells whose files changed after they completed, so their rows \
             would be lost or counted twice:{msg}\nRestore the files, or delete each such cell's \
             folder under cells/ and resume the run to compute it again",
            run_dir.display()
        );
    }
    Ok(())
}

/// Merges the complete cells' files into the run's tables and writes the summaries. Cells
/// computed under different settings that rows depend on are refused unless `allow_mixed`.
/// Leaves `collected.toml`, which says how many cells the tables hold.
pub fn collect(
    run_dir: &Path,
    manifest: &Manifest,
    plan: &[PlanCell],
    allow_mixed: bool,
) -> Result<Collected> {
    let out = collect_into(run_dir, run_dir, manifest, plan, allow_mixed, false)?;
    let mark = Collection {
        cells: out.cells,
        complete: out.complete,
    };
    let text = toml::to_string(&mark).context("writing the collection mark")?;
    write_atomic(&run_dir.join(files::COLLECTED), text.as_bytes())?;
    Ok(out)
}

/// What `collected.toml` records of the last `sap collect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Collection {
    /// Cells in the plan.
    pub cells: usize,
    /// Complete cells whose rows the run's tables hold.
    pub complete: usize,
}

/// The last collection of `run_dir`, if `sap collect` has run there.
pub fn last_collection(run_dir: &Path) -> Option<Collection> {
    let text = std::fs::read_to_string(run_dir.join(files::COLLECTED)).ok()?;
    toml::from_str(&text).ok()
}

/// The tables of a run that is still going, written into `out` (never into the run's own
/// tables): the rows of complete cells and those recorded so far by cells that have started
/// but not completed, with which rows are partial. Summaries of partial groups are over the
/// episodes so far; the worst case and the provenance check use complete cells only.
pub fn collect_partial(
    run_dir: &Path,
    manifest: &Manifest,
    plan: &[PlanCell],
    out: &Path,
) -> Result<Collected> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // No table of an earlier collection outlives its rows.
    for name in TABLES {
        let path = out.join(name);
        if path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    collect_into(run_dir, out, manifest, plan, false, true)
}

/// Collects `run_dir`'s cells into tables under `target`: complete cells, and with
/// `partial` also the rows of started ones.
fn collect_into(
    run_dir: &Path,
    target: &Path,
    manifest: &Manifest,
    plan: &[PlanCell],
    allow_mixed: bool,
    partial: bool,
) -> Result<Collected> {
    let done: Vec<bool> = plan.iter().map(|c| is_done(run_dir, &c.id())).collect();
    let complete_ids: Vec<String> = plan
        .iter()
        .zip(&done)
        .filter(|(_, d)| **d)
        .map(|(c, _)| c.id())
        .collect();
    check_outputs(run_dir, &complete_ids)?;
    check_provenance(run_dir, &complete_ids, allow_mixed)?;
    let started: Vec<bool> = plan
        .iter()
        .zip(&done)
        .map(|(c, &d)| d || (partial && cell_dir(run_dir, &c.id()).is_dir()))
        .collect();
    let ids: Vec<String> = plan
        .iter()
        .zip(&started)
        .filter(|(_, s)| **s)
        .map(|(c, _)| c.id())
        .collect();
    let mut out = Collected {
        cells: plan.len(),
        complete: complete_ids.len(),
        ..Collected::default()
    };
    if partial {
        out.partial = partial_rows(run_dir, plan, &done)?;
    }
    for name in [
        files::TRAIN,
        files::TRAIN_EVAL,
        files::CLASSIFIER_EVAL,
        files::CIFAR_TRAIN,
        files::CIFAR_EVAL,
        files::RELIABILITY,
    ] {
        merge(run_dir, target, &ids, name)?;
    }
    out.cifar = read_rows(&target.join(files::CIFAR_EVAL))?;
    out.worst_case = worst_case_rows(run_dir, manifest, plan, &done)?;
    let path = target.join(files::WORST_CASE);
    if !out.worst_case.is_empty() {
        write_table(&path, &out.worst_case)?;
    } else if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    if merge(run_dir, target, &ids, files::EPISODES)? {
        let rows: Vec<EpisodeRow> = read_rows(&target.join(files::EPISODES))?;
        out.summary = summarize_episodes(&rows);
        write_table(&target.join(files::SUMMARY), &out.summary)?;
    }
    if merge(run_dir, target, &ids, files::RL_EVAL)? {
        let rows: Vec<AgentRow> = read_rows(&target.join(files::RL_EVAL))?;
        // The random-policy returns behind each (job, game): its baseline cells.
        let mut random: HashMap<(String, String), Vec<f64>> = HashMap::new();
        let mut seen = BTreeSet::new();
        for cell in plan {
            let CellKind::Agent(a) = &cell.kind else {
                continue;
            };
            if !seen.insert((a.job, a.game.name(), a.baseline)) || !started[a.baseline] {
                continue;
            }
            let path = cell_dir(run_dir, &plan[a.baseline].id()).join(files::EPISODES);
            let episodes: Vec<EpisodeRow> = read_rows(&path)?;
            random
                .entry((a.job_name.clone(), a.game.name().to_owned()))
                .or_default()
                .extend(episodes.iter().map(|e| e.episode_return));
        }
        out.relative = relative_rows(&rows, &random);
        write_table(&target.join(files::RELATIVE_REWARD), &out.relative)?;
    }
    out.classifier = read_rows(&target.join(files::CLASSIFIER_EVAL))?;
    {
        use super::checks;
        let mut measures = checks::classifier_measures(&out.classifier);
        measures.extend(checks::cifar_measures(&out.cifar));
        measures.extend(checks::agent_measures(&out.relative));
        out.checks = checks::run_checks(&measures);
        let path = target.join(files::CHECKS);
        if !out.checks.is_empty() {
            write_table(&path, &out.checks)?;
        } else if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for (cell, &complete) in plan.iter().zip(&done) {
        if let CellKind::CifarTrain(_) = &cell.kind {
            let dir = cell_dir(run_dir, &cell.id());
            let rows: Vec<CifarTrainRow> = read_rows(&dir.join(files::CIFAR_TRAIN))?;
            out.cifar_training
                .push((cell.id(), complete, rows.last().cloned()));
        }
        let CellKind::Train(t) = &cell.kind else {
            continue;
        };
        let dir = cell_dir(run_dir, &cell.id());
        let games: Vec<TrainRow> = read_rows(&dir.join(files::TRAIN))?;
        let last_eval_mean = last_eval_mean(&dir.join(files::TRAIN_EVAL))?;
        out.training.push(TrainSummary {
            cell: cell.id(),
            done: complete,
            games: games.len(),
            last_step: games.last().map_or(0, |g| g.step),
            last_eval_mean,
            last_eval_hns: match t.game {
                crate::manifest::GameId::Atari(g) => {
                    last_eval_mean.and_then(|m| crate::env::scores::hns(g.name(), m))
                }
                crate::manifest::GameId::Classic(_) => None,
            },
        });
    }
    Ok(out)
}

/// The mean return of the last evaluation recorded in a `train_eval.csv`.
pub fn last_eval_mean(path: &Path) -> Result<Option<f64>> {
    let rows: Vec<TrainEvalRow> = read_rows(path)?;
    let Some(last) = rows.last().map(|r| r.step) else {
        return Ok(None);
    };
    let returns: Vec<f64> = rows
        .iter()
        .filter(|r| r.step == last)
        .map(|r| r.episode_return)
        .collect();
    Ok(Some(returns.iter().sum::<f64>() / returns.len() as f64))
}
