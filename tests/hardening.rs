//! Bad input and faults: each test reproduces one way the harness used to fail silently,
//! panic or lose work, and asserts the clear refusal or the intact result instead. The last
//! test mutates the shipped manifests a few hundred ways.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fake_cifar, ok, run, sap};
use sap_harness::manifest::{Manifest, ManifestError};
use sap_harness::nn::{checkpoint, Architecture, Model};
use sap_harness::tch::{Device, Tensor};

/// The shipped manifests laid out as in the repository, with the shipped agent and (fake)
/// data folders beside.
fn shipped_layout(root: &Path) -> Vec<PathBuf> {
    let exp = root.join("experiments");
    std::fs::create_dir_all(&exp).unwrap();
    fake_cifar(&root.join("data/cifar-synth"));
    fake_cifar(&root.join("data/cifar-10-batches-bin"));
    common::copy_models(root);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut out = Vec::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let dest = exp.join(p.file_name().unwrap());
            std::fs::copy(&p, &dest).unwrap();
            out.push(dest);
        }
    }
    out.sort();
    assert!(out.len() >= 5, "the shipped manifests: {out:?}");
    out
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_panic(text: &str) {
    assert!(
        !text.contains("panicked") && !text.contains("backtrace"),
        "{text}"
    );
}

/// A Nature CNN checkpoint for Pong's 6 minimal actions.
fn nature_checkpoint(path: &Path) {
    common::random_network(path, 6, 1);
}

/// A random-policy CartPole job: a few seconds per cell.
const CARTPOLE_RANDOM: &str = r#"name = "tiny"
seed = 4
[[eval]]
family = "classic"
games = ["CartPole"]
episodes = 3
seeds = [1, 2]
"#;

#[test]
fn resolved_manifests_load_again_to_the_same_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let mut manifests = shipped_layout(tmp.path());
    nature_checkpoint(&tmp.path().join("pong.safetensors"));
    sap_harness::tch::manual_seed(2);
    let resnet = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
    checkpoint::save(&resnet, &tmp.path().join("resnet.safetensors")).unwrap();
    let extra = [
        (
            "agent-files.toml",
            r#"name = "files"
seed = 1
[[eval]]
policy = "agent"
family = "atari"
checkpoints = { Pong = "pong.safetensors" }
episodes = 1
defenses = [{ kind = "dense" }, { kind = "sap", frac = 0.5, sampling = "independent" }]
attacks = [{ kind = "pgd", steps = 3, step_size = 1.5 }]
lambdas = [0, 2]
"#,
        ),
        (
            "cifar-files.toml",
            r#"name = "cifar-files"
seed = 1
[[cifar_eval]]
checkpoints = { mine = "resnet.safetensors" }
data = "data/cifar-synth"
examples = 10
defenses = [{ kind = "dropout", p = 0.25 }, { kind = "gaussian", sigma = 0.5 }]
attacks = [{ kind = "eot-pgd" }]
lambdas = [1]
"#,
        ),
        (
            "dense-only.toml",
            r#"name = "dense-only"
seed = 1
[[cifar_train]]
data = "data/cifar-synth"
variants = ["dense"]
iterations = 10
[[robustness]]
task = "glyphs"
defenses = [{ kind = "dense" }]
attack = { kind = "fgsm" }
lambdas = [0]
"#,
        ),
    ];
    for (name, text) in extra {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        manifests.push(p);
    }
    for path in &manifests {
        let m = Manifest::load(path).unwrap_or_else(|e| panic!("{e}"));
        let run_dir = tmp.path().join("runs").join(path.file_stem().unwrap());
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("manifest.resolved.toml"), m.to_toml()).unwrap();
        let again = Manifest::load_run(&run_dir)
            .unwrap_or_else(|e| panic!("{}: the resolved copy is refused: {e}", path.display()));
        assert_eq!(again, m, "{}", path.display());
        assert_eq!(again.to_toml(), m.to_toml(), "{}", path.display());
        let ids = |m: &Manifest| m.plan().iter().map(|c| c.id()).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&m), "{}", path.display());
    }
}

