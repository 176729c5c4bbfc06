//! What an evaluation cell does to its subject (an agent or a classifier): the defense, the
//! attack with its radius, gradient samples and gradient source, and the evaluation seed.
//! Agent and classifier cells embed one [`Condition`]; the treatment columns of their rows
//! and the condition part of their folder names come from it alone.

use crate::attack::Attack;
use crate::defense::Defense;
use crate::vocab::Treatment;

use super::AttackSpec;

/// One defense x attack x radius x seed of an evaluation grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The defense wrapped around the network.
    pub defense: Defense,
    /// The attack with its radius and gradient samples; `None` for clean inputs (the dense
    /// clean reference of an agent grid, or lambda 0 of a classifier grid).
    pub attack: Option<Attack>,
    /// The surrogate network of a transfer attack with `source = "checkpoint"` (relative to
    /// the manifest).
    pub source_checkpoint: Option<String>,
    /// Evaluation seed: episode starts or random starts, defense draws, exploration.
    pub seed: u64,
}

impl Condition {
    /// `defense` on clean inputs under `seed`.
    pub fn clean(defense: Defense, seed: u64) -> Self {
        Condition {
            defense,
            attack: None,
            source_checkpoint: None,
            seed,
        }
    }

    /// This condition's defense and seed under the attack of `spec` at radius `lambda`.
    pub fn attacked(&self, spec: &AttackSpec, lambda: f64) -> Self {
        Condition {
            attack: Some(spec.at(lambda)),
            source_checkpoint: spec.checkpoint.clone(),
            ..self.clone()
        }
    }

    /// The attack's radius, pixel units (0 without an attack).
    pub fn lambda(&self) -> f64 {
        self.attack.map_or(0.0, |a| a.lambda)
    }

    /// The attack's label (`none` without one; [`Treatment::attack_label`]).
    pub fn attack_label(&self) -> String {
        self.treatment(1).attack_label()
    }

    /// The treatment columns of the cell's rows, with `samples` passes actually run.
    pub fn treatment(&self, samples: u32) -> Treatment {
        let mut t = Treatment::new(&self.defense, self.attack.as_ref(), samples);
        t.source_checkpoint = self.source_checkpoint.clone();
        t
    }

    /// The condition's part of a cell id: `sap-100-fgsm-l4-s1`.
    pub fn label(&self) -> String {
        format!(
            "{}-{}-l{}-s{}",
            self.defense.label(),
            self.attack_label(),
            self.lambda(),
            self.seed
        )
    }

    /// For `sap plan`: `sap-100 (samples 4), fgsm lambda 4, gradient_samples 10`.
    pub fn describe(&self, samples: u32) -> String {
        let gs = self.attack.map_or(String::new(), |x| {
            format!(", gradient_samples {}", x.gradient_samples)
        });
        format!(
            "{} (samples {samples}), {} lambda {}{gs}",
            self.defense.label(),
            self.attack_label(),
            self.lambda()
        )
    }

    /// Network passes per prediction: `samples` for a stochastic defense, else 1.
    pub fn prediction_passes(&self, samples: u32) -> u32 {
        if self.defense.is_stochastic() {
            samples
        } else {
            1
        }
    }

    /// Forward and backward passes of the attack per input: two per gradient sample and
    /// step; `None` on clean inputs.
    pub fn attack_passes(&self) -> Option<u32> {
        self.attack
            .filter(|x| x.lambda > 0.0)
            .map(|x| 2 * x.effective_gradient_samples(&self.defense) * x.kind.gradient_steps())
    }
}
