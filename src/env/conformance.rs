//! The Atari conformance check: does a game emulated by the ALE `sap` is built with (ALE
//! 0.12.1 compiled from ale-py's source distribution, `src/native/ale_shim.cpp`) play frame
//! for frame as in the ale-py 0.12.1 wheel, the ALE that Gymnasium, CleanRL,
//! Stable-Baselines3 and Dopamine use? The same sources should give the same emulator; the
//! check proves it for the build at hand (compiler, flags, the shim, how `sap` loads ROMs).
//!
//! Both sides load the standard ROM with `random_seed = seed` and sticky actions off, play
//! the same fixed action sequence and write one [`FrameRecord`] per emulator frame: a digest
//! of the screen (palette indices), the reward, the lives and game over. The game is reset at
//! game over and once, unconditionally, after half the frames. The reference side is
//! `scripts/ale_trace.py`, run with the project venv's python; this module plays our side
//! and compares. `sap conformance` runs both over every game and writes the table
//! `docs/atari-conformance.md` and `docs/atari-conformance.tsv`; the latter is compiled in
//! here ([`recorded`]) so `sap games` can show each game's standing.
//!
//! The action sequence: every 4th frame a new action from the minimal action set, index
//! `splitmix64() % n`, from a SplitMix64 generator whose state starts at
//! `seed * 0x9E3779B97F4A7C15 + 0x243F6A8885A308D3` (mod 2^64).

use std::fmt;
use std::path::Path;

use super::ale::{AleHandle, StagedRom};
use super::games::Game;
use super::roms::md5_hex;
use super::EnvError;

/// Frames between two action draws.
const ACTION_PERIOD: usize = 4;

/// The table `sap conformance` wrote, compiled in.
const RECORDED_TSV: &str = include_str!("../../docs/atari-conformance.tsv");

/// SplitMix64 (Steele et al. 2014), the action generator both sides implement.
struct SplitMix64(u64);

impl SplitMix64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new(seed: u64) -> Self {
        SplitMix64(
            seed.wrapping_mul(Self::GOLDEN)
                .wrapping_add(0x243F_6A88_85A3_08D3),
        )
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What one emulator frame left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRecord {
    /// The first 16 hex digits of the MD5 of the screen's palette indices (height x 160).
    pub screen: String,
    /// The frame's reward.
    pub reward: i64,
    /// Lives after the frame.
    pub lives: i64,
    /// Whether the game was over after the frame.
    pub game_over: bool,
}

/// One side's trace of a game and seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The minimal action set, as ALE action codes.
    pub actions: Vec<i32>,
    /// One record per frame.
    pub frames: Vec<FrameRecord>,
}

/// Plays the conformance sequence on the ALE `sap` emulates with.
pub fn trace(game: Game, seed: u32, frames: usize) -> Result<Trace, EnvError> {
    let rom = StagedRom::new(game)?;
    let mut ale = AleHandle::new();
    rom.load_into(&mut ale, game, seed as i32, 0.0)?;
    let actions = ale.minimal_actions();
    let mut rng = SplitMix64::new(u64::from(seed));
    let (height, width) = ale.screen_dims();
    let mut screen = vec![0u8; height * width];
    let mut action = actions[0];
    let mut out = Vec::with_capacity(frames);
    for t in 0..frames {
        if t % ACTION_PERIOD == 0 {
            action = actions[(rng.next() % actions.len() as u64) as usize];
        }
        let reward = ale.act(action);
        ale.screen_indices(&mut screen);
        let game_over = ale.game_over();
        out.push(FrameRecord {
            screen: md5_hex(&screen)[..16].to_owned(),
            reward: i64::from(reward),
            lives: i64::from(ale.lives()),
            game_over,
        });
        if game_over || t + 1 == frames / 2 {
            ale.reset_game();
        }
    }
    Ok(Trace {
        actions,
        frames: out,
    })
}

