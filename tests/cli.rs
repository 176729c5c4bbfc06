//! The real `sap` binary on manifests in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn sap(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sap"))
        .args(args)
        .current_dir(cwd)
        .env("SAP_LOG", "warn")
        // A rates file the user saved must not change what `sap plan` prints here.
        .env("XDG_CACHE_HOME", "/nonexistent/sap-test-cache")
        .output()
        .expect("sap runs")
}

/// The quickstart manifest, laid out as `make quickstart` leaves it: a copy in
/// `experiments/` next to the shipped agent in `models/` and the synthetic CIFAR-10 set in
/// `data/cifar-synth` (written once, under cargo's temporary folder for tests). The shipped
/// agent's grid plays one game of at most 800 frames per cell here, to keep the test short.
fn quickstart() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart-layout");
        std::fs::create_dir_all(root.join("experiments")).unwrap();
        std::fs::create_dir_all(root.join("models")).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["Breakout-dopamine-v5-ddqn.safetensors", "SHA256SUMS"] {
            std::fs::copy(
                repo.join("models").join(file),
                root.join("models").join(file),
            )
            .unwrap();
        }
        let manifest = root.join("experiments/quickstart.toml");
        let original = std::fs::read_to_string(repo.join("experiments/quickstart.toml")).unwrap();
        let short = original
            .replace("episodes = 6             # games per cell", "episodes = 1")
            .replace("random_episodes = 10\n", "random_episodes = 1\n")
            .replace("max_episode_frames = 10_000", "max_episode_frames = 800");
        assert_eq!(
            short.matches("max_episode_frames = 800").count(),
            2,
            "the quickstart's agent jobs changed: update this test"
        );
        assert!(short.contains("episodes = 1\nrandom_episodes = 1\nsamples"));
        std::fs::write(&manifest, short).unwrap();
        if !root.join("data/cifar-synth/SYNTHETIC.txt").is_file() {
            let out = sap(&["synth-cifar", "data/cifar-synth"], &root);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        manifest
    })
    .clone()
}

