//! Stochastic Activation Pruning on one example's activation map (docs/ARCHITECTURE.md section 5).
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
#[inline(always)]
pub fn keep_probability_fast(p: f64, r: u64) -> f64 {
    keep_probability_r(p, r as f64)
}

/// [`keep_probability_fast`] with `r` as a float (converted once per map, not per unit).
#[inline(always)]
fn keep_probability_r(p: f64, r: f64) -> f64 {
    one_minus_exp(r * ln_1m(p))
}

/// [`keep_probability_r`] for p < [`SMALL_P`] only: the series for `ln(1 - p)` alone.
#[inline(always)]
fn keep_probability_small(p: f64, r: f64) -> f64 {
    one_minus_exp(r * ln_1m_series(p))
}

/// Below this p, `ln(1 - p)` is its five-term series.
const SMALL_P: f64 = 0.004;

/// `-expm1(x) = 1 - e^x` for x <= 0, to about 1e-10 relative, without cancellation near 0:
/// with `x = k ln 2 + f`, `|f| <= ln 2 / 2`, `e^x - 1 = 2^k (e^f - 1) + (2^k - 1)`, where
/// `e^f - 1 = f (1 + f/2 + ... + f^9/10!)`. For k = 0 that is the series itself; for k <= -1
/// the sum is at least 0.3 in magnitude, so nothing cancels.
#[inline(always)]
fn one_minus_exp(x: f64) -> f64 {
    let (scale, f) = exp_reduce(x);
    let em1 = f * estrin8(f, &INV_FACTORIAL[1..11]);
    (1.0 - scale) - scale * em1
}

/// `ln(1 - p)` for p in [0, 1], without branches or libm calls (both forms are computed
/// and one is selected, so loops over units vectorise).
#[inline(always)]
fn ln_1m(p: f64) -> f64 {
    let series = ln_1m_series(p);
    // 1 - p is exact enough here: its rounding error is below 1e-16 / p relative.
    let direct = ln_positive((1.0 - p).max(1e-300));
    if p < SMALL_P {
        series
    } else {
        direct
    }
}

/// `ln(1 - p)` for p < [`SMALL_P`]: `-(p + p^2/2 + p^3/3 + p^4/4 + p^5/5)`; the next term
/// is below p^6/6 < 1e-12 p.
#[inline(always)]
fn ln_1m_series(p: f64) -> f64 {
    -p * (1.0 + p * (1.0 / 2.0 + p * (1.0 / 3.0 + p * (1.0 / 4.0 + p * (1.0 / 5.0)))))
}

/// `ln(x)` for finite x >= 1e-300, to about 1e-15 absolute: `x = 2^k m` with m in
/// [sqrt(1/2), sqrt(2)), `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`, |s| <= 0.172, by its
/// series to s^15 (truncation below 4e-14 relative). Integer conversions go through exponent
/// bits, so the whole computes in vector registers on any x86-64.
#[inline(always)]
fn ln_positive(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let bits = x.to_bits();
    let exponent = f64::from_bits(0x4330_0000_0000_0000 | (bits >> 52)) - TWO_52;
    let mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let high = mantissa > std::f64::consts::SQRT_2;
    let m = if high { mantissa * 0.5 } else { mantissa };
    let k = exponent - 1023.0 + if high { 1.0 } else { 0.0 };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = estrin8(s2, &ATANH_SERIES) * s2 + 1.0;
    let ln_m = 2.0 * s * series;
    k * LN2_HI + (ln_m + k * LN2_LO)
}

/// `1/(2i + 3)` for i = 0..10: the series `atanh(s)/s - 1 = s^2/3 + s^4/5 + ...` over s^2.
const ATANH_SERIES: [f64; 10] = [
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
    1.0 / 21.0,
];

/// `exp(x)` for x <= 0, to about 1e-10 relative: `x = k ln 2 + f`, `|f| <= ln 2 / 2`, a
/// degree-9 Taylor polynomial for `e^f` (truncation below 3e-11), scaled by `2^k`.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    let (scale, f) = exp_reduce(x);
    estrin8(f, &INV_FACTORIAL[..10]) * scale
}

