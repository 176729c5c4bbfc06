//! The adaptive attacks (docs/ARCHITECTURE.md section 6): APGD against cases whose optimum is known, the
//! strength ordering of the attacks on a trained network, BPDA's identity backward and the
//! transfer attack.

mod common;

use common::mlp;
use rand::SeedableRng;
use sap_harness::attack::{
    apgd, loss_gradient, Attack, AttackKind, Backward, GradientSpec, Loss, Source,
};
use sap_harness::defense::{
    Defense, DefensePoints, DefenseRng, Draws, Sampling, DEFAULT_MAX_BATCH,
};
use sap_harness::experiment::robustness::glyphs;
use sap_harness::nn::Model;
use sap_harness::tch::{self, nn::OptimizerConfig, Kind, Tensor};

fn set(model: &Model, name: &str, values: &Tensor) {
    tch::no_grad(|| {
        model.vs.variables()[name].shallow_clone().copy_(values);
    });
}

fn apgd_attack(
    lambda: f64,
    iterations: u32,
    restarts: u32,
    random_start: bool,
    loss: Loss,
) -> Attack {
    let kind = AttackKind::Apgd {
        iterations,
        restarts,
        random_start,
    };
    Attack {
        loss,
        ..Attack::new(kind, lambda, 1)
    }
}

fn run(
    attack: &Attack,
    model: &Model,
    defense: Defense,
    x: &Tensor,
    y: &Tensor,
    seed: u64,
) -> Tensor {
    let mut rng = DefenseRng::seed_from_u64(seed);
    attack.perturb(
        model,
        defense,
        &mut Draws::Shared(&mut rng),
        x,
        y,
        DEFAULT_MAX_BATCH,
    )
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
}

#[test]
fn apgd_on_a_linear_network_reaches_the_corner_that_maximises_the_loss() {
    // logits = W x / 255 + b with two classes: the cross-entropy and the margin on label 0
    // both grow with (w1 - w0) . x, so the optimum over the ball is the corner
    // x + lambda sign(w1 - w0) = x + 4 (-1, +1, +1), clipped to 255.
    let model = mlp(3, vec![], 2, 1);
    set(
        &model,
        "out.weight",
        &Tensor::from_slice2(&[[1.0f32, -2.0, 0.5], [-1.0, 1.0, 3.0]]),
    );
    set(&model, "out.bias", &Tensor::from_slice(&[0.1f32, -0.1]));
    let x = Tensor::from_slice2(&[[100.0f32, 200.0, 254.0]]);
    let y = Tensor::from_slice(&[0i64]);
    for (random_start, restarts) in [(false, 1), (true, 1), (true, 3)] {
        for loss in [Loss::Ce, Loss::Margin] {
            let attack = apgd_attack(4.0, 10, restarts, random_start, loss);
            let adv = run(&attack, &model, Defense::Dense, &x, &y, 5);
            assert_eq!(
                values(&adv),
                vec![96.0, 204.0, 255.0],
                "{loss:?}, random start {random_start}, {restarts} restarts"
            );
        }
    }
}

/// A one-pixel network whose margin loss on label 0 is `-0.1 |x - 100|`: the maximum lies
/// inside the ball, so a fixed step oscillates around it.
fn peaked() -> Model {
    let model = mlp(1, vec![2], 2, 2);
    // hidden = (relu(x - 100), relu(100 - x)); z0 = 0, z1 = -0.1 (h0 + h1).
    set(
        &model,
        "hidden.0.weight",
        &Tensor::from_slice2(&[[255.0f32], [-255.0]]),
    );
    set(
        &model,
        "hidden.0.bias",
        &Tensor::from_slice(&[-100.0f32, 100.0]),
    );
    set(
        &model,
        "out.weight",
        &Tensor::from_slice2(&[[0.0f32, 0.0], [-0.1, -0.1]]),
    );
    set(&model, "out.bias", &Tensor::from_slice(&[0.0f32, 0.0]));
    model
}

