//! ResNet-20 and Nature CNN logits and input gradients against PyTorch 2.13.
//!
//! `tests/golden/reference.py` holds the PyTorch modules and wrote
//! `tests/golden/golden.safetensors` (run it with the project's venv to regenerate). Weights
//! and inputs come from integer formulas repeated here exactly, so only outputs are stored.
//! A second test saves a checkpoint from Rust and has PyTorch load it with
//! `load_state_dict(strict=True)`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::venv_python;
use sap_harness::defense::DefensePoints;
use sap_harness::nn::{checkpoint, Architecture, Model};
use sap_harness::tch::{self, Device, Kind, Reduction, Tensor};

fn golden() -> BTreeMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/golden.safetensors");
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

/// `formula_value` of reference.py.
fn formula_value(k: i64, i: i64) -> f64 {
    ((k * 7919 + i * 104729) % 2000) as f64 / 1000.0 - 1.0
}

/// `formula_state` of reference.py, loaded into `model`.
fn load_formula_state(model: &Model) {
    let vars: BTreeMap<String, Tensor> = model.vs.variables().into_iter().collect();
    tch::no_grad(|| {
        for (i, (name, mut var)) in vars.into_iter().enumerate() {
            if var.kind() == Kind::Int64 {
                let _ = var.fill_(3);
                continue;
            }
            let size = var.size();
            let leaf = name.rsplit('.').next().unwrap();
            let values: Vec<f32> = (0..var.numel() as i64)
                .map(|k| {
                    let u = formula_value(k, i as i64);
                    let v = if leaf == "weight" && size.len() > 1 {
                        let fan_in = var.numel() as i64 / size[0];
                        u * (6.0 / fan_in as f64).sqrt()
                    } else if leaf == "weight" {
                        1.0 + 0.25 * u
                    } else if leaf == "running_var" {
                        1.0 + 0.5 * u * u
                    } else {
                        0.1 * u
                    };
                    v as f32
                })
                .collect();
            var.copy_(&Tensor::from_slice(&values).view(size.as_slice()));
        }
    });
}

fn formula_input(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|k| ((k * 31 + 17) % 256) as f32).collect();
    Tensor::from_slice(&v).view(shape)
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn check_against_torch(arch: Architecture, key: &str, shape: &[i64], labels: &[i64]) {
    let g = golden();
    let model = Model::new(arch, Device::Cpu);
    // Same tensor names and shapes as the PyTorch state dict.
    let ours: BTreeMap<String, Vec<i64>> = model
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect();
    let prefix = format!("{key}.shape.");
    let theirs: BTreeMap<String, Vec<i64>> = g
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&prefix)?;
            Some((name.to_owned(), Vec::<i64>::try_from(v).unwrap()))
        })
        .collect();
    assert_eq!(
        ours, theirs,
        "state dict names and shapes differ from PyTorch"
    );

    load_formula_state(&model);
    let x = formula_input(shape).set_requires_grad(true);
    let logits = model.forward(&x, false, &mut DefensePoints::dense());
    let loss = logits.cross_entropy_loss::<Tensor>(
        &Tensor::from_slice(labels),
        None,
        Reduction::Sum,
        -100,
        0.0,
    );
    let grad = Tensor::run_backward(&[loss], &[&x], false, false).remove(0);

    let want_logits = &g[&format!("{key}.logits")];
    let want_grad = &g[&format!("{key}.grad")];
    // f32 with different kernel orderings: 1e-4 of the output scale.
    let err = max_abs(&(&logits - want_logits)) / max_abs(want_logits).max(1.0);
    assert!(
        err < 1e-4,
        "{key} logits differ from PyTorch by {err} (relative)"
    );
    let err = max_abs(&(&grad - want_grad)) / max_abs(want_grad);
    assert!(
        err < 1e-4,
        "{key} input gradient differs from PyTorch by {err} (relative)"
    );
}

#[test]
fn resnet20_logits_and_input_gradients_match_pytorch() {
    check_against_torch(
        Architecture::ResNet20 { classes: 10 },
        "resnet20",
        &[2, 3, 32, 32],
        &[3, 7],
    );
}

#[test]
fn nature_cnn_q_values_and_input_gradients_match_pytorch() {
    check_against_torch(
        Architecture::NatureCnn { actions: 6 },
        "nature_cnn",
        &[1, 4, 84, 84],
        &[4],
    );
}

#[test]
fn a_resnet20_checkpoint_saved_here_loads_strictly_in_pytorch_and_gives_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(11);
    let model = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
    // A few training-mode passes move the batch-norm statistics and counters off their
    // initial values, so the test shows they travel too.
    for _ in 0..3 {
        let x = Tensor::rand([8, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0;
        let _ = tch::no_grad(|| model.forward(&x, true, &mut DefensePoints::dense()));
    }
    let ckpt = dir.path().join("model.safetensors");
    checkpoint::save(&model, &ckpt).unwrap();
    let x = formula_input(&[2, 3, 32, 32]);
    let input = dir.path().join("input.safetensors");
    Tensor::write_safetensors(&[("input", &x)], &input).unwrap();
    let out = dir.path().join("out.safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reference.py");
    let status = Command::new(venv_python())
        .arg(script)
        .arg("load")
        .args([&ckpt, &input, &out])
        .status()
        .unwrap();
    assert!(status.success(), "PyTorch could not load the checkpoint");
    let theirs = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    let ours = tch::no_grad(|| model.forward(&x, false, &mut DefensePoints::dense()));
    let err = max_abs(&(&ours - &theirs)) / max_abs(&theirs).max(1.0);
    assert!(err < 1e-4, "logits differ after the round trip by {err}");
}
