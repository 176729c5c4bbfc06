//! FGSM and PGD against their definitions (docs/ARCHITECTURE.md section 6), and the policy wrapper's
//! determinism.

mod common;

use std::path::Path;

use common::{mlp, seeded};
use rand::SeedableRng;
use sap_harness::attack::{
    input_gradient, Attack, AttackError, AttackKind, Backward, Loss, Source,
};
use sap_harness::defense::{Defense, DefensePoints, DefenseRng, Draws, DEFAULT_MAX_BATCH};
use sap_harness::nn::{checkpoint, Architecture, Model};
use sap_harness::policy::{PolicyError, PolicyWrapper};
use sap_harness::tch::{self, Device, Kind, Tensor};

fn pixels(rows: i64, cols: i64, seed: i64) -> Tensor {
    // Many values at 0 and 255, so clipping matters.
    seeded(seed, || {
        (Tensor::rand([rows, cols], (Kind::Float, Device::Cpu)) * 300.0 - 20.0).clamp(0.0, 255.0)
    })
}

#[test]
fn fgsm_on_a_linear_network_is_the_analytic_sign_gradient_step() {
    // logits = W x / 255 + b; d CE / dx = W^T (softmax - onehot) / 255.
    let model = mlp(3, vec![], 2, 1);
    let vars = model.vs.variables();
    tch::no_grad(|| {
        vars["out.weight"]
            .shallow_clone()
            .copy_(&Tensor::from_slice2(&[
                [1.0f32, -2.0, 0.5],
                [-1.0, 1.0, 3.0],
            ]));
        vars["out.bias"]
            .shallow_clone()
            .copy_(&Tensor::from_slice(&[0.1f32, -0.1]));
    });
    let x = Tensor::from_slice2(&[[100.0f32, 200.0, 254.0]]);
    let label = Tensor::from_slice(&[0i64]);
    // By hand: W row difference (row 1 - row 0) = (-2, 3, 2.5); softmax - onehot for label 0
    // is (s0 - 1, s1) = (-s1, s1) with s1 > 0, so the gradient's sign is sign(-2, 3, 2.5)
    // = (-1, +1, +1).
    let attack = Attack {
        kind: AttackKind::Fgsm,
        lambda: 4.0,
        gradient_samples: 1,
        loss: Loss::Ce,
        backward: Backward::Mask,
        source: Source::Defended,
    };
    let mut rng = DefenseRng::seed_from_u64(0);
    let adv = attack.perturb(
        &model,
        Defense::Dense,
        &mut Draws::Shared(&mut rng),
        &x,
        &label,
        DEFAULT_MAX_BATCH,
    );
    let adv = Vec::<f32>::try_from(adv.flatten(0, -1)).unwrap();
    assert_eq!(
        adv,
        vec![96.0, 204.0, 255.0],
        "the last pixel is clipped at 255"
    );
}

#[test]
fn fgsm_and_pgd_stay_inside_the_lambda_ball_and_the_pixel_range() {
    let model = mlp(64, vec![32, 32], 5, 2);
    let x = pixels(16, 64, 3);
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0]);
    let kinds = [
        AttackKind::Fgsm,
        AttackKind::Pgd {
            steps: 5,
            step_size: None,
            random_start: true,
        },
        AttackKind::Pgd {
            steps: 3,
            step_size: Some(7.0),
            random_start: false,
        },
    ];
    for kind in kinds {
        for defense in [Defense::Dense, Defense::SAP_100] {
            for lambda in [0.0, 1.0, 8.0, 64.0] {
                let attack = Attack {
                    kind,
                    lambda,
                    gradient_samples: 3,
                    loss: Loss::Ce,
                    backward: Backward::Mask,
                    source: Source::Defended,
                };
                let mut rng = DefenseRng::seed_from_u64(5);
                let adv = attack.perturb(
                    &model,
                    defense,
                    &mut Draws::Shared(&mut rng),
                    &x,
                    &labels,
                    DEFAULT_MAX_BATCH,
                );
                let dist = (&adv - &x).abs().max().double_value(&[]);
                assert!(dist <= lambda + 1e-4, "{kind:?} {lambda}: moved {dist}");
                assert!(adv.min().double_value(&[]) >= 0.0);
                assert!(adv.max().double_value(&[]) <= 255.0);
                if lambda >= 8.0 {
                    assert!(dist > 0.0, "{kind:?} did not move");
                }
            }
        }
    }
}

