//! Progress on long work: a progress bar on a terminal, plain log lines otherwise
//! (Slurm logs, CI, pipes), or, in a cell run by `sap run --jobs N`, machine-readable
//! lines on stdout that the parent turns into its live display.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static LINES: AtomicBool = AtomicBool::new(false);

/// The prefix of a progress line on a child cell's stdout.
pub const LINE_PREFIX: &str = "@progress ";

/// Makes every reporter in this process print [`ProgressLine`]s on stdout instead of bars
/// and log lines (a cell running under `sap run`, which shows them).
pub fn report_as_lines() {
    LINES.store(true, Ordering::Relaxed);
}

fn as_lines() -> bool {
    LINES.load(Ordering::Relaxed)
}

fn terminal_bar() -> bool {
    !as_lines() && std::io::stderr().is_terminal()
}

/// One progress report of a cell: `@progress done=3 total=10 unit=episodes frames=5120
/// secs=4.2`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressLine {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// `episodes` or `frames`.
    pub unit: String,
    /// Emulator frames played by this process.
    pub frames: u64,
    /// Seconds since this process started the cell.
    pub secs: f64,
}

impl ProgressLine {
    /// Parses a line written by [`ProgressLine::emit`].
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(LINE_PREFIX)?;
        let mut out = ProgressLine {
            done: 0,
            total: 0,
            unit: String::new(),
            frames: 0,
            secs: 0.0,
        };
        for field in rest.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            match k {
                "done" => out.done = v.parse().ok()?,
                "total" => out.total = v.parse().ok()?,
                "unit" => out.unit = v.to_owned(),
                "frames" => out.frames = v.parse().ok()?,
                "secs" => out.secs = v.parse().ok()?,
                _ => {}
            }
        }
        Some(out)
    }

    /// Frames per second over the cell so far.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.secs.max(1e-9)
    }

    fn emit(&self) {
        let mut out = std::io::stdout().lock();
        // A closed pipe only loses the display, never the cell's results.
        let _ = writeln!(
            out,
            "{LINE_PREFIX}done={} total={} unit={} frames={} secs={:.3}",
            self.done, self.total, self.unit, self.frames, self.secs
        );
        let _ = out.flush();
    }
}

use indicatif::{ProgressBar, ProgressStyle};

/// Reports finished episodes.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    frames: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A reporter for `total` episodes: a bar when stderr is a terminal.
    pub fn new(total: u64) -> Self {
        let bar = terminal_bar().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} episodes  {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            total,
            done: 0,
            frames: 0,
            started: now,
            last_line: now,
        }
    }

    fn line(&mut self) {
        self.last_line = Instant::now();
        ProgressLine {
            done: self.done,
            total: self.total,
            unit: "episodes".into(),
            frames: self.frames,
            secs: self.started.elapsed().as_secs_f64(),
        }
        .emit();
    }

    /// Counts `frames` more emulator frames (reported at most once a second).
    pub fn frames(&mut self, frames: u64) {
        self.frames += frames;
        if as_lines() && self.last_line.elapsed() >= Duration::from_secs(1) {
            self.line();
        }
    }

    /// Shows what is running now (terminal only).
    pub fn running(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_owned());
        }
    }

    /// Records a finished episode with its speed.
    pub fn episode_done(&mut self, what: &str, episode_return: f64, frames: u64, secs: f64) {
        self.done += 1;
        let fps = frames as f64 / secs.max(1e-9);
        if as_lines() {
            self.line();
            return;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!(
                    "{what}: return {episode_return} ({fps:.0} frames/s)"
                ));
                bar.inc(1);
            }
            None => tracing::info!(
                "[{}/{}] {what}: return {episode_return}, {frames} frames, {fps:.0} frames/s",
                self.done,
                self.total
            ),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reports a training cell's frames (or another unit of work): a bar with its rate and ETA
/// on a terminal, a log line every 15 seconds elsewhere.
pub struct TrainProgress {
    bar: Option<ProgressBar>,
    id: String,
    unit: &'static str,
    start_frames: u64,
    end_frames: u64,
    frames: u64,
    updates: u64,
    started: std::time::Instant,
    last_log: std::time::Instant,
    last_return: Option<f64>,
    last_eval: Option<f64>,
}

impl TrainProgress {
    /// A reporter for frames `start_frames..end_frames` of cell `id`.
    pub fn new(id: &str, start_frames: u64, end_frames: u64) -> Self {
        Self::with_unit(id, start_frames, end_frames, "frames")
    }

    /// A reporter for `start..end` units of work (`images`, ...) of cell `id`.
    pub fn with_unit(id: &str, start_frames: u64, end_frames: u64, unit: &'static str) -> Self {
        let bar = terminal_bar().then(|| {
            let bar = ProgressBar::new(end_frames);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} \
                     {unit} {{per_sec}} ETA {{eta}}  {{msg}}"
                ))
                .expect("valid template"),
            );
            bar.set_prefix(id.to_owned());
            bar.set_position(start_frames);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let now = std::time::Instant::now();
        Self {
            bar,
            id: id.to_owned(),
            unit,
            start_frames,
            end_frames,
            frames: start_frames,
            updates: 0,
            started: now,
            last_log: now,
            last_return: None,
            last_eval: None,
        }
    }

    fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.updates > 0 {
            parts.push(format!("{} updates", self.updates));
        }
        if let Some(r) = self.last_return {
            parts.push(format!("last game {r}"));
        }
        if let Some(e) = self.last_eval {
            parts.push(format!("last eval mean {e:.1}"));
        }
        parts.join(", ")
    }

    /// Training reached `frames` with `updates` updates done.
    pub fn advance(&mut self, frames: u64, updates: u64) {
        self.frames = frames;
        self.updates = updates;
        if as_lines() {
            if self.last_log.elapsed() >= Duration::from_secs(1) || frames >= self.end_frames {
                self.last_log = Instant::now();
                ProgressLine {
                    done: frames,
                    total: self.end_frames,
                    unit: self.unit.into(),
                    frames: frames - self.start_frames,
                    secs: self.started.elapsed().as_secs_f64(),
                }
                .emit();
            }
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_position(frames),
            None => {
                if self.last_log.elapsed() >= Duration::from_secs(15) {
                    self.last_log = std::time::Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                    let fps = (frames - self.start_frames) as f64 / secs;
                    let eta = (self.end_frames - frames) as f64 / fps.max(1e-9);
                    let unit = self.unit;
                    tracing::info!(
                        "{}: {frames}/{} {unit}, {fps:.0} {unit}/s, ETA {:.0} s, {}",
                        self.id,
                        self.end_frames,
                        eta,
                        self.message()
                    );
                }
            }
        }
    }

    /// A training game ended with `episode_return`.
    pub fn game_done(&mut self, episode_return: f64) {
        self.last_return = Some(episode_return);
        if let Some(bar) = &self.bar {
            bar.set_message(self.message());
        }
    }

    /// An evaluation at `frames` averaged `mean`.
    pub fn evaluated(&mut self, frames: u64, mean: f64) {
        self.last_eval = Some(mean);
        match &self.bar {
            Some(bar) => bar.set_message(self.message()),
            None => tracing::info!(
                "{}: evaluation at {frames} frames: mean return {mean:.2}",
                self.id
            ),
        }
    }

    /// Shows `what` (the bar's message on a terminal, a log line elsewhere; nothing when
    /// reporting lines to a parent).
    pub fn note(&self, what: &str) {
        if as_lines() {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(what.to_owned()),
            None => tracing::info!("{}: {what}", self.id),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