/// `(2^k, f)` with `x = k ln 2 + f`, `|f| <= ln 2 / 2`, for x <= 0 (clamped at -708, where
/// e^x ~ 3e-308 is the smallest result kept normal). No integer conversion instructions:
/// rounding goes through the 1.5 * 2^52 trick and `k` is read from the bits of that sum, so
/// the function computes in vector registers on any x86-64.
#[inline(always)]
fn exp_reduce(x: f64) -> (f64, f64) {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let x = x.max(-708.0);
    // The low mantissa bits of `shifted` hold k + 2^51.
    let shifted = x * std::f64::consts::LOG2_E + SHIFTER;
    let k = shifted - SHIFTER;
    let f = (x - k * LN2_HI) - k * LN2_LO;
    // (k + 2^51 + 1023) mod 2^12 = k + 1023, in [1, 1023]: the exponent field of 2^k.
    let scale = f64::from_bits(shifted.to_bits().wrapping_add(1023) << 52);
    (scale, f)
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

/// `1/(k+1)` for k = 0..8: the ratios of consecutive Poisson probabilities over lambda.
const INV_NEXT: [f64; POISSON_UNROLLED as usize] = [
    1.0,
    1.0 / 2.0,
    1.0 / 3.0,
    1.0 / 4.0,
    1.0 / 5.0,
    1.0 / 6.0,
    1.0 / 7.0,
    1.0 / 8.0,
    1.0 / 9.0,
    1.0 / 10.0,
    1.0 / 11.0,
    1.0 / 12.0,
];

/// Poisson counts the vectorised inversion resolves; a unit whose count reaches it is
/// finished by [`poisson_tail`].
const POISSON_UNROLLED: u32 = 12;

/// Units summed per block of the cumulative mass that the extra exact draws search.
const BLOCK: usize = 16;

/// Golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function (Steele, Lea and Flood 2014).
#[inline(always)]
fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draw `i` of the stream `key`: SplitMix64's `i`-th output from state `key`, as a uniform
/// in [0, 1) with 52 random bits. A function of (key, i) alone, so a loop over units draws
/// in any order, in vector lanes.
#[inline(always)]
fn uniform(key: u64, i: u64) -> f64 {
    let bits = mix64(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)));
    f64::from_bits(0x3ff0_0000_0000_0000 | (bits >> 12)) - 1.0
}

/// The key of one sub-stream of an example's stream `key`.
fn substream(key: u64, domain: u64, index: u64) -> u64 {
    mix64(mix64(key ^ domain).wrapping_add(index.wrapping_mul(GAMMA)))
}

/// Domains of [`substream`].
const DOMAIN_POISSON: u64 = 0x0050_6f69_7373_6f6e;
const DOMAIN_EXTRA: u64 = 0x0045_7874_7261_0000;
const DOMAIN_TAIL: u64 = 0x5461_696c_0000_0000;

/// Scratch buffers reused across examples (one set per worker thread).
#[derive(Default)]
pub struct Scratch {
    /// The mass |h_j| of each unit with mass, in order; then its factor.
    mass: Vec<f32>,
    /// The index in the map of each unit with mass.
    unit: Vec<u32>,
    /// Running mass at the end of each block of [`BLOCK`] units with mass.
    prefix: Vec<f64>,
    /// Guide table of the extra exact draws: per bucket of equal mass, the first block that
    /// a draw in it may hit.
    guide: Vec<u32>,
    /// Per unit with mass, exact sampling: its Poisson count capped at
    /// [`POISSON_UNROLLED`], then non-zero when kept.
    kept: Vec<u8>,
    /// Per-example factors, for callers that multiply in place.
    pub factor: Vec<f32>,
}

