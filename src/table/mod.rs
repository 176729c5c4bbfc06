//! Every result table's row type, in one place.
//!
//! A row is one observation (docs/ARCHITECTURE.md section 7): an episode, a training game, an epoch, a
//! network under one defense, attack and radius. The rows that measure a network under a
//! defense and an attack (`rl_eval.csv`, `classifier_eval.csv`, `cifar_eval.csv`,
//! `reliability.csv`, `relative_reward.csv`) share the [`Treatment`] columns: declared once
//! here, built once by [`Treatment::new`], with one type and meaning in every table.
//!
//! Values that code compares are enums ([`DefenseKind`], [`AttackName`], [`Family`],
//! [`PolicyKind`], [`Variant`]); reading a file with any other value fails, naming the file
//! and the line.
//!
//! [`Family`]: crate::manifest::Family
//! [`PolicyKind`]: crate::manifest::PolicyKind
//! [`Variant`]: crate::manifest::Variant

mod classifier;
mod rl;

pub use classifier::{
    CifarEvalRow, CifarTrainRow, ClassifierRow, PredictionRow, ReliabilityRow, WorstCaseRow,
};
pub use rl::{AgentRow, EpisodeKey, EpisodeRow, RelativeRow, SummaryRow, TrainEvalRow, TrainRow};

use serde::{Deserialize, Serialize};

use crate::attack::{Attack, AttackKind, Backward, Loss, Source};
use crate::defense::{Defense, Sampling};

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