#[test]
fn cells_run_the_run_directorys_copy_so_editing_the_manifest_mid_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), CARTPOLE_RANDOM).unwrap();
    ok(
        &["run-cell", "m.toml", "--cell", "0", "--run-dir", "r"],
        tmp.path(),
    );
    // The user edits the manifest while the run goes on.
    std::fs::write(tmp.path().join("m.toml"), "name = \"edited\"\nseed =").unwrap();
    let out = ok(&["run-cell", "--cell", "1", "--run-dir", "r"], tmp.path());
    assert!(out.contains("complete"), "{out}");
    // Naming the edited file only warns.
    std::fs::remove_file(
        tmp.path()
            .join("r/cells/eval-001-CartPole-none-random-s2/done.toml"),
    )
    .unwrap();
    let o = run(
        &["run-cell", "m.toml", "--cell", "1", "--run-dir", "r"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("runs the run directory's copy"),
        "{}",
        stderr(&o)
    );
    let collected = ok(&["collect", "r"], tmp.path());
    assert!(collected.contains("2 of 2 cells complete"), "{collected}");
}

#[test]
fn a_manifest_given_through_a_pipe_runs_with_several_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), CARTPOLE_RANDOM).unwrap();
    let sap = env!("CARGO_BIN_EXE_sap");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{sap}' run <(cat m.toml) --out res --run-id p --jobs 2"
        ))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("2 cells run"), "{stdout}");
}

/// The manifest error for `text`, or a panic.
fn refused(text: &str) -> ManifestError {
    Manifest::parse(Path::new("exp.toml"), text).expect_err(text)
}

/// The manifest error for `text` read as `dir/exp.toml`, or a panic.
fn refused_in(dir: &Path, text: &str) -> ManifestError {
    Manifest::parse(&dir.join("exp.toml"), text).expect_err(text)
}

#[test]
fn nan_and_infinity_are_refused_for_every_float_key_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cifar(&tmp.path().join("d"));
    let train = |key: &str, table: &str, v: &str| {
        format!(
            "name = \"t\"\nseed = 1\n[[train]]\nfamily = \"classic\"\ngames = [\"CartPole\"]\n\
             frames = 2000\n[train.{table}]\n{key} = {v}\n"
        )
    };
    let cifar = |key: &str, v: &str| {
        format!(
            "name = \"c\"\nseed = 1\n[[cifar_train]]\ndata = \"d\"\nvariants = [\"adv\"]\n{key} = {v}\n"
        )
    };
    let atari_env = |v: &str| {
        format!(
            "name = \"e\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\nepisodes = 1\n\
             [eval.env]\nrepeat_action_probability = {v}\n"
        )
    };
    let pgd = |v: &str| {
        format!(
            "name = \"r\"\nseed = 1\n[[robustness]]\ntask = \"glyphs\"\ndefenses = [{{ kind = \"dense\" }}]\n\
             attack = {{ kind = \"pgd\", step_size = {v} }}\nlambdas = [1]\n"
        )
    };
    for v in ["nan", "inf", "-inf", "+inf", "-nan"] {
        let mut cases: Vec<(String, &str)> = Vec::new();
        for key in [
            "gamma",
            "lr",
            "optimizer_eps",
            "epsilon_start",
            "epsilon_end",
            "eval_epsilon",
        ] {
            cases.push((train(key, "ddqn", v), key));
        }
        for key in [
            "lr",
            "momentum",
            "weight_decay",
            "lr_decay",
            "adv_fraction",
            "adv_lambda",
        ] {
            cases.push((cifar(key, v), key));
        }
        cases.push((atari_env(v), "repeat_action_probability"));
        cases.push((pgd(v), "step_size"));
        for (text, key) in cases {
            let e = refused_in(tmp.path(), &text);
            let shown = e.to_string();
            assert!(
                e.key.as_deref().is_some_and(|k| k.ends_with(key)),
                "{key} = {v}: {shown}"
            );
            assert!(e.position.is_some(), "{shown}");
        }
    }
}

