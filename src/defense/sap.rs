//! Stochastic Activation Pruning on one example's activation map (DESIGN section 5).
//!
//! For a post-ReLU map `h` flattened to `n` values:
//!
//! ```text
//! p_j    = |h_j| / sum_k |h_k|
//! r      = round(frac * n) draws with replacement from Categorical(p)
//! kept_j = 1 if unit j was drawn at least once
//! out_j  = kept_j * h_j / (1 - (1 - p_j)^r)        so that E[out_j] = h_j
//! ```
//!
//! The functions here produce the per-unit factor `kept_j / (1 - (1 - p_j)^r)`; the network
//! multiplies the activation by it, holding it constant in the backward pass.

use rand::Rng;

/// How the kept set is drawn.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// `r` draws with replacement from Categorical(p), as in the paper (default).
    #[default]
    Exact,
    /// Each unit kept independently with probability `1 - (1 - p_j)^r`: the same marginals,
    /// without the joint multinomial.
    Independent,
}

impl Sampling {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Sampling::Exact => "exact",
            Sampling::Independent => "independent",
        }
    }
}

/// The number of draws for a map of `n` units: `round(frac * n)`.
pub fn draws(frac: f64, n: usize) -> u64 {
    (frac * n as f64).round() as u64
}

/// The probability that unit j is drawn at least once in `r` draws: `1 - (1 - p)^r`.
///
/// CRUCIAL: computed as `-expm1(r * log1p(-p))`. The naive form loses every digit when
/// `p` is small (p ~ 1e-5 on a 16k-unit map), and the rescaling divides by this number.
/// This is the reference (libm) form; the sampler uses [`keep_probability_fast`].
pub fn keep_probability(p: f64, r: u64) -> f64 {
    -(r as f64 * (-p).ln_1p()).exp_m1()
}

/// [`keep_probability`] without libm calls and without data-dependent branches on the
/// common path, for p in [0, 1]: relative error below 1e-9 (tested against the libm form),
/// which is below the f32 resolution of the factor it feeds.
#[inline]
pub fn keep_probability_fast(p: f64, r: u64) -> f64 {
    let x = r as f64 * ln_1m(p);
    // -expm1(x), x <= 0. Near 0 the series avoids the cancellation in 1 - e^x; elsewhere
    // 1 - e^x >= 0.22 loses nothing. Both are computed so the choice compiles to a select.
    let series = -x * estrin8(x, &INV_FACTORIAL[1..11]);
    let direct = 1.0 - exp_nonpositive(x);
    if x > -0.25 {
        series
    } else {
        direct
    }
}

/// `ln(1 - p)` for p in [0, 1].
#[inline]
fn ln_1m(p: f64) -> f64 {
    if p < 0.004 {
        // -(p + p^2/2 + p^3/3 + p^4/4 + p^5/5); the next term is below p^6/6 < 1e-12 p.
        -p * (1.0 + p * (1.0 / 2.0 + p * (1.0 / 3.0 + p * (1.0 / 4.0 + p * (1.0 / 5.0)))))
    } else {
        // 1 - p is exact enough here: its rounding error is below 1e-16 / p relative.
        (-p).ln_1p()
    }
}

/// `exp(x)` for x <= 0, to about 1e-10 relative: `x = k ln 2 + f`, `|f| <= ln 2 / 2`, a
/// degree-9 Taylor polynomial for `e^f` (truncation below 3e-11), scaled by `2^k` through the
/// exponent bits.
#[inline]
pub fn exp_nonpositive(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Round to nearest through the 1.5 * 2^52 trick (no SSE4.1 `round` needed).
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let x = x.max(-708.0); // e^-708 ~ 3e-308: the smallest result kept normal
    let k = (x * std::f64::consts::LOG2_E + SHIFTER) - SHIFTER;
    let f = (x - k * LN2_HI) - k * LN2_LO;
    let t = estrin8(f, &INV_FACTORIAL[..10]);
    t * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// `1/k!` for k = 0..=10.
const INV_FACTORIAL: [f64; 11] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
];

/// `c[0] + c[1] x + ... + c[8] x^8 + c[9] x^9` by Estrin's scheme: a dependency depth of 4
/// multiply-adds instead of Horner's 9, so neighbouring units overlap in the pipeline.
#[inline(always)]
fn estrin8(x: f64, c: &[f64]) -> f64 {
    let x2 = x * x;
    let x4 = x2 * x2;
    let x8 = x4 * x4;
    let p01 = c[0] + c[1] * x;
    let p23 = c[2] + c[3] * x;
    let p45 = c[4] + c[5] * x;
    let p67 = c[6] + c[7] * x;
    let p89 = c[8] + c[9] * x;
    let p03 = p01 + p23 * x2;
    let p47 = p45 + p67 * x2;
    (p03 + p47 * x4) + p89 * x8
}

