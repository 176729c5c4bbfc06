//! The aligned text tables the subcommands print.

use crate::table::{CifarEvalRow, ClassifierRow, RelativeRow, SummaryRow, WorstCaseRow};

/// Prints what a run's tables hold: training lines, the random-policy summary, relative
/// rewards and classifier rows.
pub(super) fn print_collected(c: &crate::run_dir::Collected) {
    for t in &c.training {
        let eval = t
            .last_eval_mean
            .map_or("-".to_owned(), |m| format!("{m:.2}"));
        let state = if t.done { "" } else { " (incomplete)" };
        let hns = t.last_eval_hns.map_or(String::new(), |h| {
            format!(" ({:.0}% human-normalised)", 100.0 * h)
        });
        crate::outln!(
            "{}{state}: {} training games up to agent step {}, last evaluation mean return \
             {eval}{hns}",
            t.cell,
            t.games,
            t.last_step
        );
    }
    if !c.summary.is_empty() {
        crate::outln!("{}", summary_table(&c.summary));
    }
    if !c.relative.is_empty() {
        crate::outln!("{}", relative_table(&c.relative));
    }
    if !c.classifier.is_empty() {
        crate::outln!("{}", classifier_table(&c.classifier));
    }
    for (id, done, last) in &c.cifar_training {
        let state = if *done { "" } else { " (incomplete)" };
        match last {
            Some(r) => crate::outln!(
                "{id}{state}: epoch {} (iteration {}), loss {:.4}, train accuracy {:.4}, test \
                 accuracy {:.4}",
                r.epoch,
                r.iteration,
                r.loss,
                r.train_accuracy,
                r.test_accuracy
            ),
            None => crate::outln!("{id}{state}: no epoch finished"),
        }
    }
    if !c.cifar.is_empty() {
        crate::outln!("{}", cifar_table(&c.cifar));
    }
    if !c.worst_case.is_empty() {
        crate::outln!("{}", worst_case_table(&c.worst_case));
    }
    if !c.checks.is_empty() {
        crate::outln!("{}", checks_summary(&c.checks));
    }
}

/// The gradient-masking checks: how many passed, and each failure with its numbers.
pub fn checks_summary(rows: &[crate::run_dir::checks::CheckRow]) -> String {
    let failed: Vec<_> = rows.iter().filter(|r| !r.passed).collect();
    let mut out = format!(
        "gradient-masking checks (checks.csv): {} passed, {} failed",
        rows.len() - failed.len(),
        failed.len()
    );
    for r in failed {
        out.push_str(&format!(
            "\n  FAILED {}: {} {} {} {} at lambda {}: {:.4} > {} {:.4} + {:.4}",
            r.check.name(),
            r.job,
            r.subject,
            r.defense,
            r.attack,
            r.lambda,
            r.value,
            r.reference,
            r.reference_value,
            r.tolerance
        ));
    }
    out
}

/// CIFAR-10 worst-case rows (correct under every attack of the job) as an aligned text table.
pub fn worst_case_table(rows: &[WorstCaseRow]) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:<16} {:>7} {:>6} {:>9} {:>10}  attacks (worst case: correct under all)",
        "job", "variant", "defense", "lambda", "n", "accuracy", "optimistic"
    );
    for r in rows {
        out.push_str(&format!(
            "\n{:<12} {:<8} {:<16} {:>7} {:>6} {:>9.4} {:>10.4}  {}",
            r.job,
            r.variant,
            r.treatment.defense_label(),
            r.treatment.lambda,
            r.n,
            r.accuracy,
            r.optimistic_accuracy,
            r.attacks
        ));
    }
    out
}

/// CIFAR-10 accuracy and calibration rows as an aligned text table.
pub fn cifar_table(rows: &[CifarEvalRow]) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:<16} {:<14} {:>7} {:>6} {:>9} {:>10} {:>7} {:>7}",
        "job",
        "variant",
        "defense",
        "attack",
        "lambda",
        "n",
        "accuracy",
        "confidence",
        "ece",
        "nll"
    );
    for r in rows {
        let t = &r.treatment;
        let defense = t.defense_label();
        out.push_str(&format!(
            "\n{:<12} {:<8} {:<16} {:<14} {:>7} {:>6} {:>9.4} {:>10.4} {:>7.4} {:>7.3}",
            r.job,
            r.variant,
            defense,
            t.attack_label(),
            t.lambda,
            r.n,
            r.accuracy,
            r.mean_confidence,
            r.ece,
            r.nll
        ));
    }
    out
}

/// Relative rewards as an aligned text table.
pub fn relative_table(rows: &[RelativeRow]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:<22} {:<14} {:>7} {:>4} {:>10} {:>9} {:>10} {:>7}",
        "game",
        "preset",
        "defense",
        "attack",
        "lambda",
        "n",
        "mean",
        "relative",
        "normalized",
        "hns"
    );
    for r in rows {
        let t = &r.treatment;
        let defense = t.defense_label();
        out.push_str(&format!(
            "\n{:<14} {:<12} {:<22} {:<14} {:>7} {:>4} {:>10.2} {:>9} {:>10} {:>7}",
            r.game,
            r.preset,
            defense,
            t.attack_label(),
            t.lambda,
            r.n,
            r.mean,
            opt(r.relative_reward),
            opt(r.normalized_reward),
            opt(r.hns)
        ));
    }
    out
}

/// Classifier rows as an aligned text table: accuracy and ECE per defense and lambda.
pub fn classifier_table(rows: &[ClassifierRow]) -> String {
    let mut out = format!(
        "{:<8} {:>5} {:<22} {:<14} {:>7} {:>5} {:>9} {:>7}",
        "task", "seed", "defense", "attack", "lambda", "n", "accuracy", "ece"
    );
    for r in rows {
        let t = &r.treatment;
        let defense = t.defense_label();
        out.push_str(&format!(
            "\n{:<8} {:>5} {:<22} {:<14} {:>7} {:>5} {:>9.4} {:>7.4}",
            r.task,
            r.train_seed,
            defense,
            t.attack_label(),
            t.lambda,
            r.n,
            r.accuracy,
            r.ece
        ));
    }
    out
}

/// The summary as an aligned text table.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut out = format!(
        "{:<10} {:<8} {:<16} {:<12} {:<7} {:>4} {:>10} {:>9} {:>21} {:>7}",
        "job", "family", "game", "preset", "policy", "n", "mean", "std", "95% CI", "hns"
    );
    for r in rows {
        let ci = match (r.ci95_low, r.ci95_high) {
            (Some(lo), Some(hi)) => format!("[{lo:.2}, {hi:.2}]"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "\n{:<10} {:<8} {:<16} {:<12} {:<7} {:>4} {:>10.2} {:>9} {:>21} {:>7}",
            r.job,
            r.family,
            r.game,
            r.preset,
            r.policy,
            r.n,
            r.mean,
            opt(r.std),
            ci,
            opt(r.hns)
        ));
    }
    out
}

/// A frame count with a unit: 950, 12.3k, 4.5M, 1.2G.
pub(super) fn human(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        n.to_string()
    }
}

pub(super) fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}
