//! Gradient-masking checks (docs/ARCHITECTURE.md section 6; Athalye, Carlini and Wagner 2018; Carlini et
//! al. 2019, "On evaluating adversarial robustness"), run over a run's result rows:
//!
//! - `monotone`: for one attack, the score (accuracy, or an agent's mean return) does not
//!   rise from one lambda to the next (lambda 0 is the clean row);
//! - `iterative-vs-fgsm`: an iterative white-box attack (PGD, EOT-PGD, APGD) does no worse
//!   than white-box FGSM with the same backward pass at the same lambda;
//! - `white-box-vs-transfer`: the strongest white-box attack does no worse than a transfer
//!   attack from the dense network at the same lambda;
//! - `chance`: at lambda >= 128 the strongest attack brings the score down to chance (one
//!   over the classes; for an agent, the random policy's mean return).
//!
//! Scores are estimates, so a check fails only when the difference exceeds 1.96 standard
//! errors of the difference (a two-sided 95% test); the tolerance is written beside.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attack::Source;
use crate::table::{AttackName, CifarEvalRow, ClassifierRow, RelativeRow, Treatment};

/// The lambda from which an attack must reach chance.
pub const CHANCE_LAMBDA: f64 = 128.0;
/// Standard errors a difference must exceed to fail a check.
pub const Z: f64 = 1.96;

/// Which check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The score does not rise with lambda for one attack.
    Monotone,
    /// An iterative attack does no worse than FGSM.
    IterativeVsFgsm,
    /// White box does no worse than transfer.
    WhiteBoxVsTransfer,
    /// A very large lambda reaches chance.
    Chance,
}

impl Check {
    /// The name in `checks.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Check::Monotone => "monotone",
            Check::IterativeVsFgsm => "iterative-vs-fgsm",
            Check::WhiteBoxVsTransfer => "white-box-vs-transfer",
            Check::Chance => "chance",
        }
    }
}

/// One row of `checks.csv`: a check on one pair of results, passed or failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    /// Which check.
    pub check: Check,
    /// The table the scores come from (`cifar_eval`, `classifier_eval`, `relative_reward`).
    pub table: String,
    /// The job.
    pub job: String,
    /// The network or game and its settings.
    pub subject: String,
    /// The defense's label.
    pub defense: String,
    /// The attack under check, by label.
    pub attack: String,
    /// Its lambda.
    pub lambda: f64,
    /// Its score: accuracy, or mean return.
    pub value: f64,
    /// What it is compared with.
    pub reference: String,
    /// The reference's score.
    pub reference_value: f64,
    /// How far `value` may exceed `reference_value` before the check fails (1.96 standard
    /// errors of the difference).
    pub tolerance: f64,
    /// Whether `value <= reference_value + tolerance`.
    pub passed: bool,
}

/// One result, as the checks see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    /// The table it comes from.
    pub table: &'static str,
    /// The job.
    pub job: String,
    /// The network or game and its settings: results of one subject are compared.
    pub subject: String,
    /// The defense, attack and lambda.
    pub treatment: Treatment,
    /// Accuracy or mean return.
    pub value: f64,
    /// Its standard error (`None`: unknown, e.g. one episode; such a result is not
    /// compared).
    pub se: Option<f64>,
    /// The chance score (one over the classes, or the random policy's mean return).
    pub chance: Option<f64>,
}

impl Measure {
    /// A classifier's accuracy on `n` examples, with the binomial standard error (at least
    /// that of one example in `n`, so that 0% and 100% still carry their sampling error).
    pub fn accuracy(
        table: &'static str,
        job: String,
        subject: String,
        treatment: Treatment,
        accuracy: f64,
        n: usize,
        classes: usize,
    ) -> Self {
        let n = n.max(1) as f64;
        let var = (accuracy * (1.0 - accuracy)).max((n - 1.0) / (n * n));
        Measure {
            table,
            job,
            subject,
            treatment,
            value: accuracy,
            se: Some((var / n).sqrt()),
            chance: Some(1.0 / classes as f64),
        }
    }

