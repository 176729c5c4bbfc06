//! Classifier metrics (docs/ARCHITECTURE.md section 7): accuracy, mean confidence, expected calibration
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

/// One prediction, reduced to what the metrics need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// The true class.
    pub label: i64,
    /// The most probable class (the first on ties).
    pub predicted: i64,
    /// Its probability.
    pub confidence: f64,
    /// The probability of the true class.
    pub p_label: f64,
}

impl Prediction {
    /// Reduces a row of class probabilities.
    pub fn from_probabilities(row: &[f32], label: i64) -> Self {
        let (argmax, &conf) = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("at least one class");
        Prediction {
            label,
            predicted: argmax as i64,
            confidence: conf as f64,
            p_label: row[label as usize] as f64,
        }
    }

    /// Whether the most probable class is the label.
    pub fn correct(&self) -> bool {
        self.predicted == self.label
    }
}

/// One equal-width confidence bin of a reliability diagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReliabilityBin {
    /// Bin number, from 0.
    pub bin: usize,
    /// Lower edge (excluded, except 0 for the first bin).
    pub low: f64,
    /// Upper edge (included).
    pub high: f64,
    /// Predictions whose confidence falls in the bin.
    pub count: usize,
    /// Their accuracy (`None` when the bin is empty).
    pub accuracy: Option<f64>,
    /// Their mean confidence (`None` when the bin is empty).
    pub mean_confidence: Option<f64>,
}

/// The bin of a confidence: bin b holds (b/15, (b+1)/15]; a confidence of 0 joins bin 0.
pub fn confidence_bin(confidence: f64) -> usize {
    ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1
}

/// The [`ECE_BINS`] reliability bins of a set of predictions.
pub fn reliability_bins(predictions: &[Prediction]) -> Vec<ReliabilityBin> {
    let mut sums = [(0usize, 0usize, 0.0f64); ECE_BINS]; // (count, correct, confidence sum)
    for p in predictions {
        let b = confidence_bin(p.confidence);
        sums[b].0 += 1;
        sums[b].1 += p.correct() as usize;
        sums[b].2 += p.confidence;
    }
    sums.iter()
        .enumerate()
        .map(|(bin, &(count, hits, conf))| ReliabilityBin {
            bin,
            low: bin as f64 / ECE_BINS as f64,
            high: (bin + 1) as f64 / ECE_BINS as f64,
            count,
            accuracy: (count > 0).then(|| hits as f64 / count as f64),
            mean_confidence: (count > 0).then(|| conf / count as f64),
        })
        .collect()
}

/// Accuracy, mean confidence, ECE and NLL of a set of predictions.
pub fn prediction_metrics(predictions: &[Prediction]) -> ClassifierMetrics {
    let n = predictions.len();
    let correct = predictions.iter().filter(|p| p.correct()).count();
    let conf_sum: f64 = predictions.iter().map(|p| p.confidence).sum();
    let nll: f64 = predictions.iter().map(|p| -p.p_label.max(1e-12).ln()).sum();
    let ece = reliability_bins(predictions)
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            let (acc, conf) = (b.accuracy.unwrap_or(0.0), b.mean_confidence.unwrap_or(0.0));
            b.count as f64 / n as f64 * (acc - conf).abs()
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

/// A classifier's predictions of a set of examples, with whether any single defended pass
/// predicted the label (the optimistic count of Athalye et al.): what every classifier
/// evaluation (glyphs, CIFAR-10) scores its rows from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scored {
    /// One prediction per example.
    pub predictions: Vec<Prediction>,
    /// Per example: whether any pass predicted the label.
    pub any_pass_correct: Vec<bool>,
}

impl Scored {
    /// Accuracy, mean confidence, ECE and NLL ([`prediction_metrics`]).
    pub fn metrics(&self) -> ClassifierMetrics {
        prediction_metrics(&self.predictions)
    }

    /// The fraction of examples some pass predicted correctly.
    pub fn optimistic_accuracy(&self) -> f64 {
        let any = self.any_pass_correct.iter().filter(|&&a| a).count();
        any as f64 / self.any_pass_correct.len().max(1) as f64
    }
}

/// Computes the metrics from row-major probabilities (`labels.len()` rows of `classes`).
pub fn classifier_metrics(
    probabilities: &[f32],
    classes: usize,
    labels: &[i64],
) -> ClassifierMetrics {
    assert_eq!(
        probabilities.len(),
        labels.len() * classes,
        "one row of probabilities per label"
    );
    let predictions: Vec<Prediction> = probabilities
        .chunks(classes)
        .zip(labels)
        .map(|(row, &label)| Prediction::from_probabilities(row, label))
        .collect();
    prediction_metrics(&predictions)
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

    #[test]
    fn reliability_bins_match_a_hand_computed_example() {
        // Confidences 0.9 (right), 0.9 (wrong), 0.58 (right), 0.55 (right), 1/15 exactly
        // (right, three classes) and 0.2 (wrong, five classes).
        let p = |label, predicted, confidence, p_label| Prediction {
            label,
            predicted,
            confidence,
            p_label,
        };
        let preds = [
            p(0, 0, 0.9, 0.9),
            p(0, 1, 0.9, 0.1),
            p(0, 0, 0.58, 0.58),
            p(1, 1, 0.55, 0.55),
            p(2, 2, 1.0 / 15.0, 1.0 / 15.0),
            p(3, 4, 0.2, 0.1),
        ];
        let bins = reliability_bins(&preds);
        assert_eq!(bins.len(), 15);
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        // 1/15 is the upper edge of bin 0; 0.2 = 3/15 the upper edge of bin 2.
        assert_eq!(counts, [1, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0]);
        assert_eq!(bins[13].accuracy, Some(0.5));
        assert!((bins[13].mean_confidence.unwrap() - 0.9).abs() < 1e-12);
        assert_eq!(bins[8].accuracy, Some(1.0));
        assert!((bins[8].mean_confidence.unwrap() - 0.565).abs() < 1e-12);
        assert_eq!(bins[2].accuracy, Some(0.0));
        assert_eq!(bins[1].accuracy, None);
        assert!((bins[8].low - 8.0 / 15.0).abs() < 1e-12 && (bins[8].high - 0.6).abs() < 1e-12);
        // ECE = 2/6 * 0.4 + 2/6 * 0.435 + 1/6 * |1 - 1/15| + 1/6 * 0.2
        let ece = 2.0 / 6.0 * 0.4 + 2.0 / 6.0 * 0.435 + (1.0 - 1.0 / 15.0) / 6.0 + 0.2 / 6.0;
        let m = prediction_metrics(&preds);
        assert!((m.ece - ece).abs() < 1e-12, "{} vs {ece}", m.ece);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
    }
}