/// Reads a trace file of `scripts/ale_trace.py`. `Err` holds what the reference side
/// reported (its `error` line) or what is malformed.
pub fn parse_trace(text: &str) -> Result<Trace, String> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("empty trace")?;
    if let Some(e) = first.strip_prefix("error ") {
        return Err(format!("ale-py failed: {e}"));
    }
    let actions = first
        .strip_prefix("actions")
        .ok_or_else(|| format!("first line is not `actions ...`: {first:?}"))?
        .split_whitespace()
        .map(|a| a.parse().map_err(|_| format!("bad action code {a:?}")))
        .collect::<Result<Vec<i32>, _>>()?;
    let frames = lines
        .enumerate()
        .map(|(t, line)| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let bad = || format!("frame {t}: malformed line {line:?}");
            let [screen, reward, lives, over] = f[..] else {
                return Err(bad());
            };
            Ok(FrameRecord {
                screen: screen.to_owned(),
                reward: reward.parse().map_err(|_| bad())?,
                lives: lives.parse().map_err(|_| bad())?,
                game_over: over == "1",
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Trace { actions, frames })
}

/// Where two traces first part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The first differing frame (0-based; 0 for a differing action set).
    pub frame: usize,
    /// What differs there: `action set`, `screen`, `reward`, `lives`, `game over` (joined
    /// with `+`), or `length`.
    pub what: String,
}

/// The first frame where `ours` and `reference` differ, if any.
pub fn compare(ours: &Trace, reference: &Trace) -> Option<Difference> {
    if ours.actions != reference.actions {
        return Some(Difference {
            frame: 0,
            what: format!("action set ({:?} vs {:?})", ours.actions, reference.actions),
        });
    }
    for (t, (a, b)) in ours.frames.iter().zip(&reference.frames).enumerate() {
        let mut what = Vec::new();
        if a.screen != b.screen {
            what.push("screen");
        }
        if a.reward != b.reward {
            what.push("reward");
        }
        if a.lives != b.lives {
            what.push("lives");
        }
        if a.game_over != b.game_over {
            what.push("game over");
        }
        if !what.is_empty() {
            return Some(Difference {
                frame: t,
                what: what.join("+"),
            });
        }
    }
    (ours.frames.len() != reference.frames.len()).then(|| Difference {
        frame: ours.frames.len().min(reference.frames.len()),
        what: "length".into(),
    })
}

/// A game's standing against ale-py 0.12.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every seed's trace is identical.
    Conformant,
    /// Some seed's trace differs; the earliest first difference over the seeds.
    Differs {
        /// The seed whose trace parts first.
        seed: u32,
        /// Where and what.
        difference: Difference,
    },
    /// The comparison could not be made (the reference side failed).
    NotCompared(String),
}

impl Verdict {
    /// The table's columns: the status (`conformant`, `differs`, `not compared`), the first
    /// differing frame (empty unless it differs) and what differs or why it was not compared.
    pub fn columns(&self) -> (&'static str, String, String) {
        match self {
            Verdict::Conformant => ("conformant", String::new(), String::new()),
            Verdict::Differs { seed, difference } => (
                "differs",
                difference.frame.to_string(),
                format!("{} (seed {seed})", difference.what),
            ),
            Verdict::NotCompared(why) => ("not compared", String::new(), why.clone()),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Conformant => f.write_str("conformant"),
            Verdict::Differs { seed, difference } => write!(
                f,
                "differs from frame {} ({}, seed {seed})",
                difference.frame, difference.what
            ),
            Verdict::NotCompared(why) => write!(f, "not compared: {why}"),
        }
    }
}