    fn defense(&self) -> String {
        self.treatment.defense_label()
    }

    fn white_box(&self) -> bool {
        !self.treatment.source.is_some_and(Source::is_transfer)
    }

    fn iterative(&self) -> bool {
        matches!(
            self.treatment.attack,
            AttackName::Pgd | AttackName::EotPgd | AttackName::Apgd
        )
    }
}

/// The measures of CIFAR-10 evaluation rows (10 classes).
pub fn cifar_measures(rows: &[CifarEvalRow]) -> Vec<Measure> {
    rows.iter()
        .map(|r| {
            let subject = format!("{} {} seed {}", r.variant, r.checkpoint, r.eval_seed);
            Measure::accuracy(
                "cifar_eval",
                r.job.clone(),
                subject,
                r.treatment.clone(),
                r.accuracy,
                r.n,
                10,
            )
        })
        .collect()
}

/// The measures of `[[robustness]]` rows (the glyphs' 10 classes).
pub fn classifier_measures(rows: &[ClassifierRow]) -> Vec<Measure> {
    rows.iter()
        .map(|r| {
            Measure::accuracy(
                "classifier_eval",
                format!("robustness {}", r.task),
                format!("{} seed {}", r.checkpoint, r.train_seed),
                r.treatment.clone(),
                r.accuracy,
                r.n,
                // Glyphs is the one task of `[[robustness]]` jobs.
                crate::manifest::Task::Glyphs.classes() as usize,
            )
        })
        .collect()
}

/// The measures of relative-reward rows: mean return, its standard error from the sample
/// standard deviation, and the random policy's mean as chance.
pub fn agent_measures(rows: &[RelativeRow]) -> Vec<Measure> {
    rows.iter()
        .map(|r| Measure {
            table: "relative_reward",
            job: r.job.clone(),
            subject: format!("{} {} epsilon {}", r.game, r.preset, r.epsilon),
            treatment: r.treatment.clone(),
            value: r.mean,
            se: r.std.map(|s| s / (r.n as f64).sqrt()),
            chance: r.random_mean,
        })
        .collect()
}