/// Asserts that line `i` of `lines` starts with `prefix`.
fn assert_line_starts(lines: &[String], i: usize, prefix: &str) {
    assert!(lines[i].starts_with(prefix), "line {i}: {}", lines[i]);
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn quickstart_runs_end_to_end_and_writes_training_episode_summary_and_classifier_csvs() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = quickstart();
    let run = |id: &str| {
        let jobs = if id == "a" { "1" } else { "2" };
        let mut args = vec![
            "run",
            manifest.to_str().unwrap(),
            "--out",
            "res",
            "--run-id",
            id,
            "--jobs",
            jobs,
        ];
        if id == "b" {
            args.push("--report");
        }
        sap(&args, tmp.path())
    };
    let out = run("a");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("35 cells run, 0 already complete, 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Pong") && stdout.contains("CartPole"),
        "{stdout}"
    );
    // Defenses carry the label the plots use.
    assert!(
        stdout.contains("sap-100") && stdout.contains("sap-100-independent"),
        "{stdout}"
    );
    assert!(!stdout.contains("sap 1"), "{stdout}");

    let dir = tmp.path().join("res/quickstart/a");
    // The run directory's own manifest loads again: `sap collect`, the Slurm merge step.
    let collected = sap(&["collect", "res/quickstart/a"], tmp.path());
    assert!(
        collected.status.success(),
        "{}",
        String::from_utf8_lossy(&collected.stderr)
    );
    let episodes = lines(&dir.join("episodes.csv"));
    assert_eq!(
        episodes[0],
        "job,family,game,preset,seed,policy,episode,return,frames,truncated"
    );
    // 3 + 3 + 10 random-policy episodes, then the Pong grid's 2-game baseline and the
    // shipped agent's (one game here; its two jobs share it).
    assert_eq!(episodes.len(), 1 + 3 + 3 + 10 + 2 + 1);
    assert_line_starts(&episodes, 1, "eval1,atari,Pong,dopamine-v5,2018,random,0,");
    assert_line_starts(&episodes, 16, "eval2,classic,CartPole,none,2018,random,9,");
    assert_line_starts(
        &episodes,
        18,
        "pong-fgsm,atari,Pong,dopamine-v5,2018,random,1,",
    );

    let summary = lines(&dir.join("summary.csv"));
    assert_eq!(
        summary[0],
        "job,family,game,preset,policy,n,mean,std,ci95_low,ci95_high,truncated,hns"
    );
    // One row per job: the grids' short-game baselines are not pooled with eval1's games.
    assert_eq!(summary.len(), 1 + 5);
    assert_line_starts(&summary, 1, "eval1,atari,Pong,dopamine-v5,random,3,");
    assert_line_starts(&summary, 3, "eval2,classic,CartPole,none,random,10,");
    assert_line_starts(&summary, 4, "pong-fgsm,atari,Pong,dopamine-v5,random,2,");
    assert_line_starts(
        &summary,
        5,
        "breakout-fgsm,atari,Breakout,dopamine-v5,random,1,",
    );
    // The grid: 2 defenses x 2 lambdas, 2 games each, against the dense clean mean.
    let relative = lines(&dir.join("relative_reward.csv"));
    assert_eq!(
        relative[0],
        "job,game,preset,defense,frac,sampling,p,sigma,attack,lambda,steps,step_size,\
         random_start,restarts,loss,backward,source,source_checkpoint,gradient_samples,samples,\
         epsilon,networks,eval_seeds,n,mean,std,ci95_low,ci95_high,dense_clean_mean,random_mean,\
         random_n,relative_reward,normalized_reward,hns,worst_attack"
    );
    // Then the shipped agent: 3 defenses x 5 lambdas, and the watched games (dense clean,
    // dense and SAP-100 at lambda 4), against the same random baseline.
    assert_eq!(relative.len(), 1 + 4 + 15 + 3);
    // Human-normalised scores with the Nature DQN table (Pong: random -20.7, human 9.3;
    // Breakout: 1.7, 31.8).
    let header: Vec<&str> = relative[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in &relative[1..] {
        let f: Vec<&str> = line.split(',').collect();
        let mean: f64 = f[col("mean")].parse().unwrap();
        let hns: f64 = f[col("hns")].parse().unwrap();
        let want = match f[col("game")] {
            "Pong" => (mean + 20.7) / 30.0,
            _ => (mean - 1.7) / 30.1,
        };
        assert!((hns - want).abs() < 1e-9, "{line}");
    }
    assert_line_starts(
        &relative,
        6,
        "breakout-fgsm,Breakout,dopamine-v5,dense,,,,,fgsm,1.0,,,,,ce,,defended,,1,1,0.001,1,1,1,",
    );
    assert_line_starts(
        &relative,
        22,
        "watch,Breakout,dopamine-v5,sap,1.0,exact,,,fgsm,4.0,,,,,ce,mask,defended,,10,1,0.001,1,1,1,",
    );
    for cell in [
        "agent-027-Breakout-file-dense-none-l0-s2018",
        "agent-028-Breakout-file-dense-fgsm-l4-s2018",
        "agent-029-Breakout-file-sap-100-fgsm-l4-s2018",
    ] {
        assert!(
            dir.join("cells").join(cell).join("episode-0.gif").is_file(),
            "{cell}: the watched game's video"
        );
    }
    assert_line_starts(
        &relative,
        1,
        "pong-fgsm,Pong,dopamine-v5,dense,,,,,fgsm,0.0,,,,,ce,,defended,,1,1,0.001,1,1,2,",
    );
    assert_line_starts(
        &relative,
        4,
        "pong-fgsm,Pong,dopamine-v5,sap,1.0,exact,,,fgsm,8.0,,,,,ce,mask,defended,,4,2,0.001,1,1,2,",
    );
    assert_eq!(lines(&dir.join("rl_eval.csv")).len(), 1 + 4 * 2 + 15 + 3);
    assert!(dir.join("manifest.toml").exists() && dir.join("manifest.resolved.toml").exists());

    // Dense vs defenses under FGSM: 4 defenses x 5 lambdas, every parameter in the row.
    let classifier = lines(&dir.join("classifier_eval.csv"));
    assert_eq!(
        classifier[0],
        "task,network,checkpoint,train_seed,eval_seed,defense,frac,sampling,p,sigma,attack,\
         lambda,steps,step_size,random_start,restarts,loss,backward,source,source_checkpoint,\
         gradient_samples,samples,n,accuracy,optimistic_accuracy,mean_confidence,ece,nll"
    );
    assert_eq!(classifier.len(), 1 + 4 * 5);
    let ckpt = "glyphs,mlp,checkpoints/robustness0-glyphs-s2018.safetensors,2018,2018";
    assert_line_starts(
        &classifier,
        1,
        &format!("{ckpt},dense,,,,,fgsm,0.0,,,,,ce,,defended,,1,1,1000,"),
    );
    assert_line_starts(
        &classifier,
        6,
        &format!("{ckpt},sap,1.0,exact,,,fgsm,0.0,,,,,ce,mask,defended,,10,10,1000,"),
    );
    assert_line_starts(
        &classifier,
        20,
        &format!("{ckpt},dropout,,,0.5,,fgsm,64.0,,,,,ce,mask,defended,,10,10,1000,"),
    );
    // With no attack the classifier is accurate; FGSM at lambda = 64 hurts the dense one.
    let accuracy = |line: &str| line.split(',').nth(23).unwrap().parse::<f64>().unwrap();
    assert!(accuracy(&classifier[1]) > 0.9, "{}", classifier[1]);
    assert!(
        accuracy(&classifier[5]) < accuracy(&classifier[1]),
        "{}",
        classifier[5]
    );

    // The gradient-masking checks: the dense classifier passes each of them.
    let checks = lines(&dir.join("checks.csv"));
    assert!(
        checks[0].starts_with("check,table,job,subject,defense,attack,lambda,value,reference,"),
        "{}",
        checks[0]
    );
    let dense: Vec<&String> = checks
        .iter()
        .filter(|l| l.contains(",classifier_eval,") && l.split(',').nth(4) == Some("dense"))
        .collect();
    assert_eq!(dense.len(), 4, "monotone over 5 lambdas: {checks:?}");
    assert!(dense.iter().all(|l| l.ends_with(",true")), "{dense:?}");

    // Same manifest and seed: the same rows, in a new run directory, with --jobs 2.
    let out = run("b");
    assert!(out.status.success());
    // `make quickstart` asks for the report: the plots and the watched games' videos.
    let report =
        std::fs::read_to_string(tmp.path().join("res/quickstart/b/report/report.md")).unwrap();
    assert!(
        report.contains("## Recorded episodes")
            && report.contains("## Gradient-masking checks")
            && report.contains("agent-029-Breakout-file-sap-100-fgsm-l4-s2018-episode-0.gif"),
        "{report}"
    );
    // Learning curves: Atari in emulator frames, classic control in agent steps.
    let curve = |name: &str| {
        std::fs::read_to_string(tmp.path().join("res/quickstart/b/report").join(name)).unwrap()
    };
    assert!(curve("learning-Pong-dopamine-v5.svg").contains("emulator frames"));
    // The CIFAR-10 plots and sections say the data is the synthetic stand-in.
    assert!(
        curve("cifar-training-resnet20-synth.svg").contains("synthetic CIFAR-10 stand-in")
            && curve("accuracy-cifar-fgsm-fgsm.svg").contains("synthetic CIFAR-10 stand-in")
            && report.contains("come from the synthetic stand-in for CIFAR-10"),
        "synthetic data named"
    );
    let cartpole = curve("learning-CartPole-none.svg");
    assert!(
        cartpole.contains("agent steps") && !cartpole.contains("emulator frames"),
        "CartPole's curve"
    );
    assert_eq!(
        episodes,
        lines(&tmp.path().join("res/quickstart/b/episodes.csv"))
    );
    assert_eq!(
        classifier,
        lines(&tmp.path().join("res/quickstart/b/classifier_eval.csv"))
    );
    for table in ["rl_eval.csv", "relative_reward.csv"] {
        assert_eq!(
            lines(&dir.join(table)),
            lines(&tmp.path().join("res/quickstart/b").join(table)),
            "{table}"
        );
    }
    // Training: the same games and evaluations; only the wall-clock rate columns differ.
    let without_rates = |run: &str| -> Vec<String> {
        lines(&tmp.path().join(format!("res/quickstart/{run}/train.csv")))
            .iter()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_owned())
            .collect()
    };
    let train = without_rates("a");
    assert!(train.len() > 10, "{} training rows", train.len());
    assert_eq!(
        train[0],
        "family,game,preset,seed,step,frames,episode,return,length,epsilon,loss,mean_q"
    );
    assert_eq!(train, without_rates("b"));
    let eval = lines(&dir.join("train_eval.csv"));
    assert_eq!(eval.len(), 1 + 2 * 10 + 1, "CartPole's 2 x 10 and Pong's 1");
    assert_eq!(
        eval,
        lines(&tmp.path().join("res/quickstart/b/train_eval.csv"))
    );

    // ResNet-20 on the synthetic CIFAR-10: one (partial) epoch row, then dense and SAP-100
    // at lambda 0 and under FGSM at lambda 8, each with its 15 reliability bins.
    let cifar_train = |run: &str| -> Vec<String> {
        lines(
            &tmp.path()
                .join(format!("res/quickstart/{run}/cifar_train.csv")),
        )
        .iter()
        .map(|l| l.rsplit_once(',').unwrap().0.to_owned())
        .collect()
    };
    let epochs = cifar_train("a");
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    assert_line_starts(&epochs, 1, "resnet20-synth,dense,2018,1,60,60,");
    assert_eq!(epochs, cifar_train("b"), "only images_per_s may differ");
    let cifar = lines(&dir.join("cifar_eval.csv"));
    assert_eq!(cifar.len(), 1 + 4);
    assert_line_starts(
        &cifar,
        1,
        "cifar-fgsm,cifar10-synthetic,../data/cifar-synth,resnet20,dense,resnet20-synth,,,\
         cells/cifar-train-002-dense-s2018/final.safetensors,2018,2018,dense,",
    );
    assert!(
        cifar[4].contains(",sap,1.0,exact,,,fgsm,8.0,,,,,ce,mask,defended,,4,4,500,"),
        "{}",
        cifar[4]
    );
    assert_eq!(lines(&dir.join("reliability.csv")).len(), 1 + 4 * 15);
    for table in ["cifar_eval.csv", "reliability.csv"] {
        assert_eq!(
            lines(&dir.join(table)),
            lines(&tmp.path().join("res/quickstart/b").join(table)),
            "{table}"
        );
    }
}

