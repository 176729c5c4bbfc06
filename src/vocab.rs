//! The vocabulary every layer shares: which family a job runs on, which policy plays, how a
//! classifier was trained, and the treatment columns (defense, attack, radius, passes) that
//! say how a network was evaluated. It sits just above the science modules ([`crate::attack`],
//! [`crate::defense`]) and below everything that reads manifests, runs cells or writes
//! tables, so none of those has to import another to name a value.
//!
//! Values that code compares are enums; reading a file with any other value fails, naming
//! the file and the line.

use serde::{Deserialize, Serialize};

use crate::attack::{Attack, AttackKind, Backward, Loss, Source};
use crate::defense::{Defense, Sampling};

/// Which environment family a job runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Atari 2600 games through ALE.
    Atari,
    /// Classic-control tasks (gym-rs).
    Classic,
}

impl Family {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Family::Atari => "atari",
            Family::Classic => "classic",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The policy an evaluation job plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Uniformly random actions: the baseline for normalised scores.
    #[default]
    Random,
    /// A trained Double DQN agent under a defense x attack x lambda grid.
    Agent,
}

impl PolicyKind {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Random => "random",
            PolicyKind::Agent => "agent",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// How a network is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Plain training on augmented images.
    Dense,
    /// Adversarial training: a fraction of each batch replaced by FGSM examples against the
    /// current network (Kurakin et al. 2017; the paper's ADV).
    Adv,
}

impl Variant {
    /// The name used in manifests, folder names and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Dense => "dense",
            Variant::Adv => "adv",
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The `defense` column: which defense wrapped the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefenseKind {
    /// No defense.
    #[default]
    Dense,
    /// Stochastic Activation Pruning.
    Sap,
    /// Inverted dropout.
    Dropout,
    /// Additive Gaussian noise.
    Gaussian,
}

impl DefenseKind {
    /// The value as written in tables (`dense`, `sap`, `dropout`, `gaussian`).
    pub fn name(self) -> &'static str {
        match self {
            DefenseKind::Dense => "dense",
            DefenseKind::Sap => "sap",
            DefenseKind::Dropout => "dropout",
            DefenseKind::Gaussian => "gaussian",
        }
    }
}

/// The `attack` column: which attack perturbed the inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackName {
    /// Clean inputs.
    #[default]
    None,
    /// Fast gradient sign method.
    Fgsm,
    /// I-FGSM or PGD.
    Pgd,
    /// PGD with Expectation over Transformation defaults.
    #[serde(rename = "eot-pgd")]
    EotPgd,
    /// Auto-PGD.
    Apgd,
    /// Every attack of a job at once: correct only if correct under each.
    #[serde(rename = "worst-case")]
    WorstCase,
}

impl AttackName {
    /// The column's value for `kind`.
    pub fn of(kind: &AttackKind) -> Self {
        match kind {
            AttackKind::Fgsm => AttackName::Fgsm,
            AttackKind::Pgd { .. } => AttackName::Pgd,
            AttackKind::EotPgd { .. } => AttackName::EotPgd,
            AttackKind::Apgd { .. } => AttackName::Apgd,
        }
    }

    /// The value as written in tables (`none`, `fgsm`, `pgd`, `eot-pgd`, `apgd`,
    /// `worst-case`).
    pub fn name(self) -> &'static str {
        match self {
            AttackName::None => "none",
            AttackName::Fgsm => "fgsm",
            AttackName::Pgd => "pgd",
            AttackName::EotPgd => "eot-pgd",
            AttackName::Apgd => "apgd",
            AttackName::WorstCase => "worst-case",
        }
    }
}

impl std::fmt::Display for AttackName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The columns that say how a network was evaluated: its defense with the defense's
/// parameters, the attack with its parameters and radius, and the passes actually run.
/// Each parameter column is filled only for the kind it belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Treatment {
    /// Defense kind.
    pub defense: DefenseKind,
    /// SAP draws as a fraction of the map size (SAP only).
    pub frac: Option<f64>,
    /// SAP sampling (SAP only).
    pub sampling: Option<Sampling>,
    /// Dropout probability (dropout only).
    pub p: Option<f64>,
    /// Relative noise scale (gaussian only).
    pub sigma: Option<f64>,
    /// Attack kind (`none` for clean inputs).
    pub attack: AttackName,
    /// L-infinity radius, pixel units (0 for clean inputs).
    pub lambda: f64,
    /// Iterations (iterative attacks only; APGD's per restart).
    pub steps: Option<u32>,
    /// Step size actually used, pixel units (PGD only: APGD adapts its own, from 2 lambda).
    pub step_size: Option<f64>,
    /// Random start (iterative attacks only).
    pub random_start: Option<bool>,
    /// APGD's restarts (APGD only).
    pub restarts: Option<u32>,
    /// The loss the attack maximised (empty for clean inputs).
    pub loss: Option<Loss>,
    /// The defense points' backward pass actually used: `identity` (BPDA) or `mask`; empty
    /// for clean inputs and where the gradients come from a deterministic network.
    pub backward: Option<Backward>,
    /// Where the gradients came from: `defended` (white box), `dense` (transfer from the
    /// network without its defense) or `checkpoint` (transfer from a surrogate network);
    /// empty for clean inputs.
    pub source: Option<Source>,
    /// The surrogate network's file (`source = checkpoint` only).
    pub source_checkpoint: Option<String>,
    /// Passes per gradient estimate actually run: the attack's `gradient_samples`, or 1
    /// against a deterministic defense (empty for clean inputs).
    pub gradient_samples: Option<u32>,
    /// Passes averaged per prediction actually run (1 for a deterministic defense).
    pub samples: u32,
}

