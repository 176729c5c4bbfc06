//! Network structure (defense points, shapes, parameter counts) and checkpoint errors.

use rand::SeedableRng;
use sap_harness::defense::{Defense, DefensePoints, DefenseRng};
use sap_harness::nn::{checkpoint, Architecture, CheckpointError, MlpConfig, Model};
use sap_harness::tch::{Device, Kind, Tensor};

fn mlp_arch(hidden: Vec<i64>) -> Architecture {
    Architecture::Mlp(MlpConfig {
        inputs: 4,
        hidden,
        outputs: 2,
        input_scale: 1.0,
    })
}

#[test]
fn each_network_visits_one_defense_point_per_relu_and_returns_one_row_per_example() {
    let cases = [
        (Architecture::ResNet20 { classes: 10 }, 19, 10),
        (Architecture::NatureCnn { actions: 18 }, 4, 18),
        (mlp_arch(vec![64, 64]), 2, 2),
    ];
    for (arch, points, outputs) in cases {
        let model = Model::new(arch.clone(), Device::Cpu);
        let mut shape = vec![3];
        shape.extend(arch.input_shape());
        let x = Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu)) * 255.0;
        let mut rng = DefenseRng::seed_from_u64(0);
        let mut p = DefensePoints::new(Defense::SAP_100, &mut rng);
        let out = model.forward(&x, false, &mut p);
        assert_eq!(p.visited(), points, "{}", arch.name());
        assert_eq!(model.defense_points(), points);
        assert_eq!(out.size(), vec![3, outputs]);
    }
}

#[test]
fn resnet20_has_the_papers_parameter_count() {
    // He et al. 2016, Table 6: 0.27M parameters (option A shortcuts have none).
    let model = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
    let params: i64 = model
        .vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    assert_eq!(params, 269_722);
}

#[test]
fn a_checkpoint_round_trip_restores_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let a = Model::new(Architecture::NatureCnn { actions: 6 }, Device::Cpu);
    checkpoint::save(&a, &path).unwrap();
    let mut b = Model::new(Architecture::NatureCnn { actions: 6 }, Device::Cpu);
    checkpoint::load(&mut b, &path).unwrap();
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    for (name, t) in va {
        assert!(t.equal(&vb[&name]), "{name}");
    }
}

#[test]
fn a_checkpoint_of_another_network_is_refused_naming_the_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.safetensors");
    checkpoint::save(&Model::new(mlp_arch(vec![8]), Device::Cpu), &path).unwrap();
    let mut other = Model::new(mlp_arch(vec![16]), Device::Cpu);
    let err = checkpoint::load(&mut other, &path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Mismatch { .. }));
    assert!(msg.contains("small.safetensors"), "{msg}");
    assert!(
        msg.contains("`hidden.0.weight` has shape [8, 4], the network needs [16, 4]"),
        "{msg}"
    );
    let mut resnet = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
    let msg = checkpoint::load(&mut resnet, &path)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`bn1.bias` [16] is missing"), "{msg}");
    assert!(msg.contains("and 116 more"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_checkpoint_gets_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.safetensors");
    std::fs::write(&path, "not tensors").unwrap();
    let mut m = Model::new(mlp_arch(vec![8]), Device::Cpu);
    let msg = checkpoint::load(&mut m, &path).unwrap_err().to_string();
    assert!(
        msg.contains("notes.safetensors: not a readable safetensors checkpoint"),
        "{msg}"
    );
    let missing = dir.path().join("absent.safetensors");
    let msg = checkpoint::load(&mut m, &missing).unwrap_err().to_string();
    assert!(
        msg.ends_with("absent.safetensors: does not exist; allowed: a safetensors checkpoint file"),
        "{msg}"
    );
}
