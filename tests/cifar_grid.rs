//! The CIFAR-10 family through manifests: training cells (dense and adversarial), their
//! checkpoints and resume, the evaluation grid with accuracy and calibration, and one clear
//! error for each kind of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{fake_cifar, ok, run, sap, text};
use sap_harness::experiment::cifar::adversarial_batch;
use sap_harness::manifest::{CellKind, Manifest};
use sap_harness::nn::optim::{Optimizer, OptimizerConfig};
use sap_harness::nn::{checkpoint, Architecture, MlpConfig, Model};
use sap_harness::tch::{Device, Kind, Tensor};

/// The synthetic set of `sap synth-cifar`, written once per test process.
fn synthetic() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cifar-synth-grid");
        if !dir.join("SYNTHETIC.txt").is_file() {
            let parent = dir.parent().unwrap();
            ok(
                &["synth-cifar", dir.to_str().unwrap(), "--seed", "1"],
                parent,
            );
        }
        dir
    })
}

fn parse(dir: &Path, text: &str) -> Result<Manifest, String> {
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    Manifest::load(&path).map_err(|e| e.to_string())
}

const GRID: &str = r#"name = "cifar"
seed = 4
[[cifar_train]]
name = "resnet"
data = "data"
variants = ["dense", "adv"]
iterations = 100
[[cifar_eval]]
train = "resnet"
samples = 3
defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0 }]
attacks = [{ kind = "fgsm", gradient_samples = 5 }, { kind = "eot-pgd" }]
lambdas = [0, 2, 8]
"#;

#[test]
fn a_cifar_manifest_expands_into_training_then_one_clean_and_the_attacked_cells_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cifar(&tmp.path().join("data"));
    let m = parse(tmp.path(), GRID).unwrap();
    let job = &m.cifar_train[0];
    assert_eq!(
        (job.batch_size, job.lr, job.momentum, job.weight_decay),
        (128, 0.1, 0.9, 1e-4)
    );
    assert_eq!(job.lr_milestones, [50, 75], "1/2 and 3/4 of the iterations");
    assert_eq!(job.adv(), Some((0.2, 2.0)));
    let plan = m.plan();
    // 2 networks x 2 defenses x (1 clean + 2 attacks x 2 lambdas).
    assert_eq!(plan.len(), 2 + 2 * 2 * 5);
    let ids: Vec<String> = plan.iter().map(|c| c.id()).collect();
    assert_eq!(ids[0], "cifar-train-000-dense-s4");
    assert_eq!(ids[1], "cifar-train-001-adv-s4");
    assert_eq!(ids[2], "cifar-eval-002-dense-t4-dense-none-l0-s4");
    assert_eq!(ids[3], "cifar-eval-003-dense-t4-dense-fgsm-l2-s4");
    assert_eq!(ids[6], "cifar-eval-006-dense-t4-dense-eot-pgd-l8-s4");
    assert_eq!(ids[21], "cifar-eval-021-adv-t4-sap-100-eot-pgd-l8-s4");
    assert_eq!(plan[21].deps, [1]);
    let CellKind::CifarEval(c) = &plan[21].kind else {
        panic!("an evaluation cell")
    };
    let a = c.condition.attack.unwrap();
    // EOT-PGD's defaults: a random start, 20 steps, 10 gradient samples.
    assert_eq!(a.kind.iterative(), Some((20, None, true)));
    assert_eq!(a.step_size(), Some(2.5 * 8.0 / 20.0));
    assert_eq!(a.gradient_samples, 10);
    assert_eq!(c.trained_by, Some(("resnet".into(), Some((0.2, 2.0)))));
    // The resolved manifest is a manifest with the same meaning.
    let resolved = m.to_toml();
    assert_eq!(parse(tmp.path(), &resolved).unwrap(), m, "{resolved}");
}

