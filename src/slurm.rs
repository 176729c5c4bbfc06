//! Slurm: sbatch array scripts for a manifest's plan. One array task per cell, at most
//! `max_parallel` running at once (`%` limit); the evaluation arrays start after the
//! training array (`afterany`: an evaluation whose training failed stops at once with that
//! reason, the others run). Every task runs `sap run-cell --cell N --run-dir DIR`, which
//! reads the run directory's copy of the manifest and writes into that shared directory;
//! `sap collect DIR` merges the cells afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::manifest::{PlanCell, Stage};
use crate::record::write_atomic;

/// Slurm's default `MaxArraySize` allows array indices 0..=1000; larger stages are split
/// into several arrays.
pub const MAX_ARRAY_TASKS: usize = 1000;

/// What the scripts ask Slurm for.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// Array tasks running at once (the `%` limit).
    pub max_parallel: u32,
    /// torch threads of each cell.
    pub threads: u32,
    /// CPUs per task.
    pub cpus_per_task: u32,
    /// `--time` limit per task (e.g. `2-00:00:00`), if any.
    pub time: Option<String>,
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// `--mem` per task (e.g. `16G`), if any.
    pub mem: Option<String>,
    /// `--gres` per task (e.g. `gpu:1`), if any.
    pub gres: Option<String>,
}

/// One sbatch script: an array over a contiguous range of cells.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayScript {
    /// The script file.
    pub path: PathBuf,
    /// Training or evaluation.
    pub stage: Stage,
    /// First cell of the range.
    pub first: usize,
    /// Cells in the range.
    pub count: usize,
}

fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// Contiguous runs of cells of each stage, split at [`MAX_ARRAY_TASKS`].
fn ranges(plan: &[PlanCell]) -> Vec<(Stage, usize, usize)> {
    let mut out: Vec<(Stage, usize, usize)> = Vec::new();
    for c in plan {
        match out.last_mut() {
            Some((stage, _, count)) if *stage == c.stage() && *count < MAX_ARRAY_TASKS => {
                *count += 1
            }
            _ => out.push((c.stage(), c.index, 1)),
        }
    }
    out
}

/// Writes the array scripts under `<run_dir>/slurm/` and returns them in submission order
/// (training first).
pub fn write_scripts(
    exe: &Path,
    manifest_path: &Path,
    manifest_name: &str,
    run_dir: &Path,
    plan: &[PlanCell],
    opts: &SlurmOptions,
) -> Result<Vec<ArrayScript>> {
    if plan.is_empty() {
        bail!("the manifest has no cells to submit");
    }
    let (exe, manifest_path, run_dir) =
        (absolute(exe)?, absolute(manifest_path)?, absolute(run_dir)?);
    let dir = run_dir.join("slurm");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut scripts = Vec::new();
    for (n, (stage, first, count)) in ranges(plan).into_iter().enumerate() {
        let what = match stage {
            Stage::Train => "train",
            Stage::Eval => "eval",
        };
        let name = format!("{n:02}-{what}");
        let mut s = String::from("#!/bin/bash\n");
        s += &format!("#SBATCH --job-name=sap-{manifest_name}-{what}\n");
        s += &format!("#SBATCH --array=0-{}%{}\n", count - 1, opts.max_parallel);
        s += &format!("#SBATCH --cpus-per-task={}\n", opts.cpus_per_task);
        s += &format!("#SBATCH --output={}/{name}-%A_%a.out\n", logs.display());
        for (flag, v) in [
            ("time", &opts.time),
            ("partition", &opts.partition),
            ("mem", &opts.mem),
            ("gres", &opts.gres),
        ] {
            if let Some(v) = v {
                s += &format!("#SBATCH --{flag}={v}\n");
            }
        }
        s += &format!(
            "# Cells {first}..={} of `sap plan {}` ({what}); array task i runs cell {first} + i.\n",
            first + count - 1,
            manifest_path.display()
        );
        s += "set -euo pipefail\n";
        s += &format!("CELL=$(( {first} + SLURM_ARRAY_TASK_ID ))\n");
        s += &format!(
            "exec {} run-cell --cell \"$CELL\" --run-dir {} --threads {}\n",
            quote(&exe),
            quote(&run_dir),
            opts.threads
        );
        let path = dir.join(format!("{name}.sbatch"));
        write_atomic(&path, s.as_bytes())?;
        scripts.push(ArrayScript {
            path,
            stage,
            first,
            count,
        });
    }
    Ok(scripts)
}

/// The shell commands that submit `scripts` in order, each evaluation array after every
/// training array before it.
pub fn submit_commands(scripts: &[ArrayScript]) -> String {
    let mut out = String::from("#!/bin/bash\nset -euo pipefail\ntrain_jobs=\"\"\n");
    for s in scripts {
        let path = quote(&s.path);
        match s.stage {
            Stage::Train => {
                out += &format!("id=$(sbatch --parsable {path})\ntrain_jobs=\"$train_jobs:${{id%%;*}}\"\necho \"submitted $id: {}\"\n", s.path.display());
            }
            Stage::Eval => {
                out += &format!(
                    "dep=\"\"; [ -n \"$train_jobs\" ] && dep=\"--dependency=afterany$train_jobs\"\n\
                     id=$(sbatch --parsable $dep {path})\necho \"submitted $id: {}\"\n",
                    s.path.display()
                );
            }
        }
    }
    out
}

/// Submits `scripts` with `sbatch`; returns the job ids in order.
pub fn submit(scripts: &[ArrayScript]) -> Result<Vec<String>> {
    let mut train_ids: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    for s in scripts {
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable");
        if s.stage == Stage::Eval && !train_ids.is_empty() {
            cmd.arg(format!("--dependency=afterany:{}", train_ids.join(":")));
        }
        cmd.arg(&s.path);
        let out = cmd.output().with_context(|| {
            "running sbatch (is Slurm installed and this a submit host?)".to_owned()
        })?;
        if !out.status.success() {
            bail!(
                "sbatch {} failed: {}",
                s.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() {
            bail!("sbatch {} printed no job id", s.path.display());
        }
        if s.stage == Stage::Train {
            train_ids.push(id.clone());
        }
        ids.push(id);
    }
    Ok(ids)
}
