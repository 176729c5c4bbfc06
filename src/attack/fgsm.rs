//! Fast Gradient Sign Method (Goodfellow et al. 2015): `x' = clip(x + lambda * sign(g), 0, 255)`.

use tch::Tensor;

use super::gradient::{loss_gradient, GradientSpec};
use super::{PIXEL_MAX, PIXEL_MIN};
use crate::defense::{Defense, Draws};
use crate::nn::Model;

/// FGSM's parameters.
#[derive(Clone, Copy, Debug)]
pub struct FgsmParams {
    /// Step size and L-infinity radius, pixel units.
    pub lambda: f64,
    /// The loss, the passes per gradient and the defense points' backward.
    pub gradient: GradientSpec,
}

/// One signed step of size `lambda` along the Monte-Carlo gradient of the loss.
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
    let (g, _) = loss_gradient(model, defense, draws, &x, labels, params.gradient);
    (x + g.sign() * params.lambda).clamp(PIXEL_MIN, PIXEL_MAX)
}