#[test]
fn a_run_cut_off_mid_row_resumes_and_reproduces_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("small.toml");
    std::fs::write(
        &manifest,
        "name = \"small\"\nseed = 9\n[[eval]]\nfamily = \"classic\"\ngames = [\"CartPole\", \"MountainCar\"]\nepisodes = 3\n",
    )
    .unwrap();
    let run = |id: &str| sap(&["run", "small.toml", "--run-id", id], tmp.path());
    assert!(run("x").status.success());
    let dir = tmp.path().join("results/small/x");
    let merged = std::fs::read_to_string(dir.join("episodes.csv")).unwrap();
    let cell = dir.join("cells/eval-000-CartPole-none-random-s9");
    let csv = cell.join("episodes.csv");
    let full = std::fs::read_to_string(&csv).unwrap();

    // Simulate a crash inside the CartPole cell: keep one whole row and half of the
    // second, no completion mark, no run-level tables.
    let keep: Vec<&str> = full.lines().take(2).collect();
    let torn = format!(
        "{}\n{}",
        keep.join("\n"),
        &full.lines().nth(2).unwrap()[..5]
    );
    std::fs::write(&csv, torn).unwrap();
    std::fs::remove_file(cell.join("done.toml")).unwrap();
    std::fs::remove_file(dir.join("summary.csv")).unwrap();
    std::fs::remove_file(dir.join("episodes.csv")).unwrap();

    let out = run("x");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 cells run, 1 already complete"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), full);
    assert_eq!(
        std::fs::read_to_string(dir.join("episodes.csv")).unwrap(),
        merged
    );
    assert!(dir.join("summary.csv").exists());
}

