//! The defenses' draws in tensor operations, on the activation's own device: the path for
//! activations on an accelerator, where the host sampler would copy every map to the host
//! and back.
//!
//! Randomness comes from a counter-based hash of (row's stream key, draw index) computed in
//! integer tensor operations, so a result is a function of the rows' keys and the inputs
//! only: no generator state, the same numbers on every device, thread count and batch
//! composition. The laws are docs/ARCHITECTURE.md section 5's, drawn differently from the host sampler
//! ([`super::sap`]), so the two paths give different (equally distributed) masks.
//!
//! - SAP exact: `r` uniforms per example, each inverted through the cumulative `|h|`
//!   (`searchsorted`), the hit units scattered into a mask: `r` draws with replacement from
//!   Categorical(p), as the definition says.
//! - SAP independent, dropout: one uniform per unit.
//! - Gaussian: one normal per unit (Box-Muller on two uniforms).

use tch::{Kind, Tensor};

use super::Defense;

/// The low 32 bits.
const MASK32: i64 = 0xffff_ffff;

/// A 32-bit integer hash (two multiply-xorshift rounds; multipliers below 2^27, so every
/// product of a 32-bit value fits in an int64 without overflow), applied elementwise to
/// values in [0, 2^32).
fn mix32(x: &Tensor) -> Tensor {
    let x = x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16));
    let x = (x * 0x045d_9f3b_i64).bitwise_and(MASK32);
    let x = x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16));
    let x = (x * 0x045d_9f3b_i64).bitwise_and(MASK32);
    x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16))
}

/// Uniforms in [0, 1) with 53 random bits, of shape `[keys.len(), count]`: entry (b, k) is a
/// function of (`keys[b]`, `domain`, k) alone.
fn uniforms(keys: &[u64], domain: i64, count: i64, device: tch::Device) -> Tensor {
    let batch = keys.len() as i64;
    let half = |shift: u32| {
        let v: Vec<i64> = keys
            .iter()
            .map(|&k| ((k >> shift) & 0xffff_ffff) as i64)
            .collect();
        Tensor::from_slice(&v).view([batch, 1]).to_device(device)
    };
    let (k1, k2) = (half(0), half(32));
    // Per row: a key that depends on the row's stream and the domain.
    let e = mix32(&mix32(&k1).bitwise_xor(domain).bitwise_and(MASK32));
    let k = Tensor::arange(count, (Kind::Int64, device)).view([1, count]);
    let word = |half: i64| {
        let x = (&k * 2 + half).bitwise_xor_tensor(&e);
        mix32(&mix32(&x.bitwise_and(MASK32)).bitwise_xor_tensor(&k2))
    };
    let hi = word(0).bitwise_right_shift_tensor_scalar(6); // 26 bits
    let lo = word(1).bitwise_right_shift_tensor_scalar(5); // 27 bits
    (hi * (1i64 << 27) + lo).to_kind(Kind::Double) * (1.0 / (1u64 << 53) as f64)
}

/// Domains keep the streams of different uses apart.
const DOMAIN_DRAWS: i64 = 0x5a17;
const DOMAIN_UNITS: i64 = 0x0b17;
const DOMAIN_NORMAL: i64 = 0x2e71;