#[test]
fn a_data_path_that_holds_no_cifar_form_is_one_error_naming_the_key_and_the_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let e = parse(
        tmp.path(),
        &GRID.replace("data = \"data\"", "data = \"nowhere\""),
    )
    .unwrap_err();
    assert!(e.contains("cifar_train[0].data"), "{e}");
    assert!(e.contains("nowhere does not exist"), "{e}");
    assert!(e.contains("cifar-10-python.tar.gz"), "{e}");
    assert!(
        e.contains("data_batch_1.bin") && e.contains("cs.toronto.edu"),
        "{e}"
    );
    // A folder of other files.
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::write(tmp.path().join("data/train.csv"), "a,b\n").unwrap();
    let e = parse(tmp.path(), GRID).unwrap_err();
    assert!(
        e.contains("is not CIFAR-10 in a form that can be read: a folder holding train.csv"),
        "{e}"
    );
    // A short file.
    fake_cifar(&tmp.path().join("data"));
    let short = std::fs::File::options()
        .write(true)
        .open(tmp.path().join("data/test_batch.bin"))
        .unwrap();
    short.set_len(30_729_900).unwrap();
    let e = parse(tmp.path(), GRID).unwrap_err();
    assert!(
        e.contains("test_batch.bin: 30729900 bytes, expected 30730000"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn an_adv_fraction_outside_0_to_1_a_negative_lambda_and_a_zero_max_batch_are_one_error_each() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cifar(&tmp.path().join("data"));
    let e = parse(
        tmp.path(),
        &GRID.replace("iterations = 100", "iterations = 100\nadv_fraction = 1.5"),
    )
    .unwrap_err();
    assert!(e.contains("cifar_train[0].adv_fraction"), "{e}");
    assert!(
        e.contains("1.5 is out of range; allowed: a fraction of the batch in [0, 1]"),
        "{e}"
    );
    let e = parse(tmp.path(), &GRID.replace("[0, 2, 8]", "[0, -2, 8]")).unwrap_err();
    assert!(e.contains("cifar_eval[0].lambdas[1]"), "{e}");
    assert!(
        e.contains("-2 is not allowed; allowed: a radius >= 0 in pixel units"),
        "{e}"
    );
    // Adversarial settings without the adv variant, and an unknown training job.
    let dense_only = GRID
        .replace("[\"dense\", \"adv\"]", "[\"dense\"]")
        .replace("iterations = 100", "iterations = 100\nadv_lambda = 4");
    let e = parse(tmp.path(), &dense_only).unwrap_err();
    assert!(
        e.contains("`adv_lambda` applies to the \"adv\" variant"),
        "{e}"
    );
    let e = parse(
        tmp.path(),
        &GRID.replace("train = \"resnet\"", "train = \"resnt\""),
    )
    .unwrap_err();
    assert!(
        e.contains(
            "no [[cifar_train]] job is named `resnt`; allowed: resnet; did you mean `resnet`?"
        ),
        "{e}"
    );
    let e = parse(
        tmp.path(),
        &GRID.replace("samples = 3", "samples = 3\nmax_batch = 0"),
    )
    .unwrap_err();
    assert!(e.contains("key `cifar_eval[0].max_batch`"), "{e}");
    assert!(
        e.contains("0 is not allowed; allowed: an integer >= 1"),
        "{e}"
    );
}

#[test]
fn an_adversarial_batch_holds_the_configured_fraction_of_fgsm_examples() {
    sap_harness::tch::manual_seed(3);
    let model = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
    let x = (Tensor::rand([10, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0).round();
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (fraction, expected) in [(0.2, 2), (0.0, 0), (0.25, 3), (1.0, 10)] {
        let (adv, k) = adversarial_batch(&model, &x, &y, fraction, 2.0);
        assert_eq!(k, expected, "fraction {fraction}");
        let diff = (&adv - &x).abs();
        for i in 0..10 {
            let d = diff.get(i);
            let moved = d.max().double_value(&[]);
            if i < expected {
                // Every pixel moved by lambda = 2, except where [0, 255] clipped it.
                let clipped =
                    (x.get(i).le(1.0).logical_or(&x.get(i).ge(254.0))).to_kind(Kind::Float);
                let unclipped: Tensor = clipped.ones_like() - &clipped;
                let off: Tensor = (&d - 2.0).abs() * unclipped;
                assert!(off.max().double_value(&[]) < 1e-4, "example {i}");
                assert!((moved - 2.0).abs() < 1e-4, "example {i} moved {moved}");
            } else {
                assert_eq!(moved, 0.0, "example {i} is clean");
            }
        }
    }
}

#[test]
fn sgd_follows_pytorchs_momentum_and_weight_decay_formula() {
    let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        },
        vec![("w".into(), p.shallow_clone())],
    );
    // Loss sum(3 p): gradient 3 everywhere.
    let (mut want, mut buf) = ([1.0f64, -2.0], [0.0f64; 2]);
    for step in 0..3 {
        if step == 2 {
            opt.set_lr(0.01);
        }
        let lr = if step == 2 { 0.01 } else { 0.1 };
        (&p * 3.0).sum(Kind::Double).backward();
        opt.step();
        for j in 0..2 {
            let d = 3.0 + 0.01 * want[j];
            buf[j] = 0.9 * buf[j] + d;
            want[j] -= lr * buf[j];
        }
        let got = Vec::<f64>::try_from(&p.detach()).unwrap();
        for j in 0..2 {
            assert!(
                (got[j] - want[j]).abs() < 1e-12,
                "step {step}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_with_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cifar(&tmp.path().join("data"));
    let mlp = Model::new(
        Architecture::Mlp(MlpConfig {
            inputs: 3072,
            hidden: vec![32],
            outputs: 10,
            input_scale: 1.0,
        }),
        Device::Cpu,
    );
    checkpoint::save(&mlp, &tmp.path().join("mlp.safetensors")).unwrap();
    let manifest = "name = \"wrong\"\nseed = 1\n[[cifar_eval]]\ndata = \"data\"\n\
                    checkpoints = { mine = \"mlp.safetensors\" }\nexamples = 10\n\
                    defenses = [{ kind = \"dense\" }]\nlambdas = [0]\n";
    std::fs::write(tmp.path().join("wrong.toml"), manifest).unwrap();
    let out = run(&["run", "wrong.toml", "--run-id", "x"], tmp.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cifar-eval-000-mine-file-dense-none-l0-s1"),
        "{stderr}"
    );
    let log = text(
        &tmp.path()
            .join("results/wrong/x/cells/cifar-eval-000-mine-file-dense-none-l0-s1/log.txt"),
    );
    assert!(
        log.contains("mlp.safetensors: the checkpoint does not fit the resnet20 network"),
        "{log}"
    );
    assert!(
        !log.contains("panicked") && !stderr.contains("panicked"),
        "{log}"
    );
}

/// `cifar_train.csv` without its wall-clock column.
fn epochs(path: &Path) -> Vec<String> {
    text(path)
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_owned())
        .collect()
}

#[test]
fn an_adversarial_training_cell_killed_mid_epoch_resumes_with_the_same_next_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic().display().to_string();
    // 1024 images in batches of 64: 16 iterations per epoch, 3 epochs; checkpoints every 8
    // iterations, so the one at 24 is mid-epoch.
    let manifest = format!(
        "name = \"resume\"\nseed = 7\n[[cifar_train]]\ndata = {data:?}\nvariants = [\"adv\"]\n\
         train_examples = 1024\nbatch_size = 64\niterations = 48\ncheckpoint_every = 8\n\
         test_examples = 200\n"
    );
    std::fs::write(tmp.path().join("resume.toml"), manifest).unwrap();
    let cell = |run_dir: &str| {
        [
            "run-cell",
            "resume.toml",
            "--cell",
            "0",
            "--run-dir",
            run_dir,
            "--threads",
            "1",
        ]
        .map(str::to_owned)
    };
    let args = cell("whole");
    ok(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        tmp.path(),
    );
    let whole = tmp.path().join("whole/cells/cifar-train-000-adv-s7");
    let rows = epochs(&whole.join("cifar_train.csv"));
    assert_eq!(rows.len(), 1 + 3, "{rows:?}");
    assert_eq!(
        rows[0],
        "job,variant,seed,epoch,iteration,batches,lr,loss,train_accuracy,adv_examples,\
         test_loss,test_accuracy,test_examples"
    );
    // round(0.2 x 64) = 13 FGSM examples in each of an epoch's 16 batches.
    for (i, r) in rows[1..].iter().enumerate() {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f[3], (i + 1).to_string());
        assert_eq!(f[4], (16 * (i + 1)).to_string());
        assert_eq!((f[5], f[9]), ("16", "208"), "{r}");
    }
    // lr 0.1, then 0.01 from iteration 24 and 0.001 from 36 (1/2 and 3/4 of 48).
    assert!(
        rows[3].contains(",48,16,0.0010000000000000002,"),
        "{}",
        rows[3]
    );

    let args = cell("killed");
    let mut child = sap(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        tmp.path(),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let dir = tmp.path().join("killed/cells/cifar-train-000-adv-s7");
    let started = Instant::now();
    while !dir.join("checkpoints/state-000000000024.toml").is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the cell finished before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint at 24"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join("final.safetensors").exists(),
        "killed before the end"
    );
    let partial = epochs(&dir.join("cifar_train.csv"));
    assert!(partial.len() < 4, "{partial:?}");
    assert_eq!(partial[..], rows[..partial.len()], "rows before the kill");
    // The resumed cell continues at iteration 24 and writes the same epochs.
    ok(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        tmp.path(),
    );
    assert_eq!(epochs(&dir.join("cifar_train.csv")), rows);
    assert_eq!(
        std::fs::read(dir.join("final.safetensors")).unwrap(),
        std::fs::read(whole.join("final.safetensors")).unwrap(),
        "the same final weights"
    );
}

#[test]
fn dense_resnet20_passes_75_percent_on_the_synthetic_set_and_the_whole_grid_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic().display().to_string();
    let manifest = format!(
        r#"name = "grid"
seed = 11
[[cifar_train]]
name = "resnet"
data = {data:?}
iterations = 60
test_examples = 2000
[[cifar_eval]]
name = "g"
train = "resnet"
examples = 120
batch_size = 50
samples = 2
defenses = [{{ kind = "dense" }}, {{ kind = "sap", frac = 1.0 }}]
attacks = [
  {{ kind = "fgsm", gradient_samples = 2 }},
  {{ kind = "pgd", steps = 2, gradient_samples = 2 }},
  {{ kind = "eot-pgd", steps = 2, gradient_samples = 2 }},
]
lambdas = [0, 4, 16]
"#
    );
    std::fs::write(tmp.path().join("grid.toml"), manifest).unwrap();
    let out = ok(
        &["run", "grid.toml", "--run-id", "r", "--jobs", "2"],
        tmp.path(),
    );
    assert!(
        out.contains("15 cells run, 0 already complete, 0 failed"),
        "{out}"
    );
    let dir = tmp.path().join("results/grid/r");

    // Training: one partial epoch row, at least 75% of 2000 test images right (chance: 10%).
    // Measured after these 60 iterations on seeds 11, 12 and 13 with three kernel sets (the
    // CPU's defaults, `MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=AVX2`, and ATen, oneDNN and
    // MKL capped at SSE4.2): 1.0 in 8 of 9 runs and 0.8685 in one (seed 11, SSE4.2), so the
    // margin holds on CPUs whose kernels round differently.
    let train = text(&dir.join("cifar_train.csv"));
    let last: Vec<&str> = train.lines().last().unwrap().split(',').collect();
    let test_accuracy: f64 = last[11].parse().unwrap();
    assert!(test_accuracy >= 0.75, "{train}");

    // Evaluation: 2 defenses x (1 clean + 3 attacks x 2 lambdas).
    let rows = text(&dir.join("cifar_eval.csv"));
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(
        lines[0],
        "job,dataset,data,network,variant,train_job,adv_fraction,adv_lambda,checkpoint,train_seed,\
         eval_seed,defense,frac,sampling,p,sigma,attack,lambda,steps,step_size,random_start,\
         restarts,loss,backward,source,source_checkpoint,gradient_samples,samples,n,accuracy,\
         optimistic_accuracy,mean_confidence,ece,nll"
    );
    assert_eq!(lines.len(), 1 + 14);
    let field = |line: &str, i: usize| line.split(',').nth(i).unwrap().to_owned();
    let attacks: Vec<String> = lines[1..8].iter().map(|l| field(l, 16)).collect();
    assert_eq!(
        attacks,
        ["none", "fgsm", "fgsm", "pgd", "pgd", "eot-pgd", "eot-pgd"]
    );
    // Dense: one gradient pass; SAP: two; EOT-PGD starts at random, PGD (the paper's
    // iterative attack) at x.
    assert!(
        lines[4].contains(",pgd,4.0,2,5.0,false,,ce,,defended,,1,1,120,"),
        "{}",
        lines[4]
    );
    assert!(
        lines[13].contains(",eot-pgd,4.0,2,5.0,true,,ce,mask,defended,,2,2,120,"),
        "{}",
        lines[13]
    );
    assert!(
        lines[8].contains(",sap,1.0,exact,,,none,0.0,,,,,,,,,,2,120,"),
        "{}",
        lines[8]
    );
    let accuracy = |l: &str| field(l, 29).parse::<f64>().unwrap();
    let optimistic = |l: &str| field(l, 30).parse::<f64>().unwrap();
    assert!(accuracy(lines[1]) >= 0.75, "{}", lines[1]);
    assert!(
        accuracy(lines[7]) < accuracy(lines[1]),
        "EOT-PGD at 16 hurts"
    );

    // Every row's metrics follow from its cell's predictions and reliability bins.
    let bins = text(&dir.join("reliability.csv"));
    assert_eq!(bins.lines().count(), 1 + 14 * 15);
    let cells: Vec<PathBuf> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("cifar-eval")
        })
        .collect();
    assert_eq!(cells.len(), 14);
    for cell in cells {
        let row = text(&cell.join("cifar_eval.csv"));
        let row = row.lines().nth(1).unwrap();
        let preds = text(&cell.join("predictions.csv"));
        let preds: Vec<Vec<&str>> = preds
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(preds.len(), 120);
        let right = preds.iter().filter(|p| p[2] == p[3]).count() as f64 / 120.0;
        assert!((accuracy(row) - right).abs() < 1e-12, "{row}");
        let any = preds.iter().filter(|p| p[6] == "true").count() as f64 / 120.0;
        assert!((optimistic(row) - any).abs() < 1e-12, "{row}");
        if field(row, 11) == "dense" {
            assert_eq!(optimistic(row), accuracy(row), "one pass: {row}");
        }
        let bins = text(&cell.join("reliability.csv"));
        let mut ece = 0.0;
        let mut count = 0;
        for b in bins.lines().skip(1) {
            let f: Vec<&str> = b.split(',').collect();
            let n: usize = f[f.len() - 3].parse().unwrap();
            count += n;
            if n > 0 {
                let acc: f64 = f[f.len() - 2].parse().unwrap();
                let conf: f64 = f[f.len() - 1].parse().unwrap();
                ece += n as f64 / 120.0 * (acc - conf).abs();
            }
        }
        assert_eq!(count, 120);
        let row_ece: f64 = field(row, 32).parse().unwrap();
        assert!((ece - row_ece).abs() < 1e-9, "{row}: {ece}");
    }

    // An evaluation cell cut off mid-batch (SAP under EOT-PGD: defense draws and random
    // starts in every batch) resumes at its first missing batch with the same rows.
    let id = "cifar-eval-014-dense-t11-sap-100-eot-pgd-l16-s11";
    let cell = dir.join("cells").join(id);
    let saved: Vec<String> = ["predictions.csv", "cifar_eval.csv", "reliability.csv"]
        .iter()
        .map(|f| text(&cell.join(f)))
        .collect();
    let cut: String = saved[0]
        .lines()
        .take(1 + 75)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "1,75,3,3,0.9";
    // The worst case over the three attacks, per defense and lambda, is recomputed from the
    // cells' predictions: correct only if every attack left the image correct.
    let worst = text(&dir.join("worst_case.csv"));
    let worst: Vec<&str> = worst.lines().collect();
    assert_eq!(worst.len(), 1 + 2 * 2, "{worst:?}");
    assert!(
        worst[0].ends_with(",attacks,n,accuracy,optimistic_accuracy"),
        "{}",
        worst[0]
    );
    for line in &worst[1..] {
        let f: Vec<&str> = line.split(',').collect();
        let (defense, lambda) = (f[7], f[13]);
        assert_eq!(f[12], "worst-case", "{line}");
        let tag = format!(
            "-t11-{}-",
            if defense == "dense" {
                "dense"
            } else {
                "sap-100"
            }
        );
        let lambda_tag = format!("-l{}-", lambda.trim_end_matches(".0"));
        let mut all_right = vec![true; 120];
        let mut any_right = vec![true; 120];
        let mut members = 0;
        for e in std::fs::read_dir(dir.join("cells")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if !(name.starts_with("cifar-eval")
                && name.contains(&tag)
                && name.contains(&lambda_tag))
            {
                continue;
            }
            members += 1;
            let preds = text(&dir.join("cells").join(&name).join("predictions.csv"));
            for l in preds.lines().skip(1) {
                let p: Vec<&str> = l.split(',').collect();
                let i: usize = p[1].parse().unwrap();
                all_right[i] &= p[2] == p[3];
                any_right[i] &= p[6] == "true";
            }
        }
        assert_eq!(members, 3, "{line}");
        let share = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / 120.0;
        let n = f.len();
        assert_eq!(f[n - 4], "fgsm + pgd + eot-pgd", "{line}");
        assert!(
            (f[n - 2].parse::<f64>().unwrap() - share(&all_right)).abs() < 1e-12,
            "{line}"
        );
        assert!(
            (f[n - 1].parse::<f64>().unwrap() - share(&any_right)).abs() < 1e-12,
            "{line}"
        );
    }
    std::fs::write(cell.join("predictions.csv"), cut).unwrap();
    for f in ["cifar_eval.csv", "reliability.csv", "done.toml"] {
        std::fs::remove_file(cell.join(f)).unwrap();
    }
    let out = ok(
        &["run", "grid.toml", "--resume", "results/grid/r"],
        tmp.path(),
    );
    assert!(
        out.contains("1 cells run, 14 already complete, 0 failed"),
        "{out}"
    );
    for (f, before) in ["predictions.csv", "cifar_eval.csv", "reliability.csv"]
        .iter()
        .zip(&saved)
    {
        assert_eq!(&text(&cell.join(f)), before, "{f} after resuming");
    }

    // The report: accuracy and ECE against lambda per attack, reliability diagrams.
    ok(&["report", dir.to_str().unwrap()], tmp.path());
    for attack in ["fgsm", "pgd", "eot-pgd"] {
        for name in [
            format!("accuracy-g-{attack}.png"),
            format!("ece-g-{attack}.svg"),
            format!("reliability-g-{attack}-l16.png"),
        ] {
            let path = dir.join("report").join(&name);
            assert!(
                std::fs::metadata(&path)
                    .map(|m| m.len() > 5_000)
                    .unwrap_or(false),
                "{name}"
            );
        }
    }
    let curve = dir.join("report/cifar-training-resnet.png");
    assert!(
        std::fs::metadata(&curve).unwrap().len() > 5_000,
        "training curve"
    );
    let svg = text(&dir.join("report/accuracy-g-eot-pgd.svg"));
    assert!(
        svg.contains("sap-100") && svg.contains("lambda (L-inf radius"),
        "accuracy plot"
    );
    let md = text(&dir.join("report/report.md"));
    assert!(
        md.contains("## CIFAR-10: accuracy and calibration under attack"),
        "{md}"
    );
    // Every attack side by side per network and defense, the worst case and the checks.
    for name in ["attacks-dense-dense.png", "attacks-dense-sap-100.svg"] {
        let size = std::fs::metadata(dir.join("report").join(name)).map_or(0, |m| m.len());
        assert!(size > 5_000, "{name}");
    }
    let svg = text(&dir.join("report/attacks-dense-sap-100.svg"));
    assert!(
        svg.contains("g: eot-pgd") && svg.contains("g: worst case"),
        "attacks plot"
    );
    assert!(
        md.contains("### All attacks side by side")
            && md.contains("## Worst case over attacks")
            && md.contains("## Gradient-masking checks"),
        "{md}"
    );

    // The training cell as if killed after its first epoch: the report of the unfinished
    // run marks it partial, in its table row and its plot's title.
    let train = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("cifar-train"))
        .unwrap();
    std::fs::remove_file(train.join("done.toml")).unwrap();
    let epochs = text(&train.join("cifar_train.csv"));
    let first: Vec<&str> = epochs.lines().take(2).collect();
    std::fs::write(train.join("cifar_train.csv"), first.join("\n") + "\n").unwrap();
    ok(&["report", dir.to_str().unwrap()], tmp.path());
    let md = text(&dir.join("report/report.md"));
    assert!(md.contains("cifar_train.csv: 1"), "{md}");
    assert!(md.contains("| resnet | dense | "), "{md}");
    assert!(md.contains(" *(partial)* | 1 |"), "{md}");
    assert!(
        md.contains("ResNet-20 training, job resnet (partial)"),
        "{md}"
    );
}