#[test]
fn a_run_id_holding_another_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |episodes: u32| {
        let text = format!("name = \"m\"\nseed = 1\n[[eval]]\nfamily = \"classic\"\ngames = [\"CartPole\"]\nepisodes = {episodes}\n");
        std::fs::write(tmp.path().join("m.toml"), text).unwrap();
    };
    write(1);
    assert!(sap(&["run", "m.toml", "--run-id", "r"], tmp.path())
        .status
        .success());
    write(2);
    let out = sap(&["run", "m.toml", "--run-id", "r"], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a run of a different manifest"), "{err}");
}

#[test]
fn a_bad_manifest_gets_one_clear_message_and_no_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "name = \"b\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pongg\"]\nepisodes = 1\n",
    )
    .unwrap();
    for cmd in ["validate", "plan", "run"] {
        let out = sap(&[cmd, "bad.toml"], tmp.path());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: bad.toml:5:10: key `eval[0].games[0]`: unknown Atari game `Pongg`; did you mean `Pong`?"), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn validate_and_plan_describe_the_quickstart_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quickstart();
    let out = sap(&["validate", q.to_str().unwrap()], tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains(
            "ok (2 train cells, 5 eval cells, 22 agent cells, 1 robustness cells, 1 cifar train \
             cells, 4 cifar eval cells)"
        ),
        "{stdout}"
    );
    let out = sap(&["plan", q.to_str().unwrap()], tmp.path());
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(plan.lines().count(), 38, "{plan}");
    assert!(
        plan.starts_with(
            "   0  train-000-CartPole-none-s2018: train 20000 frames (20000 agent steps)"
        ),
        "{plan}"
    );
    let line = |i: usize| plan.lines().nth(i).unwrap();
    assert!(
        line(2).contains(
            "cifar-train-002-dense-s2018: train ResNet-20 (dense) on ../data/cifar-synth: 60 \
             iterations of 128 images"
        ),
        "{plan}"
    );
    assert!(
        line(3).contains("eval-003-Pong-dopamine-v5-random-s2018: 3 random-policy episodes"),
        "{plan}"
    );
    assert!(
        line(11).contains(
            "agent-011-Pong-t2018-sap-100-fgsm-l8-s2018: 2 episodes (1 in lockstep), network of \
             train-001-Pong-dopamine-v5-s2018"
        ) && line(11).ends_with("(after 1)"),
        "{plan}"
    );
    assert!(
        line(12).contains(
            "agent-012-Breakout-file-dense-fgsm-l0-s2018: 1 episodes (1 in lockstep), network \
             ../models/Breakout-dopamine-v5-ddqn.safetensors, dense (samples 1)"
        ),
        "{plan}"
    );
    assert!(
        line(30)
            .contains("robustness-030-glyphs-s2018: robustness[0] glyphs: 4 defenses x 5 lambdas"),
        "{plan}"
    );
    assert!(
        line(34).contains(
            "cifar-eval-034-dense-t2018-sap-100-fgsm-l8-s2018: 500 test images, network of \
             cifar-train-002-dense-s2018, sap-100 (samples 4), fgsm lambda 8, gradient_samples \
             4, 12 passes/image"
        ) && line(34).ends_with("(after 2)"),
        "{plan}"
    );
    assert!(
        line(35)
            .starts_with("35 cells: 3 training (<= 35.2k frames), 32 evaluation (<= 688.2k frames"),
        "{plan}"
    );
    assert_eq!(
        line(36),
        "CIFAR-10: 7680 training images (SGD passes), 10.0k image passes in evaluation",
        "{plan}"
    );
    assert!(
        line(37).starts_with("no CPU-time estimates: `sap bench rates` measures"),
        "{plan}"
    );
}

