//! From a manifest to result files: the run directory, the cells in plan order, resuming
//! a run that stopped, and the summary.

pub mod baseline;
pub mod robustness;
pub mod train;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::record::{read_rows, write_atomic, write_table, CsvAppender};
use crate::stats::summarize;

/// File names inside a run directory.
pub mod files {
    /// The manifest as the user wrote it.
    pub const MANIFEST: &str = "manifest.toml";
    /// The manifest with every default resolved.
    pub const RESOLVED: &str = "manifest.resolved.toml";
    /// One row per episode.
    pub const EPISODES: &str = "episodes.csv";
    /// One row per game x preset x policy.
    pub const SUMMARY: &str = "summary.csv";
    /// One row per classifier x defense x attack x lambda (`[[robustness]]` jobs).
    pub const CLASSIFIER_EVAL: &str = "classifier_eval.csv";
    /// One row per training game, every training cell (merged from `cells/*/train.csv`).
    pub const TRAIN: &str = "train.csv";
    /// One row per evaluation episode during training (merged from the cells).
    pub const TRAIN_EVAL: &str = "train_eval.csv";
}

/// One evaluation episode (`episodes.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRow {
    /// `atari` or `classic`.
    pub family: String,
    /// CamelCase game name.
    pub game: String,
    /// Atari preset, `none` for classic games.
    pub preset: String,
    /// Evaluation seed of the cell.
    pub seed: u64,
    /// The policy played.
    pub policy: String,
    /// Episode index within the cell, from 0.
    pub episode: u32,
    /// Undiscounted sum of raw (unclipped) rewards.
    #[serde(rename = "return")]
    pub episode_return: f64,
    /// Emulator frames (Atari, no-op starts included) or steps (classic).
    pub frames: u64,
    /// The episode hit the frame cap or time limit rather than ending.
    pub truncated: bool,
}

/// What identifies a recorded episode: (game, preset, seed, policy, episode).
pub type EpisodeKey = (String, String, u64, String, u32);

/// What a summary row groups by: (family, game, preset, policy).
type GroupKey = (String, String, String, String);

impl EpisodeRow {
    fn key(&self) -> EpisodeKey {
        (
            self.game.clone(),
            self.preset.clone(),
            self.seed,
            self.policy.clone(),
            self.episode,
        )
    }
}

/// Per game x preset x policy statistics of episode returns (`summary.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// `atari` or `classic`.
    pub family: String,
    /// CamelCase game name.
    pub game: String,
    /// Atari preset, `none` for classic games.
    pub preset: String,
    /// The policy played.
    pub policy: String,
    /// Episodes.
    pub n: usize,
    /// Mean return.
    pub mean: f64,
    /// Sample standard deviation (empty when n < 2).
    pub std: Option<f64>,
    /// Lower end of the Student-t 95% CI of the mean (empty when n < 2).
    pub ci95_low: Option<f64>,
    /// Upper end of the Student-t 95% CI of the mean (empty when n < 2).
    pub ci95_high: Option<f64>,
    /// Episodes cut by the frame cap or time limit.
    pub truncated: usize,
}

