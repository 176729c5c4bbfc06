//! The Slurm integration test: a real one-node Slurm (Debian's slurm-wlm and munge, started
//! by `scripts/local-slurm.sh` in a temporary folder) runs a tiny two-game manifest as
//! sbatch arrays; the collected tables equal those of a local `--jobs 2` run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ok, text, TRAINED_GRID};

/// The local cluster; stopped (daemons killed) when dropped, even after a failed assert.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-slurm.sh")
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let out = Command::new(script())
            .arg("start")
            .arg(dir)
            .output()
            .expect("scripts/local-slurm.sh runs");
        assert!(
            out.status.success(),
            "the local Slurm did not start (make test installs slurm-wlm and munge):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = stdout
            .trim()
            .strip_prefix("export SLURM_CONF=")
            .expect("the script prints SLURM_CONF")
            .to_owned();
        Cluster {
            dir: dir.to_path_buf(),
            conf,
        }
    }

    /// Jobs still pending or running.
    fn queued(&self) -> usize {
        let out = Command::new("squeue")
            .arg("-h")
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("squeue runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

/// A CSV's lines without its last two columns (wall-clock rates in `train.csv`).
fn without_rates(path: &Path) -> Vec<String> {
    text(path)
        .lines()
        .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_owned())
        .collect()
}

#[test]
fn slurm_arrays_on_a_local_cluster_give_the_tables_of_a_local_two_job_run() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    std::fs::write(work.join("m.toml"), TRAINED_GRID).unwrap();
    ok(&["run", "m.toml", "--jobs", "2", "--run-id", "local"], work);

    let cluster = Cluster::start(&work.join("slurm"));
    let out = common::sap(
        &[
            "slurm",
            "m.toml",
            "--run-id",
            "cluster",
            "--max-parallel",
            "2",
            "--submit",
        ],
        work,
    )
    .env("SLURM_CONF", &cluster.conf)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One training array (cells 0..=1) and one evaluation array after it.
    assert!(
        stdout.contains("00-train.sbatch: cells 0..=1 (2 array tasks"),
        "{stdout}"
    );
    assert!(
        stdout.contains("01-eval.sbatch: cells 2..=7 (6 array tasks"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("submitted job ").count(), 2, "{stdout}");
    let run_dir = work.join("results/trained/cluster");
    let script = text(&run_dir.join("slurm/01-eval.sbatch"));
    assert!(script.contains("#SBATCH --array=0-5%2"), "{script}");
    assert!(
        script.contains("run-cell") && script.contains("--cell \"$CELL\""),
        "{script}"
    );

    let started = Instant::now();
    while cluster.queued() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the arrays did not finish; logs in {}",
            run_dir.join("slurm/logs").display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let stdout = ok(&["collect", run_dir.to_str().unwrap()], work);
    assert!(stdout.contains("8 of 8 cells complete"), "{stdout}");

    let local = work.join("results/trained/local");
    common::assert_same_files(
        &run_dir,
        &local,
        &[
            "rl_eval.csv",
            "relative_reward.csv",
            "episodes.csv",
            "summary.csv",
            "train_eval.csv",
        ],
        "Slurm and local runs differ",
    );
    assert_eq!(
        without_rates(&run_dir.join("train.csv")),
        without_rates(&local.join("train.csv"))
    );
    drop(cluster);
    let left = Command::new("pgrep")
        .args(["-f", &work.join("slurm").display().to_string()])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "daemons left running");
}
