//! Summary statistics: mean, sample standard deviation and a Student-t 95% confidence
//! interval for the mean.

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
}
