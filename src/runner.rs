//! The local runner of `sap run --jobs N`: each cell runs as a child process
//! (`sap run-cell`), at most N at a time, each with its own fixed torch thread count, a cell only after the cells it needs; a live
//! display shows cells done, running and failed and each running cell's frames/s.
//!
//! A failing cell does not stop the others: its error is kept, the cells that need it are
//! skipped, and the run reports them all at the end. Children die with the runner
//! (`PR_SET_PDEATHSIG`), so a killed run leaves no orphan writing into the run directory;
//! `sap run --resume` then continues from the completion marks.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, IsTerminal};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::manifest::PlanCell;
use crate::progress::ProgressLine;
use crate::run_dir::{cell_dir, files, is_done};

/// How the local runner runs cells.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Cells at once (>= 1).
    pub jobs: usize,
    /// torch threads of each cell (results depend on it: torch's reductions round
    /// differently with other thread counts).
    pub threads_per_job: usize,
    /// The `sap` executable the children run.
    pub exe: PathBuf,
}

impl LocalOptions {
    /// `jobs` cells at once with `threads_per_job` torch threads each.
    pub fn new(jobs: usize, threads_per_job: usize, exe: PathBuf) -> Self {
        LocalOptions {
            jobs,
            threads_per_job,
            exe,
        }
    }

    /// Whether `jobs x threads_per_job` exceeds this machine's cores.
    pub fn oversubscribes(&self) -> Option<usize> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (self.jobs * self.threads_per_job > cores).then_some(cores)
    }
}

/// A cell that did not complete.
#[derive(Clone, Debug, PartialEq)]
pub struct CellFailure {
    /// The cell id.
    pub id: String,
    /// Its error, or why it did not run.
    pub message: String,
    /// Its log file.
    pub log: PathBuf,
}

/// What a local run did.
#[derive(Debug, Default)]
pub struct LocalReport {
    /// Cells run to completion in this call.
    pub ran: usize,
    /// Cells already complete before this call.
    pub already_done: usize,
    /// Cells that failed, and cells skipped because a cell they need failed.
    pub failed: Vec<CellFailure>,
}

enum State {
    Pending,
    Running(Child, Instant),
    Done,
    Failed,
}

/// The last `error:` line of a child's log, or its last line and exit status.
fn failure_message(log: &Path, status: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if let Some(e) = text.lines().rev().find(|l| l.starts_with("error: ")) {
        return e["error: ".len()..].to_owned();
    }
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => format!("{status}; last log line: {last}"),
        None => format!(
            "{status}; its log is empty (could it be written? a full disk loses a cell's \
             error message)"
        ),
    }
}

/// The live display: bars on a terminal, log lines elsewhere.
struct Display {
    multi: Option<(MultiProgress, ProgressBar)>,
    bars: HashMap<usize, ProgressBar>,
    /// Off a terminal: the latest progress of each running cell, logged every 30 s.
    latest: std::collections::BTreeMap<usize, String>,
    last_log: Instant,
}

impl Display {
    fn new(total: usize) -> Self {
        let multi = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let top = multi.add(ProgressBar::new(total as u64));
            top.set_style(
                ProgressStyle::with_template(
                    "[{elapsed_precise}] {bar:30} {pos}/{len} cells  {msg}",
                )
                .expect("valid template"),
            );
            top.enable_steady_tick(Duration::from_millis(250));
            (multi, top)
        });
        Display {
            multi,
            bars: HashMap::new(),
            latest: std::collections::BTreeMap::new(),
            last_log: Instant::now(),
        }
    }

    fn totals(&mut self, done: usize, running: usize, failed: usize, total: usize) {
        let msg = format!("{done} done, {running} running, {failed} failed of {total}");
        match &self.multi {
            Some((_, top)) => {
                top.set_position((done + failed) as u64);
                top.set_message(msg);
            }
            None => {
                if self.last_log.elapsed() >= Duration::from_secs(30) {
                    self.last_log = Instant::now();
                    let cells: Vec<&str> = self.latest.values().map(String::as_str).collect();
                    tracing::info!("cells: {msg}; {}", cells.join("; "));
                }
            }
        }
    }

    fn started(&mut self, index: usize, id: &str) {
        match &self.multi {
            Some((multi, _)) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} {msg}")
                        .expect("valid template"),
                );
                bar.set_prefix(id.to_owned());
                bar.enable_steady_tick(Duration::from_millis(250));
                self.bars.insert(index, bar);
            }
            None => tracing::info!("{id}: started"),
        }
    }

    fn progress(&mut self, index: usize, id: &str, p: &ProgressLine) {
        // Episode and frame counts report emulator frames/s; other units their own rate.
        let rate = match p.unit.as_str() {
            "episodes" | "frames" => "frames",
            other => other,
        };
        let msg = format!("{}/{} {}, {:.0} {rate}/s", p.done, p.total, p.unit, p.fps());
        match self.bars.get(&index) {
            Some(bar) => bar.set_message(msg),
            None => {
                self.latest.insert(index, format!("{id}: {msg}"));
            }
        }
    }

    fn ended(&mut self, index: usize, id: &str, outcome: Result<Duration, &str>) {
        if let Some(bar) = self.bars.remove(&index) {
            bar.finish_and_clear();
        }
        self.latest.remove(&index);
        let line = match outcome {
            Ok(t) => format!("{id}: done in {:.1} s", t.as_secs_f64()),
            Err(e) => format!("{id}: FAILED: {e}"),
        };
        match &self.multi {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => tracing::info!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some((_, top)) = &self.multi {
            top.finish_and_clear();
        }
    }
}

