//! Running one cell: the contract every cell kind implements ([`CellRunner`]), the context
//! it runs in ([`CellCtx`]), and the one loop around it ([`run_cell`]): dependencies, the
//! cell's lock and provenance, then its completion mark. The run folder's layout lives in
//! [`crate::run_dir`]; the cells of each family live in the submodules.

pub mod agent;
pub mod baseline;
pub mod cifar;
pub mod episode;
pub mod robustness;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::env::Game;
use crate::manifest::{CellKind, Manifest, NetworkSource, PlanCell};
use crate::provenance::{self, Provenance, RomRecord};
use crate::run_dir::{self, cell_dir, is_done, lock};

/// Where a cell runs: its run folder, the folder its manifest's relative paths start from,
/// its own folder and id.
pub struct CellCtx<'a> {
    /// The run folder.
    pub run_dir: &'a Path,
    /// The folder relative paths of the manifest (data, checkpoints) start from.
    pub manifest_dir: &'a Path,
    /// The manifest.
    pub manifest: &'a Manifest,
    /// The cell's folder, `cells/<id>/`: created and locked before the cell runs.
    pub dir: PathBuf,
    /// The cell's id (its folder's name).
    pub id: String,
}

impl CellCtx<'_> {
    /// A network's file and the name rows give it: a training cell's final network,
    /// relative to the run folder (so rows do not depend on where the run lives), or a file
    /// relative to the manifest.
    pub fn network(&self, source: &NetworkSource) -> (PathBuf, String) {
        source.file(self.run_dir, self.manifest_dir)
    }

    /// A file in the cell's folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What every kind of cell provides to the run loop. A cell appends its rows as it goes
/// and resumes from them; the loop marks it complete once [`CellRunner::run`] returns.
pub trait CellRunner {
    /// The files the cell writes in its folder: its completion mark records what each held.
    fn outputs(&self) -> &'static [&'static str];

    /// Runs or resumes the cell; returns the work done in this call (rows, agent steps or
    /// iterations), 0 when nothing was left.
    fn run(&self, ctx: &CellCtx) -> Result<u64>;
}

/// The runner of a cell kind.
pub fn runner(kind: &CellKind) -> &dyn CellRunner {
    match kind {
        CellKind::Train(c) => c,
        CellKind::Episodes(c) => c,
        CellKind::Agent(c) => c,
        CellKind::Robustness(c) => c,
        CellKind::CifarTrain(c) => c,
        CellKind::CifarEval(c) => c,
    }
}

/// Records the provenance of a cell's computation in its folder at its first start, with
/// the ROM file of an Atari cell's game; a later start (a resume) under other settings is
/// warned about, and the record keeps the first. A cell started on another ROM file is
/// refused: its rows would mix two games.
fn record_cell_provenance(cell_dir: &Path, id: &str, game: Option<Game>) -> Result<()> {
    let path = cell_dir.join(provenance::FILE);
    let mut here = Provenance::current(tch::get_num_threads().max(1) as u32);
    here.rom = game.map(RomRecord::standard);
    match Provenance::read(&path)? {
        None => here.write(&path)?,
        Some(first) => {
            if let (Some(then), Some(now)) = (&first.rom, &here.rom) {
                if then.md5 != now.md5 {
                    bail!(
                        "cell {id} was started on another ROM file of {} (MD5 {}, recorded in \
                         {}) than the standard file this sap loads (MD5 {}); its rows cannot \
                         be continued on another game version. Delete the cell's folder to \
                         rerun it",
                        now.game,
                        then.md5,
                        path.display(),
                        now.md5
                    );
                }
            }
            let diff = here.differences(&first);
            if !diff.is_empty() {
                tracing::warn!(
                    "cell {id} resumes under other settings than it started with (here vs \
                     there): {}; its rows may mix both",
                    diff.join("; ")
                );
            }
        }
    }
    Ok(())
}

/// What one cell did in this call.
#[derive(Clone, Debug, PartialEq)]
pub struct CellOutcome {
    /// The cell id.
    pub id: String,
    /// Rows (episodes, evaluation rows, training agent steps) produced in this call; 0 when
    /// the cell was already complete.
    pub work: u64,
}

/// Runs (or resumes) cell `index` of the manifest's plan in this process, then marks it
/// complete. A complete cell is left as it is. Relative paths of the manifest are taken
/// relative to `manifest_dir`.
pub fn run_cell(
    run_dir: &Path,
    manifest_dir: &Path,
    manifest: &Manifest,
    plan: &[PlanCell],
    index: usize,
) -> Result<CellOutcome> {
    let cell = plan.get(index).with_context(|| {
        format!(
            "--cell {index} is out of range; allowed: 0..={} (`sap plan` lists the cells)",
            plan.len().saturating_sub(1)
        )
    })?;
    let id = cell.id();
    if is_done(run_dir, &id) {
        return Ok(CellOutcome { id, work: 0 });
    }
    for &dep in &cell.deps {
        let dep_id = plan[dep].id();
        if !is_done(run_dir, &dep_id) {
            bail!("cell {id} needs cell {dep_id}, which has not finished; run it first");
        }
    }
    if manifest.reproducible && !provenance::in_reproducible_mode() {
        bail!(
            "the manifest sets reproducible = true but this process is not in the reproducible \
             mode; run cells through `sap run` or `sap run-cell`, which enter it"
        );
    }
    let dir = cell_dir(run_dir, &id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _writer = lock::acquire(&dir, &format!("cell {id}"))?;
    // Another writer may have finished the cell while this one waited to start.
    if is_done(run_dir, &id) {
        return Ok(CellOutcome { id, work: 0 });
    }
    record_cell_provenance(&dir, &id, cell.atari_game())?;
    let ctx = CellCtx {
        run_dir,
        manifest_dir,
        manifest,
        dir,
        id,
    };
    let kind = runner(&cell.kind);
    let work = kind.run(&ctx)?;
    run_dir::mark_done(&ctx.dir, &ctx.id, index, kind.outputs())?;
    Ok(CellOutcome { id: ctx.id, work })
}