#[test]
fn pgd_increases_the_loss_over_fgsm_on_a_dense_network() {
    let model = mlp(64, vec![32], 5, 4);
    let x = pixels(32, 64, 6);
    let labels = Tensor::arange(32, (Kind::Int64, Device::Cpu)).remainder(5);
    let loss = |adv: &Tensor| {
        let logits = tch::no_grad(|| model.forward(adv, false, &mut DefensePoints::dense()));
        logits.cross_entropy_for_logits(&labels).double_value(&[])
    };
    let mut rng = DefenseRng::seed_from_u64(0);
    let mut on_dense = |kind| {
        let attack = Attack {
            kind,
            lambda: 8.0,
            gradient_samples: 1,
            loss: Loss::Ce,
            backward: Backward::Mask,
            source: Source::Defended,
        };
        let draws = &mut Draws::Shared(&mut rng);
        attack.perturb(
            &model,
            Defense::Dense,
            draws,
            &x,
            &labels,
            DEFAULT_MAX_BATCH,
        )
    };
    let fgsm = on_dense(AttackKind::Fgsm);
    let pgd = on_dense(AttackKind::Pgd {
        steps: 10,
        step_size: Some(2.0),
        random_start: false,
    });
    assert!(loss(&fgsm) > loss(&x));
    assert!(loss(&pgd) >= loss(&fgsm) - 1e-6);
}

/// Central finite differences of the summed cross-entropy in f64.
fn check_gradient_by_finite_differences(
    mut model: Model,
    x: Tensor,
    labels: Tensor,
    coords: &[i64],
) {
    model.vs.double();
    let x = x.to_kind(Kind::Double);
    let mut rng = DefenseRng::seed_from_u64(0);
    let g = input_gradient(
        &model,
        Defense::Dense,
        &mut Draws::Shared(&mut rng),
        &x,
        &labels,
        1,
        DEFAULT_MAX_BATCH,
    );
    let g = g.flatten(0, -1);
    let loss = |x: &Tensor| {
        tch::no_grad(|| {
            model
                .forward(x, false, &mut DefensePoints::dense())
                .cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Sum, -100, 0.0)
                .double_value(&[])
        })
    };
    let eps = 1e-3; // pixel units; the loss is smooth at this scale away from ReLU kinks
    for &c in coords {
        let bump = |d: f64| {
            let flat = x.flatten(0, -1).copy();
            let _ = flat.get(c).g_add_scalar_(d);
            loss(&flat.view(x.size().as_slice()))
        };
        let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
        let an = g.double_value(&[c]);
        assert!(
            (fd - an).abs() <= 1e-6 + 1e-4 * an.abs(),
            "coordinate {c}: finite difference {fd}, autograd {an}"
        );
    }
}

#[test]
fn the_input_gradient_matches_finite_differences_on_an_mlp() {
    let model = mlp(20, vec![16, 16], 4, 8);
    let x = pixels(3, 20, 9);
    let labels = Tensor::from_slice(&[0i64, 3, 1]);
    check_gradient_by_finite_differences(model, x, labels, &[0, 7, 19, 25, 59]);
}

#[test]
fn the_input_gradient_matches_finite_differences_on_resnet20() {
    let (model, x) = seeded(10, || {
        let model = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
        let x = (Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0).round();
        (model, x)
    });
    let labels = Tensor::from_slice(&[6i64]);
    check_gradient_by_finite_differences(model, x, labels, &[0, 500, 1500, 3071]);
}