#[test]
fn plan_estimates_cpu_time_from_a_rates_file_and_names_a_damaged_one() {
    use sap_harness::bench::rates::{Cost, NetworkCosts, Rates};
    let tmp = tempfile::tempdir().unwrap();
    let q = quickstart();
    let cost = Cost {
        fixed_s: 1e-3,
        per_row_s: 2e-3,
    };
    let net = NetworkCosts {
        batch: 32,
        dense_forward: cost,
        dense_gradient: cost,
        sap_forward: cost,
        sap_gradient: cost,
        other_forward: cost,
        other_gradient: cost,
        train: cost,
    };
    let rates = Rates {
        measured: "2026-01-01 00:00 UTC".into(),
        cpu: "test CPU".into(),
        emulator_frame_s: 1e-4,
        nature_cnn: net,
        resnet20: net,
    };
    let path = tmp.path().join("rates.toml");
    rates.save(&path).unwrap();
    let plan_with_rates = || {
        let args = [
            "plan",
            q.to_str().unwrap(),
            "--rates",
            path.to_str().unwrap(),
        ];
        sap(&args, tmp.path())
    };
    let out = plan_with_rates();
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{plan}");
    let agent = plan.lines().nth(10).unwrap();
    assert!(
        agent.contains("agent-010") && agent.contains(" CPU  (after 1)"),
        "{plan}"
    );
    // The sums themselves are checked in tests/rates.rs.
    assert!(
        plan.contains("estimated CPU time: ~")
            && plan.contains(" evaluation) (3 classic-control or glyph cells without an estimate)"),
        "{plan}"
    );
    assert!(
        plan.contains("at 2026-01-01 00:00 UTC on test CPU"),
        "{plan}"
    );

    std::fs::write(&path, "cpu = [").unwrap();
    let out = plan_with_rates();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("`sap bench rates` writes a new one"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn games_lists_every_game_with_action_counts_rom_md5_and_conformance() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sap(&["games"], tmp.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("atari ") || l.starts_with("classic "))
        .collect();
    assert_eq!(rows.len(), 104 + 2, "{text}");
    let pong: Vec<&str> = rows
        .iter()
        .find(|r| r.contains(" Pong "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        pong,
        [
            "atari",
            "Pong",
            "6",
            "18",
            "60e0ea3cbe0913d39803477945e9e5ec",
            "conformant"
        ]
    );
    assert!(text.contains("ROM files: the ale-py ROM folder"), "{text}");
    assert!(rows
        .iter()
        .any(|r| r.starts_with("classic") && r.contains("CartPole")));
}

#[test]
fn a_checkpoint_that_does_not_fit_the_network_is_refused_naming_the_key_and_file() {
    use sap_harness::nn::{checkpoint, Architecture, MlpConfig, Model};
    let tmp = tempfile::tempdir().unwrap();
    let other = Model::new(
        Architecture::Mlp(MlpConfig {
            inputs: 64,
            hidden: vec![32],
            outputs: 10,
            input_scale: 1.0,
        }),
        sap_harness::tch::Device::Cpu,
    );
    checkpoint::save(&other, &tmp.path().join("small.safetensors")).unwrap();
    let manifest = r#"
name = "ckpt"
seed = 1
[[robustness]]
task = "glyphs"
hidden = [64, 64]
checkpoint = "small.safetensors"
defenses = [{ kind = "dense" }]
attack = { kind = "fgsm" }
lambdas = [0]
"#;
    std::fs::write(tmp.path().join("m.toml"), manifest).unwrap();
    let out = sap(&["run", "m.toml", "--out", "res"], tmp.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("robustness[0].checkpoint"), "{stderr}");
    assert!(
        stderr.contains("small.safetensors: the checkpoint does not fit the mlp network"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`hidden.0.weight` has shape [32, 64], the network needs [64, 64]"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}