#[test]
fn a_diverging_training_run_fails_its_cell_naming_the_step_and_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = r#"name = "diverge"
seed = 1
[[train]]
family = "classic"
games = ["CartPole"]
frames = 3000
eval_every = 3000
eval_episodes = 1
[train.ddqn]
learning_starts = 100
batch_size = 16
lr = 1e30
"#;
    std::fs::write(tmp.path().join("m.toml"), manifest).unwrap();
    let o = run(
        &["run", "m.toml", "--out", "res", "--run-id", "x"],
        tmp.path(),
    );
    assert!(
        !o.status.success(),
        "a diverged run must not report success"
    );
    let err = stderr(&o);
    assert!(err.contains("training diverged at agent step"), "{err}");
    assert!(err.contains("loss"), "{err}");
    let cell = tmp.path().join("res/diverge/x/cells/000-CartPole-s1");
    assert!(!cell.join("done.toml").exists());
    let rows = std::fs::read_to_string(cell.join("train.csv")).unwrap_or_default();
    assert!(!rows.contains("NaN") && !rows.contains("inf"), "{rows}");
}

#[test]
fn checkpoints_with_nan_weights_are_refused_at_validation_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pong.safetensors");
    nature_checkpoint(&path);
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    let (name, t) = &mut tensors[1];
    let poisoned_name = name.clone();
    let _ = t.get(0).fill_(f64::NAN);
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let manifest = r#"name = "nan"
seed = 1
[[eval]]
policy = "agent"
family = "atari"
checkpoints = { Pong = "pong.safetensors" }
episodes = 1
defenses = [{ kind = "dense" }]
attacks = [{ kind = "fgsm" }]
lambdas = [0]
"#;
    std::fs::write(tmp.path().join("m.toml"), manifest).unwrap();
    for cmd in ["validate", "run"] {
        let o = run(&[cmd, "m.toml"], tmp.path());
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("eval[0].checkpoints.Pong"), "{err}");
        assert!(
            err.contains(&format!("`{poisoned_name}` holds NaN or infinite values")),
            "{err}"
        );
        assert_no_panic(&err);
    }
    // A network loaded directly is refused too.
    let mut model = Model::new(Architecture::NatureCnn { actions: 6 }, Device::Cpu);
    let e = checkpoint::load(&mut model, &path).unwrap_err().to_string();
    assert!(e.contains(&poisoned_name), "{e}");
}

#[test]
fn writing_to_a_full_stdout_reports_an_error_instead_of_panicking() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = sap(&["games"], tmp.path()).stdout(full).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("error: writing to standard output"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn collect_refuses_a_complete_cell_whose_rows_were_truncated_emptied_deleted_or_duplicated() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), CARTPOLE_RANDOM).unwrap();
    ok(
        &["run", "m.toml", "--out", "res", "--run-id", "a"],
        tmp.path(),
    );
    let run_dir = tmp.path().join("res/tiny/a");
    let cell = "eval-001-CartPole-none-random-s2";
    let csv = run_dir.join("cells").join(cell).join("episodes.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 4, "{original}");
    let damages: [(&str, Option<String>); 4] = [
        ("truncated", Some(format!("{}\n{}\n", lines[0], lines[1]))),
        ("emptied", Some(String::new())),
        ("deleted", None),
        ("duplicated", Some(format!("{original}{}\n", lines[3]))),
    ];
    for (what, content) in damages {
        match &content {
            Some(c) => std::fs::write(&csv, c).unwrap(),
            None => std::fs::remove_file(&csv).unwrap(),
        }
        let o = run(&["collect", "res/tiny/a"], tmp.path());
        assert!(!o.status.success(), "{what}: collect succeeded");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("cell {cell}: episodes.csv")),
            "{what}: {err}"
        );
        assert!(err.contains("3 rows"), "{what}: {err}");
        std::fs::write(&csv, &original).unwrap();
    }
    ok(&["collect", "res/tiny/a"], tmp.path());
}