#[test]
fn the_paper_manifest_plans_the_paper_protocol_and_the_adaptive_suite_once_the_data_is_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let experiments = tmp.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let manifest = experiments.join("paper_cifar.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/paper_cifar.toml"),
        &manifest,
    )
    .unwrap();
    // Without the data set: one error saying where it goes and where it is published.
    let e = Manifest::load(&manifest).unwrap_err().to_string();
    assert!(
        e.contains("cifar_train[0].data") && e.contains("cifar-10-batches-bin"),
        "{e}"
    );
    fake_cifar(&tmp.path().join("data/cifar-10-batches-bin"));
    let m = Manifest::load(&manifest).unwrap();
    let job = &m.cifar_train[0];
    assert_eq!((job.iterations, job.batch_size), (64_000, 128));
    assert_eq!(job.lr_milestones, [32_000, 48_000]);
    let plan = m.plan();
    // The paper's protocol: 2 networks x 2 defenses x (1 clean + 3 attacks x 7 radii); the
    // adaptive suite: 2 networks x 2 defenses x (1 clean + 5 attacks x 5 radii).
    assert_eq!(plan.len(), 2 + 2 * 2 * (1 + 3 * 7) + 2 * 2 * (1 + 5 * 5));
    let passes: Vec<u32> = plan.iter().filter_map(|c| c.passes_per_image()).collect();
    assert_eq!(
        passes.iter().max(),
        Some(&(10 + 2 * 20 * 101)),
        "SAP under APGD: 101 gradients of 20 passes, forward and backward"
    );
    let adaptive = &m.cifar_eval[1];
    assert_eq!(adaptive.attacks[1].kind.gradient_steps(), 101);
}

