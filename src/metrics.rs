//! Classifier metrics (DESIGN section 7): accuracy, mean confidence, expected calibration
//! error over 15 equal-width confidence bins, negative log-likelihood.

/// Metrics of a set of predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifierMetrics {
    /// Examples.
    pub n: usize,
    /// Fraction whose most probable class is the label.
    pub accuracy: f64,
    /// Mean of the highest probability.
    pub mean_confidence: f64,
    /// `sum_b |B_b| / n * |acc(B_b) - conf(B_b)|` over 15 equal-width bins of confidence.
    pub ece: f64,
    /// Mean of `-ln p(label)`, with p floored at 1e-12.
    pub nll: f64,
}

/// Equal-width confidence bins for the ECE.
pub const ECE_BINS: usize = 15;

/// Computes the metrics from row-major probabilities (`labels.len()` rows of `classes`).
pub fn classifier_metrics(
    probabilities: &[f32],
    classes: usize,
    labels: &[i64],
) -> ClassifierMetrics {
    let n = labels.len();
    assert_eq!(
        probabilities.len(),
        n * classes,
        "one row of probabilities per label"
    );
    let mut bins = [(0usize, 0.0f64, 0.0f64); ECE_BINS]; // (count, correct, confidence sum)
    let (mut correct, mut conf_sum, mut nll) = (0usize, 0.0f64, 0.0f64);
    for (row, &label) in probabilities.chunks(classes).zip(labels) {
        let (argmax, &conf) = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one class");
        let hit = argmax as i64 == label;
        correct += hit as usize;
        conf_sum += conf as f64;
        nll -= (row[label as usize] as f64).max(1e-12).ln();
        // Bin b holds confidences in (b/15, (b+1)/15]; a confidence of exactly 0 joins bin 0.
        let b = ((conf as f64 * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[b].0 += 1;
        bins[b].1 += hit as usize as f64;
        bins[b].2 += conf as f64;
    }
    let ece = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(count, hits, conf)| {
            (count as f64 / n as f64) * (hits / count as f64 - conf / count as f64).abs()
        })
        .sum();
    ClassifierMetrics {
        n,
        accuracy: correct as f64 / n as f64,
        mean_confidence: conf_sum / n as f64,
        ece,
        nll: nll / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_matches_a_hand_computed_example() {
        // Four examples, two classes. Confidences 0.9 (right), 0.9 (wrong), 0.58 (right),
        // 0.55 (right). Bins: 0.9 -> bin 13 (0.8667, 0.9333], 0.58 and 0.55 -> bin 8
        // (0.5333, 0.6]. ECE = 2/4 |0.5 - 0.9| + 2/4 |1.0 - 0.565| = 0.2 + 0.2175 = 0.4175.
        let p = [0.9, 0.1, 0.1, 0.9, 0.58, 0.42, 0.45, 0.55];
        let m = classifier_metrics(&p, 2, &[0, 0, 0, 1]);
        assert_eq!(m.n, 4);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert!((m.mean_confidence - 0.7325).abs() < 1e-6);
        assert!((m.ece - 0.4175).abs() < 1e-6, "{}", m.ece);
        let nll = -(0.9f64.ln() + 0.1f64.ln() + 0.58f64.ln() + 0.55f64.ln()) / 4.0;
        assert!((m.nll - nll).abs() < 1e-6);
    }
}
