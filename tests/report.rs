//! `sap report` on a run that is still going or was killed: complete cells plus the rows of
//! unfinished ones, marked partial, without touching the run's own tables; `--watch` until
//! the run ends; and `index.html`, one page of every plot and table.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ok, sap};
use sap_harness::record::read_rows;
use sap_harness::table::TrainRow;

/// Two CartPole training cells (seeds 1 and 2), run one after the other.
const MANIFEST: &str = r#"
name = "live"
seed = 2
[[train]]
family = "classic"
games = ["CartPole"]
frames = 6_000
seeds = [1, 2]
eval_every = 3_000
eval_episodes = 3
checkpoint_every = 3_000
[train.runtime]
actors = 1
envs_per_actor = 2
"#;

const FIRST: &str = "train-000-CartPole-none-s1";
const SECOND: &str = "train-001-CartPole-none-s2";

/// Complete data lines of a CSV file.
fn data_lines(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.matches('\n').count().saturating_sub(1)
}

/// Every PNG of the report folder, by name.
fn pngs(report: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(report)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    out.sort();
    out
}

/// Starts `sap run live.toml` as run `id` (cells one at a time) and kills it once `file`
/// of cell `cell` holds `lines` rows; returns the run folder.
fn killed_run(root: &Path, id: &str, cell: &str, file: &str, lines: usize) -> PathBuf {
    std::fs::write(root.join("live.toml"), MANIFEST).unwrap();
    let run_dir = root.join("res/live").join(id);
    let mut child = sap(&run_args(id), root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let path = run_dir.join("cells").join(cell).join(file);
    let start = Instant::now();
    while data_lines(&path) < lines {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no rows in {file}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    run_dir
}

/// `sap run live.toml` as run `id`, one cell at a time.
fn run_args(id: &str) -> [&str; 8] {
    [
        "run",
        "live.toml",
        "--out",
        "res",
        "--run-id",
        id,
        "--jobs",
        "1",
    ]
}

#[test]
fn a_report_of_a_run_killed_mid_way_renders_its_rows_so_far_and_marks_the_partial_cells() {
    let tmp = tempfile::tempdir().unwrap();
    // Killed once the first cell is complete and the second has recorded 20 games.
    let run_dir = killed_run(tmp.path(), "r", SECOND, "train.csv", 20);
    let args = run_args("r");
    let second = run_dir.join("cells").join(SECOND);
    assert!(run_dir
        .join("cells")
        .join(FIRST)
        .join("done.toml")
        .is_file());
    assert!(
        !second.join("done.toml").exists(),
        "the second cell finished"
    );
    let so_far = data_lines(&second.join("train.csv"));

    let listing = ok(&["report", run_dir.to_str().unwrap()], tmp.path());
    let report = run_dir.join("report");
    assert!(listing.contains("index.html"), "{listing}");
    // The run's own tables are not written: they stay `sap collect`'s.
    for name in ["train.csv", "train_eval.csv", "collected.toml"] {
        assert!(!run_dir.join(name).exists(), "{name} written into the run");
    }
    // The report's tables hold every row of the complete cell and the second's so far.
    let rows: Vec<TrainRow> = read_rows(&report.join("tables/train.csv")).unwrap();
    let first: Vec<TrainRow> =
        read_rows(&run_dir.join("cells").join(FIRST).join("train.csv")).unwrap();
    let (ones, twos): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.seed == 1);
    assert_eq!(ones.len(), first.len());
    assert!(twos.len() >= so_far && twos.len() >= 20, "{}", twos.len());
    assert_eq!(ones.last().unwrap().step, first.last().unwrap().step);

    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("**Partial report: the run is not finished.**"),
        "{md}"
    );
    assert!(md.contains("Cells complete: 1 of 2"), "{md}");
    assert!(md.contains("Started but not complete: 1"), "{md}");
    assert!(md.contains(&format!("| `{SECOND}` | train.csv: ")), "{md}");
    assert!(!md.contains(&format!("| `{FIRST}` |")), "{md}");
    assert!(md.contains("| CartPole | none | 2 *(partial)* |"), "{md}");
    assert!(md.contains("| CartPole | none | 1 |"), "{md}");
    assert!(
        md.contains("Double DQN training (partial: seed 2 unfinished)"),
        "{md}"
    );

    // One page: every plot, the markdown's tables, the CSV tables with links to the files.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(!html.contains("<script"), "the page needs no script");
    let plots = pngs(&report);
    assert!(!plots.is_empty());
    for png in &plots {
        assert!(
            html.contains(&format!("src=\"{png}\"")),
            "{png} not on the page"
        );
        let bytes = std::fs::read(report.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
    }
    assert!(
        html.contains("Not finished: 1 of 2 cells complete"),
        "{html}"
    );
    assert!(html.contains(">2 <em>(partial)</em></td>"), "{html}");
    assert!(html.contains("<a href=\"tables/train.csv\"><code>train.csv</code></a>"));
    assert!(html.contains("<a href=\"tables/train_eval.csv\">"));
    assert!(html.ends_with("</html>\n"));

    // Resumed to the end, the run is collected and its report drawn from its own tables;
    // `--watch` on a finished run draws once and returns.
    ok(&args, tmp.path());
    let out = ok(
        &["report", run_dir.to_str().unwrap(), "--watch", "1"],
        tmp.path(),
    );
    assert!(
        out.contains("finished, all 2 cells complete and collected"),
        "{out}"
    );
    assert!(
        !report.join("tables").exists(),
        "the partial tables are left"
    );
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(!md.contains("partial"), "{md}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("Finished: all 2 cells complete and collected"));
    assert!(html.contains("<a href=\"../train.csv\"><code>train.csv</code></a>"));
}

#[test]
fn watching_an_unfinished_run_redraws_until_it_is_collected_then_returns() {
    let tmp = tempfile::tempdir().unwrap();
    // A run stopped with its first cell under way.
    let run_dir = killed_run(tmp.path(), "w", FIRST, "train.csv", 5);
    let args = run_args("w");
    // The watch draws the unfinished run, then the run is resumed to its end: the watch
    // returns by itself once the run is collected.
    let mut watch = sap(
        &["report", run_dir.to_str().unwrap(), "--watch", "1"],
        tmp.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first_line = lines.next().unwrap().unwrap();
    assert!(
        first_line.contains("0 of 2 cells complete; next redraw in 1 s"),
        "{first_line}"
    );
    let html = std::fs::read_to_string(run_dir.join("report/index.html")).unwrap();
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"1\">"));
    ok(&args, tmp.path());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(watch.wait().unwrap().success());
    assert!(
        rest.last()
            .unwrap()
            .ends_with("finished, all 2 cells complete and collected"),
        "{rest:?}"
    );
    let html = std::fs::read_to_string(run_dir.join("report/index.html")).unwrap();
    assert!(html.contains("Finished: all 2 cells complete and collected"));
    // The finished page does not reload itself.
    assert!(!html.contains("http-equiv=\"refresh\""));
}

#[test]
fn watch_refuses_zero_seconds_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::run(&["report", "nowhere", "--watch", "0"], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--watch"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Makes a complete cell look killed mid-way: no completion mark, and only the first `keep`
/// rows of `file`.
fn unfinish(cell: &Path, file: &str, keep: usize) {
    std::fs::remove_file(cell.join("done.toml")).unwrap();
    let text = std::fs::read_to_string(cell.join(file)).unwrap();
    let lines: Vec<&str> = text.lines().take(keep + 1).collect();
    std::fs::write(cell.join(file), lines.join("\n") + "\n").unwrap();
}

#[test]
fn an_unfinished_agent_cell_marks_its_relative_reward_row_and_the_rows_scaled_by_it() {
    let tmp = tempfile::tempdir().unwrap();
    common::random_network(&tmp.path().join("breakout.safetensors"), 4, 3);
    let manifest = r#"name = "agents"
seed = 4

[[eval]]
policy = "agent"
family = "atari"
checkpoints = { Breakout = "breakout.safetensors" }
episodes = 3
random_episodes = 2
defenses = [{ kind = "dense" }]
attacks = [{ kind = "fgsm", gradient_samples = 1 }]
lambdas = [0, 8]

[eval.env]
max_episode_frames = 300
"#;
    std::fs::write(tmp.path().join("agents.toml"), manifest).unwrap();
    ok(
        &["run", "agents.toml", "--out", "res", "--run-id", "a"],
        tmp.path(),
    );
    let run_dir = tmp.path().join("res/agents/a");
    let cell = |part: &str| {
        std::fs::read_dir(run_dir.join("cells"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(part))
            .unwrap_or_else(|| panic!("no cell {part}"))
    };
    let report = |run_dir: &Path| {
        ok(&["report", run_dir.to_str().unwrap()], tmp.path());
        std::fs::read_to_string(run_dir.join("report/report.md")).unwrap()
    };
    let md = report(&run_dir);
    assert!(!md.contains("partial"), "{md}");
    assert!(md.contains("| dense | 8 | 3 |"), "{md}");

    // The attacked cell stopped after one episode: its row is partial, the clean one not.
    let l8 = cell("fgsm-l8");
    let saved: Vec<(&str, Vec<u8>)> = ["done.toml", "rl_eval.csv"]
        .into_iter()
        .map(|f| (f, std::fs::read(l8.join(f)).unwrap()))
        .collect();
    unfinish(&l8, "rl_eval.csv", 1);
    let md = report(&run_dir);
    assert!(md.contains("Cells complete: 2 of 3"), "{md}");
    assert!(md.contains("rl_eval.csv: 1 |"), "{md}");
    assert!(md.contains("| dense *(partial)* | 8 | 1 |"), "{md}");
    assert!(md.contains("| dense | 0 | 3 |"), "{md}");
    for (f, bytes) in saved {
        std::fs::write(l8.join(f), bytes).unwrap();
    }

    // The dense clean cell instead: every row scaled by its mean is partial too.
    unfinish(&cell("fgsm-l0"), "rl_eval.csv", 2);
    let md = report(&run_dir);
    assert!(md.contains("Cells complete: 2 of 3"), "{md}");
    assert!(md.contains("| dense *(partial)* | 0 | 2 |"), "{md}");
    assert!(md.contains("| dense *(partial)* | 8 | 3 |"), "{md}");
    // The run's own tables still hold the complete run.
    let own = std::fs::read_to_string(run_dir.join("relative_reward.csv")).unwrap();
    let partial =
        std::fs::read_to_string(run_dir.join("report/tables/relative_reward.csv")).unwrap();
    assert_ne!(own, partial);
    assert_eq!(own.lines().count(), partial.lines().count());
}