#[test]
fn apgd_keeps_its_best_point_and_halves_its_step_to_reach_an_interior_maximum() {
    let model = peaked();
    let x = Tensor::from_slice2(&[[90.0f32]]);
    let y = Tensor::from_slice(&[0i64]);
    let after = |iterations| {
        let attack = apgd_attack(16.0, iterations, 1, false, Loss::Margin);
        values(&run(&attack, &model, Defense::Dense, &x, &y, 0))[0]
    };
    // By hand, step 2 lambda = 32 in the ball [74, 106]: x1 = min(90 + 32, 106) = 106 (loss
    // -0.6); then z = 106 - 32 = 74 and x2 = 106 + 0.75 (74 - 106) + 0.25 (106 - 90) = 86
    // (loss -1.4), worse, so the best point stays 106.
    assert_eq!(after(1), 106.0);
    assert_eq!(after(2), 106.0);
    // Steps of 32, 24 and so on never land within 0.5 of 100; halving at the checkpoints
    // does.
    let best = after(100);
    assert!((best - 100.0).abs() < 0.5, "APGD ended at {best}");
}

/// An MLP trained on glyphs as the robustness jobs train it (Adam 1e-3, 400 batches of 64).
fn trained_glyph_mlp() -> Model {
    let model = mlp(64, vec![64, 64], 10, 11);
    let mut opt = tch::nn::Adam::default().build(&model.vs, 1e-3).unwrap();
    for step in 0..400u64 {
        let (x, y) = glyphs(64, 1000 + step);
        let logits = model.forward(&x, true, &mut DefensePoints::dense());
        opt.backward_step(&logits.cross_entropy_for_logits(&y));
    }
    model
}

fn correct(model: &Model, x: &Tensor, y: &Tensor) -> Vec<bool> {
    let pred = tch::no_grad(|| {
        model
            .forward(x, false, &mut DefensePoints::dense())
            .argmax(-1, false)
    });
    Vec::<bool>::try_from(pred.eq_tensor(y)).unwrap()
}

fn share(v: &[bool]) -> f64 {
    v.iter().filter(|&&c| c).count() as f64 / v.len() as f64
}

#[test]
fn on_a_dense_network_apgd_beats_pgd_which_beats_fgsm_and_the_apgd_pair_leaves_almost_nothing() {
    let model = trained_glyph_mlp();
    let (x, y) = glyphs(400, 77);
    let clean = share(&correct(&model, &x, &y));
    assert!(clean > 0.9, "clean accuracy {clean}");
    // This MLP is close to linear, so FGSM is close to the best attack except near the
    // radius where the glyphs' classes meet: there the iterative attacks pull ahead.
    let fgsm = |lambda| Attack::new(AttackKind::Fgsm, lambda, 1);
    let pgd = |lambda| {
        let kind = AttackKind::Pgd {
            steps: 10,
            step_size: None,
            random_start: false,
        };
        Attack::new(kind, lambda, 1)
    };
    let under = |a: &Attack| correct(&model, &run(a, &model, Defense::Dense, &x, &y, 3), &y);
    let lambda = 56.0;
    let a_fgsm = share(&under(&fgsm(lambda)));
    let a_pgd = share(&under(&pgd(lambda)));
    let a_ce = share(&under(&apgd_attack(lambda, 100, 1, true, Loss::Ce)));
    eprintln!("lambda {lambda}: clean {clean}, fgsm {a_fgsm}, pgd {a_pgd}, apgd-ce {a_ce}");
    assert!(
        a_ce <= a_pgd && a_pgd <= a_fgsm,
        "fgsm {a_fgsm}, pgd {a_pgd}, apgd-ce {a_ce}"
    );
    let lambda = 60.0;
    let a_fgsm = share(&under(&fgsm(lambda)));
    let c_ce = under(&apgd_attack(lambda, 100, 1, true, Loss::Ce));
    let c_dlr = under(&apgd_attack(lambda, 100, 1, true, Loss::Dlr));
    let worst: Vec<bool> = c_ce.iter().zip(&c_dlr).map(|(a, b)| *a && *b).collect();
    let a_worst = share(&worst);
    eprintln!("lambda {lambda}: fgsm {a_fgsm}, apgd-ce and apgd-dlr {a_worst}");
    assert!(
        a_fgsm >= 0.1,
        "FGSM should leave a good share correct: {a_fgsm}"
    );
    assert!(a_worst <= 0.03, "APGD-CE + APGD-DLR left {a_worst} correct");
}