/// Compares one game over `seeds` with the reference traces in `reference_dir`
/// (`<rom_id>-s<seed>.txt`).
pub fn check_game(
    game: Game,
    seeds: &[u32],
    frames: usize,
    reference_dir: &Path,
) -> Result<Verdict, EnvError> {
    let mut first: Option<(u32, Difference)> = None;
    for &seed in seeds {
        let path = reference_dir.join(format!("{}-s{seed}.txt", game.rom_id()));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Verdict::NotCompared(format!(
                    "no reference trace {}: {e}",
                    path.display()
                )))
            }
        };
        let reference = match parse_trace(&text) {
            Ok(t) => t,
            Err(e) => return Ok(Verdict::NotCompared(e)),
        };
        let ours = trace(game, seed, frames)?;
        if let Some(d) = compare(&ours, &reference) {
            if first.as_ref().is_none_or(|(_, f)| d.frame < f.frame) {
                first = Some((seed, d));
            }
        }
    }
    Ok(match first {
        None => Verdict::Conformant,
        Some((seed, difference)) => Verdict::Differs { seed, difference },
    })
}

/// A game's row of the committed table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// `conformant`, `differs` or `not compared`.
    pub status: String,
    /// The first differing frame, for `differs`.
    pub first_frame: Option<usize>,
    /// What differs, or why it was not compared.
    pub detail: String,
}

/// The committed table's row of `game`, if the table has one.
pub fn recorded(game: Game) -> Option<Recorded> {
    RECORDED_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("game\t"))
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&game.name()))
        .map(|f| Recorded {
            status: f.get(2).unwrap_or(&"").to_string(),
            first_frame: f.get(3).and_then(|v| v.parse().ok()),
            detail: f.get(4).unwrap_or(&"").to_string(),
        })
}

/// The table's header line (TSV).
pub const TSV_HEADER: &str = "game\trom_md5\tstatus\tfirst_frame\tdetail";

/// A game's line of the TSV table.
pub fn tsv_line(game: Game, verdict: &Verdict) -> String {
    let (status, frame, detail) = verdict.columns();
    format!(
        "{}\t{}\t{status}\t{frame}\t{}",
        game.name(),
        game.expected_md5(),
        detail.replace('\t', " ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_gives_the_reference_sequence_for_state_zero() {
        // SplitMix64 from state 0 (Vigna's splitmix64.c): 0xE220A8397B1DCDAF, ...
        let mut g = SplitMix64(0);
        assert_eq!(g.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next(), 0x6E78_9E6A_A1B9_65F4);
    }

    fn record(screen: &str, reward: i64) -> FrameRecord {
        FrameRecord {
            screen: screen.into(),
            reward,
            lives: 3,
            game_over: false,
        }
    }

    #[test]
    fn compare_names_the_first_differing_frame_and_what_differs() {
        let a = Trace {
            actions: vec![0, 1],
            frames: vec![record("aa", 0), record("bb", 0), record("cc", 1)],
        };
        let mut b = a.clone();
        assert_eq!(compare(&a, &b), None);
        b.frames[1].reward = 5;
        b.frames[2].screen = "dd".into();
        let d = compare(&a, &b).unwrap();
        assert_eq!((d.frame, d.what.as_str()), (1, "reward"));
        b.actions = vec![0];
        assert_eq!(compare(&a, &b).unwrap().frame, 0);
    }

    #[test]
    fn a_trace_file_round_trips_and_a_reference_failure_is_reported() {
        let t =
            parse_trace("actions 0 1 3\nabcdef0123456789 0 5 0\n0123456789abcdef 1 4 1\n").unwrap();
        assert_eq!(t.actions, vec![0, 1, 3]);
        assert_eq!(
            t.frames[1],
            FrameRecord {
                screen: "0123456789abcdef".into(),
                reward: 1,
                lives: 4,
                game_over: true
            }
        );
        let e = parse_trace("error RuntimeError: no ROM\n").unwrap_err();
        assert!(e.contains("no ROM"), "{e}");
        assert!(parse_trace("actions 0\nxx 1\n")
            .unwrap_err()
            .contains("frame 0"));
    }

    #[test]
    fn every_game_has_a_row_in_the_committed_table() {
        for g in Game::all() {
            assert!(
                recorded(g).is_some(),
                "{g} has no row in docs/atari-conformance.tsv"
            );
        }
    }
}
