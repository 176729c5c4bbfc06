//! SAP, dropout and Gaussian noise against their definitions (docs/ARCHITECTURE.md section 5).

use rand::SeedableRng;
use sap_harness::defense::sap::{self, Sampling};
use sap_harness::defense::{Defense, DefenseError, DefensePoints, DefenseRng};
use sap_harness::tch::{Kind, Tensor};

/// Runs `defense` once on a batch of `copies` identical rows of `h`: every row gets its own
/// draws, so the rows are independent samples of the defended map.
fn sample_rows(defense: Defense, h: &[f32], copies: i64, seed: u64) -> Vec<Vec<f32>> {
    sample_rows_with(defense, h, copies, seed, false)
}

/// [`sample_rows`], with the draws made by the host sampler or by tensor operations (the
/// accelerator's path, run here on CPU tensors).
fn sample_rows_with(
    defense: Defense,
    h: &[f32],
    copies: i64,
    seed: u64,
    tensor_ops: bool,
) -> Vec<Vec<f32>> {
    let n = h.len() as i64;
    let batch = Tensor::from_slice(h).view([1, n]).repeat([copies, 1]);
    let mut rng = DefenseRng::seed_from_u64(seed);
    let mut points = DefensePoints::new(defense, &mut rng);
    if tensor_ops {
        points = points.with_tensor_ops();
    }
    let out = points.apply(&batch);
    let flat = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
    flat.chunks(h.len()).map(<[f32]>::to_vec).collect()
}

#[test]
fn sap_keeps_units_with_the_closed_form_rescaling_and_zeroes_the_rest() {
    // |h| = 0, 1, 3, 0, 4: total 8, p = 0, 1/8, 3/8, 0, 1/2; frac = 1 gives r = 5 draws.
    let h = [0.0f32, 1.0, 3.0, 0.0, 4.0];
    assert_eq!(sap::draws(1.0, 5), 5);
    assert_eq!(
        sap::draws(0.5, 5),
        3,
        "round(2.5) rounds half away from zero"
    );
    assert_eq!(sap::draws(0.1, 16384), 1638);
    // q_j = 1 - (1 - p_j)^5, worked by hand.
    let q = [
        0.0,
        1.0 - 0.875f64.powi(5),
        1.0 - 0.625f64.powi(5),
        0.0,
        1.0 - 0.5f64.powi(5),
    ];
    assert!((q[1] - 0.487_091_064_453_125).abs() < 1e-15);
    for sampling in [Sampling::Exact, Sampling::Independent] {
        let rows = sample_rows(
            Defense::Sap {
                frac: 1.0,
                sampling,
            },
            &h,
            4000,
            5,
        );
        let mut kept = [0usize; 5];
        for row in &rows {
            for j in 0..5 {
                if row[j] != 0.0 {
                    kept[j] += 1;
                    let want = h[j] as f64 / q[j];
                    assert!(
                        (row[j] as f64 - want).abs() < 1e-5 * want,
                        "{sampling:?} unit {j}"
                    );
                }
            }
        }
        assert_eq!(
            (kept[0], kept[3]),
            (0, 0),
            "units with zero mass are never kept"
        );
        for j in [1, 2, 4] {
            // Binomial(4000, q) frequency; 5 standard errors is at most 0.04.
            let freq = kept[j] as f64 / rows.len() as f64;
            assert!(
                (freq - q[j]).abs() < 0.04,
                "{sampling:?} unit {j}: {freq} vs {}",
                q[j]
            );
        }
    }
}

#[test]
fn an_all_zero_map_stays_zero_under_every_defense_but_noise() {
    let h = [0.0f32; 7];
    for defense in [
        Defense::SAP_100,
        Defense::Sap {
            frac: 0.3,
            sampling: Sampling::Independent,
        },
        Defense::Dropout { p: 0.5 },
        // sigma is relative to the map's mean |h|, which is 0.
        Defense::Gaussian { sigma: 1.0 },
    ] {
        for tensor_ops in [false, true] {
            for row in sample_rows_with(defense, &h, 20, 1, tensor_ops) {
                let what = format!("{defense:?} (tensor ops: {tensor_ops}): {row:?}");
                assert!(row.iter().all(|&v| v == 0.0), "{what}");
            }
        }
    }
}

