//! The law of SAP's kept set, for every sampler path (the host sampler and the tensor-op
//! sampler that runs on an activation's own device), against exact laws computed here.
//!
//! - Exact sampling: the number of kept units K has the occupancy law of r draws with
//!   replacement from Categorical(p), computed exactly by dynamic programming over units;
//!   each unit is kept with probability 1 - (1 - p_j)^r and each pair with
//!   1 - (1 - p_j)^r - (1 - p_k)^r + (1 - p_j - p_k)^r.
//! - Independent sampling: K is Poisson-binomial with the same unit probabilities, and pairs
//!   are independent.
//!
//! Tolerances: a histogram passes when its chi-square statistic is below the 1 - 1e-6
//! quantile of its law (Wilson-Hilferty), a frequency when it is within 5.5 standard errors
//! of its probability (two-sided 4e-8 per check, about 5e-4 over the roughly 12,000
//! frequency checks here). So a correct sampler fails with negligible probability on any
//! seed, and
//! each histogram test also checks that the other variant's law is rejected: the test has
//! the power to tell the two apart.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use sap_harness::defense::sap::{self, Sampling};
use sap_harness::defense::{example_keys, tensor, Defense};
use sap_harness::seed;
use tch::{Device, Kind, Tensor};

/// Draws per test: enough that a chi-square test separates the two laws on these maps.
const SAMPLES: usize = 20_000;

/// Which implementation draws.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// The host sampler as the networks use it.
    Host,
    /// The host sampler's exact variant with Poisson mean 0: every draw an ordinary one.
    HostAllOrdinary,
    /// The host sampler's exact variant with Poisson mean r: about half the attempts redrawn.
    HostManyRedraws,
    TensorOps,
}

/// `SAMPLES` kept sets of map `h` under SAP with `r = round(frac n)` draws, row-major.
fn kept_sets(path: Path, h: &[f32], frac: f64, sampling: Sampling, seed: u64) -> Vec<bool> {
    let n = h.len();
    match path {
        Path::Host | Path::HostAllOrdinary | Path::HostManyRedraws => {
            let r = sap::draws(frac, n);
            let mean = match path {
                Path::HostAllOrdinary => Some(0.0),
                Path::HostManyRedraws => Some(r as f64),
                _ => None,
            };
            let mut scratch = sap::Scratch::default();
            let mut f = vec![0.0f32; n];
            let mut out = Vec::with_capacity(SAMPLES * n);
            for i in 0..SAMPLES {
                let key = seed::derive(seed, "sample", i as u64);
                match mean {
                    None => sap::factors(h, r, sampling, key, &mut scratch, &mut f),
                    Some(t) => {
                        sap::factors_with_poisson_mean(h, r, sampling, key, t, &mut scratch, &mut f)
                    }
                }
                out.extend(f.iter().map(|&v| v > 0.0));
            }
            out
        }
        Path::TensorOps => {
            let x = Tensor::from_slice(h)
                .view([1, n as i64])
                .expand([SAMPLES as i64, n as i64], false)
                .contiguous();
            let keys = example_keys(seed, SAMPLES);
            let f = tensor::draw(Defense::Sap { frac, sampling }, &x, &keys).expect("stochastic");
            let kept = f.gt(0.0).to_kind(Kind::Uint8).flatten(0, -1);
            Vec::<u8>::try_from(&kept)
                .expect("bytes")
                .into_iter()
                .map(|v| v == 1)
                .collect()
        }
    }
}

/// The unit probabilities of map `h`.
fn probabilities(h: &[f32]) -> Vec<f64> {
    let total: f64 = h.iter().map(|&v| v as f64).sum();
    h.iter().map(|&v| v as f64 / total).collect()
}

/// P(K = k), k = 0..=n, for r draws with replacement from Categorical(p): the multinomial
/// weight r! prod p_j^c_j / c_j!, summed by dynamic programming over units with state
/// (draws assigned, units hit).
fn occupancy_law(p: &[f64], r: usize) -> Vec<f64> {
    let n = p.len();
    // f[m][k]: sum over assignments of m draws to the units so far hitting k of them, of
    // prod p_j^c_j / c_j!.
    let mut f = vec![vec![0.0f64; n + 1]; r + 1];
    f[0][0] = 1.0;
    for &pj in p {
        let mut g = vec![vec![0.0f64; n + 1]; r + 1];
        for m in 0..=r {
            for k in 0..=n {
                let base = f[m][k];
                if base == 0.0 {
                    continue;
                }
                g[m][k] += base;
                let mut term = base;
                for c in 1..=(r - m) {
                    term *= pj / c as f64;
                    if term == 0.0 {
                        break;
                    }
                    g[m + c][(k + 1).min(n)] += term;
                }
            }
        }
        f = g;
    }
    let r_factorial: f64 = (1..=r).map(|i| i as f64).product();
    f[r].iter().map(|v| v * r_factorial).collect()
}

