//! Fast Gradient Sign Method (Goodfellow et al. 2015): `x' = clip(x + lambda * sign(g), 0, 255)`.

use tch::Tensor;

use super::{input_gradient, PIXEL_MAX, PIXEL_MIN};
use crate::defense::{Defense, Draws};
use crate::nn::Model;

/// FGSM's parameters.
#[derive(Clone, Copy, Debug)]
pub struct FgsmParams {
    /// Step size and L-infinity radius, pixel units.
    pub lambda: f64,
    /// Passes per gradient estimate.
    pub gradient_samples: u32,
    /// Rows per forward pass when the gradient's passes are stacked.
    pub max_batch: usize,
}

/// One signed step of size `lambda` along the Monte-Carlo gradient over `gradient_samples`
/// passes.
///
/// # Shapes
/// `x`: `[batch, ...]` pixel units; `labels`: `[batch]` -> same shape as `x` (float).
pub fn fgsm(
    model: &Model,
    defense: Defense,
    draws: &mut Draws,
    x: &Tensor,
    labels: &Tensor,
    params: FgsmParams,
) -> Tensor {
    let x = crate::nn::as_float(&x.detach());
    if params.lambda == 0.0 {
        return x;
    }
    let (k, max_batch) = (params.gradient_samples, params.max_batch);
    let g = input_gradient(model, defense, draws, &x, labels, k, max_batch);
    (x + g.sign() * params.lambda).clamp(PIXEL_MIN, PIXEL_MAX)
}