#[test]
fn keep_probability_fast_agrees_with_the_libm_form() {
    for &r in &[1u64, 5, 100, 16_384, 1_000_000] {
        for e in 0..=300 {
            let p = 10f64.powf(-(e as f64) / 20.0); // 1 down to 1e-15
            let want = sap::keep_probability(p, r);
            let got = sap::keep_probability_fast(p, r);
            assert!(
                ((got - want) / want).abs() < 1e-9,
                "p = {p:e}, r = {r}: {got} vs {want}"
            );
        }
    }
    assert_eq!(sap::keep_probability_fast(0.0, 10), 0.0);
    assert!((sap::keep_probability_fast(1.0, 1) - 1.0).abs() < 1e-12);
}

/// Per-unit Monte-Carlo means over `copies` rows, and their standard errors from `variance`,
/// for the host sampler and for the tensor-op sampler alike.
fn check_unbiased(defense: Defense, h: &[f32], variance: impl Fn(usize) -> f64) {
    for tensor_ops in [false, true] {
        check_unbiased_with(defense, h, &variance, tensor_ops);
    }
}

fn check_unbiased_with(
    defense: Defense,
    h: &[f32],
    variance: &impl Fn(usize) -> f64,
    tensor_ops: bool,
) {
    let copies = 20_000;
    let rows = sample_rows_with(defense, h, copies, 17, tensor_ops);
    for j in 0..h.len() {
        let mean = rows.iter().map(|r| r[j] as f64).sum::<f64>() / copies as f64;
        let se = (variance(j) / copies as f64).sqrt();
        // Seed 17 is fixed, so the test is deterministic; 5 standard errors (plus float slack)
        // would be exceeded by chance with probability < 1e-6 per unit under a correct sampler.
        assert!(
            (mean - h[j] as f64).abs() <= 5.0 * se + 1e-6,
            "{defense:?} (tensor ops: {tensor_ops}) unit {j}: mean {mean}, h {}, se {se}",
            h[j]
        );
    }
}

fn test_map() -> Vec<f32> {
    // 48 units: a third zero, the rest spread over two orders of magnitude.
    (0..48)
        .map(|j| {
            if j % 3 == 0 {
                0.0
            } else {
                0.05 * (1 + (j * 7) % 40) as f32
            }
        })
        .collect()
}

#[test]
fn sap_is_unbiased_under_both_samplings() {
    let h = test_map();
    let total: f64 = h.iter().map(|&v| v as f64).sum();
    for (frac, sampling) in [(1.0, Sampling::Exact), (0.5, Sampling::Independent)] {
        let r = sap::draws(frac, h.len());
        // Var(out_j) = h_j^2 (1 - q_j) / q_j for the kept-and-rescaled unit.
        let var = |j: usize| {
            let q = sap::keep_probability(h[j] as f64 / total, r);
            if q == 0.0 {
                0.0
            } else {
                (h[j] as f64).powi(2) * (1.0 - q) / q
            }
        };
        check_unbiased(Defense::Sap { frac, sampling }, &h, var);
    }
}

#[test]
fn dropout_and_gaussian_noise_are_unbiased() {
    let h = test_map();
    let p = 0.3;
    check_unbiased(Defense::Dropout { p }, &h, |j| {
        (h[j] as f64).powi(2) * p / (1.0 - p)
    });
    let sigma = 0.5;
    let mean_abs = h.iter().map(|&v| v as f64).sum::<f64>() / h.len() as f64;
    check_unbiased(Defense::Gaussian { sigma }, &h, |_| {
        (sigma * mean_abs).powi(2)
    });
}

