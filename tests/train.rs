//! Training cells end to end: DDQN solves CartPole, Atari training through the real runtime
//! writes its files, and a killed run resumes without duplicated or lost rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sap_harness::nn::{checkpoint, Architecture, Model};
use sap_harness::record::read_rows;
use sap_harness::table::{TrainEvalRow, TrainRow};

fn sap(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sap"));
    c.args(args).current_dir(cwd).env("SAP_LOG", "warn");
    c
}

fn run_ok(args: &[&str], cwd: &Path) -> String {
    let out = sap(args, cwd).output().expect("sap runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cell_dir(root: &Path, run: &str, cell: &str) -> PathBuf {
    root.join("res")
        .join(run)
        .join("a")
        .join("cells")
        .join(cell)
}

/// Budget stated in the README: 40,000 agent steps with the classic defaults. Learning is
/// judged robustly, as it must hold on any x86-64 CPU (libtorch's kernels differ by CPU, and
/// an RL run turns rounding differences into another agent): each of seeds 1, 2 and 3
/// evaluates 100 greedy episodes every 10,000 steps, and at least 2 of the 3 seeds must
/// reach a phase mean of 195 (Gym's "solved"). Measured over seeds 1-6 with three kernel
/// sets (this CPU's defaults; `MKL_CBWR=COMPATIBLE`; ATen, oneDNN and MKL capped at SSE4.2):
/// the best phase was >= 292 in all 18 runs, while the last phase alone fell below 195 in
/// 2 of 18 (DQN on CartPole can forget after solving), so the final network is not asserted.
#[test]
fn ddqn_solves_cartpole_within_forty_thousand_agent_steps_on_most_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("cartpole.toml"),
        r#"
name = "cartpole"
seed = 1
[[train]]
family = "classic"
games = ["CartPole"]
seeds = [1, 2, 3]
frames = 40_000
eval_every = 10_000
eval_episodes = 100
"#,
    )
    .unwrap();
    run_ok(
        &[
            "run",
            "cartpole.toml",
            "--out",
            "res",
            "--run-id",
            "a",
            "--jobs",
            "2",
        ],
        tmp.path(),
    );
    let rows: Vec<TrainEvalRow> =
        read_rows(&tmp.path().join("res/cartpole/a/train_eval.csv")).unwrap();
    assert_eq!(rows.len(), 3 * 4 * 100, "3 seeds x 4 phases x 100 episodes");
    assert!(rows.iter().all(|r| r.epsilon == 0.0));
    // Per seed, the mean return of each evaluation phase.
    let mut phases: std::collections::BTreeMap<(u64, u64), Vec<f64>> = Default::default();
    for r in &rows {
        phases
            .entry((r.seed, r.step))
            .or_default()
            .push(r.episode_return);
    }
    let best = |seed: u64| {
        phases
            .iter()
            .filter(|((s, _), _)| *s == seed)
            .map(|(_, v)| v.iter().sum::<f64>() / v.len() as f64)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let bests: Vec<f64> = [1, 2, 3].map(best).to_vec();
    let solved = bests.iter().filter(|&&b| b >= 195.0).count();
    assert!(
        solved >= 2,
        "best phase means per seed {bests:?}: fewer than 2 of 3 seeds reached 195"
    );
}

#[test]
fn training_pong_through_the_runtime_writes_train_and_eval_csvs_and_a_loadable_network() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("pong.toml"),
        r#"
name = "pong"
seed = 4
[[train]]
family = "atari"
games = ["Pong"]
preset = "nature"
frames = 4_000          # 1000 agent steps
eval_every = 4_000
eval_episodes = 1
checkpoint_every = 2_000
[train.env]
max_episode_frames = 800   # 200 agent steps: games end inside the budget
[train.ddqn]
replay_capacity = 2_000
learning_starts = 400
[train.runtime]
actors = 2
envs_per_actor = 2
sync_period = 10
"#,
    )
    .unwrap();
    let stdout = run_ok(
        &["run", "pong.toml", "--out", "res", "--run-id", "a"],
        tmp.path(),
    );
    assert!(
        stdout.contains("1 cells run, 0 already complete, 0 failed"),
        "{stdout}"
    );
    let run = tmp.path().join("res/pong/a");
    let train = std::fs::read_to_string(run.join("train.csv")).unwrap();
    assert!(train.starts_with(
        "family,game,preset,seed,step,frames,episode,return,length,epsilon,loss,mean_q,\
         agent_steps_per_s,updates_per_s\n"
    ));
    let rows: Vec<TrainRow> = read_rows(&run.join("train.csv")).unwrap();
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|r| r.game == "Pong" && r.preset == "nature" && r.seed == 4));
    assert!(rows.iter().all(|r| r.frames == 4 * r.step));
    let eval: Vec<TrainEvalRow> = read_rows(&run.join("train_eval.csv")).unwrap();
    assert_eq!(eval.len(), 1);
    assert_eq!((eval[0].step, eval[0].epsilon), (1_000, 0.05));
    let cell = cell_dir(tmp.path(), "pong", "train-000-Pong-nature-s4");
    let mut model = Model::new(Architecture::NatureCnn { actions: 6 }, tch::Device::Cpu);
    checkpoint::load(&mut model, &cell.join("final.safetensors")).unwrap();
    let states: Vec<_> = std::fs::read_dir(cell.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    assert_eq!(
        states,
        ["state-000000001000.toml"],
        "only the newest is kept"
    );
}