#[test]
fn cifar_eval_rows_are_the_same_for_any_batch_size_and_max_batch() {
    // A random ResNet-20 under dropout 0.5 (2 samples) and FGSM (2 gradient samples) on 60
    // synthetic test images, in batches of 60 and of 25 (so 25 + 25 + 10), with the passes
    // stacked (max_batch 128) and one pass per forward (max_batch 1). Each image draws from
    // its own stream, so every prediction must be the same up to the rounding of kernels
    // that depend on the batch size (byte-identical on AVX-512 here; within 3e-8 with
    // oneDNN capped at AVX2). Dropout's masks do not depend on the activations, so no
    // rounding can flip one. Keyed by batch row instead (the code before this test), up to
    // 0.96 and 14 of the 60 predictions changed.
    let tmp = tempfile::tempdir().unwrap();
    sap_harness::tch::manual_seed(5);
    let model = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
    checkpoint::save(&model, &tmp.path().join("net.safetensors")).unwrap();
    let data = synthetic().to_str().unwrap();
    let mut tables = Vec::new();
    for (batch, max_batch) in [(60, 128), (25, 128), (25, 1)] {
        let name = format!("b{batch}-m{max_batch}");
        let manifest = format!(
            "name = \"batches\"\nseed = 2\n[[cifar_eval]]\ndata = \"{data}\"\n\
             checkpoints = {{ net = \"net.safetensors\" }}\nexamples = 60\n\
             batch_size = {batch}\nmax_batch = {max_batch}\nsamples = 2\n\
             defenses = [{{ kind = \"dropout\", p = 0.5 }}]\n\
             attacks = [{{ kind = \"fgsm\", gradient_samples = 2 }}]\nlambdas = [8]\n"
        );
        std::fs::write(tmp.path().join(format!("{name}.toml")), manifest).unwrap();
        ok(
            &["run", &format!("{name}.toml"), "--run-id", &name],
            tmp.path(),
        );
        let run = tmp.path().join("results/batches").join(&name);
        let cell = std::fs::read_dir(run.join("cells"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("fgsm-l8"))
            .expect("the attacked cell");
        // (example, label, predicted, confidence, p_label) of each image.
        let predictions: Vec<(u64, i64, i64, f64, f64)> = text(&cell.join("predictions.csv"))
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let (i, p) = (
                    |k: usize| f[k].parse::<i64>().unwrap(),
                    |k: usize| f[k].parse::<f64>().unwrap(),
                );
                (i(1) as u64, i(2), i(3), p(4), p(5))
            })
            .collect();
        tables.push(predictions);
    }
    for (i, what) in [
        (1, "batches of 60 and of 25"),
        (2, "stacked passes and one per forward"),
    ] {
        let (a, b) = (&tables[0], &tables[i]);
        assert_eq!(a.len(), 60);
        let moved = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x.3 - y.3).abs().max((x.4 - y.4).abs()))
            .fold(0.0, f64::max);
        let flipped = a.iter().zip(b).filter(|(x, y)| x.2 != y.2).count();
        assert!(
            a.iter().zip(b).all(|(x, y)| (x.0, x.1) == (y.0, y.1)),
            "{what}: other images"
        );
        assert!(
            moved < 1e-5 && flipped == 0,
            "{what}: probabilities moved by up to {moved}, {flipped} predictions changed"
        );
    }
}