/// Writes SAP's factor for one example into `factor` (same length as `h`): `1 / q_j` for a
/// kept unit, 0 for the others, where `q_j = 1 - (1 - p_j)^r`.
///
/// `h` must be non-negative (a post-ReLU map). An all-zero map gets all-zero factors, so it
/// stays zero. The draws are a function of `key` (the example's stream) alone.
///
/// # Exact sampling: Poissonization with rejection
/// Counts `c_j ~ Poisson(t p_j)` drawn independently for every unit are the counts of
/// `Poisson(t)` i.i.d. Categorical(p) draws. If `m = sum c_j > r` the counts are redrawn
/// (probability about 2.3% with `t = r - 2 sqrt(r)`); otherwise `r - m` further categorical
/// draws complete them. Given `m`, the `m` draws are i.i.d. Categorical(p) whatever `m` is, so
/// the `r` draws are too: the kept set has exactly the law of `r` draws with replacement. The
/// counts take one vectorised inversion per unit (no table lookup per draw); the `r - m`
/// further draws (about `2 sqrt(r)`) search block sums of the cumulative mass.
///
/// # Independent sampling
/// Unit j is kept when its own uniform falls below `q_j`.
pub fn factors(
    h: &[f32],
    r: u64,
    sampling: Sampling,
    key: u64,
    scratch: &mut Scratch,
    factor: &mut [f32],
) {
    factors_with_poisson_mean(h, r, sampling, key, poisson_mean(r), scratch, factor)
}

/// Multiplies `h` in place by its SAP factors ([`factors`]): the same draws and, bit for bit,
/// the same result as `h * factors(h)` in f32, without a second buffer.
pub fn apply_in_place(h: &mut [f32], r: u64, sampling: Sampling, key: u64, scratch: &mut Scratch) {
    let t = poisson_mean(r);
    Isa::detect().kernel(Job::new(h, r, sampling, key, t, Output::Product), scratch);
}

/// The exact sampler's Poisson mean `t = r - 2 sqrt(r)`: about `2 sqrt(r)` ordinary draws
/// complete the counts, and P(Poisson(t) > r) ~ 2.3% of attempts are redrawn.
fn poisson_mean(r: u64) -> f64 {
    (r as f64 - 2.0 * (r as f64).sqrt()).max(0.0)
}

/// [`factors`] with the Poisson mean `t` of the exact sampler given (any `t >= 0` gives the
/// same law: `t = 0` makes every draw an ordinary categorical draw, `t = r` redraws about half
/// the attempts). For tests of that claim.
pub fn factors_with_poisson_mean(
    h: &[f32],
    r: u64,
    sampling: Sampling,
    key: u64,
    poisson_mean: f64,
    scratch: &mut Scratch,
    factor: &mut [f32],
) {
    assert!(poisson_mean >= 0.0, "a Poisson mean is non-negative");
    factor.copy_from_slice(h);
    let job = Job::new(factor, r, sampling, key, poisson_mean, Output::Factor);
    Isa::detect().kernel(job, scratch);
}

/// One map for the kernel: the buffer (the map on entry, `out` on return) and its draws.
struct Job<'a> {
    x: &'a mut [f32],
    r: u64,
    sampling: Sampling,
    /// The map's stream.
    key: u64,
    /// The exact sampler's Poisson mean.
    t: f64,
    out: Output,
}

impl<'a> Job<'a> {
    fn new(x: &'a mut [f32], r: u64, sampling: Sampling, key: u64, t: f64, out: Output) -> Self {
        Job {
            x,
            r,
            sampling,
            key,
            t,
            out,
        }
    }
}

/// What the kernel leaves in its buffer, which holds the map on entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// The factors.
    Factor,
    /// The map times its factors.
    Product,
}

/// The instruction sets the host sampler is compiled for, chosen at run time. Every one
/// computes the same IEEE operations in the same order (Rust never fuses a multiply and an
/// add, and every sum has a fixed order), so all give bit-identical factors: only the width
/// of the vector registers differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Baseline x86-64 (SSE2), or any other architecture.
    Baseline,
    /// AVX2.
    Avx2,
    /// AVX-512 F and DQ (64-bit integer multiplies and conversions in vector registers).
    Avx512,
}