/// The newest checkpoint step written so far, if any.
fn newest_checkpoint(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("state-")?
                .strip_suffix(".toml")?
                .parse()
                .ok()
        })
        .max()
}

/// A train.csv's rows without the two wall-clock rate columns.
fn without_rates(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_owned())
        .collect()
}

/// The resume test's manifest with a budget of `frames`.
fn resume_manifest(frames: u32) -> String {
    format!(
        r#"
name = "resume"
seed = 2
[[train]]
family = "classic"
games = ["CartPole"]
frames = {frames}
eval_every = 3_000
eval_episodes = 3
checkpoint_every = 3_000
[train.runtime]
actors = 2
envs_per_actor = 2
"#
    )
}

#[test]
fn a_training_run_killed_mid_segment_resumes_to_the_rows_of_an_uninterrupted_run() {
    // The killed run starts with a budget of 21k frames and resumes with 30k (the budget is
    // raised on resume): its rows must still be those of the run given 30k from the start.
    // Then the finished run is raised to 33k.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("resume.toml"), resume_manifest(30_000)).unwrap();
    std::fs::write(tmp.path().join("short.toml"), resume_manifest(21_000)).unwrap();
    run_ok(
        &["run", "resume.toml", "--out", "res", "--run-id", "whole"],
        tmp.path(),
    );
    let args = ["run", "resume.toml", "--out", "res", "--run-id", "a"];
    let cell = cell_dir(tmp.path(), "resume", "train-000-CartPole-none-s2");
    let short = ["run", "short.toml", "--out", "res", "--run-id", "a"];
    let mut child = sap(&short, tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while newest_checkpoint(&cell.join("checkpoints")).unwrap_or(0) < 9_000 {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Into the next segment, then SIGKILL to the run (its cell dies with it).
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed_from = newest_checkpoint(&cell.join("checkpoints")).unwrap();
    assert!(resumed_from < 21_000, "the run finished before the kill");
    let before: Vec<TrainRow> = read_rows(&cell.join("train.csv")).unwrap();
    assert!(before.iter().any(|r| r.step <= resumed_from));

    run_ok(&args, tmp.path());
    let whole = tmp.path().join("res/resume/whole");
    let resumed = tmp.path().join("res/resume/a");
    // Every training game and evaluation as in the uninterrupted run: none lost, none
    // repeated, the same returns (only the wall-clock rate columns differ).
    let rows = without_rates(&resumed.join("train.csv"));
    assert!(rows.len() > 50, "{} rows", rows.len());
    let expected = without_rates(&whole.join("train.csv"));
    if let Some(i) = (0..rows.len().max(expected.len())).find(|&i| rows.get(i) != expected.get(i)) {
        panic!(
            "train.csv differs first at line {i} (checkpoint at step {resumed_from}):\n  resumed: {:?}\n  whole:   {:?}",
            rows.get(i),
            expected.get(i)
        );
    }
    assert_eq!(
        std::fs::read_to_string(resumed.join("train_eval.csv")).unwrap(),
        std::fs::read_to_string(whole.join("train_eval.csv")).unwrap()
    );
    let eval: Vec<TrainEvalRow> = read_rows(&resumed.join("train_eval.csv")).unwrap();
    let steps: Vec<u64> = eval.iter().map(|r| r.step).collect();
    let expected: Vec<u64> = (1..=10).flat_map(|k| [k * 3_000; 3]).collect();
    assert_eq!(steps, expected);
    // The same final network, byte for byte.
    let net = |run: &Path| {
        std::fs::read(run.join("cells/train-000-CartPole-none-s2/final.safetensors")).unwrap()
    };
    assert!(net(&resumed) == net(&whole), "final networks differ");
    // A third call finds the cell finished and changes nothing.
    let stdout = run_ok(&args, tmp.path());
    assert!(
        stdout.contains("0 cells run, 1 already complete"),
        "{stdout}"
    );
    assert_eq!(without_rates(&resumed.join("train.csv")), rows);
    // A finished cell continues when its budget is raised again, to the rows and network of
    // a run given that budget from the start.
    std::fs::write(tmp.path().join("longer.toml"), resume_manifest(33_000)).unwrap();
    run_ok(
        &["run", "longer.toml", "--out", "res", "--run-id", "whole33"],
        tmp.path(),
    );
    let stdout = run_ok(
        &["run", "longer.toml", "--out", "res", "--run-id", "a"],
        tmp.path(),
    );
    assert!(
        stdout.contains("1 cells run, 0 already complete"),
        "{stdout}"
    );
    let whole33 = tmp.path().join("res/resume/whole33");
    assert_eq!(
        without_rates(&resumed.join("train.csv")),
        without_rates(&whole33.join("train.csv"))
    );
    assert_eq!(
        std::fs::read_to_string(resumed.join("train_eval.csv")).unwrap(),
        std::fs::read_to_string(whole33.join("train_eval.csv")).unwrap()
    );
    assert!(net(&resumed) == net(&whole33), "final networks differ");
    // A change other than a larger budget is another manifest.
    let other = resume_manifest(33_000).replace("eval_episodes = 3", "eval_episodes = 4");
    std::fs::write(tmp.path().join("other.toml"), other).unwrap();
    let out = sap(
        &["run", "other.toml", "--out", "res", "--run-id", "a"],
        tmp.path(),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a run of a different manifest"), "{err}");
}
