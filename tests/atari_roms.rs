//! The standard Atari: ROM files checked by MD5, every game playable, the games the project
//! uses frame for frame as ale-py, and provenance that keeps two ROM files apart.

mod common;

use std::path::Path;

use common::{ok, run, sap};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_game_plays_a_thousand_random_frames_in_its_own_process() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&["games", "--check", "--frames", "1000"], tmp.path());
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let games = sap_harness::env::Game::all().count();
    assert!(
        out.contains(&format!("all {games} games played 1000 frames")),
        "{out}"
    );
}

#[test]
fn a_game_that_dies_is_reported_by_check_as_a_failure_not_a_dead_parent() {
    // A ROM folder whose Pong file is missing makes the child exit with an error; the
    // parent reports it and exits 1.
    let tmp = tempfile::tempdir().unwrap();
    let o = sap(
        &["games", "--check", "--games", "Pong,Breakout"],
        tmp.path(),
    )
    .env("ALE_ROMS_DIR", tmp.path())
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Pong              FAILED"), "{out}");
    assert!(out.contains("2 of 2 games failed"), "{out}");
}

/// The games of the project's manifests, presets and shipped agent, the zoo's games, games
/// that crashed or hung with the ROMs of the `ale` crate, games ALE renders taller than 210
/// rows, and games ALE 0.6 emulated differently.
const REPRESENTATIVE: &str = "Pong,Breakout,SpaceInvaders,BeamRider,Seaquest,Freeway,\
                              RoadRunner,BankHeist,Amidar,Assault,Centipede,Defender,\
                              DoubleDunk,Tennis,VideoPinball,WizardOfWor,Adventure,AirRaid,\
                              Pooyan,Solaris,Frostbite,Berzerk";

#[test]
fn the_games_the_project_uses_play_frame_for_frame_as_ale_py() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "conformance",
            "--games",
            REPRESENTATIVE,
            "--expect-recorded",
        ],
        tmp.path(),
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let n = REPRESENTATIVE.split(',').count();
    assert!(
        out.contains(&format!("{n} of {n} games conformant")),
        "{out}"
    );
}

/// A folder holding every standard ROM file, with Pong's replaced by `pong`.
fn rom_folder_with_pong(dir: &Path, pong: Option<&[u8]>) {
    let standard = sap_harness::env::roms::RomDir::current().path;
    for game in sap_harness::env::Game::all() {
        let file = game.rom_filename();
        if file != "pong.bin" {
            std::fs::copy(standard.join(&file), dir.join(&file)).unwrap();
        }
    }
    if let Some(bytes) = pong {
        std::fs::write(dir.join("pong.bin"), bytes).unwrap();
    }
}

const PONG_RANDOM: &str = "name = \"roms\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\n\
                           games = [\"Pong\"]\npolicy = \"random\"\nseeds = [1, 2]\n\
                           episodes = 1\n[eval.env]\nmax_episode_frames = 400\n";

#[test]
fn a_missing_or_foreign_rom_is_refused_at_validation_naming_game_file_and_md5() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), PONG_RANDOM).unwrap();
    let pong = sap_harness::env::Game::from_name("Pong").unwrap();
    for (what, bytes) in [("missing", None), ("foreign", Some(&b"not pong"[..]))] {
        let roms = tmp.path().join(what);
        std::fs::create_dir_all(&roms).unwrap();
        rom_folder_with_pong(&roms, bytes);
        for command in [
            &["validate", "m.toml"][..],
            &["run", "m.toml", "--out", "res"],
        ] {
            let o = sap(command, tmp.path())
                .env("ALE_ROMS_DIR", &roms)
                .output()
                .unwrap();
            assert_eq!(
                o.status.code(),
                Some(1),
                "{what} {command:?}: {}",
                stderr(&o)
            );
            let err = stderr(&o);
            assert!(err.contains("games"), "{what} {command:?}: {err}");
            assert!(err.contains("pong.bin"), "{what} {command:?}: {err}");
            assert!(
                err.contains(pong.expected_md5()),
                "{what} {command:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{what} {command:?}: {err}");
        }
    }
}

#[test]
fn cells_record_their_rom_and_collect_refuses_one_game_on_two_rom_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), PONG_RANDOM).unwrap();
    ok(
        &[
            "run", "m.toml", "--out", "res", "--run-id", "a", "--jobs", "2",
        ],
        tmp.path(),
    );
    let cells = tmp.path().join("res/roms/a/cells");
    let mut records: Vec<_> = std::fs::read_dir(&cells)
        .unwrap()
        .map(|e| e.unwrap().path().join("provenance.toml"))
        .collect();
    records.sort();
    assert_eq!(records.len(), 2);
    let pong = sap_harness::env::Game::from_name("Pong").unwrap();
    for r in &records {
        let text = common::text(r);
        assert!(text.contains("[rom]"), "{text}");
        assert!(text.contains(pong.expected_md5()), "{text}");
        assert!(text.contains("ALE 0.12.1"), "{text}");
    }
    let edited =
        common::text(&records[1]).replace(pong.expected_md5(), "0123456789abcdef0123456789abcdef");
    std::fs::write(&records[1], edited).unwrap();
    let o = run(&["collect", "res/roms/a", "--allow-mixed"], tmp.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("played different ROM files"), "{err}");
    assert!(err.contains("0123456789abcdef0123456789abcdef"), "{err}");
    assert!(err.contains(pong.expected_md5()), "{err}");
}