impl Isa {
    /// The widest set this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// Every set this CPU supports.
    pub fn available() -> Vec<Isa> {
        let best = Isa::detect();
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&isa| isa as u8 <= best as u8)
            .collect()
    }

    /// Runs the sampler's kernel compiled for this set.
    ///
    /// # Panics
    /// If this CPU lacks the set (use [`Isa::available`]).
    fn kernel(self, job: Job, scratch: &mut Scratch) {
        assert!(
            self as u8 <= Isa::detect() as u8,
            "{self:?} is not available on this CPU"
        );
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(job: Job, scratch: &mut Scratch) {
                factors_kernel(job, scratch, Compact::Scalar)
            }
            #[target_feature(enable = "avx512f,avx512dq")]
            unsafe fn avx512(job: Job, scratch: &mut Scratch) {
                factors_kernel(job, scratch, Compact::Avx512)
            }
            match self {
                // SAFETY: the CPU supports the set (checked above).
                Isa::Avx512 => return unsafe { avx512(job, scratch) },
                Isa::Avx2 => return unsafe { avx2(job, scratch) },
                Isa::Baseline => {}
            }
        }
        factors_kernel(job, scratch, Compact::Scalar)
    }
}

/// [`factors`] under a given instruction set, for the test that all sets agree bit for bit.
pub fn factors_on(
    isa: Isa,
    h: &[f32],
    r: u64,
    sampling: Sampling,
    key: u64,
    scratch: &mut Scratch,
    factor: &mut [f32],
) {
    factor.copy_from_slice(h);
    let t = poisson_mean(r);
    isa.kernel(
        Job::new(factor, r, sampling, key, t, Output::Factor),
        scratch,
    );
}

/// The sampler on one map, whose buffer it overwrites with the job's `out`.
///
/// Only units with mass are worked on: they are gathered first (with their indices, which
/// key their uniforms), so a post-ReLU map's zeros, about half of it, cost one pass. A unit
/// without mass is never drawn and gets the factor 0.
#[inline(always)]
fn factors_kernel(job: Job, s: &mut Scratch, compact: Compact) {
    let Job {
        x,
        r,
        sampling,
        key,
        t,
        out,
    } = job;
    let nnz = gather_mass(x, s, compact);
    let (total, max) = block_sums(&s.mass[..nnz], &mut s.prefix);
    if total == 0.0 || r == 0 {
        x.fill(0.0);
        return;
    }
    let inv_total = 1.0 / total;
    if sampling == Sampling::Exact {
        draw_exact(
            &s.mass[..nnz],
            &s.unit[..nnz],
            r,
            total,
            key,
            t,
            &mut s.kept,
            &s.prefix,
            &mut s.guide,
        );
    }
    let pass = Pass {
        r: r as f64,
        inv_total,
        sampling,
        key,
    };
    let (mass, unit, kept) = (&mut s.mass[..nnz], &s.unit[..nnz], &s.kept[..]);
    // Every unit's share is below SMALL_P on most maps of more than a few hundred units: then
    // ln(1 - p) is its series alone.
    if (max as f64) * inv_total < SMALL_P {
        finish(mass, unit, kept, pass, keep_probability_small);
    } else {
        finish(mass, unit, kept, pass, keep_probability_r);
    }
    // `mass` now holds the units' factors.
    scatter(x, &s.mass[..nnz + COMPACT_SLACK], unit, out, compact);
}

/// Extra entries at the end of the compacted buffers, so that whole vectors may be stored
/// and loaded past the last unit with mass.
const COMPACT_SLACK: usize = 16;