impl Treatment {
    /// The columns of `defense` under `attack` (`None`: clean inputs), with `samples`
    /// passes averaged per prediction actually run.
    pub fn new(defense: &Defense, attack: Option<&Attack>, samples: u32) -> Self {
        let (frac, sampling, p, sigma) = match *defense {
            Defense::Dense => (None, None, None, None),
            Defense::Sap { frac, sampling } => (Some(frac), Some(sampling), None, None),
            Defense::Dropout { p } => (None, None, Some(p), None),
            Defense::Gaussian { sigma } => (None, None, None, Some(sigma)),
        };
        let stochastic_gradient =
            attack.is_some_and(|a| a.gradient_defense(*defense).is_stochastic());
        Treatment {
            defense: match defense {
                Defense::Dense => DefenseKind::Dense,
                Defense::Sap { .. } => DefenseKind::Sap,
                Defense::Dropout { .. } => DefenseKind::Dropout,
                Defense::Gaussian { .. } => DefenseKind::Gaussian,
            },
            frac,
            sampling,
            p,
            sigma,
            attack: attack.map_or(AttackName::None, |a| AttackName::of(&a.kind)),
            lambda: attack.map_or(0.0, |a| a.lambda),
            steps: attack.and_then(|a| a.kind.iterations()),
            step_size: attack.and_then(Attack::step_size),
            random_start: attack.and_then(|a| a.kind.random_start()),
            restarts: attack.and_then(|a| a.kind.restarts()),
            loss: attack.map(|a| a.loss),
            backward: attack
                .filter(|_| stochastic_gradient)
                .map(|a| a.effective_backward(defense)),
            source: attack.map(|a| a.source),
            source_checkpoint: None,
            gradient_samples: attack.map(|a| a.effective_gradient_samples(defense)),
            samples,
        }
    }

    /// The defense these columns describe; `None` for a combination no defense writes.
    pub fn defense(&self) -> Option<Defense> {
        match (self.defense, self.frac, self.sampling, self.p, self.sigma) {
            (DefenseKind::Dense, None, None, None, None) => Some(Defense::Dense),
            (DefenseKind::Sap, Some(frac), Some(sampling), None, None) => {
                Some(Defense::Sap { frac, sampling })
            }
            (DefenseKind::Dropout, None, None, Some(p), None) => Some(Defense::Dropout { p }),
            (DefenseKind::Gaussian, None, None, None, Some(sigma)) => {
                Some(Defense::Gaussian { sigma })
            }
            _ => None,
        }
    }

    /// The defense's label ([`Defense::label`]) in CLI tables, reports and plot legends; the
    /// kind alone when the columns describe no defense.
    pub fn defense_label(&self) -> String {
        self.defense()
            .map_or_else(|| self.defense.name().to_owned(), |d| d.label())
    }

    /// The attack's label in CLI tables, reports and plot legends: the kind, then what
    /// departs from the defaults: the loss (always for APGD: `apgd-ce`, `apgd-dlr`;
    /// otherwise only when not the cross-entropy: `pgd-margin`), `-bpda` for the identity
    /// backward, `-transfer` for gradients from the dense network and `-from-<file stem>`
    /// from a surrogate network. `none` for clean inputs.
    pub fn attack_label(&self) -> String {
        let mut label = self.attack.name().to_owned();
        if let Some(loss) = self.loss {
            if self.attack == AttackName::Apgd || loss != Loss::Ce {
                label = format!("{label}-{}", loss.name());
            }
        }
        if self.backward == Some(Backward::Identity) {
            label += "-bpda";
        }
        match self.source {
            Some(Source::Dense) => label += "-transfer",
            Some(Source::Checkpoint) => {
                let file = self.source_checkpoint.as_deref().unwrap_or_default();
                let stem = std::path::Path::new(file)
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned());
                label = format!("{label}-from-{stem}");
            }
            _ => {}
        }
        label
    }

    /// Whether this is the dense network on unperturbed inputs (radius 0): the reference
    /// of relative scores.
    pub fn is_dense_clean(&self) -> bool {
        self.defense == DefenseKind::Dense && self.lambda == 0.0
    }

    /// What identifies the treatment among a job's rows: the defense with its parameters,
    /// the attack and the radius.
    pub fn key(&self) -> String {
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map_or_else(String::new, |v| v.to_string())
        }
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.defense.name(),
            opt(self.frac),
            self.sampling.map_or("", Sampling::name),
            opt(self.p),
            opt(self.sigma),
            self.attack_label(),
            self.lambda
        )
    }
}