#[test]
fn with_the_identity_backward_sap_close_to_dense_gives_the_dense_gradient() {
    let model = mlp(64, vec![32, 32], 5, 4);
    let (x, _) = glyphs(6, 9);
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0]);
    let gradient = |defense: Defense, backward: Backward| {
        let mut rng = DefenseRng::seed_from_u64(8);
        let spec = GradientSpec {
            loss: Loss::Ce,
            samples: 1,
            max_batch: DEFAULT_MAX_BATCH,
            backward,
        };
        loss_gradient(&model, defense, &mut Draws::Shared(&mut rng), &x, &y, spec).0
    };
    let dense = gradient(Defense::Dense, Backward::Mask);
    let relative =
        |g: &Tensor| (g - &dense).norm().double_value(&[]) / dense.norm().double_value(&[]);
    let sap = |frac| Defense::Sap {
        frac,
        sampling: Sampling::Exact,
    };
    // The mask backward multiplies by the rescaling factors, large for the rare kept units
    // of tiny share; the identity backward does not, and tends to the dense gradient (here
    // 0.6% apart at frac 16, while the mask backward stays 17% apart).
    let identity = relative(&gradient(sap(16.0), Backward::Identity));
    let mask = relative(&gradient(sap(16.0), Backward::Mask));
    assert!(
        identity < 0.02,
        "identity backward: relative difference {identity}"
    );
    assert!(mask > 5.0 * identity, "mask {mask}, identity {identity}");
    // With few draws the defended forward pass is far from dense, and the two backward
    // passes differ: the mask zeroes the dropped units' gradient, the identity does not.
    let identity = gradient(sap(0.1), Backward::Identity);
    let mask = gradient(sap(0.1), Backward::Mask);
    let apart = (&identity - &mask).norm().double_value(&[]) / mask.norm().double_value(&[]);
    assert!(
        apart > 0.05,
        "identity and mask backward nearly agree: {apart}"
    );
}

#[test]
fn a_transfer_attack_on_a_defended_network_is_the_dense_networks_white_box_attack() {
    let model = mlp(64, vec![32, 32], 5, 6);
    let (x, _) = glyphs(8, 10);
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2]);
    for kind in [
        AttackKind::Fgsm,
        AttackKind::Apgd {
            iterations: 5,
            restarts: 1,
            random_start: true,
        },
    ] {
        let white_box = run(
            &Attack::new(kind, 8.0, 1),
            &model,
            Defense::Dense,
            &x,
            &y,
            4,
        );
        let transfer = Attack {
            source: Source::Dense,
            ..Attack::new(kind, 8.0, 10)
        };
        let adv = run(&transfer, &model, Defense::SAP_100, &x, &y, 4);
        assert_eq!(values(&adv), values(&white_box), "{kind:?}");
        assert_eq!(transfer.effective_gradient_samples(&Defense::SAP_100), 1);
    }
}

#[test]
fn the_apgd_checkpoints_are_exported_for_schedules_of_any_length() {
    assert_eq!(apgd::checkpoints(100).first(), Some(&22));
    assert!(apgd::checkpoints(1000)
        .windows(2)
        .all(|w| w[1] - w[0] >= 60));
}

#[test]
fn a_transfer_attack_from_a_surrogate_perturbs_with_the_surrogates_gradient() {
    use sap_harness::policy::PolicyWrapper;
    let (x, _) = glyphs(8, 12);
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2]);
    let surrogate = || mlp(64, vec![32, 32], 5, 13);
    let white_box_on_surrogate = run(
        &Attack::new(AttackKind::Fgsm, 8.0, 1),
        &surrogate(),
        Defense::Dense,
        &x,
        &y,
        1,
    );
    let attack = Attack {
        source: Source::Checkpoint,
        ..Attack::new(AttackKind::Fgsm, 8.0, 10)
    };
    let mut wrapper = PolicyWrapper::new(
        mlp(64, vec![32, 32], 5, 14),
        Defense::SAP_100,
        Some(attack),
        3,
        1,
    )
    .unwrap()
    .with_source(surrogate());
    let c = wrapper.classify(&x, &y);
    assert_eq!(values(&c.inputs), values(&white_box_on_surrogate));
    // The defended network's own white-box FGSM differs.
    let own = run(
        &Attack::new(AttackKind::Fgsm, 8.0, 1),
        &mlp(64, vec![32, 32], 5, 14),
        Defense::Dense,
        &x,
        &y,
        1,
    );
    assert_ne!(values(&own), values(&white_box_on_surrogate));
}