/// Spawns `exe run-cell` for one cell: stdout (progress lines) to a reader thread, stderr
/// to the cell's log.
fn spawn(
    opts: &LocalOptions,
    run_dir: &Path,
    cell: &PlanCell,
    lines: &crossbeam::channel::Sender<(usize, ProgressLine)>,
) -> Result<Child> {
    let dir = cell_dir(run_dir, &cell.id());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(files::LOG);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(&opts.exe);
    // The child reads the run directory's copy of the manifest, never the user's file, which
    // may change (or be a pipe) while the run goes on.
    cmd.arg("run-cell")
        .arg("--cell")
        .arg(cell.index.to_string())
        .arg("--run-dir")
        .arg(run_dir)
        .arg("--threads")
        .arg(opts.threads_per_job.to_string())
        .arg("--progress-lines")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
    // the thread that spawned it (the runner's main thread) exits.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} run-cell", opts.exe.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let tx = lines.clone();
    let index = cell.index;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(p) = ProgressLine::parse(&line) {
                if tx.send((index, p)).is_err() {
                    break;
                }
            }
        }
    });
    Ok(child)
}

/// Runs every incomplete cell of `plan` as a child process, `opts.jobs` at a time, in plan
/// order as their dependencies allow.
pub fn run_local(run_dir: &Path, plan: &[PlanCell], opts: &LocalOptions) -> Result<LocalReport> {
    let mut report = LocalReport::default();
    let mut states: Vec<State> = plan
        .iter()
        .map(|c| {
            if is_done(run_dir, &c.id()) {
                State::Done
            } else {
                State::Pending
            }
        })
        .collect();
    report.already_done = states.iter().filter(|s| matches!(s, State::Done)).count();
    let (tx, rx) = crossbeam::channel::unbounded();
    let mut display = Display::new(plan.len());
    loop {
        // Cells whose dependencies failed will never run.
        for i in 0..plan.len() {
            if !matches!(states[i], State::Pending) {
                continue;
            }
            if let Some(&dep) = plan[i]
                .deps
                .iter()
                .find(|&&d| matches!(states[d], State::Failed))
            {
                states[i] = State::Failed;
                let id = plan[i].id();
                let message = format!("not run: cell {} failed", plan[dep].id());
                display.ended(i, &id, Err(&message));
                report.failed.push(CellFailure {
                    log: cell_dir(run_dir, &id).join(files::LOG),
                    id,
                    message,
                });
            }
        }
        let running = states
            .iter()
            .filter(|s| matches!(s, State::Running(..)))
            .count();
        let mut slots = opts.jobs.saturating_sub(running);
        for i in 0..plan.len() {
            if slots == 0 {
                break;
            }
            let ready = matches!(states[i], State::Pending)
                && plan[i]
                    .deps
                    .iter()
                    .all(|&d| matches!(states[d], State::Done));
            if ready {
                let child = spawn(opts, run_dir, &plan[i], &tx)?;
                display.started(i, &plan[i].id());
                states[i] = State::Running(child, Instant::now());
                slots -= 1;
            }
        }
        let running = states
            .iter()
            .filter(|s| matches!(s, State::Running(..)))
            .count();
        let pending = states
            .iter()
            .filter(|s| matches!(s, State::Pending))
            .count();
        let done = states.iter().filter(|s| matches!(s, State::Done)).count();
        display.totals(done, running, report.failed.len(), plan.len());
        if running == 0 && pending == 0 {
            break;
        }
        if let Ok((i, p)) = rx.recv_timeout(Duration::from_millis(200)) {
            display.progress(i, &plan[i].id(), &p);
            while let Ok((i, p)) = rx.try_recv() {
                display.progress(i, &plan[i].id(), &p);
            }
        }
        for i in 0..plan.len() {
            let State::Running(child, started) = &mut states[i] else {
                continue;
            };
            let Some(status) = child.try_wait().context("waiting for a cell")? else {
                continue;
            };
            let id = plan[i].id();
            let elapsed = started.elapsed();
            if status.success() && is_done(run_dir, &id) {
                display.ended(i, &id, Ok(elapsed));
                report.ran += 1;
                states[i] = State::Done;
            } else {
                let log = cell_dir(run_dir, &id).join(files::LOG);
                let message = failure_message(&log, &format!("exited with {status}"));
                display.ended(i, &id, Err(&message));
                report.failed.push(CellFailure { id, message, log });
                states[i] = State::Failed;
            }
        }
    }
    display.finish();
    Ok(report)
}
