//! `sap games` (the games, their ROM files and conformance; `--check` plays each in a child
//! process) and `sap conformance` (the frame-for-frame comparison with ale-py).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::env::ale::action_counts;
use crate::env::conformance::{self, Verdict};
use crate::env::roms::{self, RomDir};
use crate::env::{AtariEnv, ClassicEnv, ClassicGame, Environment, Game, Mode, Preset};

/// Arguments of `sap games`.
#[derive(Debug, Args)]
pub struct GamesArgs {
    /// Play 1,000 random frames of every Atari game through the whole preprocessing
    /// pipeline, each game in a child process, and report any game that crashes or hangs
    /// (exit status 1 if one does).
    #[arg(long)]
    pub check: bool,
    /// Emulator frames each game plays under --check.
    #[arg(long, default_value_t = 1000, value_parser = super::at_least_one)]
    pub frames: u32,
    /// Seconds a game may take under --check before it counts as hung.
    #[arg(long, default_value_t = 60, value_parser = super::at_least_one)]
    pub timeout: u32,
    /// Only these games (comma-separated CamelCase names), for --check.
    #[arg(long, value_delimiter = ',')]
    pub games: Vec<String>,
    /// Play one game in this process (what --check runs in each child).
    #[arg(long, hide = true)]
    pub play: Option<String>,
}

/// Arguments of `sap conformance`.
#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// Games to compare (comma-separated CamelCase names); all by default.
    #[arg(long, value_delimiter = ',')]
    pub games: Vec<String>,
    /// ALE seeds (`random_seed`), one trace each.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u32>,
    /// Emulator frames per trace (a reset at game over and one after half of them).
    #[arg(long, default_value_t = 3000, value_parser = super::at_least_one)]
    pub frames: u32,
    /// The python that has ale-py 0.12.1 (the project's venv by default).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Write the table as atari-conformance.md and atari-conformance.tsv in this folder.
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Fail (exit status 1) when a game's result differs from the committed table
    /// (`docs/atari-conformance.tsv`, compiled into sap); needs the table's seeds and frames.
    #[arg(long)]
    pub expect_recorded: bool,
}

/// Resolves comma-separated game names (all games when empty).
fn games_named(names: &[String]) -> Result<Vec<Game>> {
    if names.is_empty() {
        return Ok(Game::all().collect());
    }
    names
        .iter()
        .map(|n| {
            Game::from_name(n).with_context(|| {
                format!(
                    "--games: unknown Atari game `{n}`{}; `sap games` lists them",
                    crate::manifest::did_you_mean(n, crate::env::games::game_names())
                        .unwrap_or_default()
                )
            })
        })
        .collect()
}

