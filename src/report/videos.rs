//! The report's videos: the recorded episodes of agent cells (`record = N`), linked (or
//! copied) beside the report with a still of each.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::Report;
use crate::run_dir::files;
use crate::video;

/// Links (or copies) every `cells/<cell>/episode-<e>.gif` of the run to `report/videos/`, writes the
/// middle frame of each as a PNG and lists them in `md`; returns whether there were any.
pub fn section(run_dir: &Path, out: &mut Report, md: &mut String) -> Result<bool> {
    let cells = run_dir.join(files::CELLS);
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&cells) {
        for cell in entries.flatten() {
            let id = cell.file_name().to_string_lossy().into_owned();
            let Ok(inner) = std::fs::read_dir(cell.path()) else {
                continue;
            };
            for file in inner.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.starts_with("episode-") && name.ends_with(".gif") {
                    found.push((id.clone(), name, file.path()));
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(false);
    }
    found.sort();
    let dir = out.dir.join("videos");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    *md += "## Recorded episodes\n\nEach video shows the game, the newest 84x84 frame the \
            network saw (after the attack) and the perturbation, amplified so that +-lambda \
            spans black to white; the still is the middle frame.\n\n\
            | cell | video | still |\n|---|---|---|\n";
    for (id, name, path) in found {
        let stem = name.trim_end_matches(".gif");
        let gif = dir.join(format!("{id}-{name}"));
        let _ = std::fs::remove_file(&gif);
        // A hard link where the file system allows one: videos are large.
        if std::fs::hard_link(&path, &gif).is_err() {
            std::fs::copy(&path, &gif)
                .with_context(|| format!("copying {} to {}", path.display(), gif.display()))?;
        }
        let png = dir.join(format!("{id}-{stem}.png"));
        video::still(&gif, &png)?;
        let _ = writeln!(
            md,
            "| {id} | [{name}](videos/{id}-{name}) | ![{id} {stem}](videos/{id}-{stem}.png) |"
        );
        out.files.push(gif);
        out.files.push(png);
    }
    md.push('\n');
    Ok(true)
}