#[test]
fn sap_frac_that_draws_nothing_or_is_absurdly_large_is_refused() {
    let robustness = |frac: &str| {
        format!(
            "name = \"r\"\nseed = 1\n[[robustness]]\ntask = \"glyphs\"\nhidden = [64, 16]\n\
             defenses = [{{ kind = \"sap\", frac = {frac} }}]\nattack = {{ kind = \"fgsm\" }}\nlambdas = [1]\n"
        )
    };
    let e = refused(&robustness("1e-300")).to_string();
    assert!(e.contains("robustness[0].defenses[0].frac"), "{e}");
    assert!(e.contains("0 draws on the narrowest hidden layer"), "{e}");
    assert!(e.contains("(16 units)"), "{e}");
    // round(0.04 x 16) = 1 draw: allowed.
    Manifest::parse(Path::new("exp.toml"), &robustness("0.04")).unwrap();
    let e = refused(&robustness("0.02")).to_string();
    assert!(e.contains("allowed: frac >= 0.03125"), "{e}");
    for huge in ["1e30", "17"] {
        let e = refused(&robustness(huge)).to_string();
        assert!(e.contains("dense to f32 precision"), "{e}");
        assert!(e.contains("0 < frac <= 16"), "{e}");
    }
    // The agent's network: the Nature CNN's 512-unit layer.
    let agent = "name = \"a\"\nseed = 1\n[[train]]\nname = \"t\"\nfamily = \"atari\"\n\
                 games = [\"Pong\"]\nframes = 100000\n[[eval]]\npolicy = \"agent\"\n\
                 family = \"atari\"\ntrain = \"t\"\nepisodes = 1\n\
                 defenses = [{ kind = \"sap\", frac = 0.0005 }]\n\
                 attacks = [{ kind = \"fgsm\" }]\nlambdas = [0]\n";
    let e = refused(agent).to_string();
    assert!(e.contains("fully connected layer (512 units)"), "{e}");
}

#[test]
fn thread_counts_beyond_four_per_core_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), CARTPOLE_RANDOM).unwrap();
    for args in [
        vec!["run", "m.toml", "--threads-per-job", "2147483648"],
        vec!["run", "m.toml", "--threads-per-job", "100000"],
        vec![
            "run-cell",
            "m.toml",
            "--cell",
            "0",
            "--run-dir",
            "r",
            "--threads",
            "100000",
        ],
        vec!["slurm", "m.toml", "--threads-per-job", "100000"],
    ] {
        let o = run(&args, tmp.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("allowed: 1..="), "{args:?}: {err}");
        assert_no_panic(&err);
    }
    assert!(!tmp.path().join("r").exists());
    assert!(!tmp.path().join("results").exists());
}

#[test]
fn oversized_and_non_file_inputs_are_named_for_what_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let o = run(&["validate", "/dev/zero"], tmp.path());
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("larger than 4 MiB"), "{}", stderr(&o));
    let o = run(&["validate", "."], tmp.path());
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    std::fs::create_dir(tmp.path().join("net.safetensors")).unwrap();
    for (file, what) in [
        ("net.safetensors", "is a folder, not a file"),
        ("/dev/zero", "is not a regular file"),
        ("missing.safetensors", "does not exist"),
    ] {
        let m = format!(
            "name = \"c\"\nseed = 1\n[[robustness]]\ntask = \"glyphs\"\ncheckpoint = \"{file}\"\n\
             defenses = [{{ kind = \"dense\" }}]\nattack = {{ kind = \"fgsm\" }}\nlambdas = [0]\n"
        );
        std::fs::write(tmp.path().join("m.toml"), m).unwrap();
        let o = run(&["validate", "m.toml"], tmp.path());
        let err = stderr(&o);
        assert!(!o.status.success());
        assert!(err.contains("robustness[0].checkpoint"), "{err}");
        assert!(err.contains(what), "{file}: {err}");
    }
}