/// `sap games`.
pub(super) fn games(args: GamesArgs) -> Result<ExitCode> {
    if let Some(name) = &args.play {
        return play(name, args.frames);
    }
    if args.check {
        return check(&games_named(&args.games)?, args.frames, args.timeout);
    }
    let dir = RomDir::current();
    crate::outln!(
        "{:<8} {:<17} {:>7} {:>4}  {:<32}  conformance with ale-py 0.12",
        "family",
        "game",
        "minimal",
        "full",
        "ROM MD5"
    );
    let mut missing = 0;
    for game in Game::all() {
        let (counts, md5) = match roms::inspect(&dir.path, game) {
            Some((md5, true)) => {
                let (minimal, full) = action_counts(game)?;
                (format!("{minimal:>7} {full:>4}"), md5)
            }
            Some((md5, false)) => {
                missing += 1;
                (
                    format!("{:>7} {:>4}", "-", "-"),
                    format!("{md5} (NOT STANDARD)"),
                )
            }
            None => {
                missing += 1;
                (format!("{:>7} {:>4}", "-", "-"), "missing".to_owned())
            }
        };
        let standing = conformance::recorded(game).map_or_else(
            || "not checked".to_owned(),
            |r| match r.first_frame {
                Some(f) => format!("{} from frame {f}: {}", r.status, r.detail),
                None if r.detail.is_empty() => r.status,
                None => format!("{}: {}", r.status, r.detail),
            },
        );
        crate::outln!(
            "{:<8} {:<17} {counts}  {md5:<32}  {standing}",
            "atari",
            game.name()
        );
    }
    for game in ClassicGame::ALL {
        let n = ClassicEnv::new(game).num_actions();
        crate::outln!("{:<8} {:<17} {n:>7} {n:>4}", "classic", game.name());
    }
    crate::outln!("ROM files: {}", dir.origin());
    crate::outln!("conformance: docs/atari-conformance.md (`sap conformance` compares again)");
    if missing > 0 {
        crate::outln!(
            "{missing} ROM files are missing or not the standard ones ({}); `make setup` \
             installs them",
            roms::ROM_SOURCE
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Plays at least `frames` emulator frames of uniformly random actions through the whole
/// Atari pipeline (the default preset's environment: emulator, screens, preprocessing,
/// frame stack), a new episode after each game over: the work of one `--check` child.
fn play(name: &str, frames: u32) -> Result<ExitCode> {
    let game = games_named(&[name.to_owned()])?[0];
    let mut env = AtariEnv::new(game, Preset::default().settings(), Mode::Eval, 1)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut episode = 0;
    env.reset(episode)?;
    let mut played = 0u64;
    while played < u64::from(frames) {
        let step = env.step(rng.gen_range(0..env.num_actions()));
        played += u64::from(step.frames);
        if step.game_over || step.truncated {
            episode += 1;
            env.reset(episode)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How one `--check` child ended.
enum ChildEnd {
    Ok,
    Failed(String),
}

/// Runs `sap games --play GAME` with a deadline.
fn play_in_child(exe: &Path, game: Game, frames: u32, timeout: Duration) -> Result<ChildEnd> {
    let mut child = Command::new(exe)
        .args(["games", "--play", game.name(), "--frames"])
        .arg(frames.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let last = err.lines().last().unwrap_or("").trim().to_owned();
            return Ok(if status.success() {
                ChildEnd::Ok
            } else {
                use std::os::unix::process::ExitStatusExt;
                ChildEnd::Failed(match status.signal() {
                    Some(sig) => format!("killed by signal {sig} {last}"),
                    None => format!("exit status {} {last}", status.code().unwrap_or(-1)),
                })
            });
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(ChildEnd::Failed(format!(
                "hung: no end after {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sap games --check`.
fn check(games: &[Game], frames: u32, timeout: u32) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the sap executable")?;
    let mut failed = Vec::new();
    for &game in games {
        match play_in_child(&exe, game, frames, Duration::from_secs(timeout.into()))? {
            ChildEnd::Ok => crate::outln!("{:<17} ok ({frames} frames)", game.name()),
            ChildEnd::Failed(why) => {
                crate::outln!("{:<17} FAILED: {why}", game.name());
                failed.push(game.name());
            }
        }
    }
    if failed.is_empty() {
        crate::outln!("all {} games played {frames} frames", games.len());
        Ok(ExitCode::SUCCESS)
    } else {
        crate::outln!(
            "{} of {} games failed: {}",
            failed.len(),
            games.len(),
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `sap conformance`.
pub(super) fn conformance(args: ConformanceArgs) -> Result<ExitCode> {
    let games = games_named(&args.games)?;
    if args.seeds.is_empty() {
        bail!("--seeds: give at least one seed");
    }
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("SAP_VENV_PYTHON")));
    let script = reference_script()?;
    let dir = RomDir::current();
    for &g in &games {
        roms::read_verified_in(&dir, g)?;
    }
    let traces = tempfile::Builder::new()
        .prefix("sap-conformance-")
        .tempdir()
        .context("creating a folder for the reference traces")?;
    let seeds: Vec<String> = args.seeds.iter().map(u32::to_string).collect();
    crate::outln!(
        "tracing {} games x {} seeds x {} frames on ale-py ({})",
        games.len(),
        seeds.len(),
        args.frames,
        python.display()
    );
    let out = Command::new(&python)
        .arg(&script)
        .arg(&dir.path)
        .arg(traces.path())
        .arg(args.frames.to_string())
        .arg(seeds.join(","))
        .args(games.iter().map(|g| g.rom_id()))
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running {} (the reference side needs the project venv's python with \
                 ale-py==0.12.1: `make setup`, or --python)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            python.display(),
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut rows = Vec::new();
    let mut unexpected = Vec::new();
    for &game in &games {
        let verdict =
            conformance::check_game(game, &args.seeds, args.frames as usize, traces.path())?;
        crate::outln!("{:<17} {verdict}", game.name());
        if args.expect_recorded {
            let (status, frame, _) = verdict.columns();
            let expected = conformance::recorded(game);
            let same = expected.as_ref().is_some_and(|r| {
                r.status == status
                    && r.first_frame.map(|f| f.to_string()).unwrap_or_default() == frame
            });
            if !same {
                unexpected.push(format!(
                    "{}: now {verdict}; the table says {}",
                    game.name(),
                    expected.map_or("nothing".to_owned(), |r| format!(
                        "{} {}",
                        r.status,
                        r.first_frame
                            .map(|f| format!("from frame {f}"))
                            .unwrap_or_default()
                    ))
                ));
            }
        }
        rows.push((game, verdict));
    }
    let conformant = rows
        .iter()
        .filter(|(_, v)| *v == Verdict::Conformant)
        .count();
    crate::outln!(
        "{conformant} of {} games conformant over seeds {} and {} frames",
        rows.len(),
        seeds.join(","),
        args.frames
    );
    if let Some(folder) = &args.write {
        write_table(folder, &rows, &seeds, args.frames)?;
    }
    if !unexpected.is_empty() {
        crate::outln!(
            "results that differ from docs/atari-conformance.tsv:\n  {}",
            unexpected.join("\n  ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `scripts/ale_trace.py`, found beside the sources `sap` was built from.
fn reference_script() -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ale_trace.py");
    if !path.exists() {
        bail!(
            "{} is missing: `sap conformance` runs the reference side from the project's \
             checkout",
            path.display()
        );
    }
    Ok(path)
}

/// The heading from which `atari-conformance.md` holds hand-written notes.
const NOTES: &str = "## Notes";

/// Writes `atari-conformance.tsv` (read back by `sap games`) and `atari-conformance.md`.
fn write_table(
    folder: &Path,
    rows: &[(Game, Verdict)],
    seeds: &[String],
    frames: u32,
) -> Result<()> {
    let how = format!(
        "ALE {} as `sap` builds it (ale-py's source distribution) against the ale-py 0.12.1 wheel, the standard ROM files, seeds {}, \
         {frames} frames each, sticky actions off, a reset at game over and after half the \
         frames (`sap conformance --seeds {} --frames {frames}`)",
        crate::env::ale::ALE_VERSION,
        seeds.join(", "),
        seeds.join(",")
    );
    let mut tsv = format!(
        "# The Atari conformance table: {how}.\n{}\n",
        conformance::TSV_HEADER
    );
    for (g, v) in rows {
        tsv += &conformance::tsv_line(*g, v);
        tsv.push('\n');
    }
    crate::record::write_atomic(&folder.join("atari-conformance.tsv"), tsv.as_bytes())?;
    let count = |f: &dyn Fn(&Verdict) -> bool| rows.iter().filter(|(_, v)| f(v)).count();
    let mut md = format!(
        "# Atari conformance with ale-py 0.12\n\n\
         Written by `sap conformance --write docs`: {how}. A game is conformant when every \
         frame's screen, reward, lives and game-over flag, and the minimal action set, are \
         identical on both sides. `docs/atari-conformance.tsv` holds the same table for `sap \
         games`.\n\n\
         {} conformant, {} differ, {} not compared, of {} games.\n\n\
         | game | ROM MD5 | result | first differing frame | what differs |\n\
         |---|---|---|---|---|\n",
        count(&|v| *v == Verdict::Conformant),
        count(&|v| matches!(v, Verdict::Differs { .. })),
        count(&|v| matches!(v, Verdict::NotCompared(_))),
        rows.len()
    );
    for (g, v) in rows {
        let (result, frame, what) = v.columns();
        md += &format!(
            "| {} | `{}` | {result} | {frame} | {what} |\n",
            g.name(),
            g.expected_md5()
        );
    }
    // Hand-written notes below the table survive a rewrite.
    let md_path = folder.join("atari-conformance.md");
    if let Some(i) = std::fs::read_to_string(&md_path)
        .ok()
        .and_then(|old| old.find(NOTES).map(|i| old[i..].to_owned()))
    {
        md += "\n";
        md += &i;
    }
    crate::record::write_atomic(&md_path, md.as_bytes())?;
    crate::outln!("wrote {}/atari-conformance.{{md,tsv}}", folder.display());
    Ok(())
}
