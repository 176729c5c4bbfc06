//! Summary statistics: mean, sample standard deviation and a Student-t 95% confidence
//! interval for the mean; relative rewards (docs/ARCHITECTURE.md section 7).

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean, spread and 95% confidence interval of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Sample size.
    pub n: usize,
    /// Arithmetic mean (NaN when `n = 0`).
    pub mean: f64,
    /// Sample standard deviation with Bessel's correction (`None` when `n < 2`).
    pub std: Option<f64>,
    /// `mean -/+ t_{0.975, n-1} * std / sqrt(n)` (`None` when `n < 2`).
    pub ci95: Option<(f64, f64)>,
}

/// Summarises a sample.
pub fn summarize(xs: &[f64]) -> Summary {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Summary {
            n,
            mean,
            std: None,
            ci95: None,
        };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let std = var.sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n - 1 >= 1 degrees of freedom")
        .inverse_cdf(0.975);
    let half = t * std / (n as f64).sqrt();
    Summary {
        n,
        mean,
        std: Some(std),
        ci95: Some((mean - half, mean + half)),
    }
}

/// The returns of one game x defense x attack x lambda, against that game's dense clean
/// mean and random-policy mean (docs/ARCHITECTURE.md section 7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativeReward {
    /// The returns' summary.
    pub summary: Summary,
    /// Mean return of the dense network without attack, same game and checkpoints.
    pub dense_clean_mean: f64,
    /// Mean return of the random policy on the same game and preset.
    pub random_mean: f64,
    /// `mean / dense_clean_mean`, the paper's relative reward (`None` when the dense clean
    /// mean is 0).
    pub relative: Option<f64>,
    /// `(mean - random) / (dense_clean - random)`, meaningful for negative scores too;
    /// `None` when the dense clean mean is not above the random mean, where the scale
    /// means nothing (docs/ARCHITECTURE.md section 7).
    pub normalized: Option<f64>,
}

/// Summarises `returns` relative to the dense clean and random means.
pub fn relative_reward(returns: &[f64], dense_clean_mean: f64, random_mean: f64) -> RelativeReward {
    let summary = summarize(returns);
    let ratio = |num: f64, den: f64| (den != 0.0).then(|| num / den);
    RelativeReward {
        summary,
        dense_clean_mean,
        random_mean,
        relative: ratio(summary.mean, dense_clean_mean),
        normalized: (dense_clean_mean > random_mean)
            .then(|| (summary.mean - random_mean) / (dense_clean_mean - random_mean)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_hand_computed_values() {
        // xs = 1, 2, 3, 4: mean 2.5, variance 5/3, std 1.290994; t_{0.975,3} = 3.182446.
        let s = summarize(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-12);
        let std = s.std.unwrap();
        assert!((std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let (lo, hi) = s.ci95.unwrap();
        let half = 3.182446305284263 * std / 2.0;
        assert!((lo - (2.5 - half)).abs() < 1e-9 && (hi - (2.5 + half)).abs() < 1e-9);
    }

    #[test]
    fn one_observation_has_no_spread() {
        let s = summarize(&[-21.0]);
        assert_eq!((s.n, s.mean, s.std, s.ci95), (1, -21.0, None, None));
    }

    #[test]
    fn relative_rewards_match_hand_computed_values_on_a_positive_game() {
        // Breakout-like: attacked returns 10, 20, 30 (mean 20), dense clean mean 40, random 1.
        let r = relative_reward(&[10.0, 20.0, 30.0], 40.0, 1.0);
        assert_eq!(r.summary.n, 3);
        assert_eq!(r.relative, Some(0.5));
        // (20 - 1) / (40 - 1) = 19 / 39
        assert!((r.normalized.unwrap() - 19.0 / 39.0).abs() < 1e-15);
        // std 10, t_{0.975,2} = 4.302653: half-width 4.302653 * 10 / sqrt(3) = 24.8414.
        let (lo, hi) = r.summary.ci95.unwrap();
        assert!((hi - lo - 2.0 * 4.302652729749464 * 10.0 / 3f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn relative_rewards_on_a_negative_score_game_match_hand_computed_values() {
        // Pong: random -20.7, dense clean 19. A defense scoring -10 keeps
        // (-10 + 20.7) / (19 + 20.7) = 10.7 / 39.7 = 0.2695 of the dense margin over random,
        // while the paper's ratio is negative (-10 / 19).
        let r = relative_reward(&[-12.0, -8.0], 19.0, -20.7);
        assert!((r.summary.mean + 10.0).abs() < 1e-12);
        assert!((r.relative.unwrap() + 10.0 / 19.0).abs() < 1e-15);
        assert!((r.normalized.unwrap() - 10.7 / 39.7).abs() < 1e-12);
        // A dense clean mean of 0 has no ratio; one equal to random has no normalised form.
        assert_eq!(relative_reward(&[1.0], 0.0, -1.0).relative, None);
        assert_eq!(relative_reward(&[1.0], 2.0, 2.0).normalized, None);
        // A dense agent no better than random: the normalised scale means nothing.
        assert_eq!(relative_reward(&[1.0], 2.0, 3.0).normalized, None);
    }
}
