//! Every result table's row type, in one place.
//!
//! A row is one observation (docs/ARCHITECTURE.md section 7): an episode, a training game, an epoch, a
//! network under one defense, attack and radius. The rows that measure a network under a
//! defense and an attack (`rl_eval.csv`, `classifier_eval.csv`, `cifar_eval.csv`,
//! `reliability.csv`, `relative_reward.csv`) share the [`Treatment`] columns: declared once
//! in [`crate::vocab`], built once by [`Treatment::new`], with one type and meaning in every
//! table, and laid out flat by [`treated_row!`] here.
//!
//! Values that code compares are enums ([`DefenseKind`], [`AttackName`],
//! [`Family`](crate::vocab::Family), [`PolicyKind`](crate::vocab::PolicyKind),
//! [`Variant`](crate::vocab::Variant)); reading a file with any other value fails, naming the
//! file and the line.

mod classifier;
mod rl;

pub use classifier::{
    CifarEvalRow, CifarTrainRow, ClassifierRow, PredictionRow, ReliabilityRow, WorstCaseRow,
};
pub use rl::{AgentRow, EpisodeKey, EpisodeRow, RelativeRow, SummaryRow, TrainEvalRow, TrainRow};

pub use crate::vocab::{AttackName, DefenseKind, Treatment};

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
            /// The defense, attack and passes ([`Treatment`](crate::vocab::Treatment)).
            pub treatment: $crate::vocab::Treatment,
            $( $(#[$tmeta])* pub $tail: $tty, )*
        }

        const _: () = {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};
            use $crate::defense::Sampling;
            use $crate::attack::{Backward, Loss, Source};
            use $crate::vocab::{AttackName, DefenseKind, Treatment};

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
    use crate::attack::{Attack, AttackKind};
    use crate::defense::{Defense, Sampling};

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