#[test]
fn truncated_values_control_characters_overflow_and_bad_utf8_get_located_messages() {
    let e = refused("name = \"a\"\nseed = ");
    assert_eq!(e.key.as_deref(), Some("seed"), "{e}");
    assert!(
        e.message
            .contains("the file ends where a value was expected"),
        "{e}"
    );

    let e = refused("name = \"a\u{1}\"\nseed = 1\n");
    assert_eq!(e.position, Some((1, 10)), "{e}");
    assert!(e.message.contains("control character U+0001"), "{e}");
    assert_eq!(e.key.as_deref(), Some("name"), "{e}");

    let e = refused("name = \"a\"\nseed = 99999999999999999999999\n");
    assert_eq!(e.key.as_deref(), Some("seed"), "{e}");
    assert!(e.message.contains("allowed: an integer"), "{e}");

    let e = refused(
        "name = \"a\"\nseed = 1\n[[eval]]\nfamily = \"classic\"\ngames = [\"CartPole\"]\n\
         episodes = 99999999999999999999\n",
    );
    assert_eq!(e.key.as_deref(), Some("eval.episodes"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("u.toml"),
        b"name = \"a\"\nseed = 1 # caf\xe9\n",
    )
    .unwrap();
    let e = Manifest::load(&tmp.path().join("u.toml")).unwrap_err();
    assert_eq!(e.position, Some((2, 15)), "{e}");
    assert!(e.message.contains("invalid UTF-8 at byte 25"), "{e}");
}

#[test]
fn run_cell_refuses_an_out_of_range_cell_before_creating_anything() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), CARTPOLE_RANDOM).unwrap();
    let o = run(
        &["run-cell", "m.toml", "--cell", "99999", "--run-dir", "r"],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--cell 99999 is out of range; allowed: 0..=1"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("r").exists());
}

#[test]
fn saved_networks_are_readable_by_everyone_like_the_other_outputs() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("final.safetensors");
    nature_checkpoint(&path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let csv = tmp.path().join("x.csv");
    sap_harness::record::write_atomic(&csv, b"a\n").unwrap();
    let csv_mode = std::fs::metadata(&csv).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, csv_mode, "safetensors {mode:o}, csv {csv_mode:o}");
    assert_ne!(mode & 0o044, 0, "{mode:o}");
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn plan_shows_a_manifest_whose_data_folder_is_missing_and_validate_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/paper_cifar.toml");
    std::fs::create_dir(tmp.path().join("experiments")).unwrap();
    std::fs::copy(src, tmp.path().join("experiments/paper_cifar.toml")).unwrap();
    let o = run(&["plan", "experiments/paper_cifar.toml"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("key `cifar_train[0].data`"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("cifar-train-000-dense-s1"));
    let o = run(&["validate", "experiments/paper_cifar.toml"], tmp.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("key `cifar_train[0].data`"),
        "{}",
        stderr(&o)
    );
}

/// Mutants of a manifest's text: deleted lines, values replaced by other types and by
/// NaN, infinities, huge, zero and negative numbers, misspelt keys, truncations.
fn mutants(text: &str, rng: &mut u64) -> Vec<String> {
    let mut next = move || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let lines: Vec<&str> = text.lines().collect();
    let join = |ls: &[String]| ls.join("\n") + "\n";
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut out = Vec::new();
    let values = [
        "nan",
        "inf",
        "-inf",
        "1e308",
        "0",
        "-1",
        "0.0",
        "-0.5",
        "18446744073709551615",
        "99999999999999999999",
        "4294967296",
        "\"text\"",
        "true",
        "[]",
        "{}",
        "[1, \"a\"]",
        "1e-300",
        "2.5",
    ];
    let keyed: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = lines[i].trim_start();
            !l.starts_with('#') && !l.starts_with('[') && l.contains('=')
        })
        .collect();
    for &i in &keyed {
        // Each keyed line: a deleted line, a misspelt key and four replaced values.
        let mut deleted = owned.clone();
        deleted.remove(i);
        out.push(join(&deleted));
        let (key, _) = lines[i].split_once('=').unwrap();
        let mut misspelt = owned.clone();
        misspelt[i] = lines[i].replacen(key.trim(), &format!("{}x", key.trim()), 1);
        out.push(join(&misspelt));
        for _ in 0..4 {
            let v = values[(next() % values.len() as u64) as usize];
            let mut changed = owned.clone();
            changed[i] = format!("{}= {v}", key);
            out.push(join(&changed));
        }
    }
    for (i, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with('[') {
            let mut deleted = owned.clone();
            deleted.remove(i);
            out.push(join(&deleted));
        }
    }
    for _ in 0..8 {
        let mut cut = (next() % text.len() as u64) as usize;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(text[..cut].to_owned());
    }
    out
}