/// P(K = k) for independent units kept with probabilities `q` (Poisson-binomial).
fn poisson_binomial(q: &[f64]) -> Vec<f64> {
    let mut law = vec![1.0f64];
    for &qj in q {
        let mut next = vec![0.0; law.len() + 1];
        for (k, &v) in law.iter().enumerate() {
            next[k] += v * (1.0 - qj);
            next[k + 1] += v * qj;
        }
        law = next;
    }
    law
}

/// The chi-square statistic of `counts` against `law` (bins with expected count below 5
/// pooled with their neighbours), and its degrees of freedom.
fn chi_square(counts: &[usize], law: &[f64]) -> (f64, usize) {
    let total: usize = counts.iter().sum();
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let (mut expected, mut observed) = (0.0, 0.0);
    for (k, &pk) in law.iter().enumerate() {
        expected += pk * total as f64;
        observed += counts.get(k).copied().unwrap_or(0) as f64;
        if expected >= 5.0 {
            bins.push((observed, expected));
            (expected, observed) = (0.0, 0.0);
        }
    }
    match bins.last_mut() {
        Some(last) => {
            last.0 += observed;
            last.1 += expected;
        }
        None => bins.push((observed, expected)),
    }
    let stat = bins.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    (stat, bins.len().saturating_sub(1).max(1))
}

/// The 1 - 1e-6 quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty).
fn chi_square_limit(df: usize) -> f64 {
    let z = 4.753; // the standard normal's 1 - 1e-6 quantile
    let d = df as f64;
    let a = 2.0 / (9.0 * d);
    d * (1.0 - a + z * a.sqrt()).powi(3)
}

fn kept_count_histogram(kept: &[bool], n: usize) -> Vec<usize> {
    let mut counts = vec![0usize; n + 1];
    for set in kept.chunks(n) {
        counts[set.iter().filter(|&&k| k).count()] += 1;
    }
    counts
}

/// Asserts that frequency `hits / SAMPLES` matches probability `p` within 5.5 standard
/// errors.
fn assert_frequency(hits: usize, p: f64, what: &str) {
    let freq = hits as f64 / SAMPLES as f64;
    let se = (p * (1.0 - p) / SAMPLES as f64).sqrt().max(1e-9);
    assert!(
        (freq - p).abs() <= 5.5 * se + 1.0 / SAMPLES as f64,
        "{what}: frequency {freq} against probability {p} (standard error {se})"
    );
}

/// The unit marginals and, for `pairs`, the pairwise joint keep probabilities.
fn check_marginals_and_pairs(kept: &[bool], p: &[f64], r: u64, sampling: Sampling, what: &str) {
    let n = p.len();
    let q: Vec<f64> = p.iter().map(|&pj| sap::keep_probability(pj, r)).collect();
    for j in 0..n {
        let hits = kept.chunks(n).filter(|s| s[j]).count();
        assert_frequency(hits, q[j], &format!("{what}: unit {j} kept"));
    }
    let step = (n / 12).max(1);
    for j in (0..n).step_by(step) {
        for k in ((j + 1)..n).step_by(step) {
            let joint = match sampling {
                Sampling::Exact => {
                    1.0 - (1.0 - p[j]).powi(r as i32) - (1.0 - p[k]).powi(r as i32)
                        + (1.0 - p[j] - p[k]).max(0.0).powi(r as i32)
                }
                Sampling::Independent => q[j] * q[k],
            };
            let hits = kept.chunks(n).filter(|s| s[j] && s[k]).count();
            assert_frequency(
                hits,
                joint,
                &format!("{what}: units {j} and {k} kept together"),
            );
        }
    }
}

fn small_maps() -> Vec<(&'static str, Vec<f32>)> {
    let skewed: Vec<f32> = (0..50).map(|j| (-(j as f32) / 6.0).exp()).collect();
    vec![
        ("n=6 with zeros", vec![0.0, 3.0, 0.0, 1.0, 2.0, 0.5]),
        ("n=50 skewed", skewed),
    ]
}

fn check_small_maps(path: Path) {
    for (name, h) in small_maps() {
        let p = probabilities(&h);
        for (f, frac) in [1.0, 0.5, 0.1].into_iter().enumerate() {
            let r = sap::draws(frac, h.len());
            let q: Vec<f64> = p.iter().map(|&pj| sap::keep_probability(pj, r)).collect();
            let exact_law = occupancy_law(&p, r as usize);
            let independent_law = poisson_binomial(&q);
            for (s, sampling) in [Sampling::Exact, Sampling::Independent]
                .into_iter()
                .enumerate()
            {
                let what = format!("{path:?} {name} frac {frac} {sampling:?}");
                let seed = 1000 + 10 * f as u64 + s as u64;
                let kept = kept_sets(path, &h, frac, sampling, seed);
                let counts = kept_count_histogram(&kept, h.len());
                let (own, other) = match sampling {
                    Sampling::Exact => (&exact_law, &independent_law),
                    Sampling::Independent => (&independent_law, &exact_law),
                };
                let (stat, df) = chi_square(&counts, own);
                assert!(
                    stat < chi_square_limit(df),
                    "{what}: kept-count histogram {counts:?} does not fit its law (chi-square \
                     {stat:.1}, df {df})"
                );
                // The other variant's law must be rejected where the two differ enough to
                // tell apart at this sample size (r = 1: both laws are K = 1 minus zeros).
                let (stat_other, df_other) = chi_square(&counts, other);
                if r > 2 && h.len() > 6 {
                    assert!(
                        stat_other > chi_square_limit(df_other),
                        "{what}: the histogram also fits the other variant's law (chi-square \
                         {stat_other:.1}, df {df_other}): the test could not tell them apart"
                    );
                }
                check_marginals_and_pairs(&kept, &p, r, sampling, &what);
            }
        }
    }
}

