//! Completion marks: `cells/<id>/done.toml`, written atomically once a cell's rows are on
//! disk, with what each output held, so that a file damaged later is found by `sap collect`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{cell_dir, files};
use crate::record::write_atomic;

/// Syncs the outputs `names` of the cell in `dir` that exist, then writes its completion
/// mark recording each one's size and rows: the rows reach the disk before the mark that
/// says they are complete.
pub fn mark_done(dir: &Path, id: &str, index: usize, names: &[&str]) -> Result<()> {
    let mut mark = DoneMark {
        cell: id.to_owned(),
        index,
        outputs: BTreeMap::new(),
    };
    for &name in names {
        let path = dir.join(name);
        if path.exists() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", path.display()))?;
            mark.outputs
                .insert(name.to_owned(), OutputRecord::of(&path)?);
        }
    }
    let text = toml::to_string(&mark).expect("completion marks serialise");
    write_atomic(&dir.join(files::DONE), text.as_bytes())?;
    Ok(())
}

/// A cell's completion mark (`done.toml`), with the size of each output it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoneMark {
    /// The cell id.
    pub cell: String,
    /// Its number in the plan.
    pub index: usize,
    /// Output file name -> what it held when the cell completed (absent in marks of an
    /// older sap, whose outputs cannot be checked).
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputRecord>,
}

/// The size of a cell's output when the cell completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Bytes.
    pub bytes: u64,
    /// Data rows (lines after the header) of a CSV file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

impl OutputRecord {
    /// What `path` holds now.
    pub fn of(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let is_csv = path.extension().is_some_and(|e| e == "csv");
        let rows = is_csv.then(|| {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            lines.saturating_sub(1)
        });
        Ok(OutputRecord {
            bytes: bytes.len() as u64,
            rows,
        })
    }

    /// "3 rows (412 bytes)" or "412 bytes".
    fn describe(&self) -> String {
        match self.rows {
            Some(r) => format!("{r} rows ({} bytes)", self.bytes),
            None => format!("{} bytes", self.bytes),
        }
    }
}

/// Checks a complete cell's outputs against its completion mark: each recorded file must
/// still exist with the recorded size and rows. Returns what differs, one line per file.
pub fn damaged_outputs(run_dir: &Path, id: &str) -> Result<Vec<String>> {
    let dir = cell_dir(run_dir, id);
    let path = dir.join(files::DONE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mark: DoneMark = toml::from_str(&text).with_context(|| {
        format!(
            "{}: not a completion mark; delete it to run the cell again",
            path.display()
        )
    })?;
    let mut damage = Vec::new();
    for (name, recorded) in &mark.outputs {
        let file = dir.join(name);
        if !file.exists() {
            damage.push(format!(
                "{name} is missing; it held {} when the cell completed",
                recorded.describe()
            ));
            continue;
        }
        let now = OutputRecord::of(&file)?;
        if now != *recorded {
            damage.push(format!(
                "{name} holds {}, but {} when the cell completed",
                now.describe(),
                recorded.describe()
            ));
        }
    }
    Ok(damage)
}