#[test]
fn attack_parameters_out_of_range_are_refused() {
    let bad =
        |kind, lambda, gradient_samples| Attack::new(kind, lambda, gradient_samples).validate();
    let pgd = |steps, step_size| AttackKind::Pgd {
        steps,
        step_size,
        random_start: false,
    };
    assert_eq!(
        bad(AttackKind::Fgsm, -1.0, 1),
        Err(AttackError::Lambda(-1.0))
    );
    assert_eq!(
        bad(AttackKind::Fgsm, 1.0, 0),
        Err(AttackError::GradientSamples)
    );
    assert_eq!(bad(pgd(0, None), 1.0, 1), Err(AttackError::Steps));
    assert_eq!(
        bad(pgd(3, Some(0.0)), 1.0, 1),
        Err(AttackError::StepSize(0.0))
    );
    let apgd = |iterations, restarts| AttackKind::Apgd {
        iterations,
        restarts,
        random_start: true,
    };
    assert_eq!(bad(apgd(0, 1), 1.0, 1), Err(AttackError::Iterations));
    assert_eq!(bad(apgd(10, 0), 1.0, 1), Err(AttackError::Restarts));
    assert_eq!(bad(apgd(10, 1), 1.0, 1), Ok(()));
    let model = mlp(4, vec![4], 2, 0);
    assert!(matches!(
        PolicyWrapper::new(model, Defense::Dense, None, 0, 1),
        Err(PolicyError::Samples)
    ));
}

fn wrapper_outputs(ckpt: &Path, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut model = mlp(64, vec![32, 32], 5, 0);
    checkpoint::load(&mut model, ckpt).unwrap();
    let attack = Attack {
        kind: AttackKind::Fgsm,
        lambda: 8.0,
        gradient_samples: 4,
        loss: Loss::Ce,
        backward: Backward::Mask,
        source: Source::Defended,
    };
    let mut policy = PolicyWrapper::new(model, Defense::SAP_100, Some(attack), 3, seed).unwrap();
    let x = Tensor::from_slice(
        &(0..64 * 8)
            .map(|v| (v * 37 % 256) as f32)
            .collect::<Vec<_>>(),
    )
    .view([8, 64]);
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2]);
    let c = policy.classify(&x, &labels);
    let probs = Vec::<f32>::try_from(c.probabilities.flatten(0, -1)).unwrap();
    (probs, policy.act(&x))
}

#[test]
fn the_wrapper_gives_the_same_outputs_for_the_same_seed_whatever_runs_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("mlp.safetensors");
    checkpoint::save(&mlp(64, vec![32, 32], 5, 12), &ckpt).unwrap();
    let alone = wrapper_outputs(&ckpt, 77);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (a, b) = std::thread::scope(|s| {
        // Another thread keeps drawing from torch's global generator meanwhile.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seeded(3, || {
                    let _ = Tensor::rand([64], (Kind::Float, Device::Cpu)).dropout(0.5, true);
                });
            }
        });
        let a = s.spawn(|| wrapper_outputs(&ckpt, 77));
        let b = s.spawn(|| wrapper_outputs(&ckpt, 77));
        let out = (a.join().unwrap(), b.join().unwrap());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    assert_eq!(alone, a);
    assert_eq!(alone, b);
    assert_ne!(
        alone.0,
        wrapper_outputs(&ckpt, 78).0,
        "another seed draws other masks"
    );
}

/// A random ResNet-20 and two random images, the same at every call.
fn resnet_and_two_images() -> (Model, Tensor) {
    seeded(12, || {
        let model = Model::new(Architecture::ResNet20 { classes: 10 }, Device::Cpu);
        let x = (Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0).round();
        (model, x)
    })
}

/// Softmax probabilities and the FGSM input of a SAP-100 ResNet-20 wrapper (samples 3,
/// gradient samples 4) on a batch of 2, with passes stacked up to `max_batch` rows.
fn stacked_outputs(max_batch: usize) -> (Tensor, Tensor) {
    let (model, x) = resnet_and_two_images();
    let labels = Tensor::from_slice(&[3i64, 8]);
    let attack = Attack {
        kind: AttackKind::Fgsm,
        lambda: 8.0,
        gradient_samples: 4,
        loss: Loss::Ce,
        backward: Backward::Mask,
        source: Source::Defended,
    };
    let mut wrapper = PolicyWrapper::new(model, Defense::SAP_100, Some(attack), 3, 21)
        .unwrap()
        .with_max_batch(max_batch);
    let c = wrapper.classify(&x, &labels);
    (c.probabilities, c.inputs)
}

