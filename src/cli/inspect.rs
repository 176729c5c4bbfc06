//! `sap validate`, `sap plan` and `sap games`: what a manifest holds and what can be played.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::tables::human;
use crate::bench::Rates;
use crate::manifest::{CellKind, Manifest, Stage};

/// Check a manifest and report the first problem, with file, line, column and key.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The manifest (TOML).
    pub manifest: PathBuf,
}

/// Print the numbered cells a manifest expands into.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The manifest (TOML).
    pub manifest: PathBuf,
    /// Rates to estimate each cell's CPU time from (written by `sap bench rates`; default:
    /// the file it saves by default, when there is one).
    #[arg(long)]
    pub rates: Option<PathBuf>,
}

/// `sap validate`: the manifest checked, with its cell counts.
pub(super) fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let ValidateArgs { manifest } = args;
    let m = Manifest::load(&manifest)?;
    let plan = m.plan();
    let count = |f: fn(&CellKind) -> bool| plan.iter().filter(|c| f(&c.kind)).count();
    crate::outln!(
        "{}: ok ({} train cells, {} eval cells, {} agent cells, {} robustness cells, {} \
         cifar train cells, {} cifar eval cells)",
        manifest.display(),
        count(|k| matches!(k, CellKind::Train(_))),
        count(|k| matches!(k, CellKind::Episodes(_))),
        count(|k| matches!(k, CellKind::Agent(_))),
        count(|k| matches!(k, CellKind::Robustness(_))),
        count(|k| matches!(k, CellKind::CifarTrain(_))),
        count(|k| matches!(k, CellKind::CifarEval(_))),
    );
    Ok(ExitCode::SUCCESS)
}

/// `sap plan`: the numbered cells and their cost bounds.
pub(super) fn plan(args: PlanArgs) -> Result<ExitCode> {
    let PlanArgs { manifest, rates } = args;
    let (m, warnings) = Manifest::load_for_plan(&manifest)?;
    let rates = match rates {
        Some(path) => Some(Rates::load(&path)?),
        None => match crate::bench::rates::default_path().filter(|p| p.is_file()) {
            Some(path) => Some(Rates::load(&path)?),
            None => None,
        },
    };
    let (mut cpu_train, mut cpu_eval, mut unestimated) = (0f64, 0f64, 0usize);
    for w in &warnings {
        tracing::warn!("{w}\n(`sap plan` lists the cells anyway; `sap validate` and `sap run` refuse the manifest until this is fixed)");
    }
    let plan = m.plan();
    let (mut train_frames, mut eval_frames) = (0u64, 0u64);
    let (mut train_images, mut eval_passes) = (0u64, 0u64);
    for c in &plan {
        let deps = if c.deps.is_empty() {
            String::new()
        } else {
            let d: Vec<String> = c.deps.iter().map(|d| d.to_string()).collect();
            format!("  (after {})", d.join(", "))
        };
        let mut cost = String::new();
        if let Some(f) = c.frames_bound() {
            cost = format!("; <= {} frames", human(f));
            match c.stage() {
                Stage::Train => train_frames += f,
                Stage::Eval => eval_frames += f,
            }
        }
        if let Some(p) = c.passes_per_step() {
            cost += &format!(", {p} network passes (forward or backward) per agent step");
        }
        match &c.kind {
            CellKind::CifarTrain(t) => {
                train_images += t.settings.iterations * t.settings.batch_size as u64;
            }
            CellKind::CifarEval(e) => {
                eval_passes += e.examples as u64 * c.passes_per_image().unwrap_or(0) as u64;
            }
            _ => {}
        }
        if let Some(r) = &rates {
            match r.cpu_seconds(c) {
                Some(s) => {
                    cost += &format!("; ~{} CPU", duration(s));
                    match c.stage() {
                        Stage::Train => cpu_train += s,
                        Stage::Eval => cpu_eval += s,
                    }
                }
                None => unestimated += 1,
            }
        }
        crate::outln!("{:>4}  {}: {}{cost}{deps}", c.index, c.id(), c.describe(&m));
    }
    let train = plan.iter().filter(|c| c.stage() == Stage::Train).count();
    if plan.iter().any(|c| c.frames_bound().is_some()) {
        crate::outln!(
            "{} cells: {train} training (<= {} frames), {} evaluation (<= {} frames; \
             bounds assume every episode runs to its frame cap)",
            plan.len(),
            human(train_frames),
            plan.len() - train,
            human(eval_frames)
        );
    } else {
        crate::outln!(
            "{} cells: {train} training, {} evaluation",
            plan.len(),
            plan.len() - train
        );
    }
    if train_images + eval_passes > 0 {
        crate::outln!(
            "CIFAR-10: {} training images (SGD passes), {} image passes in evaluation",
            human(train_images),
            human(eval_passes)
        );
    }
    match &rates {
        Some(r) => {
            let without = if unestimated > 0 {
                format!(" ({unestimated} classic-control or glyph cells without an estimate)")
            } else {
                String::new()
            };
            crate::outln!(
                "estimated CPU time: ~{} in all (~{} training, ~{} evaluation){without}; a bound \
                 like the frames' (every episode to its cap, no exploring action)\n  {}",
                duration(cpu_train + cpu_eval),
                duration(cpu_train),
                duration(cpu_eval),
                r.describe()
            );
        }
        None => crate::outln!(
            "no CPU-time estimates: `sap bench rates` measures this machine's rates once (about \
             a minute) and `sap plan` uses them"
        ),
    }
    if m.reproducible {
        crate::outln!(
            "reproducible mode: cells pin libtorch's kernels to AVX2 with deterministic \
             algorithms (the same rows on any x86-64 CPU with AVX2; slower)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A CPU time in the largest unit that keeps it above 1: seconds, minutes, hours or days.
fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else if seconds < 3600.0 {
        format!("{:.1} min", seconds / 60.0)
    } else if seconds < 86_400.0 * 3.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.0} h ({:.0} days)", seconds / 3600.0, seconds / 86_400.0)
    }
}