/// Declares a row type whose columns are its own leading columns, then the [`Treatment`]
/// columns in their fixed order, then its own trailing columns.
///
/// In memory the treatment is one field, `treatment`; in a CSV file its columns sit flat
/// between the others (the csv crate writes no nested headers, so the row is written and
/// read through a flat copy declared alongside). A column named differently from its field
/// is written `pub field: Type as "column"`.
macro_rules! treated_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$hmeta:meta])* pub $head:ident : $hty:ty $(as $hcol:literal)?, )*
            ..Treatment,
            $( $(#[$tmeta:meta])* pub $tail:ident : $tty:ty $(as $tcol:literal)?, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$hmeta])* pub $head: $hty, )*
            /// The defense, attack and passes ([`Treatment`](crate::table::Treatment)).
            pub treatment: $crate::table::Treatment,
            $( $(#[$tmeta])* pub $tail: $tty, )*
        }

        const _: () = {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};
            use $crate::defense::Sampling;
            use $crate::attack::{Backward, Loss, Source};
            use $crate::table::{AttackName, DefenseKind, Treatment};

            #[derive(Serialize)]
            struct Written<'a> {
                $( $(#[serde(rename = $hcol)])? $head: &'a $hty, )*
                defense: DefenseKind,
                frac: Option<f64>,
                sampling: Option<Sampling>,
                p: Option<f64>,
                sigma: Option<f64>,
                attack: AttackName,
                lambda: f64,
                steps: Option<u32>,
                step_size: Option<f64>,
                random_start: Option<bool>,
                restarts: Option<u32>,
                loss: Option<Loss>,
                backward: Option<Backward>,
                source: Option<Source>,
                source_checkpoint: Option<String>,
                gradient_samples: Option<u32>,
                samples: u32,
                $( $(#[serde(rename = $tcol)])? $tail: &'a $tty, )*
            }

            #[derive(Deserialize)]
            struct Read {
                $( $(#[serde(rename = $hcol)])? $head: $hty, )*
                defense: DefenseKind,
                frac: Option<f64>,
                sampling: Option<Sampling>,
                p: Option<f64>,
                sigma: Option<f64>,
                attack: AttackName,
                lambda: f64,
                steps: Option<u32>,
                step_size: Option<f64>,
                random_start: Option<bool>,
                restarts: Option<u32>,
                loss: Option<Loss>,
                backward: Option<Backward>,
                source: Option<Source>,
                source_checkpoint: Option<String>,
                gradient_samples: Option<u32>,
                samples: u32,
                $( $(#[serde(rename = $tcol)])? $tail: $tty, )*
            }

            impl Serialize for $name {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let t = &self.treatment;
                    Written {
                        $( $head: &self.$head, )*
                        defense: t.defense,
                        frac: t.frac,
                        sampling: t.sampling,
                        p: t.p,
                        sigma: t.sigma,
                        attack: t.attack,
                        lambda: t.lambda,
                        steps: t.steps,
                        step_size: t.step_size,
                        random_start: t.random_start,
                        restarts: t.restarts,
                        loss: t.loss,
                        backward: t.backward,
                        source: t.source,
                        source_checkpoint: t.source_checkpoint.clone(),
                        gradient_samples: t.gradient_samples,
                        samples: t.samples,
                        $( $tail: &self.$tail, )*
                    }
                    .serialize(s)
                }
            }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let r = Read::deserialize(d)?;
                    Ok($name {
                        $( $head: r.$head, )*
                        treatment: Treatment {
                            defense: r.defense,
                            frac: r.frac,
                            sampling: r.sampling,
                            p: r.p,
                            sigma: r.sigma,
                            attack: r.attack,
                            lambda: r.lambda,
                            steps: r.steps,
                            step_size: r.step_size,
                            random_start: r.random_start,
                            restarts: r.restarts,
                            loss: r.loss,
                            backward: r.backward,
                            source: r.source,
                            source_checkpoint: r.source_checkpoint,
                            gradient_samples: r.gradient_samples,
                            samples: r.samples,
                        },
                        $( $tail: r.$tail, )*
                    })
                }
            }
        };
    };
}

use treated_row;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::AttackKind;

    fn pgd(lambda: f64) -> Attack {
        let kind = AttackKind::Pgd {
            steps: 10,
            step_size: None,
            random_start: true,
        };
        Attack::new(kind, lambda, 4)
    }

    #[test]
    fn treatment_fills_each_parameter_column_only_for_its_kind() {
        let sap = Defense::Sap {
            frac: 0.5,
            sampling: Sampling::Exact,
        };
        let t = Treatment::new(&sap, Some(&pgd(8.0)), 3);
        assert_eq!(t.defense, DefenseKind::Sap);
        assert_eq!(
            (t.frac, t.sampling, t.p, t.sigma),
            (Some(0.5), Some(Sampling::Exact), None, None)
        );
        assert_eq!(t.attack, AttackName::Pgd);
        assert_eq!(
            (t.steps, t.step_size, t.random_start),
            (Some(10), Some(2.0), Some(true))
        );
        assert_eq!((t.gradient_samples, t.samples), (Some(4), 3));
        assert_eq!(t.defense(), Some(sap));
        assert_eq!(t.defense_label(), "sap-50");

        let clean = Treatment::new(&Defense::Dense, None, 1);
        assert!(clean.is_dense_clean());
        assert_eq!(
            (clean.lambda, clean.gradient_samples, clean.steps),
            (0.0, None, None)
        );
        let dense_pgd = Treatment::new(&Defense::Dense, Some(&pgd(8.0)), 1);
        assert_eq!(
            dense_pgd.gradient_samples,
            Some(1),
            "deterministic: one pass suffices"
        );
        assert!(!dense_pgd.is_dense_clean());
    }

    #[test]
    fn a_treated_row_is_written_flat_and_read_back_whole() {
        let row = ReliabilityRow {
            job: "j".into(),
            variant: "adv".into(),
            checkpoint: "c.safetensors".into(),
            train_seed: None,
            eval_seed: 7,
            treatment: Treatment::new(&Defense::Dropout { p: 0.25 }, Some(&pgd(4.0)), 2),
            bin: 3,
            bin_low: 0.2,
            bin_high: 0.3,
            count: 0,
            accuracy: None,
            mean_confidence: None,
        };
        let text = String::from_utf8(crate::record::csv_text(std::slice::from_ref(&row)).unwrap())
            .unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "job,variant,checkpoint,train_seed,eval_seed,defense,frac,sampling,p,sigma,attack,\
             lambda,steps,step_size,random_start,restarts,loss,backward,source,source_checkpoint,\
             gradient_samples,samples,bin,bin_low,bin_high,count,accuracy,mean_confidence"
        );
        assert_eq!(
            lines.next().unwrap(),
            "j,adv,c.safetensors,,7,dropout,,,0.25,,pgd,4.0,10,1.0,true,,ce,mask,defended,,4,2,3,\
             0.2,0.3,0,,"
        );
        let back: Vec<ReliabilityRow> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![row]);
    }

    #[test]
    fn a_row_with_an_unknown_defense_or_attack_is_refused_on_reading() {
        let good = "job,variant,checkpoint,train_seed,eval_seed,defense,frac,sampling,p,sigma,\
                    attack,lambda,steps,step_size,random_start,restarts,loss,backward,source,\
                    source_checkpoint,gradient_samples,samples,bin,bin_low,bin_high,count,accuracy,\
                    mean_confidence\n\
                    j,adv,c,,7,DEFENSE,,,,,ATTACK,0,,,,,,,,,,1,0,0,0.1,0,,\n";
        let read = |text: &str| {
            csv::Reader::from_reader(text.as_bytes())
                .deserialize::<ReliabilityRow>()
                .collect::<Result<Vec<_>, _>>()
        };
        assert!(read(&good.replace("DEFENSE", "dense").replace("ATTACK", "none")).is_ok());
        assert!(read(&good.replace("DEFENSE", "desne").replace("ATTACK", "none")).is_err());
        assert!(read(&good.replace("DEFENSE", "dense").replace("ATTACK", "pgd2")).is_err());
    }
}