#[test]
fn stacking_the_stochastic_passes_along_the_batch_leaves_the_draws_as_they_are() {
    // max_batch 2: one pass per forward (the unbatched path); 5: two passes per forward and
    // a rest; 1024: all passes in one forward. Every pass keeps its masks, so predictions
    // agree up to the float rounding of batch-size-dependent kernels, and the FGSM inputs,
    // signs of the same gradient, agree exactly but for a gradient component near zero.
    let (p1, x1) = stacked_outputs(2);
    for max_batch in [5, 1024] {
        let (p, x) = stacked_outputs(max_batch);
        let diff = (&p - &p1).abs().max().double_value(&[]);
        assert!(
            diff < 1e-5,
            "max_batch {max_batch}: probabilities differ by {diff}"
        );
        let moved = (&x - &x1).abs().gt(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(
            moved <= 3,
            "max_batch {max_batch}: {moved} of 6144 pixels moved otherwise"
        );
    }
    // Another wrapper seed draws other masks: the comparison above can fail.
    let (model, x) = resnet_and_two_images();
    let mut other = PolicyWrapper::new(model, Defense::SAP_100, None, 3, 22).unwrap();
    let p = other.probabilities(&x);
    let no_attack = {
        let (model, _) = resnet_and_two_images();
        let mut w = PolicyWrapper::new(model, Defense::SAP_100, None, 3, 21).unwrap();
        w.probabilities(&x)
    };
    assert!((&p - &no_attack).abs().max().double_value(&[]) > 1e-4);
}

#[test]
fn a_row_draws_the_same_masks_alone_or_anywhere_in_a_batch() {
    // Drawn under the torch-generator lock: an unguarded draw here moves the generator under
    // another test's seeded network, which then differs run to run.
    let pre = seeded(5, || {
        (Tensor::rand([3, 40], (Kind::Float, Device::Cpu)) - 0.3) * 4.0
    });
    for tensor_ops in [false, true] {
        let run = |rows: &Tensor, keys: Vec<u64>| {
            let mut points = DefensePoints::with_row_keys(Defense::SAP_100, keys);
            if tensor_ops {
                points = points.with_tensor_ops();
            }
            // Two defense points: the second draws from the row's stream at point 1.
            let h = points.relu(rows);
            points.relu(&(h - 0.2))
        };
        let all = run(&pre, vec![5, 6, 7]);
        let alone = run(&pre.narrow(0, 1, 1), vec![6]);
        assert!(alone.equal(&all.narrow(0, 1, 1)), "tensor ops {tensor_ops}");
        let reordered = run(&pre.flip([0i64]), vec![7, 6, 5]);
        assert!(
            reordered.equal(&all.flip([0i64])),
            "tensor ops {tensor_ops}"
        );
        let other = run(&pre, vec![8, 9, 10]);
        assert!(!other.equal(&all), "tensor ops {tensor_ops}");
    }
}

#[test]
fn rows_acting_with_their_own_generators_choose_what_each_would_choose_alone() {
    // A Nature CNN under SAP-100 and PGD with a random start: each row of a batch, drawing
    // from its own generator, acts as a wrapper with that generator acts on the row alone.
    let (model, obs) = seeded(13, || {
        let model = Model::new(Architecture::NatureCnn { actions: 6 }, Device::Cpu);
        let obs = (Tensor::rand([3, 4, 84, 84], (Kind::Float, Device::Cpu)) * 255.0).round();
        (model, obs)
    });
    let attack = Attack {
        kind: AttackKind::Pgd {
            steps: 2,
            step_size: Some(2.0),
            random_start: true,
        },
        lambda: 4.0,
        gradient_samples: 3,
        loss: Loss::Ce,
        backward: Backward::Mask,
        source: Source::Defended,
    };
    let batched = PolicyWrapper::new(model, Defense::SAP_100, Some(attack), 2, 0).unwrap();
    let seeds = [31u64, 32, 33];
    let mut rngs: Vec<DefenseRng> = seeds
        .iter()
        .map(|&s| DefenseRng::seed_from_u64(s))
        .collect();
    // Three steps, so that each generator's position after a step matters.
    let mut together = Vec::new();
    for _ in 0..3 {
        together.push(batched.act_rows(&obs, &mut rngs));
    }
    let model = batched.into_model();
    let mut alone = PolicyWrapper::new(model, Defense::SAP_100, Some(attack), 2, 0).unwrap();
    for (b, &seed) in seeds.iter().enumerate() {
        alone.reseed(seed);
        for (step, actions) in together.iter().enumerate() {
            let own = alone.act(&obs.narrow(0, b as i64, 1));
            assert_eq!(own[0], actions[b], "row {b}, step {step}");
        }
    }
}

#[test]
fn per_row_generators_give_each_row_the_keys_and_noise_of_a_batch_of_its_own() {
    let seeds = [41u64, 42, 43];
    let mut rngs: Vec<DefenseRng> = seeds
        .iter()
        .map(|&s| DefenseRng::seed_from_u64(s))
        .collect();
    let mut draws = Draws::PerRow(&mut rngs);
    let keys = draws.pass_keys(Defense::SAP_100, 4, 3);
    let noise = draws.uniform_noise(3 * 5, 3, 2.0);
    for (b, &seed) in seeds.iter().enumerate() {
        let mut rng = DefenseRng::seed_from_u64(seed);
        let mut alone = Draws::Shared(&mut rng);
        let own = alone.pass_keys(Defense::SAP_100, 4, 1);
        for pass in 0..4 {
            assert_eq!(keys[pass][b], own[pass][0], "row {b}, pass {pass}");
        }
        assert_eq!(noise[5 * b..5 * b + 5], alone.uniform_noise(5, 1, 2.0)[..]);
    }
    assert_ne!(keys[0][0], keys[0][1], "rows draw apart");
    assert_ne!(keys[0][0], keys[1][0], "passes draw apart");
    // A deterministic defense draws nothing from the generators.
    let mut rng = DefenseRng::seed_from_u64(1);
    let _ = Draws::Shared(&mut rng).pass_keys(Defense::Dense, 4, 2);
    assert_eq!(
        rand::RngCore::next_u64(&mut rng),
        rand::RngCore::next_u64(&mut DefenseRng::seed_from_u64(1))
    );
}

#[test]
fn a_classification_keeps_each_passes_prediction_for_the_optimistic_count() {
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2]);
    let x = pixels(8, 64, 7);
    let passes = |defense: Defense, max_batch: usize| {
        let model = mlp(64, vec![32, 32], 5, 3);
        let mut w = PolicyWrapper::new(model, defense, None, 5, 9)
            .unwrap()
            .with_max_batch(max_batch);
        let c = w.classify(&x, &labels);
        (
            c.pass_predictions.shallow_clone(),
            c.any_pass_correct(&labels),
            c,
        )
    };
    let (stacked, any, _) = passes(Defense::SAP_100, 1024);
    let (one_by_one, _, _) = passes(Defense::SAP_100, 8);
    assert_eq!(stacked.size(), [5, 8]);
    assert_eq!(
        Vec::<i64>::try_from(stacked.flatten(0, -1)).unwrap(),
        Vec::<i64>::try_from(one_by_one.flatten(0, -1)).unwrap(),
        "each pass keeps its draws however the passes are stacked"
    );
    let by_hand: Vec<bool> = (0..8)
        .map(|b| (0..5).any(|s| stacked.int64_value(&[s, b]) == labels.int64_value(&[b])))
        .collect();
    assert_eq!(Vec::<bool>::try_from(any).unwrap(), by_hand);
    // A deterministic defense runs one pass, whose prediction is the averaged one.
    let (dense, _, c) = passes(Defense::Dense, 1024);
    assert_eq!(dense.size(), [1, 8]);
    assert!(dense
        .squeeze_dim(0)
        .equal(&c.probabilities.argmax(-1, false)));
}