#[test]
fn shipped_manifest_mutants_never_panic_or_hang_and_every_rejection_is_located() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = shipped_layout(tmp.path());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let (mut total, mut rejected) = (0usize, 0usize);
        let mut failures = Vec::new();
        for path in &manifests {
            let text = std::fs::read_to_string(path).unwrap();
            for mutant in mutants(&text, &mut rng) {
                total += 1;
                let p = path.clone();
                let result = std::panic::catch_unwind(|| {
                    Manifest::parse(&p, &mutant).map(|m| {
                        let resolved = m.to_toml();
                        let plan = m.plan().len();
                        (resolved, plan)
                    })
                });
                match result {
                    Err(_) => {
                        failures.push(format!("panic on mutant of {}:\n{mutant}", p.display()))
                    }
                    Ok(Err(e)) => {
                        rejected += 1;
                        let located = e.position.is_some() || e.key.is_some();
                        if e.file != p || !located || e.message.trim().is_empty() {
                            failures.push(format!("unlocated: {e}\n--- mutant:\n{mutant}"));
                        }
                    }
                    Ok(Ok(_)) => {}
                }
            }
        }
        tx.send((total, rejected, failures)).unwrap();
    });
    let (total, rejected, failures) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the mutants are checked within a minute (no hang)");
    assert!(total >= 300, "{total} mutants");
    assert!(rejected >= total / 3, "{rejected} of {total} rejected");
    assert!(
        failures.is_empty(),
        "{} of {total} mutants:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}

#[test]
fn a_shipped_network_that_is_missing_or_altered_is_named_with_its_expected_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let net = models.join("pong.safetensors");
    nature_checkpoint(&net);
    let digest = sap_harness::nn::digest::sha256_hex(&net).unwrap();
    std::fs::write(
        models.join("SHA256SUMS"),
        format!("{digest}  pong.safetensors\n"),
    )
    .unwrap();
    let manifest = tmp.path().join("shipped.toml");
    std::fs::write(
        &manifest,
        r#"name = "shipped"
seed = 1
[[eval]]
policy = "agent"
family = "atari"
checkpoints = { Pong = "models/pong.safetensors" }
episodes = 1
defenses = [{ kind = "dense" }]
attacks = [{ kind = "fgsm" }]
lambdas = [0]
"#,
    )
    .unwrap();
    Manifest::load(&manifest).unwrap_or_else(|e| panic!("the intact file is refused: {e}"));
    // One byte changed, as a damaged download or an edit would.
    let mut bytes = std::fs::read(&net).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&net, &bytes).unwrap();
    let e = Manifest::load(&manifest).unwrap_err().to_string();
    assert!(e.contains("pong.safetensors") && e.contains(&digest), "{e}");
    assert!(e.contains("altered or damaged"), "{e}");
    std::fs::remove_file(&net).unwrap();
    let e = Manifest::load(&manifest).unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains(&digest), "{e}");
}