/// Scratch buffers reused across examples (one set per worker thread).
#[derive(Default)]
pub struct Scratch {
    nonzero: Vec<u32>,
    cumulative: Vec<f64>,
    guide: Vec<u32>,
    kept: Vec<bool>,
    /// Per-example factors, for callers that multiply in place.
    pub factor: Vec<f32>,
}

/// Writes SAP's factor for one example into `factor` (same length as `h`).
///
/// `h` must be non-negative (a post-ReLU map). An all-zero map gets all-zero factors, so it
/// stays zero. Draws come only from `rng`.
pub fn factors<R: Rng>(
    h: &[f32],
    r: u64,
    sampling: Sampling,
    rng: &mut R,
    scratch: &mut Scratch,
    factor: &mut [f32],
) {
    debug_assert_eq!(h.len(), factor.len());
    factor.fill(0.0);
    scratch.nonzero.clear();
    scratch.nonzero.extend(
        h.iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(j, _)| j as u32),
    );
    if scratch.nonzero.is_empty() || r == 0 {
        return;
    }
    // Cumulative |h| over the non-zero units, in f64: zero units have empty intervals and
    // can never be drawn, so they are left out of the search altogether.
    scratch.cumulative.clear();
    let mut total = 0.0f64;
    for &j in &scratch.nonzero {
        total += h[j as usize].abs() as f64;
        scratch.cumulative.push(total);
    }
    match sampling {
        Sampling::Exact => {
            draw_exact(r, total, rng, scratch);
            for (t, &j) in scratch.nonzero.iter().enumerate() {
                if scratch.kept[t] {
                    let j = j as usize;
                    factor[j] = (1.0 / keep_probability_fast(h[j].abs() as f64 / total, r)) as f32;
                }
            }
        }
        Sampling::Independent => {
            for &j in &scratch.nonzero {
                let j = j as usize;
                let q = keep_probability_fast(h[j].abs() as f64 / total, r);
                if rng.gen::<f64>() < q {
                    factor[j] = (1.0 / q) as f32;
                }
            }
        }
    }
}

/// Marks in `scratch.kept` the non-zero units hit by `r` draws with replacement from
/// Categorical(|h| / total), in O(n + r).
///
/// Inversion with a guide table (Devroye 1986, section III.2.4): bucket `k` of `2m` equal
/// slices of [0, total) remembers the first unit whose cumulative mass passes the slice's
/// start, so a uniform draw finds its unit after O(1) expected steps. (Measured here against
/// the alias method, merging sorted exponential spacings, and a chain of binomials: this was
/// the fastest per draw.)
fn draw_exact<R: Rng>(r: u64, total: f64, rng: &mut R, s: &mut Scratch) {
    let m = s.cumulative.len();
    let buckets = 2 * m;
    let per_mass = buckets as f64 / total;
    s.guide.clear();
    let mut j = 0usize;
    for k in 0..buckets {
        let start = k as f64 * (total / buckets as f64);
        while j + 1 < m && s.cumulative[j] <= start {
            j += 1;
        }
        s.guide.push(j as u32);
    }
    s.kept.clear();
    s.kept.resize(m, false);
    let last = m - 1;
    for _ in 0..r {
        let u = rng.gen::<f64>() * total;
        let bucket = ((u * per_mass) as usize).min(buckets - 1);
        let mut j = s.guide[bucket] as usize;
        // One step without a branch covers most draws; the loop takes the rest.
        j += (s.cumulative[j] <= u && j < last) as usize;
        while s.cumulative[j] <= u && j < last {
            j += 1;
        }
        s.kept[j] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn keep_probability_is_accurate_for_tiny_probabilities() {
        // 1 - (1 - 1e-12)^3 = 3e-12 - 3e-24 + ...: the naive form returns 3.000266e-12.
        let q = keep_probability(1e-12, 3);
        assert!((q / 3e-12 - 1.0).abs() < 1e-9, "{q}");
        assert_eq!(keep_probability(0.0, 10), 0.0);
        assert_eq!(keep_probability(1.0, 1), 1.0);
    }

    #[test]
    fn exact_draws_hit_only_units_with_mass() {
        let h = [0.0, 2.0, 0.0, 0.0, 1.0, 0.0];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut s = Scratch::default();
        let mut f = [0.0; 6];
        for _ in 0..200 {
            factors(&h, 6, Sampling::Exact, &mut rng, &mut s, &mut f);
            for j in [0, 2, 3, 5] {
                assert_eq!(f[j], 0.0);
            }
            assert!(f[1] > 0.0 || f[4] > 0.0);
        }
    }
}