/// How the units with mass are gathered into the compacted buffers and their factors
/// scattered back: one unit at a time, or sixteen at a time with AVX-512's compress and
/// expand. Both move the same values to the same places.
#[derive(Clone, Copy)]
enum Compact {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Writes the job's output into `x` (the map), from the factors of its units with mass,
/// in order, in `factor` (followed by [`COMPACT_SLACK`] entries of any value); `unit` holds
/// those units' indices.
#[inline(always)]
fn scatter(x: &mut [f32], factor: &[f32], unit: &[u32], out: Output, compact: Compact) {
    match compact {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: this variant is only chosen by the AVX-512 kernel; `factor` holds a factor
        // per unit with mass of `x` plus the slack.
        Compact::Avx512 => unsafe { scatter_avx512(x, factor, out) },
        Compact::Scalar => match out {
            Output::Factor => {
                x.fill(0.0);
                for (&j, &f) in unit.iter().zip(factor) {
                    x[j as usize] = f;
                }
            }
            // A unit without mass is 0 (or -0) and stays so, as it would times 0.
            Output::Product => {
                for (&j, &f) in unit.iter().zip(factor) {
                    x[j as usize] *= f;
                }
            }
        },
    }
}

/// [`scatter`] sixteen units at a time: the units with mass of each vector of `x` are found
/// again (the map is unchanged), and their factors expanded into their lanes.
///
/// # Safety
/// The CPU has AVX-512 F; `factor` holds one entry per unit with mass of `x`, in order, and
/// [`COMPACT_SLACK`] more.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scatter_avx512(x: &mut [f32], factor: &[f32], out: Output) {
    use std::arch::x86_64::*;
    let n = x.len();
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let mut k = 0;
    let mut j = 0;
    while j + 16 <= n {
        let v = _mm512_loadu_ps(x.as_ptr().add(j));
        let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs));
        // Rust's `a != 0.0`: true for NaN too.
        let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, _mm512_setzero_ps());
        debug_assert!(k + 16 <= factor.len());
        let f = _mm512_maskz_expand_ps(mask, _mm512_loadu_ps(factor.as_ptr().add(k)));
        let w = match out {
            Output::Factor => f,
            Output::Product => _mm512_mask_mul_ps(v, mask, v, f),
        };
        _mm512_storeu_ps(x.as_mut_ptr().add(j), w);
        k += mask.count_ones() as usize;
        j += 16;
    }
    for v in &mut x[j..] {
        if v.abs() != 0.0 {
            match out {
                Output::Factor => *v = factor[k],
                Output::Product => *v *= factor[k],
            }
            k += 1;
        } else if out == Output::Factor {
            *v = 0.0;
        }
    }
}

/// Gathers the units of `h` with mass: `|h_j|` into `s.mass` and `j` into `s.unit`, in
/// order, each followed by [`COMPACT_SLACK`] entries of any value; returns how many.
#[inline(always)]
fn gather_mass(h: &[f32], s: &mut Scratch, compact: Compact) -> usize {
    assert!(h.len() <= u32::MAX as usize, "a map of at most 2^32 units");
    let len = h.len() + COMPACT_SLACK;
    if s.mass.len() < len {
        s.mass.resize(len, 0.0);
        s.unit.resize(len, 0);
    }
    let (mass, unit) = (&mut s.mass[..len], &mut s.unit[..len]);
    match compact {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: this variant is only chosen by the AVX-512 kernel; the buffers have the
        // slack.
        Compact::Avx512 => unsafe { gather_avx512(h, mass, unit) },
        Compact::Scalar => gather_scalar(h, 0, mass, unit, 0),
    }
}

/// [`gather_mass`] one unit at a time, from unit `j0` of `h` on, into the buffers from entry
/// `k0` on; returns the entries filled in all.
#[inline(always)]
fn gather_scalar(h: &[f32], j0: usize, mass: &mut [f32], unit: &mut [u32], k0: usize) -> usize {
    let mut k = k0;
    for (j, &v) in h.iter().enumerate().skip(j0) {
        // Written unconditionally, kept by advancing: no branch on the data.
        let a = v.abs();
        mass[k] = a;
        unit[k] = j as u32;
        k += (a != 0.0) as usize;
    }
    k
}

/// [`gather_mass`] sixteen units at a time with AVX-512's compress (into a register, then
/// stored whole: a compressing store to memory is slow on some CPUs).
///
/// # Safety
/// The CPU has AVX-512 F; the buffers hold `h.len()` + [`COMPACT_SLACK`] entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_avx512(h: &[f32], mass: &mut [f32], unit: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let n = h.len();
    debug_assert!(mass.len() >= n + COMPACT_SLACK && unit.len() >= n + COMPACT_SLACK);
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut k = 0;
    let mut j = 0;
    while j + 16 <= n {
        let v = _mm512_loadu_ps(h.as_ptr().add(j));
        let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs));
        // Rust's `a != 0.0`: true for NaN too.
        let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, _mm512_setzero_ps());
        let index = _mm512_add_epi32(lanes, _mm512_set1_epi32(j as i32));
        _mm512_storeu_ps(mass.as_mut_ptr().add(k), _mm512_maskz_compress_ps(mask, a));
        _mm512_storeu_si512(
            unit.as_mut_ptr().add(k) as *mut _,
            _mm512_maskz_compress_epi32(mask, index),
        );
        k += mask.count_ones() as usize;
        j += 16;
    }
    gather_scalar(h, j, mass, unit, k)
}

