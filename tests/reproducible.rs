//! The reproducible mode and provenance records: in the mode a training cell and an
//! evaluation grid give byte-identical tables whatever instruction set the process's
//! kernels are capped at (environment variables emulate the CPUs); every run and cell
//! records what its rows depend on; `sap collect` refuses cells computed under different
//! settings and a resume under other settings warns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::text;
use sap_harness::provenance::{self, Provenance, REPRODUCIBLE_ENV, REPRODUCIBLE_UNSET};

/// A Double DQN cell on Pong (Nature CNN: convolutions through oneDNN, Adam), its network
/// under dense and SAP-100 with FGSM (a Monte-Carlo gradient of 2 passes), and a glyph
/// classifier trained in its cell (an MLP: matrix products through MKL) under the same.
const MANIFEST: &str = r#"name = "repro"
seed = 5
reproducible = MODE
[[train]]
name = "ddqn"
family = "atari"
games = ["Pong"]
frames = 1_600
eval_every = 1_600
eval_episodes = 1
checkpoint_every = 1_600
[train.env]
max_episode_frames = 800
[train.ddqn]
learning_starts = 200
replay_capacity = 1_000
epsilon_decay_steps = 300

[[eval]]
policy = "agent"
family = "atari"
train = "ddqn"
episodes = 1
samples = 2
random_episodes = 1
defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0 }]
attacks = [{ kind = "fgsm", gradient_samples = 2 }]
lambdas = [8]
[eval.env]
max_episode_frames = 400

[[robustness]]
task = "glyphs"
hidden = [32, 32]
train_steps = 100
examples = 200
samples = 4
defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0 }]
attack = { kind = "fgsm", gradient_samples = 2 }
lambdas = [0, 16]
"#;

/// The run's tables compared across runs.
const TABLES: [&str; 5] = [
    "train.csv",
    "train_eval.csv",
    "rl_eval.csv",
    "relative_reward.csv",
    "classifier_eval.csv",
];

/// Environment variables that cap libtorch's kernels at an instruction set, as on a CPU
/// whose best is that set. The AVX-512 cap leaves ATen to pick (it would fault on a CPU
/// without AVX-512 if forced).
fn cpu_caps(isa: &str) -> Vec<(&'static str, &'static str)> {
    match isa {
        "avx512" => vec![
            ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"),
            ("MKL_ENABLE_INSTRUCTIONS", "AVX512"),
        ],
        "avx2" => vec![
            ("ONEDNN_MAX_CPU_ISA", "AVX2"),
            ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
            ("ATEN_CPU_CAPABILITY", "avx2"),
        ],
        "sse4.2" => vec![
            ("ONEDNN_MAX_CPU_ISA", "SSE41"),
            ("MKL_ENABLE_INSTRUCTIONS", "SSE4_2"),
            ("ATEN_CPU_CAPABILITY", "default"),
        ],
        _ => unreachable!("{isa}"),
    }
}

/// `sap ARGS` in `cwd` with none of the kernel variables of the caller's environment.
fn sap_clean(args: &[&str], cwd: &Path) -> Command {
    let mut c = common::sap(args, cwd);
    for (k, _) in REPRODUCIBLE_ENV {
        c.env_remove(k);
    }
    for k in REPRODUCIBLE_UNSET {
        c.env_remove(k);
    }
    c
}