/// Groups episode rows (in first-seen order) and summarises each group's returns.
pub fn summarize_episodes(rows: &[EpisodeRow]) -> Vec<SummaryRow> {
    let mut groups: Vec<(GroupKey, Vec<&EpisodeRow>)> = Vec::new();
    for row in rows {
        let key = (
            row.family.clone(),
            row.game.clone(),
            row.preset.clone(),
            row.policy.clone(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
        .into_iter()
        .map(|((family, game, preset, policy), members)| {
            let returns: Vec<f64> = members.iter().map(|r| r.episode_return).collect();
            let s = summarize(&returns);
            SummaryRow {
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
            }
        })
        .collect()
}

/// Where a run writes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Base folder (`results`).
    pub out: PathBuf,
    /// Run id; a new UTC timestamp when `None`. An existing run with the same manifest is
    /// resumed.
    pub run_id: Option<String>,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The run directory.
    pub dir: PathBuf,
    /// Episodes played in this call (the rest were already recorded).
    pub episodes_played: u64,
    /// Episodes found already recorded.
    pub episodes_resumed: u64,
    /// The summary rows written.
    pub summary: Vec<SummaryRow>,
    /// Every row of `classifier_eval.csv` (empty without `[[robustness]]` jobs).
    pub classifier: Vec<robustness::ClassifierRow>,
    /// Rows of `classifier_eval.csv` written in this call.
    pub classifier_rows_written: u64,
    /// One line per training cell.
    pub training: Vec<TrainSummary>,
}

/// How a training cell ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// The cell id.
    pub cell: String,
    /// Agent steps trained in this call.
    pub steps_run: u64,
    /// Agent steps reached.
    pub steps: u64,
    /// Training games recorded.
    pub games: usize,
    /// Mean return of the last evaluation.
    pub last_eval_mean: Option<f64>,
}

fn timestamp_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    now.format(&fmt).expect("timestamp formats")
}

