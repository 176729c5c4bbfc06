//! One writer per run folder and per cell: a second `sap run` of the same folder, or a second
//! writer of a cell, refuses at once instead of writing every row twice.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ok, run, sap};
use sap_harness::manifest::Manifest;
use sap_harness::run_dir::lock;

/// Random-policy Pong: 12 games of 3,000 frames, a few seconds of work in one cell.
const PONG: &str = "name = \"lk\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\n\
                    policy = \"random\"\nepisodes = 12\n[eval.env]\nmax_episode_frames = 3000\n";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn rows(path: &Path) -> usize {
    common::text(path).lines().count() - 1
}

#[test]
fn two_runs_of_one_run_folder_at_once_leave_one_writer_and_no_duplicate_rows() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), PONG).unwrap();
    let args = ["run", "m.toml", "--out", "res", "--run-id", "a"];
    let first = sap(&args, tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run holds the folder's lock (its file names the holder).
    let lock_file = tmp.path().join("res/lk/a").join(lock::FILE);
    let start = Instant::now();
    while std::fs::read_to_string(&lock_file).map_or(true, |t| t.is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(&args, tmp.path());
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(err.contains("res/lk/a is in use by sap run (pid "), "{err}");
    assert!(
        err.contains("two writers would write every row twice"),
        "{err}"
    );
    assert_eq!(rows(&tmp.path().join("res/lk/a/episodes.csv")), 12);
    assert_eq!(
        common::text(&lock_file),
        "",
        "a finished run names no holder"
    );
}

#[test]
fn a_cell_that_another_process_writes_is_refused_by_run_cell() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), PONG).unwrap();
    let m = Manifest::load(&tmp.path().join("m.toml")).unwrap();
    let id = m.plan()[0].id();
    let cell = tmp.path().join("res/lk/a/cells").join(&id);
    std::fs::create_dir_all(&cell).unwrap();
    let held = lock::acquire(&cell, "a test").unwrap();
    let o = run(
        &["run-cell", "m.toml", "--cell", "0", "--run-dir", "res/lk/a"],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("cells/{id} is in use by a test")),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(
        !cell.join("episodes.csv").exists(),
        "the refused writer wrote"
    );
    drop(held);
    ok(
        &["run-cell", "m.toml", "--cell", "0", "--run-dir", "res/lk/a"],
        tmp.path(),
    );
    assert_eq!(rows(&cell.join("episodes.csv")), 12);
}

#[test]
fn a_lock_left_by_a_killed_run_is_taken_over_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), PONG).unwrap();
    ok(
        &["run", "m.toml", "--out", "res", "--run-id", "a"],
        tmp.path(),
    );
    let dir = tmp.path().join("res/lk/a");
    std::fs::write(
        dir.join(lock::FILE),
        "pid = 999999999\nhost = \"gone\"\nholder = \"sap run\"\n",
    )
    .unwrap();
    let o = run(&["run", "m.toml", "--resume", "res/lk/a"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("taking over the lock"), "{err}");
    assert!(err.contains("pid 999999999 on host gone"), "{err}");
}
