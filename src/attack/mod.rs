//! White-box attacks on a defended network (DESIGN section 6): FGSM and iterative
//! FGSM / PGD, each driven by a Monte-Carlo estimate of the input gradient over
//! `gradient_samples` stochastic passes (the paper's estimate; EOT in Athalye et al. 2018).
//!
//! Inputs and perturbation sizes are in pixel units (0..255); perturbed inputs are clipped to
//! [0, 255]. Losses are the cross-entropy on the true label (classifiers) or on the clean
//! greedy action, with Q-values as logits (agents; Huang et al. 2017).

pub mod fgsm;
pub mod gradient;
pub mod pgd;

use serde::Serialize;
use tch::Tensor;

pub use gradient::input_gradient;

use crate::defense::{Defense, Draws};
use crate::nn::Model;

/// Lowest pixel value.
pub const PIXEL_MIN: f64 = 0.0;
/// Highest pixel value.
pub const PIXEL_MAX: f64 = 255.0;

/// Which attack, with its parameters other than the radius.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AttackKind {
    /// One signed-gradient step of size lambda.
    Fgsm,
    /// `steps` signed-gradient steps of `step_size`, each projected onto the L-infinity ball of
    /// radius lambda and onto [0, 255]. Without a random start this is I-FGSM (Kurakin et al.
    /// 2017); with one, PGD (Madry et al. 2018).
    Pgd {
        /// Iterations (> 0).
        steps: u32,
        /// Step size in pixel units; `None` is `2.5 * lambda / steps` (Madry et al. 2018).
        #[serde(skip_serializing_if = "Option::is_none")]
        step_size: Option<f64>,
        /// Start from a uniform point of the ball rather than from x.
        random_start: bool,
    },
    /// The adaptive attack of Athalye et al. (2018) against randomised defenses: PGD whose
    /// every step follows the gradient averaged over `gradient_samples` draws of the
    /// defense (Expectation over Transformation). The iteration is [`AttackKind::Pgd`]'s; the
    /// kind differs in its manifest defaults (random start, 20 steps, 10 gradient samples)
    /// and its name in tables, so the paper's attacks and the adaptive one appear side by
    /// side.
    #[serde(rename = "eot-pgd")]
    EotPgd {
        /// Iterations (> 0).
        steps: u32,
        /// Step size in pixel units; `None` is `2.5 * lambda / steps`.
        #[serde(skip_serializing_if = "Option::is_none")]
        step_size: Option<f64>,
        /// Start from a uniform point of the ball rather than from x.
        random_start: bool,
    },
}

impl AttackKind {
    /// The name used in manifests and CSV rows.
    pub fn name(&self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd { .. } => "pgd",
            AttackKind::EotPgd { .. } => "eot-pgd",
        }
    }

    /// The iteration's (steps, step size as written, random start); `None` for FGSM.
    pub fn iterative(&self) -> Option<(u32, Option<f64>, bool)> {
        match *self {
            AttackKind::Fgsm => None,
            AttackKind::Pgd {
                steps,
                step_size,
                random_start,
            }
            | AttackKind::EotPgd {
                steps,
                step_size,
                random_start,
            } => Some((steps, step_size, random_start)),
        }
    }

    /// Gradient estimates per attacked input: 1 for FGSM, `steps` otherwise.
    pub fn gradient_steps(&self) -> u32 {
        self.iterative().map_or(1, |(steps, _, _)| steps)
    }
}

/// A configured attack: kind, L-infinity radius and gradient estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Attack {
    /// FGSM or PGD.
    pub kind: AttackKind,
    /// Radius of the L-infinity ball, pixel units (>= 0).
    pub lambda: f64,
    /// Stochastic passes averaged per gradient estimate (> 0).
    pub gradient_samples: u32,
}

/// An attack parameter out of its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttackError {
    /// `lambda` must be finite and non-negative.
    #[error("lambda = {0} is not allowed; allowed: a finite number >= 0 (pixel units, 0..255)")]
    Lambda(f64),
    /// `steps` must be positive.
    #[error("steps = 0 is not allowed; allowed: an integer >= 1")]
    Steps,
    /// `step_size` must be finite and positive.
    #[error("step_size = {0} is not allowed; allowed: a finite number > 0 (pixel units)")]
    StepSize(f64),
    /// `gradient_samples` must be positive.
    #[error("gradient_samples = 0 is not allowed; allowed: an integer >= 1")]
    GradientSamples,
}

impl Attack {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), AttackError> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(AttackError::Lambda(self.lambda));
        }
        if self.gradient_samples == 0 {
            return Err(AttackError::GradientSamples);
        }
        if let Some((steps, step_size, _)) = self.kind.iterative() {
            if steps == 0 {
                return Err(AttackError::Steps);
            }
            if let Some(a) = step_size {
                if !(a > 0.0 && a.is_finite()) {
                    return Err(AttackError::StepSize(a));
                }
            }
        }
        Ok(())
    }

    /// The PGD step size actually used (`None` for FGSM).
    pub fn step_size(&self) -> Option<f64> {
        self.kind
            .iterative()
            .map(|(steps, step_size, _)| step_size.unwrap_or(2.5 * self.lambda / steps as f64))
    }

    /// Gradient passes per estimate: `gradient_samples`, or 1 when the defense is
    /// deterministic (every pass would give the same gradient).
    pub fn effective_gradient_samples(&self, defense: &Defense) -> u32 {
        if defense.is_stochastic() {
            self.gradient_samples
        } else {
            1
        }
    }

    /// Perturbs `x` against `model` under `defense`, maximising the cross-entropy on
    /// `labels`. Draws (defense masks, random start) come from `draws`; a gradient's passes are
    /// stacked up to `max_batch` rows per forward ([`input_gradient`]).
    ///
    /// # Shapes
    /// `x`: `[batch, ...]` pixel units; `labels`: `[batch]` int64 -> same shape as `x`.
    pub fn perturb(
        &self,
        model: &Model,
        defense: Defense,
        draws: &mut Draws,
        x: &Tensor,
        labels: &Tensor,
        max_batch: usize,
    ) -> Tensor {
        let k = self.effective_gradient_samples(&defense);
        match self.kind.iterative() {
            None => {
                let params = fgsm::FgsmParams {
                    lambda: self.lambda,
                    gradient_samples: k,
                    max_batch,
                };
                fgsm::fgsm(model, defense, draws, x, labels, params)
            }
            Some((steps, _, random_start)) => {
                let params = pgd::PgdParams {
                    lambda: self.lambda,
                    steps,
                    step_size: self.step_size().expect("pgd has a step size"),
                    random_start,
                    gradient_samples: k,
                    max_batch,
                };
                pgd::pgd(model, defense, draws, x, labels, params)
            }
        }
    }
}