/// The defense's per-unit factor (SAP, dropout) or additive noise (Gaussian) for `h`
/// (`[batch, ...]`, non-negative for SAP), in `h`'s kind, on `h`'s device; row `b`'s
/// values depend only on its stream `keys[b]` and its own activations. `None` for a
/// deterministic defense.
///
/// # Panics
/// If `keys` does not hold one key per row of `h`.
pub fn draw(defense: Defense, h: &Tensor, keys: &[u64]) -> Option<Tensor> {
    let h = h.detach();
    let size = h.size();
    let batch = size[0];
    assert_eq!(keys.len() as i64, batch, "one stream key per row");
    let x = h.to_kind(Kind::Double).reshape([batch, -1]);
    let n = x.size()[1];
    let device = h.device();
    let out = match defense {
        Defense::Dense => return None,
        Defense::Sap { frac, sampling } => {
            let r = super::sap::draws(frac, n as usize) as i64;
            sap_factor(&x, r, sampling, keys)
        }
        Defense::Dropout { p } => {
            if p <= 0.0 {
                return None;
            }
            let u = uniforms(keys, DOMAIN_UNITS, n, device);
            u.ge(p).to_kind(Kind::Double) * (1.0 / (1.0 - p))
        }
        Defense::Gaussian { sigma } => {
            if sigma <= 0.0 {
                return None;
            }
            let u = uniforms(keys, DOMAIN_NORMAL, 2 * n, device);
            let u1 = u.narrow(1, 0, n);
            let u2 = u.narrow(1, n, n);
            // 1 - u1 lies in (0, 1]: the logarithm is finite.
            let radius = ((-u1 + 1.0).log() * -2.0).sqrt();
            let z = radius * (u2 * (2.0 * std::f64::consts::PI)).cos();
            let mean_abs = x.abs().mean_dim([1i64].as_slice(), true, Kind::Double);
            z * mean_abs * sigma
        }
    };
    Some(out.reshape(size.as_slice()).to_kind(h.kind()))
}

/// SAP's factor `kept_j / (1 - (1 - p_j)^r)` for each row of `x` (`[batch, n]`, f64,
/// non-negative); an all-zero row gets all-zero factors.
fn sap_factor(x: &Tensor, r: i64, sampling: super::Sampling, keys: &[u64]) -> Tensor {
    let n = x.size()[1];
    let device = x.device();
    let total = x.sum_dim_intlist([1i64].as_slice(), true, Kind::Double);
    // A row without mass has p = 0 everywhere, keeps nothing and stays zero.
    let p = x / total.clamp_min(f64::MIN_POSITIVE);
    // -expm1(r log1p(-p)): the probability that a unit is drawn at least once.
    let q = -((-&p).log1p() * r as f64).expm1();
    let kept = match sampling {
        super::Sampling::Exact => {
            if r == 0 {
                return x.zeros_like();
            }
            let cumulative = x.cumsum(1, Kind::Double);
            let u = uniforms(keys, DOMAIN_DRAWS, r, device) * &total;
            // The unit j with cumulative[j-1] <= u < cumulative[j]: zero units have empty
            // intervals and are never hit.
            let hit = u
                .searchsorted(&cumulative, false, true, "right", None::<Tensor>)
                .clamp_max(n - 1);
            x.zeros_like()
                .scatter_value(1, &hit, 1.0)
                .gt(0.0)
                .logical_and(&x.gt(0.0))
        }
        super::Sampling::Independent => {
            let u = uniforms(keys, DOMAIN_UNITS, n, device);
            u.lt_tensor(&q).logical_and(&x.gt(0.0))
        }
    };
    q.reciprocal().where_self(&kept, &x.zeros_like())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn uniforms_lie_in_the_unit_interval_and_depend_on_the_row_key_and_index() {
        let u = uniforms(&[7, 8, 9], DOMAIN_DRAWS, 1000, Device::Cpu);
        let min = u.min().double_value(&[]);
        let max = u.max().double_value(&[]);
        assert!((0.0..1.0).contains(&min) && max < 1.0, "{min} {max}");
        let mean = u.mean(Kind::Double).double_value(&[]);
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!(!u.get(0).equal(&u.get(1)), "another key, other numbers");
        let v = uniforms(&[1, 9, 7], DOMAIN_DRAWS, 1000, Device::Cpu);
        assert!(
            v.get(2).equal(&u.get(0)),
            "a row's numbers follow its key, not its row"
        );
        assert!(v.get(1).equal(&u.get(2)));
        let w = uniforms(&[7, 8, 9], DOMAIN_UNITS, 1000, Device::Cpu);
        assert!(!w.equal(&u), "another domain, other numbers");
    }
}
