//! Attacks on a defended network (docs/ARCHITECTURE.md section 6): FGSM, iterative FGSM / PGD and APGD,
//! each driven by a Monte-Carlo estimate of the input gradient over `gradient_samples`
//! stochastic passes (the paper's estimate; EOT in Athalye et al. 2018).
//!
//! Inputs and perturbation sizes are in pixel units (0..255); perturbed inputs are clipped to
//! [0, 255]. The loss ([`Loss`]) is the cross-entropy by default, on the true label
//! (classifiers) or on the clean greedy action, with Q-values as logits (agents; Huang et al.
//! 2017); the Carlini-Wagner margin and the DLR loss are the alternatives. Gradients come from
//! the defended network itself (white box), with its defense points differentiated as in the
//! forward pass or as the identity ([`Backward`], BPDA), or from the same network without its
//! defense ([`Source::Dense`], a transfer attack).

pub mod apgd;
pub mod fgsm;
pub mod gradient;
pub mod loss;
pub mod pgd;

use serde::Serialize;
use tch::Tensor;

pub use gradient::{input_gradient, loss_gradient, GradientSpec};
pub use loss::Loss;

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
    /// Auto-PGD (Croce and Hein 2020; [`apgd`]): a step size that starts at 2 lambda and is
    /// halved when progress stalls, momentum 0.75 and the best point kept. The manifest
    /// defaults are AutoAttack's `version = 'rand'` for stochastic defenses: 100 iterations,
    /// 20 gradient samples (EOT), 1 restart.
    Apgd {
        /// Iterations per restart (> 0).
        iterations: u32,
        /// Runs from fresh random starts, the best point of each example kept (> 0).
        restarts: u32,
        /// Start from a uniform point of the ball rather than from x.
        random_start: bool,
    },
}

/// How an attack's backward pass treats the defense points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backward {
    /// As the forward pass drew them: mask, rescaling factor and noise held constant (the
    /// authors' operator).
    #[default]
    Mask,
    /// Every defense point is the identity (BPDA, Athalye et al. 2018): the gradient of the
    /// network whose expectation the defense preserves, at the defended forward pass.
    Identity,
}

impl Backward {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Backward::Mask => "mask",
            Backward::Identity => "identity",
        }
    }
}

/// Where an attack's gradients come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The defended network itself (white box).
    #[default]
    Defended,
    /// The same network without its defense: the perturbation transfers to the defended one.
    Dense,
    /// Another network of the same architecture, loaded from a file and used without a
    /// defense (a transfer attack from a surrogate); the caller supplies it.
    Checkpoint,
}

impl Source {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Source::Defended => "defended",
            Source::Dense => "dense",
            Source::Checkpoint => "checkpoint",
        }
    }

    /// Whether the gradients come from another network than the defended one (a transfer
    /// attack).
    pub fn is_transfer(self) -> bool {
        self != Source::Defended
    }
}

impl AttackKind {
    /// The name used in manifests and CSV rows.
    pub fn name(&self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd { .. } => "pgd",
            AttackKind::EotPgd { .. } => "eot-pgd",
            AttackKind::Apgd { .. } => "apgd",
        }
    }

    /// The PGD iteration's (steps, step size as written, random start); `None` for FGSM and
    /// APGD.
    pub fn iterative(&self) -> Option<(u32, Option<f64>, bool)> {
        match *self {
            AttackKind::Fgsm | AttackKind::Apgd { .. } => None,
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

    /// Iterations (PGD's steps, APGD's iterations per restart); `None` for FGSM.
    pub fn iterations(&self) -> Option<u32> {
        match *self {
            AttackKind::Apgd { iterations, .. } => Some(iterations),
            _ => self.iterative().map(|(steps, _, _)| steps),
        }
    }

    /// Whether the iteration starts from a random point of the ball; `None` for FGSM.
    pub fn random_start(&self) -> Option<bool> {
        match *self {
            AttackKind::Apgd { random_start, .. } => Some(random_start),
            _ => self.iterative().map(|(_, _, random_start)| random_start),
        }
    }

    /// APGD's restarts; `None` for the other kinds.
    pub fn restarts(&self) -> Option<u32> {
        match *self {
            AttackKind::Apgd { restarts, .. } => Some(restarts),
            _ => None,
        }
    }

    /// Gradient estimates per attacked input: 1 for FGSM, `steps` for PGD, `restarts x
    /// (iterations + 1)` for APGD (its starting point's too).
    pub fn gradient_steps(&self) -> u32 {
        match *self {
            AttackKind::Apgd {
                iterations,
                restarts,
                ..
            } => restarts * (iterations + 1),
            _ => self.iterative().map_or(1, |(steps, _, _)| steps),
        }
    }
}

/// A configured attack: kind, L-infinity radius and gradient estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Attack {
    /// FGSM, PGD or APGD.
    pub kind: AttackKind,
    /// Radius of the L-infinity ball, pixel units (>= 0).
    pub lambda: f64,
    /// Stochastic passes averaged per gradient estimate (> 0).
    pub gradient_samples: u32,
    /// The loss maximised.
    pub loss: Loss,
    /// How the backward pass treats the defense points.
    pub backward: Backward,
    /// Where the gradients come from.
    pub source: Source,
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
    /// APGD's `iterations` must be positive.
    #[error("iterations = 0 is not allowed; allowed: an integer >= 1")]
    Iterations,
    /// APGD's `restarts` must be positive.
    #[error("restarts = 0 is not allowed; allowed: an integer >= 1")]
    Restarts,
}