#[test]
fn the_host_sampler_draws_the_exact_and_independent_laws_on_small_maps() {
    check_small_maps(Path::Host);
}

#[test]
fn the_exact_host_sampler_keeps_its_law_whatever_its_poisson_mean() {
    // Poisson mean 0 (no Poisson counts) and r (about half the attempts redrawn): the law of
    // the kept set must not depend on it.
    check_small_maps(Path::HostAllOrdinary);
    check_small_maps(Path::HostManyRedraws);
}

#[test]
fn a_unit_holding_most_of_the_mass_leaves_the_law_exact() {
    // With frac 16 (r = 96) the dominant unit's Poisson mean is about 80: its count comes
    // from the sampler's general Poisson draw, and an error there would move how often the
    // others are kept (through the redraws and the ordinary draws).
    let h = [0.0f32, 30.0, 0.0, 1.0, 2.0, 0.5];
    let p = probabilities(&h);
    let frac = 16.0;
    let r = sap::draws(frac, h.len());
    let law = occupancy_law(&p, r as usize);
    for path in [Path::Host, Path::HostManyRedraws, Path::TensorOps] {
        let kept = kept_sets(path, &h, frac, Sampling::Exact, 31);
        let what = format!("{path:?} dominant unit, r = {r}");
        let (stat, df) = chi_square(&kept_count_histogram(&kept, h.len()), &law);
        assert!(
            stat < chi_square_limit(df),
            "{what}: chi-square {stat:.1}, df {df}"
        );
        check_marginals_and_pairs(&kept, &p, r, Sampling::Exact, &what);
    }
}

#[test]
fn the_tensor_op_sampler_draws_the_exact_and_independent_laws_on_small_maps() {
    check_small_maps(Path::TensorOps);
}

#[test]
fn both_samplers_keep_units_and_pairs_with_the_right_probabilities_on_a_large_random_map() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let h: Vec<f32> = (0..1000)
        .map(|_| {
            let v: f32 = rand::Rng::gen(&mut rng);
            if v < 0.3 {
                0.0
            } else {
                v * v * 4.0
            }
        })
        .collect();
    let p = probabilities(&h);
    for path in [Path::Host, Path::HostManyRedraws, Path::TensorOps] {
        for frac in [1.0, 0.1] {
            let r = sap::draws(frac, h.len());
            for sampling in [Sampling::Exact, Sampling::Independent] {
                let kept = kept_sets(path, &h, frac, sampling, 77);
                let what = format!("{path:?} n=1000 frac {frac} {sampling:?}");
                check_marginals_and_pairs(&kept, &p, r, sampling, &what);
            }
        }
    }
}

#[test]
fn the_tensor_op_sampler_repeats_itself_bit_for_bit_whatever_the_batch_around_an_example() {
    let h = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 0.5, 3.0, 0.0, 0.25, 1.5]).view([2, 4]);
    for defense in [
        Defense::Sap {
            frac: 1.0,
            sampling: Sampling::Exact,
        },
        Defense::Sap {
            frac: 0.5,
            sampling: Sampling::Independent,
        },
        Defense::Dropout { p: 0.5 },
        Defense::Gaussian { sigma: 0.5 },
    ] {
        let a = tensor::draw(defense, &h, &[9, 10]).unwrap();
        let b = tensor::draw(defense, &h, &[9, 10]).unwrap();
        assert!(
            a.equal(&b),
            "{defense:?}: the same keys give the same draws"
        );
        // The first row alone, and the rows again in another order after others: a row's
        // values follow its key and its activations, not its position.
        let first = tensor::draw(defense, &h.narrow(0, 0, 1), &[9]).unwrap();
        assert!(first.equal(&a.narrow(0, 0, 1)), "{defense:?}");
        let bigger = Tensor::cat(&[&h.flip([0i64]), &h], 0);
        let c = tensor::draw(defense, &bigger, &[10, 9, 9, 10]).unwrap();
        assert!(c.narrow(0, 2, 2).equal(&a), "{defense:?}");
        assert!(c.narrow(0, 0, 2).equal(&a.flip([0i64])), "{defense:?}");
        let other = tensor::draw(defense, &h, &[11, 12]).unwrap();
        assert!(!other.equal(&a), "{defense:?}: other keys, other draws");
        assert_eq!(a.device(), Device::Cpu);
    }
}
