//! Fast Gradient Sign Method (Goodfellow et al. 2015): `x' = clip(x + lambda * sign(g), 0, 255)`.

use tch::Tensor;

use super::{input_gradient, PIXEL_MAX, PIXEL_MIN};
use crate::defense::{Defense, DefenseRng};
use crate::nn::Model;

/// One signed step of size `lambda` along the Monte-Carlo gradient over `k` passes.
///
/// # Shapes
/// `x`: `[batch, ...]` pixel units; `labels`: `[batch]` -> same shape as `x` (float).
pub fn fgsm(
    model: &Model,
    defense: Defense,
    rng: &mut DefenseRng,
    x: &Tensor,
    labels: &Tensor,
    lambda: f64,
    k: u32,
) -> Tensor {
    let x = crate::nn::as_float(&x.detach());
    if lambda == 0.0 {
        return x;
    }
    let g = input_gradient(model, defense, rng, &x, labels, k);
    (x + g.sign() * lambda).clamp(PIXEL_MIN, PIXEL_MAX)
}
