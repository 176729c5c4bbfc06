//! Progress on long work: a progress bar on a terminal, plain log lines otherwise
//! (Slurm logs, CI, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports finished episodes.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
}

impl Progress {
    /// A reporter for `total` episodes: a bar when stderr is a terminal.
    pub fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
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
        Self {
            bar,
            total,
            done: 0,
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

/// Reports a training cell's frames: a bar with frames/s and ETA on a terminal, a log line
/// every 15 seconds elsewhere.
pub struct TrainProgress {
    bar: Option<ProgressBar>,
    id: String,
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
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(end_frames);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} frames \
                     {per_sec} ETA {eta}  {msg}",
                )
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
        let mut msg = format!("{} updates", self.updates);
        if let Some(r) = self.last_return {
            msg += &format!(", last game {r}");
        }
        if let Some(e) = self.last_eval {
            msg += &format!(", last eval mean {e:.1}");
        }
        msg
    }

    /// Training reached `frames` with `updates` updates done.
    pub fn advance(&mut self, frames: u64, updates: u64) {
        self.frames = frames;
        self.updates = updates;
        match &self.bar {
            Some(bar) => bar.set_position(frames),
            None => {
                if self.last_log.elapsed() >= Duration::from_secs(15) {
                    self.last_log = std::time::Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                    let fps = (frames - self.start_frames) as f64 / secs;
                    let eta = (self.end_frames - frames) as f64 / fps.max(1e-9);
                    tracing::info!(
                        "{}: {frames}/{} frames, {fps:.0} frames/s, ETA {:.0} s, {}",
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

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