/// The per-unit pass's parameters.
#[derive(Clone, Copy)]
struct Pass {
    r: f64,
    inv_total: f64,
    sampling: Sampling,
    key: u64,
}

/// The per-unit pass over the units with mass: keep or drop each (independent sampling: by
/// its uniform; exact: as `kept` says), and overwrite its mass with its factor.
#[inline(always)]
fn finish(
    mass: &mut [f32],
    unit: &[u32],
    kept: &[u8],
    pass: Pass,
    keep_probability: impl Fn(f64, f64) -> f64,
) {
    let Pass {
        r,
        inv_total,
        sampling,
        key,
    } = pass;
    let factor = |keep: bool, q: f64| if keep { (1.0 / q) as f32 } else { 0.0 };
    match sampling {
        Sampling::Independent => {
            for (v, &j) in mass.iter_mut().zip(unit) {
                let q = keep_probability(*v as f64 * inv_total, r);
                *v = factor(uniform(key, j as u64) < q, q);
            }
        }
        Sampling::Exact => {
            for (v, &kept) in mass.iter_mut().zip(kept) {
                let q = keep_probability(*v as f64 * inv_total, r);
                *v = factor(kept != 0, q);
            }
        }
    }
}

/// Fills `prefix` with the running mass at the end of each block of [`BLOCK`] units (each
/// block summed as a fixed tree, the blocks in order); returns the total and the largest
/// mass. `mass` is non-negative.
#[inline(always)]
fn block_sums(mass: &[f32], prefix: &mut Vec<f64>) -> (f64, f32) {
    prefix.clear();
    let mut running = 0.0f64;
    let mut max = [0.0f32; BLOCK];
    for chunk in mass.chunks(BLOCK) {
        let mut v = [0.0f64; BLOCK];
        for ((d, m), &x) in v.iter_mut().zip(max.iter_mut()).zip(chunk) {
            *d = x as f64;
            *m = m.max(x);
        }
        let mut width = BLOCK / 2;
        while width > 0 {
            for i in 0..width {
                v[i] += v[i + width];
            }
            width /= 2;
        }
        running += v[0];
        prefix.push(running);
    }
    (running, max.iter().fold(0.0f32, |a, &b| a.max(b)))
}

/// Marks in `kept` (one entry per unit with mass) the units hit by `r` draws with replacement
/// from Categorical(mass / total), by Poissonization with rejection (see [`factors`]).
/// `unit` holds the units' indices in the map, which key their uniforms; `prefix` the block
/// sums of `mass`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn draw_exact(
    mass: &[f32],
    unit: &[u32],
    r: u64,
    total: f64,
    key: u64,
    poisson_mean: f64,
    kept: &mut Vec<u8>,
    prefix: &[f64],
    guide: &mut Vec<u32>,
) {
    let n = mass.len();
    kept.clear();
    kept.resize(n, 0);
    let scale = poisson_mean / total;
    let mut attempt = 0u64;
    let drawn = loop {
        let stream = substream(key, DOMAIN_POISSON, attempt);
        let mut m = 0u64;
        let mut unfinished = 0u32;
        for ((count, &v), &j) in kept.iter_mut().zip(mass).zip(unit) {
            let c = poisson_head(v as f64 * scale, uniform(stream, j as u64));
            m += c as u64;
            unfinished += (c == POISSON_UNROLLED) as u32;
            *count = c as u8;
        }
        if unfinished > 0 && m <= r {
            // The capped counts are rare: look for them a chunk at a time (a vectorised test),
            // in order, until the sum passes r.
            'chunks: for (c0, chunk) in kept.chunks(64).enumerate() {
                let capped = chunk
                    .iter()
                    .fold(false, |any, &c| any | (c as u32 == POISSON_UNROLLED));
                if !capped {
                    continue;
                }
                for (i, &c) in chunk.iter().enumerate() {
                    if c as u32 == POISSON_UNROLLED {
                        let k = c0 * 64 + i;
                        let lambda = mass[k] as f64 * scale;
                        m += poisson_tail(lambda, stream, unit[k] as u64) - POISSON_UNROLLED as u64;
                        if m > r {
                            break 'chunks;
                        }
                    }
                }
            }
        }
        if m <= r {
            break m;
        }
        attempt += 1;
    };
    let stream = substream(key, DOMAIN_EXTRA, 0);
    let last = prefix.len() - 1;
    // A draw x in [0, total) hits the first block whose running mass passes x (the last if
    // rounding leaves none). The guide table (Chen and Asau 1974) splits [0, total) into as
    // many buckets as blocks; a draw starts at its bucket's entry and walks on, one or two
    // blocks on average. `bucket` is non-decreasing in x, so every block before a bucket's
    // entry ends at or below any x in the bucket: the walk finds the block the first-passing
    // rule names.
    let buckets = prefix.len();
    let per_mass = buckets as f64 / total;
    let bucket = |x: f64| ((x * per_mass) as usize).min(buckets - 1);
    guide.clear();
    for (i, &c) in prefix.iter().enumerate() {
        let b = bucket(c);
        while guide.len() <= b {
            guide.push(i as u32);
        }
    }
    guide.resize(buckets, last as u32);
    for i in 0..r - drawn {
        let x = uniform(stream, i) * total;
        let mut block = guide[bucket(x)] as usize;
        while block < last && prefix[block] <= x {
            block += 1;
        }
        let start = block * BLOCK;
        let mut running = if block == 0 { 0.0 } else { prefix[block - 1] };
        let units = &mass[start..(start + BLOCK).min(n)];
        // The first unit whose running mass passes x; if rounding between the block's tree
        // sum and this running sum leaves x past them all, the block's last unit.
        let mut hit = units.len() - 1;
        for (k, &v) in units.iter().enumerate() {
            running += v as f64;
            if running > x {
                hit = k;
                break;
            }
        }
        kept[start + hit] = 1;
    }
}

