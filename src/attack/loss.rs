//! The losses an attack maximises (docs/ARCHITECTURE.md section 6), per example, on logits `z` (a
//! classifier's logits, or an agent's Q-values) against a label `y` (the true class, or the
//! clean greedy action):
//!
//! - `ce`: the cross-entropy `-log softmax(z)_y`;
//! - `margin` (Carlini and Wagner 2017): `max_{i != y} z_i - z_y`, positive exactly when the
//!   prediction is wrong;
//! - `dlr` (Croce and Hein 2020): `-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)` with
//!   `z_pi1 >= z_pi2 >= z_pi3` the three largest logits: the margin divided by a spread of the
//!   logits, so it does not change when the logits are scaled. It needs at least three classes.

use serde::Serialize;
use tch::{Reduction, Tensor};

/// Which loss an attack maximises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Cross-entropy on the label.
    #[default]
    Ce,
    /// Carlini-Wagner margin: the largest other logit minus the label's.
    Margin,
    /// Difference of logits ratio (needs three classes or more).
    Dlr,
}

impl Loss {
    /// Every loss, in manifest order.
    pub const ALL: [Loss; 3] = [Loss::Ce, Loss::Margin, Loss::Dlr];

    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Ce => "ce",
            Loss::Margin => "margin",
            Loss::Dlr => "dlr",
        }
    }

    /// The loss called `name`, if any.
    pub fn from_name(name: &str) -> Option<Loss> {
        Loss::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The fewest classes the loss is defined for.
    pub fn min_classes(self) -> i64 {
        match self {
            Loss::Dlr => 3,
            _ => 2,
        }
    }

    /// The loss of every example, in the logits' kind.
    ///
    /// # Shapes
    /// `logits`: `[batch, classes]`; `labels`: `[batch]` int64 -> `[batch]`.
    ///
    /// # Panics
    /// If the logits have fewer classes than [`Loss::min_classes`] (manifests refuse it).
    pub fn per_example(self, logits: &Tensor, labels: &Tensor) -> Tensor {
        let z = logits;
        let classes = z.size()[1];
        assert!(
            classes >= self.min_classes(),
            "the {} loss needs at least {} classes",
            self.name(),
            self.min_classes()
        );
        if self == Loss::Ce {
            return z.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0);
        }
        let y = labels.unsqueeze(1);
        let z_y = z.gather(1, &y, false).squeeze_dim(1);
        let z = z.shallow_clone();
        // The label's logit pushed below every other before taking the largest.
        let others = z.scatter_value(1, &y, f64::NEG_INFINITY);
        let max_other = others.amax(1, false);
        let margin = &max_other - &z_y;
        match self {
            Loss::Margin => margin,
            _ => {
                let (top, _) = z.topk(3, 1, true, true);
                let spread = top.select(1, 0) - top.select(1, 2) + 1e-12;
                margin / spread
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn logits() -> (Tensor, Tensor) {
        let z = Tensor::from_slice2(&[[2.0f32, 1.0, -1.0, 0.5], [0.0, 3.0, 1.0, 2.0]]);
        (z, Tensor::from_slice(&[0i64, 3]))
    }

    fn values(t: Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn the_margin_and_dlr_losses_match_hand_computed_values() {
        let (z, y) = logits();
        // Row 0: label 0 (2.0), largest other 1.0; row 1: label 3 (2.0), largest other 3.0.
        assert_eq!(values(Loss::Margin.per_example(&z, &y)), vec![-1.0, 1.0]);
        // Spreads: row 0 sorted 2, 1, 0.5 -> 1.5; row 1 sorted 3, 2, 1 -> 2.
        let dlr = values(Loss::Dlr.per_example(&z, &y));
        assert!((dlr[0] - (-1.0 / 1.5)).abs() < 1e-6 && (dlr[1] - 0.5).abs() < 1e-6);
        let ce = values(Loss::Ce.per_example(&z, &y));
        let lse0 = [2.0f64, 1.0, -1.0, 0.5]
            .iter()
            .map(|v| v.exp())
            .sum::<f64>()
            .ln();
        assert!((ce[0] - (lse0 - 2.0)).abs() < 1e-5);
    }

    #[test]
    fn dlr_does_not_change_when_the_logits_are_scaled() {
        let (z, y) = logits();
        let a = values(Loss::Dlr.per_example(&z, &y));
        let b = values(Loss::Dlr.per_example(&(&z * 7.5), &y));
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn every_loss_is_found_by_its_name() {
        for loss in Loss::ALL {
            assert_eq!(Loss::from_name(loss.name()), Some(loss));
        }
        assert_eq!(Loss::from_name("cw"), None);
    }
}
