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