/// Creates the run directory, or checks that an existing one holds the same manifest.
fn prepare_run_dir(
    manifest_path: &Path,
    manifest: &Manifest,
    opts: &RunOptions,
) -> Result<PathBuf> {
    let run_id = opts.run_id.clone().unwrap_or_else(timestamp_id);
    if run_id.is_empty() || run_id.contains(['/', '\\']) || run_id.starts_with('.') {
        bail!("--run-id {run_id:?} must be a plain folder name");
    }
    let dir = opts.out.join(&manifest.name).join(&run_id);
    let resolved = manifest.to_toml();
    let resolved_path = dir.join(files::RESOLVED);
    if resolved_path.exists() {
        let old = std::fs::read_to_string(&resolved_path)
            .with_context(|| format!("reading {}", resolved_path.display()))?;
        if old != resolved {
            bail!(
                "{} holds a run of a different manifest ({} differs); pass a new --run-id to \
                 start another run",
                dir.display(),
                resolved_path.display()
            );
        }
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let original = std::fs::read(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    write_atomic(&dir.join(files::MANIFEST), &original)?;
    write_atomic(&resolved_path, resolved.as_bytes())?;
    Ok(dir)
}

/// Runs every cell of a manifest, resuming where an earlier call with the same run id
/// stopped, then writes the summary.
pub fn run(manifest_path: &Path, manifest: &Manifest, opts: &RunOptions) -> Result<RunReport> {
    let dir = prepare_run_dir(manifest_path, manifest, opts)?;
    let training = run_training(&dir, manifest)?;
    let (episodes_played, episodes_resumed, summary) = if manifest.eval.is_empty() {
        (0, 0, Vec::new())
    } else {
        run_episodes(&dir, manifest)?
    };
    let (classifier, classifier_rows_written) = if manifest.robustness.is_empty() {
        (Vec::new(), 0)
    } else {
        let manifest_dir = manifest_path.parent().unwrap_or(Path::new("."));
        run_robustness(&dir, manifest_dir, manifest)?
    };
    Ok(RunReport {
        dir,
        episodes_played,
        episodes_resumed,
        summary,
        classifier,
        classifier_rows_written,
        training,
    })
}

/// The `[[train]]` cells, in plan order, each resumed or skipped as its checkpoints say; the
/// run-level `train.csv` and `train_eval.csv` are rebuilt from the cells after each one.
fn run_training(dir: &Path, manifest: &Manifest) -> Result<Vec<TrainSummary>> {
    let cells = manifest.train_cells();
    let mut out = Vec::new();
    for cell in &cells {
        let o = train::run_cell(dir, cell)?;
        out.push(TrainSummary {
            cell: cell.id(),
            steps_run: o.steps_run,
            steps: o.steps,
            games: o.games,
            last_eval_mean: o.last_eval_mean,
        });
        merge_cell_tables(dir, &cells, files::TRAIN)?;
        merge_cell_tables(dir, &cells, files::TRAIN_EVAL)?;
    }
    Ok(out)
}

/// Concatenates `cells/<id>/<name>` over the cells into `<dir>/<name>`, atomically: the
/// header once, then every complete row of each cell in plan order.
fn merge_cell_tables(dir: &Path, cells: &[crate::manifest::TrainCell], name: &str) -> Result<()> {
    let mut header: Option<String> = None;
    let mut body = String::new();
    for cell in cells {
        let path = dir.join("cells").join(cell.id()).join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let mut lines = complete.split_inclusive('\n');
        if let Some(h) = lines.next() {
            header.get_or_insert_with(|| h.to_owned());
        }
        lines.for_each(|l| body.push_str(l));
    }
    if let Some(h) = header {
        write_atomic(&dir.join(name), (h + &body).as_bytes())?;
    }
    Ok(())
}

/// The `[[eval]]` cells: `episodes.csv`, then `summary.csv`.
fn run_episodes(dir: &Path, manifest: &Manifest) -> Result<(u64, u64, Vec<SummaryRow>)> {
    let episodes_path = dir.join(files::EPISODES);
    let recorded: Vec<EpisodeRow> = read_rows(&episodes_path)?;
    let done: HashSet<_> = recorded.iter().map(EpisodeRow::key).collect();
    let cells = manifest.cells();
    let total: u64 = cells.iter().map(|c| c.episodes as u64).sum();
    let resumed = cells
        .iter()
        .flat_map(|c| (0..c.episodes).map(move |e| baseline::row_key(c, e)))
        .filter(|k| done.contains(k))
        .count() as u64;
    if resumed > 0 {
        tracing::info!(
            "resuming {}: {resumed} of {total} episodes already recorded",
            dir.display()
        );
    }
    let sample = EpisodeRow {
        family: String::new(),
        game: String::new(),
        preset: String::new(),
        seed: 0,
        policy: String::new(),
        episode: 0,
        episode_return: 0.0,
        frames: 0,
        truncated: false,
    };
    let mut sink = CsvAppender::open(&episodes_path, &sample)?;
    let mut progress = Progress::new(total - resumed);
    let mut played = 0;
    for cell in &cells {
        played += baseline::run_cell(cell, &done, &mut sink, &mut progress)
            .with_context(|| format!("cell {}", cell.id()))?;
    }
    progress.finish();
    let rows: Vec<EpisodeRow> = read_rows(&episodes_path)?;
    let summary = summarize_episodes(&rows);
    write_table(&dir.join(files::SUMMARY), &summary)?;
    Ok((played, resumed, summary))
}

/// The `[[robustness]]` cells: `classifier_eval.csv`, skipping rows already recorded.
fn run_robustness(
    dir: &Path,
    manifest_dir: &Path,
    manifest: &Manifest,
) -> Result<(Vec<robustness::ClassifierRow>, u64)> {
    let path = dir.join(files::CLASSIFIER_EVAL);
    let recorded: Vec<robustness::ClassifierRow> = read_rows(&path)?;
    let done: HashSet<String> = recorded.iter().map(|r| r.key()).collect();
    let mut sink = CsvAppender::open(&path, &robustness::header_row())?;
    let mut written = 0;
    for (i, job) in manifest.robustness.iter().enumerate() {
        for &seed in &job.seeds {
            tracing::info!(
                "robustness[{i}] {} seed {seed}: {} defenses x {} lambdas",
                job.task.name(),
                job.defenses.len(),
                job.lambdas.len()
            );
            written += robustness::run_cell(dir, manifest_dir, i, job, seed, &done, &mut sink)
                .with_context(|| format!("robustness[{i}] seed {seed}"))?;
        }
    }
    Ok((read_rows(&path)?, written))
}