#[test]
fn exact_and_independent_sampling_share_marginals_but_not_the_spread_of_the_kept_count() {
    // Ten equal units and r = 10 draws: q = 1 - 0.9^10 for each unit under both samplings.
    // The number of distinct units hit by 10 draws (occupancy) has variance
    //   n(n-1)(1-2/n)^r + n(1-1/n)^r - n^2(1-1/n)^(2r) = 0.9928...
    // while ten independent Bernoulli(q) have 10 q (1 - q) = 2.2711...
    let h = [1.0f32; 10];
    let q = 1.0 - 0.9f64.powi(10);
    let var_exact = 90.0 * 0.8f64.powi(10) + 10.0 * 0.9f64.powi(10) - 100.0 * 0.9f64.powi(20);
    let var_independent = 10.0 * q * (1.0 - q);
    for (sampling, want_var) in [
        (Sampling::Exact, var_exact),
        (Sampling::Independent, var_independent),
    ] {
        let rows = sample_rows(
            Defense::Sap {
                frac: 1.0,
                sampling,
            },
            &h,
            20_000,
            23,
        );
        let counts: Vec<f64> = rows
            .iter()
            .map(|r| r.iter().filter(|&&v| v != 0.0).count() as f64)
            .collect();
        let n = counts.len() as f64;
        let mean = counts.iter().sum::<f64>() / n;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // Mean: standard error below 0.011, tolerance 0.05. Variance: relative standard error
        // about sqrt(2 / n) = 1% (a little more for these light-tailed counts), tolerance 8%.
        assert!((mean - 10.0 * q).abs() < 0.05, "{sampling:?} mean {mean}");
        assert!(
            ((var - want_var) / want_var).abs() < 0.08,
            "{sampling:?} variance {var}, theory {want_var}"
        );
        for j in 0..10 {
            let freq = rows.iter().filter(|r| r[j] != 0.0).count() as f64 / n;
            assert!(
                (freq - q).abs() < 0.02,
                "{sampling:?} marginal of unit {j}: {freq}"
            );
        }
    }
}

#[test]
fn sap_with_a_large_frac_returns_the_dense_activation() {
    // Every p_j >= 1/80 here, so with r = 1000 n draws (1 - p_j)^r < e^-600: every unit is
    // kept and its factor is 1 to double precision.
    let h: Vec<f32> = (1..=16).map(|j| j as f32 / 4.0).collect();
    let rows = sample_rows(
        Defense::Sap {
            frac: 1000.0,
            sampling: Sampling::Exact,
        },
        &h,
        50,
        3,
    );
    for row in rows {
        assert_eq!(row, h);
    }
}

#[test]
fn the_gradient_through_sap_is_the_constant_mask_and_rescaling() {
    let h: Vec<f32> = test_map();
    for tensor_ops in [false, true] {
        let x = Tensor::from_slice(&h).view([1, 48]).set_requires_grad(true);
        let mut rng = DefenseRng::seed_from_u64(9);
        let mut points = DefensePoints::new(Defense::SAP_100, &mut rng);
        if tensor_ops {
            points = points.with_tensor_ops();
        }
        let out = points.apply(&(&x * 1.0));
        let grad = Tensor::run_backward(&[out.sum(Kind::Float)], &[&x], false, false).remove(0);
        let out = Vec::<f32>::try_from(out.detach().flatten(0, -1)).unwrap();
        let grad = Vec::<f32>::try_from(grad.flatten(0, -1)).unwrap();
        for j in 0..48 {
            let factor = if h[j] == 0.0 { 0.0 } else { out[j] / h[j] };
            if h[j] != 0.0 {
                assert!(
                    (grad[j] - factor).abs() <= 1e-6 * factor.max(1.0),
                    "unit {j} (tensor ops: {tensor_ops})"
                );
            }
        }
        assert!(grad.contains(&0.0) && grad.iter().any(|&g| g > 1.0));
    }
}

#[test]
fn draws_depend_only_on_the_seed_not_on_the_batch_position_of_other_rows() {
    // Row b draws from its own stream: the first row of a batch of 1 and of a batch of 8
    // agree when the generator starts from the same seed.
    let h = test_map();
    let one = sample_rows(Defense::SAP_100, &h, 1, 4);
    let eight = sample_rows(Defense::SAP_100, &h, 8, 4);
    assert_eq!(one[0], eight[0]);
    assert_ne!(eight[0], eight[1]);
}