/// Runs [`sap_clean`] to completion and asserts success.
fn ok_clean(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) {
    let out = sap_clean(args, cwd)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sap {args:?} with {envs:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the manifest (reproducible or not) with kernels capped at `isa`; returns the run
/// directory.
fn run_capped(root: &Path, reproducible: bool, isa: &str) -> PathBuf {
    let id = format!("{}-{isa}", if reproducible { "r" } else { "d" });
    let path = root.join(format!("{id}.toml"));
    let text = MANIFEST.replace("MODE", if reproducible { "true" } else { "false" });
    std::fs::write(&path, text).unwrap();
    ok_clean(
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            "res",
            "--run-id",
            &id,
            "--jobs",
            "2",
        ],
        root,
        &cpu_caps(isa),
    );
    root.join("res/repro").join(id)
}

/// A table's text without the two wall-clock rate columns of train.csv.
fn table(dir: &Path, name: &str) -> String {
    let t = text(&dir.join(name));
    if name != "train.csv" {
        return t;
    }
    t.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[..f.len() - 2].join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether this CPU can run the reproducible mode; says so on stderr when it cannot.
fn cpu_has_avx2() -> bool {
    let ok = provenance::check_cpu_for_reproducible_mode().is_ok();
    if !ok {
        eprintln!("skipped: this CPU has no AVX2, which the reproducible mode needs");
    }
    ok
}

fn provenance_of(dir: &Path) -> Provenance {
    Provenance::read(&dir.join(provenance::FILE))
        .unwrap()
        .expect("a provenance record")
}

#[test]
fn reproducible_mode_gives_identical_tables_whatever_instruction_set_the_kernels_are_capped_at() {
    if !cpu_has_avx2() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Outside the mode, the caps change the rows: the emulation of another CPU is real.
    // (AVX-512 against SSE4.2: on an AVX2-only CPU the AVX-512 and AVX2 caps are the same.)
    let hi = run_capped(root, false, "avx512");
    let lo = run_capped(root, false, "sse4.2");
    assert!(
        TABLES.iter().any(|t| table(&hi, t) != table(&lo, t)),
        "capping the kernels changed no row; the test would prove nothing"
    );
    assert_ne!(
        provenance_of(&hi).aten_cpu_capability,
        provenance_of(&lo).aten_cpu_capability
    );
    // In the mode, every table is byte-identical under each cap.
    let runs: Vec<PathBuf> = ["avx512", "avx2", "sse4.2"]
        .iter()
        .map(|isa| run_capped(root, true, isa))
        .collect();
    for name in TABLES {
        let first = table(&runs[0], name);
        assert!(first.lines().count() > 1, "{name} has rows");
        for r in &runs[1..] {
            assert_eq!(first, table(r, name), "{name}: {}", r.display());
        }
    }
    for r in &runs {
        let p = provenance_of(r);
        assert!(p.reproducible && p.deterministic, "{p:?}");
        assert_eq!(
            (
                p.aten_cpu_capability.as_str(),
                p.mkl_cbwr.as_str(),
                p.onednn_max_cpu_isa.as_str()
            ),
            ("AVX2", "COMPATIBLE", "AVX2")
        );
        // Every cell records the mode it computed in.
        for cell in std::fs::read_dir(r.join("cells")).unwrap() {
            let c = provenance_of(&cell.unwrap().path());
            assert_eq!(c.rows_key(), p.rows_key());
        }
    }
    // Cells of two runs in the mode merge: copy one run's cells into another and collect.
    let a = &runs[0];
    let b = &runs[2];
    for cell in std::fs::read_dir(b.join("cells")).unwrap() {
        let cell = cell.unwrap();
        let src = cell.path().join(provenance::FILE);
        std::fs::copy(
            &src,
            a.join("cells")
                .join(cell.file_name())
                .join(provenance::FILE),
        )
        .unwrap();
    }
    common::ok(&["collect", a.to_str().unwrap()], root);
}

/// A one-cell-per-seed random-policy run of CartPole; returns its directory.
fn random_run(root: &Path) -> PathBuf {
    std::fs::write(
        root.join("m.toml"),
        r#"name = "m"
seed = 1
[[eval]]
family = "classic"
games = ["CartPole"]
policy = "random"
episodes = 2
seeds = [1, 2, 3]
"#,
    )
    .unwrap();
    common::ok(&["run", "m.toml", "--out", "res", "--run-id", "a"], root);
    root.join("res/m/a")
}

#[test]
fn every_run_and_cell_records_what_its_rows_depend_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = random_run(tmp.path());
    let run = text(&dir.join(provenance::FILE));
    for key in [
        "cpu = ",
        "cpu_features = ",
        "aten_cpu_capability = ",
        "onednn_max_cpu_isa = ",
        "mkl_cbwr = ",
        "torch = \"2.13.0\"",
        "mkl = ",
        "onednn = ",
        "ale = \"ALE 0.12.1 (ale-py's source distribution)\"",
        "sap = ",
        "commit = ",
        "threads = 1",
        "reproducible = false",
        "deterministic = false",
        "device = ",
    ] {
        assert!(run.contains(key), "{key} missing from:\n{run}");
    }
    let cells: Vec<_> = std::fs::read_dir(dir.join("cells")).unwrap().collect();
    assert_eq!(cells.len(), 3);
    for c in cells {
        let p = provenance_of(&c.unwrap().path());
        assert_eq!(p, provenance_of(&dir));
    }
}

#[test]
fn collect_refuses_cells_computed_on_another_kind_of_cpu_unless_told_to_merge_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = random_run(tmp.path());
    // One cell as if it had run on another machine.
    let cell = dir.join("cells/eval-001-CartPole-none-random-s2");
    let mut p = provenance_of(&cell);
    p.cpu = "Intel(R) Xeon(R) Platinum 8480C".to_owned();
    // A capability other than this machine's, whichever it is.
    p.aten_cpu_capability = if p.aten_cpu_capability == "AVX512" {
        "AVX2".to_owned()
    } else {
        "AVX512".to_owned()
    };
    p.write(&cell.join(provenance::FILE)).unwrap();
    let out = common::run(&["collect", dir.to_str().unwrap()], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different settings"), "{err}");
    assert!(err.contains("eval-001-CartPole-none-random-s2"), "{err}");
    assert!(err.contains("cpu: ") && err.contains("8480C"), "{err}");
    assert!(err.contains("aten_cpu_capability"), "{err}");
    assert!(err.contains("--allow-mixed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = common::run(
        &["collect", dir.to_str().unwrap(), "--allow-mixed"],
        tmp.path(),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("merging them anyway"));
    // A damaged record is named.
    std::fs::write(cell.join(provenance::FILE), "cpu = 3\n").unwrap();
    let out = common::run(&["collect", dir.to_str().unwrap()], tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("eval-001-CartPole-none-random-s2/provenance.toml")
            && err.contains("not a provenance record"),
        "{err}"
    );
}

#[test]
fn resuming_a_run_under_other_settings_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = random_run(tmp.path());
    let record = dir.join(provenance::FILE);
    let original = text(&record);
    let mut p = provenance_of(&dir);
    p.cpu = "Another CPU".to_owned();
    p.torch = "2.12.0".to_owned();
    p.write(&record).unwrap();
    let resume = || {
        common::run(
            &["run", "m.toml", "--resume", dir.to_str().unwrap()],
            tmp.path(),
        )
    };
    let out = resume();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("under other settings"), "{err}");
    assert!(
        err.contains("\"Another CPU\"") && err.contains("torch: "),
        "{err}"
    );
    // Under the settings it was started with: no warning.
    std::fs::write(&record, original).unwrap();
    let out = resume();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("other settings"), "{err}");
}