impl Attack {
    /// A white-box attack maximising the cross-entropy, with the points' own backward.
    pub fn new(kind: AttackKind, lambda: f64, gradient_samples: u32) -> Self {
        Attack {
            kind,
            lambda,
            gradient_samples,
            loss: Loss::Ce,
            backward: Backward::Mask,
            source: Source::Defended,
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), AttackError> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(AttackError::Lambda(self.lambda));
        }
        if self.gradient_samples == 0 {
            return Err(AttackError::GradientSamples);
        }
        if let AttackKind::Apgd {
            iterations,
            restarts,
            ..
        } = self.kind
        {
            if iterations == 0 {
                return Err(AttackError::Iterations);
            }
            if restarts == 0 {
                return Err(AttackError::Restarts);
            }
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

    /// The defense the gradients are taken through: `defense` itself, or dense for a
    /// transfer attack.
    pub fn gradient_defense(&self, defense: Defense) -> Defense {
        match self.source {
            Source::Defended => defense,
            Source::Dense | Source::Checkpoint => Defense::Dense,
        }
    }

    /// Gradient passes per estimate: `gradient_samples`, or 1 when the network the
    /// gradients come from is deterministic (every pass would give the same gradient).
    pub fn effective_gradient_samples(&self, defense: &Defense) -> u32 {
        if self.gradient_defense(*defense).is_stochastic() {
            self.gradient_samples
        } else {
            1
        }
    }

    /// The backward pass actually used: `identity` only where a stochastic point exists to
    /// differentiate (against a deterministic network both are the same gradient).
    pub fn effective_backward(&self, defense: &Defense) -> Backward {
        if self.gradient_defense(*defense).is_stochastic() {
            self.backward
        } else {
            Backward::Mask
        }
    }

    /// Perturbs `x` against `model` under `defense`, maximising the loss on `labels`.
    /// Draws (defense masks, random start) come from `draws`; a gradient's passes are
    /// stacked up to `max_batch` rows per forward ([`loss_gradient`]). A transfer attack
    /// takes its gradients from the network without its defense; for [`Source::Checkpoint`]
    /// `model` is the surrogate network the caller loaded.
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
        let gradient = GradientSpec {
            loss: self.loss,
            samples: k,
            max_batch,
            backward: self.effective_backward(&defense),
        };
        let defense = self.gradient_defense(defense);
        if let AttackKind::Apgd {
            iterations,
            restarts,
            random_start,
        } = self.kind
        {
            let params = apgd::ApgdParams {
                lambda: self.lambda,
                iterations,
                restarts,
                random_start,
                gradient,
            };
            return apgd::apgd(model, defense, draws, x, labels, params);
        }
        match self.kind.iterative() {
            None => {
                let params = fgsm::FgsmParams {
                    lambda: self.lambda,
                    gradient,
                };
                fgsm::fgsm(model, defense, draws, x, labels, params)
            }
            Some((steps, _, random_start)) => {
                let params = pgd::PgdParams {
                    lambda: self.lambda,
                    steps,
                    step_size: self.step_size().expect("pgd has a step size"),
                    random_start,
                    gradient,
                };
                pgd::pgd(model, defense, draws, x, labels, params)
            }
        }
    }
}