/// A Poisson(`lambda`) count by inversion of the uniform `u`, resolved up to
/// [`POISSON_UNROLLED`]: that value means "at least", finished by [`poisson_tail`]. No
/// branches: the loop over units vectorises.
#[inline(always)]
fn poisson_head(lambda: f64, u: f64) -> u32 {
    let mut f = exp_nonpositive(-lambda);
    let mut cdf = f;
    let mut c = (u >= cdf) as u32;
    for inv in &INV_NEXT[..POISSON_UNROLLED as usize - 1] {
        f *= lambda * inv;
        cdf += f;
        c += (u >= cdf) as u32;
    }
    c
}

/// The full Poisson(`lambda`) count of unit `j` when [`poisson_head`] reached
/// [`POISSON_UNROLLED`]: the same inversion continued while its terms are representable
/// (lambda <= 30), else exact draws from the unit's own stream until one reaches the cap
/// (rejection: a draw of the law conditioned on the head's event, count >= the cap).
fn poisson_tail(lambda: f64, stream: u64, j: u64) -> u64 {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    if lambda > 30.0 {
        let mut rng =
            rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(substream(stream, DOMAIN_TAIL, j));
        let poisson = rand_distr::Poisson::new(lambda).expect("a positive finite mean");
        loop {
            let c = poisson.sample(&mut rng) as u64;
            if c >= POISSON_UNROLLED as u64 {
                return c;
            }
        }
    }
    let u = uniform(stream, j);
    let mut f = exp_nonpositive(-lambda);
    let mut cdf = f;
    let mut c = 0u64;
    for inv in &INV_NEXT[..POISSON_UNROLLED as usize - 1] {
        c += (u >= cdf) as u64;
        f *= lambda * inv;
        cdf += f;
    }
    c += (u >= cdf) as u64;
    debug_assert_eq!(c, POISSON_UNROLLED as u64);
    // Continue the inversion from count c; stop where the terms no longer move the
    // cumulative mass (u within 1e-16 of 1).
    loop {
        f *= lambda / c as f64;
        let next = cdf + f;
        if next == cdf || u < next {
            break;
        }
        cdf = next;
        c += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut s = Scratch::default();
        let mut f = [0.0; 6];
        for key in 0..200 {
            factors(&h, 6, Sampling::Exact, key, &mut s, &mut f);
            for j in [0, 2, 3, 5] {
                assert_eq!(f[j], 0.0);
            }
            assert!(f[1] > 0.0 || f[4] > 0.0);
        }
    }

    #[test]
    fn poisson_counts_follow_the_poisson_law_past_the_unrolled_inversion() {
        // Mean and variance of the full count for means on both sides of the tail's switch.
        for lambda in [0.3, 2.0, 7.5, 29.0, 45.0, 900.0] {
            let draws = 40_000u64;
            let stream = substream(11, DOMAIN_POISSON, 0);
            let counts: Vec<f64> = (0..draws)
                .map(|j| {
                    let c = poisson_head(lambda, uniform(stream, j));
                    if c == POISSON_UNROLLED {
                        poisson_tail(lambda, stream, j) as f64
                    } else {
                        c as f64
                    }
                })
                .collect();
            let mean = counts.iter().sum::<f64>() / draws as f64;
            let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / draws as f64;
            // Standard error of the mean sqrt(lambda / draws); 6 of them.
            let se = (lambda / draws as f64).sqrt();
            assert!(
                (mean - lambda).abs() < 6.0 * se,
                "lambda {lambda}: mean {mean}"
            );
            // The variance's standard error is about lambda sqrt(2 / draws) (plus the
            // fourth cumulant lambda / draws); 6 of them.
            let var_se = (2.0 * lambda * lambda / draws as f64 + lambda / draws as f64).sqrt();
            assert!(
                (var - lambda).abs() < 6.0 * var_se,
                "lambda {lambda}: var {var}"
            );
        }
    }

    #[test]
    fn a_tail_count_past_the_exact_switch_is_never_below_the_unrolled_cap() {
        // Above a mean of 30 the tail draws afresh; conditioned on the head's event it must
        // still reach the cap (P(count < 12) at mean 30.5 is about 2e-5 per fresh draw).
        let stream = substream(5, DOMAIN_POISSON, 0);
        for j in 0..400_000u64 {
            let c = poisson_tail(30.5, stream, j);
            assert!(c >= POISSON_UNROLLED as u64, "unit {j}: count {c}");
        }
    }

    #[test]
    fn ln_and_exp_agree_with_libm() {
        for e in 0..=600 {
            let x = 10f64.powf(-(e as f64) / 2.0);
            let want = x.ln();
            assert!(
                (ln_positive(x) - want).abs() <= 1e-14 * want.abs().max(1.0),
                "{x}"
            );
        }
        for i in 0..=7080 {
            let x = -(i as f64) / 10.0;
            let want = x.exp();
            assert!(((exp_nonpositive(x) - want) / want).abs() < 1e-9, "{x}");
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_factors_bit_for_bit() {
        let mut gen = 7u64;
        let h: Vec<f32> = (0..5000)
            .map(|j| {
                gen = mix64(gen.wrapping_add(GAMMA));
                let v = (gen >> 40) as f32 / (1u64 << 24) as f32;
                if j % 3 == 0 {
                    0.0
                } else if j % 7 == 0 {
                    -0.0
                } else {
                    v * v * 4.0
                }
            })
            .collect();
        let isas = Isa::available();
        for sampling in [Sampling::Exact, Sampling::Independent] {
            for r in [50u64, 5000, 80_000] {
                let mut s = Scratch::default();
                let mut want = vec![0.0f32; h.len()];
                factors_on(Isa::Baseline, &h, r, sampling, 3, &mut s, &mut want);
                for &isa in &isas {
                    let mut got = vec![0.0f32; h.len()];
                    factors_on(isa, &h, r, sampling, 3, &mut s, &mut got);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{isa:?} {sampling:?} r = {r}");
                    // Multiplied in place: the map times the same factors, zeros kept with
                    // their signs.
                    let mut product = h.clone();
                    let t = poisson_mean(r);
                    let job = Job::new(&mut product, r, sampling, 3, t, Output::Product);
                    isa.kernel(job, &mut s);
                    let same = product
                        .iter()
                        .zip(h.iter().zip(&want))
                        .all(|(p, (v, f))| p.to_bits() == (v * f).to_bits());
                    assert!(same, "{isa:?} {sampling:?} r = {r}, in place");
                }
            }
        }
    }
}