#[test]
fn defended_maps_are_the_same_on_any_number_of_threads() {
    // The examples of a batch are spread over libtorch's threads; each draws from its own
    // stream, so the thread count changes nothing, in place (after a ReLU) or not.
    let h = test_map();
    let pre = Tensor::from_slice(&h).view([1, 48]).repeat([16, 1]) - 0.4;
    let defenses = [
        Defense::SAP_100,
        Defense::Sap {
            frac: 1.0,
            sampling: Sampling::Independent,
        },
        Defense::Dropout { p: 0.3 },
        Defense::Gaussian { sigma: 0.1 },
    ];
    let run = |threads: i32| {
        sap_harness::tch::set_num_threads(threads);
        let mut out = Vec::new();
        for defense in defenses {
            let mut rng = DefenseRng::seed_from_u64(9);
            let mut points = DefensePoints::new(defense, &mut rng);
            for t in [points.relu(&pre), points.apply(&pre.relu())] {
                let v = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
                out.push(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
        }
        out
    };
    let previous = sap_harness::tch::get_num_threads();
    let one = run(1);
    let (two, three) = (run(2), run(3));
    sap_harness::tch::set_num_threads(previous);
    assert!(one == two && one == three);
    // The rows did get their own draws.
    assert_ne!(one[0][..48], one[0][48..96]);
}

#[test]
fn sap_factors_are_a_function_of_the_stream_key_alone() {
    let h = test_map();
    let run = |key| {
        let mut s = sap::Scratch::default();
        let mut f = vec![0.0; h.len()];
        sap::factors(&h, 48, Sampling::Exact, key, &mut s, &mut f);
        f
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn sap_in_place_gives_the_map_times_its_factors_bit_for_bit() {
    let h = test_map();
    for sampling in [Sampling::Exact, Sampling::Independent] {
        let mut s = sap::Scratch::default();
        let mut f = vec![0.0; h.len()];
        sap::factors(&h, 48, sampling, 5, &mut s, &mut f);
        let mut x = h.clone();
        sap::apply_in_place(&mut x, 48, sampling, 5, &mut s);
        let want: Vec<f32> = h.iter().zip(&f).map(|(v, f)| v * f).collect();
        let same = x.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{sampling:?}");
    }
}

#[test]
fn out_of_range_defense_parameters_are_refused_with_the_allowed_range() {
    let cases = [
        (
            Defense::Sap {
                frac: 0.0,
                sampling: Sampling::Exact,
            },
            DefenseError::Frac(0.0),
        ),
        (
            Defense::Sap {
                frac: 1e30,
                sampling: Sampling::Exact,
            },
            DefenseError::FracTooLarge(1e30),
        ),
        (
            Defense::Dropout { p: 1.0 },
            DefenseError::DropProbability(1.0),
        ),
        (
            Defense::Dropout { p: -0.1 },
            DefenseError::DropProbability(-0.1),
        ),
        (Defense::Gaussian { sigma: -1.0 }, DefenseError::Sigma(-1.0)),
    ];
    for (defense, err) in cases {
        assert_eq!(defense.validate(), Err(err.clone()));
        assert!(err.to_string().contains("allowed"), "{err}");
    }
    assert!(Defense::Dense.validate().is_ok());
}

#[test]
fn with_tensor_ops_a_network_defense_point_draws_with_tensor_operations() {
    use rand::RngCore;
    use sap_harness::defense::tensor;
    // The in-place path of `relu` must not take over when tensor operations are asked for.
    let pre = Tensor::from_slice(&test_map()).view([2, 24]) - 0.5;
    let mut rng = DefenseRng::seed_from_u64(4);
    let out = DefensePoints::new(Defense::SAP_100, &mut rng)
        .with_tensor_ops()
        .relu(&pre);
    let layer_seed = DefenseRng::seed_from_u64(4).next_u64();
    let h = pre.relu();
    let keys = sap_harness::defense::example_keys(layer_seed, 2);
    let expected = &h * tensor::draw(Defense::SAP_100, &h, &keys).unwrap();
    assert!(out.equal(&expected));
    let mut rng = DefenseRng::seed_from_u64(4);
    let host = DefensePoints::new(Defense::SAP_100, &mut rng).relu(&pre);
    assert!(!host.equal(&expected), "the host sampler draws other masks");
}