#[test]
fn the_reproducible_mode_on_a_cpu_without_avx2_is_refused_with_the_reason() {
    let e = provenance::check_features("Old CPU", &["sse4.2", "avx"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Old CPU") && e.contains("avx2 and fma"), "{e}");
    assert!(e.contains("reproducible = false"), "{e}");
    assert!(provenance::check_features("New CPU", &["avx", "avx2", "fma"]).is_ok());
}

#[test]
fn a_reproducible_key_that_is_not_a_boolean_is_rejected_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "name = \"b\"\nseed = 1\nreproducible = \"yes\"\n[[eval]]\nfamily = \"classic\"\n\
         games = [\"CartPole\"]\npolicy = \"random\"\nepisodes = 1\n",
    )
    .unwrap();
    let out = common::run(&["validate", "bad.toml"], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("reproducible") && err.contains(":3"),
        "{err}"
    );
}

#[test]
fn slurm_array_tasks_of_a_reproducible_manifest_compute_in_the_mode() {
    if !cpu_has_avx2() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("s.toml"),
        "name = \"s\"\nseed = 1\nreproducible = true\n[[eval]]\nfamily = \"classic\"\n\
         games = [\"CartPole\"]\npolicy = \"random\"\nepisodes = 1\n",
    )
    .unwrap();
    let plan = common::ok(&["plan", "s.toml"], tmp.path());
    assert!(plan.contains("reproducible mode"), "{plan}");
    // What `sap slurm` writes, then what its array task runs, from a clean environment.
    let root = tmp.path();
    ok_clean(
        &["slurm", "s.toml", "--out", "res", "--run-id", "x"],
        root,
        &[],
    );
    let dir = root.join("res/s/x");
    assert!(provenance_of(&dir).reproducible);
    ok_clean(
        &["run-cell", "s.toml", "--cell", "0", "--run-dir", "res/s/x"],
        root,
        &[],
    );
    let cell = provenance_of(&dir.join("cells/eval-000-CartPole-none-random-s1"));
    assert!(cell.reproducible && cell.deterministic, "{cell:?}");
    assert_eq!(cell.aten_cpu_capability, "AVX2");
}
