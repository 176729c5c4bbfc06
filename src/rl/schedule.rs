//! Exploration schedules: a linear epsilon decay (Mnih et al. 2015; Dopamine) and the fixed
//! per-actor epsilons of Ape-X (Horgan et al. 2018).

use serde::{Deserialize, Serialize};

/// Epsilon falling linearly from `start` to `end` over `decay_steps` agent steps, then
/// constant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    /// Epsilon at agent step 0.
    pub start: f64,
    /// Epsilon from `decay_steps` on.
    pub end: f64,
    /// Agent steps the decay lasts.
    pub decay_steps: u64,
}

impl LinearSchedule {
    /// Epsilon at agent step `step` (counted from the start of training, warm-up included).
    pub fn value(&self, step: u64) -> f64 {
        if self.decay_steps == 0 || step >= self.decay_steps {
            return self.end;
        }
        let t = step as f64 / self.decay_steps as f64;
        self.start + (self.end - self.start) * t
    }
}

/// How each environment slot picks its exploration epsilon.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Exploration {
    /// Every slot follows the same linear schedule.
    Linear(LinearSchedule),
    /// Slot `i` of `n` keeps `base^(1 + alpha * i / (n - 1))` for the whole run (Ape-X:
    /// base 0.4, alpha 7); a single slot uses `base`.
    Apex {
        /// Base epsilon.
        base: f64,
        /// Spread exponent.
        alpha: f64,
    },
}

impl Exploration {
    /// Epsilon of slot `slot` of `slots` at agent step `step`.
    pub fn epsilon(&self, slot: usize, slots: usize, step: u64) -> f64 {
        match *self {
            Exploration::Linear(s) => s.value(step),
            Exploration::Apex { base, alpha } => {
                let spread = if slots > 1 {
                    slot as f64 / (slots - 1) as f64
                } else {
                    0.0
                };
                base.powf(1.0 + alpha * spread)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_hits_its_end_points_and_midpoint() {
        let s = LinearSchedule {
            start: 1.0,
            end: 0.01,
            decay_steps: 250_000,
        };
        assert_eq!(s.value(0), 1.0);
        assert!((s.value(125_000) - 0.505).abs() < 1e-12);
        assert_eq!(s.value(250_000), 0.01);
        assert_eq!(s.value(10_000_000), 0.01);
    }

    #[test]
    fn apex_epsilons_run_from_base_to_base_to_the_one_plus_alpha() {
        let e = Exploration::Apex {
            base: 0.4,
            alpha: 7.0,
        };
        assert!((e.epsilon(0, 8, 123) - 0.4).abs() < 1e-12);
        assert!((e.epsilon(7, 8, 0) - 0.4f64.powi(8)).abs() < 1e-12);
        assert!((e.epsilon(0, 1, 0) - 0.4).abs() < 1e-12);
    }
}
