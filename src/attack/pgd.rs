//! Iterative FGSM / projected gradient descent (Kurakin et al. 2017; Madry et al. 2018):
//!
//! ```text
//! x_0     = x                      or  clip(x + U(-lambda, lambda), 0, 255) with a random start
//! x_{t+1} = clip(proj_{|. - x|_inf <= lambda}(x_t + step_size * sign(g(x_t))), 0, 255)
//! ```
//!
//! where `g` is the Monte-Carlo gradient of the loss at `x_t`.

use tch::Tensor;

use super::gradient::{loss_gradient, GradientSpec};
use super::{PIXEL_MAX, PIXEL_MIN};
use crate::defense::{Defense, Draws};
use crate::nn::Model;

/// PGD's parameters, after defaults are resolved.
#[derive(Clone, Copy, Debug)]
pub struct PgdParams {
    /// L-infinity radius, pixel units.
    pub lambda: f64,
    /// Iterations.
    pub steps: u32,
    /// Step size, pixel units.
    pub step_size: f64,
    /// Start from a uniform point of the ball.
    pub random_start: bool,
    /// The loss, the passes per gradient and the defense points' backward.
    pub gradient: GradientSpec,
}

/// Runs the iteration; the random start is drawn from `draws`.
///
/// # Shapes
/// `x`: `[batch, ...]` pixel units; `labels`: `[batch]` -> same shape as `x` (float).
pub fn pgd(
    model: &Model,
    defense: Defense,
    draws: &mut Draws,
    x: &Tensor,
    labels: &Tensor,
    params: PgdParams,
) -> Tensor {
    let x = crate::nn::as_float(&x.detach());
    if params.lambda == 0.0 {
        return x;
    }
    let lower = (&x - params.lambda).clamp_min(PIXEL_MIN);
    let upper = (&x + params.lambda).clamp_max(PIXEL_MAX);
    let mut adv = if params.random_start {
        let batch = x.size()[0] as usize;
        let noise = draws.uniform_noise(x.numel(), batch, params.lambda);
        let noise = Tensor::from_slice(&noise)
            .view(x.size().as_slice())
            .to_device(x.device());
        (&x + noise).clamp(PIXEL_MIN, PIXEL_MAX)
    } else {
        x.shallow_clone()
    };
    for _ in 0..params.steps {
        let (g, _) = loss_gradient(model, defense, draws, &adv, labels, params.gradient);
        let step = &adv + g.sign() * params.step_size;
        // Projection onto the ball intersected with [0, 255] is a per-pixel clamp.
        adv = step.maximum(&lower).minimum(&upper);
    }
    adv
}
