//! The row window of a training cell: update statistics since the previous train row and
//! the wall-time window its rates are measured over.

use std::time::Instant;

/// Update statistics since the previous train row, and a rate window of at least
/// [`RATE_WINDOW_S`] seconds of wall time (rates over a few milliseconds mean nothing).
pub(super) struct Window {
    pub(super) loss: f64,
    pub(super) q: f64,
    pub(super) n: u64,
    pub(super) rate_steps: u64,
    pub(super) rate_updates: u64,
    pub(super) rate_since: Instant,
}

/// Shortest wall time the rates of a train row are measured over, in seconds.
pub(super) const RATE_WINDOW_S: f64 = 5.0;

impl Window {
    pub(super) fn new(steps: u64, updates: u64) -> Self {
        Self {
            loss: 0.0,
            q: 0.0,
            n: 0,
            rate_steps: steps,
            rate_updates: updates,
            rate_since: Instant::now(),
        }
    }

    /// Agent steps/s and updates/s since the rate window began, then a new window when this
    /// one has lasted long enough.
    pub(super) fn rates(&mut self, steps: u64, updates: u64) -> (f64, f64) {
        let secs = self.rate_since.elapsed().as_secs_f64().max(1e-9);
        let rates = (
            (steps - self.rate_steps) as f64 / secs,
            (updates - self.rate_updates) as f64 / secs,
        );
        if secs >= RATE_WINDOW_S {
            self.rate_steps = steps;
            self.rate_updates = updates;
            self.rate_since = Instant::now();
        }
        rates
    }
}