/// Every check the measures allow, in a fixed order: per (table, job, subject, defense),
/// monotone per attack, then iterative against FGSM, white box against transfer, and
/// chance.
pub fn run_checks(measures: &[Measure]) -> Vec<CheckRow> {
    let mut groups: BTreeMap<(String, String, String, String), Vec<&Measure>> = BTreeMap::new();
    for m in measures.iter().filter(|m| m.se.is_some()) {
        if m.treatment.attack == AttackName::WorstCase {
            continue;
        }
        let key = (
            m.table.to_owned(),
            m.job.clone(),
            m.subject.clone(),
            m.defense(),
        );
        groups.entry(key).or_default().push(m);
    }
    let mut out = Vec::new();
    for ms in groups.values() {
        let clean: Option<&Measure> = ms
            .iter()
            .copied()
            .find(|m| m.treatment.attack == AttackName::None);
        let attacked: Vec<&Measure> = ms
            .iter()
            .copied()
            .filter(|m| m.treatment.attack != AttackName::None)
            .collect();
        let mut labels: Vec<String> = attacked
            .iter()
            .map(|m| m.treatment.attack_label())
            .collect();
        // Distinct labels in first-seen order.
        let mut seen = std::collections::BTreeSet::new();
        labels.retain(|l| seen.insert(l.clone()));
        // Monotone per attack, from the clean row.
        for label in &labels {
            let mut series: Vec<&Measure> = attacked
                .iter()
                .copied()
                .filter(|m| m.treatment.attack_label() == *label)
                .collect();
            series.sort_by(|a, b| a.treatment.lambda.total_cmp(&b.treatment.lambda));
            let mut previous = clean;
            for m in series {
                if let Some(p) = previous {
                    let what = if p.treatment.attack == AttackName::None {
                        "clean".to_owned()
                    } else {
                        format!("{label} at lambda {}", p.treatment.lambda)
                    };
                    out.push(row(Check::Monotone, m, what, p));
                }
                previous = Some(m);
            }
        }
        // Iterative against FGSM with the same backward and source.
        // At lambda 0 every attack returns its input: nothing to compare.
        for m in attacked
            .iter()
            .filter(|m| m.iterative() && m.treatment.lambda > 0.0)
        {
            let fgsm = attacked.iter().find(|f| {
                f.treatment.attack == AttackName::Fgsm
                    && f.treatment.lambda == m.treatment.lambda
                    && f.treatment.backward == m.treatment.backward
                    && f.treatment.source == m.treatment.source
            });
            if let Some(f) = fgsm {
                let what = format!(
                    "{} at lambda {}",
                    f.treatment.attack_label(),
                    f.treatment.lambda
                );
                out.push(row(Check::IterativeVsFgsm, m, what, f));
            }
        }
        // The strongest white-box attack against each transfer attack.
        for t in attacked
            .iter()
            .filter(|m| !m.white_box() && m.treatment.lambda > 0.0)
        {
            let strongest = attacked
                .iter()
                .filter(|m| m.white_box() && m.treatment.lambda == t.treatment.lambda)
                .min_by(|a, b| a.value.total_cmp(&b.value));
            if let Some(w) = strongest {
                let what = format!(
                    "{} at lambda {}",
                    t.treatment.attack_label(),
                    t.treatment.lambda
                );
                out.push(row(Check::WhiteBoxVsTransfer, w, what, t));
            }
        }
        // Chance at a very large lambda: the strongest attack there.
        let mut large: Vec<f64> = attacked
            .iter()
            .map(|m| m.treatment.lambda)
            .filter(|&l| l >= CHANCE_LAMBDA)
            .collect();
        large.sort_by(f64::total_cmp);
        large.dedup();
        for lambda in large {
            let strongest = attacked
                .iter()
                .filter(|m| m.treatment.lambda == lambda)
                .min_by(|a, b| a.value.total_cmp(&b.value));
            if let Some(m) = strongest.filter(|m| m.chance.is_some()) {
                let chance = m.chance.expect("filtered");
                let tolerance = Z * m.se.unwrap_or(0.0);
                out.push(CheckRow {
                    check: Check::Chance,
                    table: m.table.to_owned(),
                    job: m.job.clone(),
                    subject: m.subject.clone(),
                    defense: m.defense(),
                    attack: m.treatment.attack_label(),
                    lambda,
                    value: m.value,
                    reference: "chance".to_owned(),
                    reference_value: chance,
                    tolerance,
                    passed: m.value <= chance + tolerance,
                });
            }
        }
    }
    out
}

