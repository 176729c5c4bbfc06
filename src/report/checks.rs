//! The report's adaptive-evaluation sections: the worst case over a job's attacks and the
//! gradient-masking checks, failures first and with their numbers.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::experiment::checks::CheckRow;
use crate::experiment::files;
use crate::record::read_rows;
use crate::table::WorstCaseRow;

/// Appends the worst-case table, if the run has one.
pub(super) fn worst_case_section(run_dir: &Path, md: &mut String) -> Result<()> {
    let rows: Vec<WorstCaseRow> = read_rows(&run_dir.join(files::WORST_CASE))?;
    if rows.is_empty() {
        return Ok(());
    }
    *md += "## Worst case over attacks\n\n";
    *md += "An image counts as correct only if every attack of its job left it correct \
            (AutoAttack's convention); optimistic: correct if any single one of the `samples` \
            passes was, under every attack (Athalye et al. 2018), reported beside, never \
            instead.\n\n";
    *md += "| job | network | defense | lambda | n | accuracy | optimistic | attacks |\n";
    *md += "|---|---|---|---:|---:|---:|---:|---|\n";
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {} |",
            r.job,
            r.variant,
            r.treatment.defense_label(),
            r.treatment.lambda,
            r.n,
            r.accuracy,
            r.optimistic_accuracy,
            r.attacks
        );
    }
    *md += "\n";
    Ok(())
}

/// Appends the gradient-masking checks, if the run has any: the count, then every failed
/// check with its numbers.
pub(super) fn checks_section(run_dir: &Path, md: &mut String) -> Result<()> {
    let rows: Vec<CheckRow> = read_rows(&run_dir.join(files::CHECKS))?;
    if rows.is_empty() {
        return Ok(());
    }
    let failed: Vec<&CheckRow> = rows.iter().filter(|r| !r.passed).collect();
    *md += "## Gradient-masking checks\n\n";
    *md += "Scores must not rise with lambda for one attack; an iterative attack must do no \
            worse than FGSM, the strongest white-box attack no worse than a transfer attack, \
            and at lambda >= 128 the strongest attack must reach chance (one over the classes, \
            or the random policy's mean return). A check fails when the score exceeds its \
            reference by more than 1.96 standard errors of the difference (`checks.csv`).\n\n";
    if failed.is_empty() {
        let _ = writeln!(md, "All {} checks passed.\n", rows.len());
        return Ok(());
    }
    let _ = writeln!(
        md,
        "**{} of {} checks FAILED**: the evaluation may be masking gradients; the numbers \
         below are upper bounds on robustness until a stronger attack explains them.\n",
        failed.len(),
        rows.len()
    );
    *md += "| check | job | subject | defense | attack | lambda | score | reference | reference score | tolerance |\n";
    *md += "|---|---|---|---|---|---:|---:|---|---:|---:|\n";
    for r in failed {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {} | {:.4} | {:.4} |",
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
        );
    }
    *md += "\n";
    Ok(())
}