/// `m` must not exceed `reference` by more than 1.96 standard errors of the difference.
fn row(check: Check, m: &Measure, what: String, reference: &Measure) -> CheckRow {
    let se = (m.se.unwrap_or(0.0).powi(2) + reference.se.unwrap_or(0.0).powi(2)).sqrt();
    let tolerance = Z * se;
    CheckRow {
        check,
        table: m.table.to_owned(),
        job: m.job.clone(),
        subject: m.subject.clone(),
        defense: m.defense(),
        attack: m.treatment.attack_label(),
        lambda: m.treatment.lambda,
        value: m.value,
        reference: what,
        reference_value: reference.value,
        tolerance,
        passed: m.value <= reference.value + tolerance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::{Attack, AttackKind};
    use crate::defense::Defense;

    fn pgd() -> AttackKind {
        AttackKind::Pgd {
            steps: 10,
            step_size: None,
            random_start: false,
        }
    }

    /// SAP-100 accuracy on 1000 examples under `attack` at `lambda` (None: clean).
    fn m(attack: Option<Attack>, accuracy: f64) -> Measure {
        Measure::accuracy(
            "cifar_eval",
            "j".into(),
            "net".into(),
            Treatment::new(&Defense::SAP_100, attack.as_ref(), 10),
            accuracy,
            1000,
            10,
        )
    }

    fn at(kind: AttackKind, lambda: f64) -> Option<Attack> {
        Some(Attack::new(kind, lambda, 10))
    }

    fn failed(rows: &[CheckRow]) -> Vec<(Check, String, f64)> {
        rows.iter()
            .filter(|r| !r.passed)
            .map(|r| (r.check, r.attack.clone(), r.lambda))
            .collect()
    }

    /// A consistent evaluation: accuracy falls with lambda, PGD below FGSM, white box below
    /// transfer, chance at 255.
    fn consistent() -> Vec<Measure> {
        let transfer = |lambda| {
            Some(Attack {
                source: Source::Dense,
                ..Attack::new(AttackKind::Fgsm, lambda, 10)
            })
        };
        vec![
            m(None, 0.9),
            m(at(AttackKind::Fgsm, 4.0), 0.6),
            m(at(AttackKind::Fgsm, 8.0), 0.4),
            m(at(AttackKind::Fgsm, 255.0), 0.1),
            m(at(pgd(), 4.0), 0.4),
            m(at(pgd(), 8.0), 0.2),
            m(at(pgd(), 255.0), 0.0),
            m(transfer(4.0), 0.7),
            m(transfer(8.0), 0.5),
        ]
    }

    #[test]
    fn a_consistent_evaluation_passes_every_check() {
        let rows = run_checks(&consistent());
        assert!(failed(&rows).is_empty(), "{rows:#?}");
        let kinds: std::collections::BTreeSet<Check> = rows.iter().map(|r| r.check).collect();
        assert_eq!(kinds.len(), 4, "every check ran: {kinds:?}");
    }

    #[test]
    fn accuracy_rising_with_lambda_fails_the_monotone_check() {
        let mut ms = consistent();
        ms[2].value = 0.7; // FGSM at 8 above FGSM at 4 (0.6), well beyond the noise
        assert!(failed(&run_checks(&ms)).contains(&(Check::Monotone, "fgsm".into(), 8.0)));
        // A rise inside the noise of 1000 examples passes.
        ms[2].value = 0.62;
        assert!(!failed(&run_checks(&ms))
            .iter()
            .any(|f| f.0 == Check::Monotone));
    }

    #[test]
    fn an_iterative_attack_worse_than_fgsm_fails() {
        let mut ms = consistent();
        ms[4].value = 0.8; // PGD at 4 above FGSM's 0.6 (and above clean? no: 0.9)
        let f = failed(&run_checks(&ms));
        assert!(
            f.contains(&(Check::IterativeVsFgsm, "pgd".into(), 4.0)),
            "{f:?}"
        );
    }

    #[test]
    fn white_box_worse_than_transfer_fails() {
        // A masked gradient: every white-box attack at 8 leaves 0.8, transfer 0.5.
        let mut ms = consistent();
        ms[2].value = 0.8;
        ms[5].value = 0.8;
        ms[1].value = 0.85;
        ms[4].value = 0.85;
        let f = failed(&run_checks(&ms));
        assert!(
            f.contains(&(Check::WhiteBoxVsTransfer, "fgsm".into(), 8.0)),
            "{f:?}"
        );
    }

    #[test]
    fn accuracy_far_above_chance_at_lambda_255_fails() {
        let mut ms = consistent();
        ms[3].value = 0.6;
        ms[6].value = 0.5;
        let f = failed(&run_checks(&ms));
        assert!(f.contains(&(Check::Chance, "pgd".into(), 255.0)), "{f:?}");
    }

    #[test]
    fn results_without_a_standard_error_are_not_compared() {
        let mut ms = consistent();
        for m in &mut ms {
            m.se = None;
        }
        assert!(run_checks(&ms).is_empty());
    }
}
