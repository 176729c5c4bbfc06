//! The Monte-Carlo input gradient of a defended network:
//! `g = (1/k) sum_i grad_x CE(f_i(x), y)` over `k` stochastic passes `f_i` (the paper's
//! estimate; Expectation over Transformation in Athalye et al. 2018).

use tch::{Reduction, Tensor};

use crate::defense::{Defense, DefensePoints, DefenseRng};
use crate::nn::Model;

/// The mean over `k` defended passes of the gradient of the summed cross-entropy with respect
/// to the input (never the parameters). Summing over the batch keeps each example's gradient
/// independent of the batch size.
///
/// # Shapes
/// `x`: `[batch, ...]` float; `labels`: `[batch]` int64 -> same shape as `x`.
pub fn input_gradient(
    model: &Model,
    defense: Defense,
    rng: &mut DefenseRng,
    x: &Tensor,
    labels: &Tensor,
    k: u32,
) -> Tensor {
    assert!(k > 0, "at least one gradient sample");
    let x = crate::nn::as_float(&x.detach());
    let mut sum = x.zeros_like();
    for _ in 0..k {
        let xi = x.shallow_clone().set_requires_grad(true);
        let mut points = DefensePoints::new(defense, rng);
        let outputs = model.forward(&xi, false, &mut points);
        let loss = outputs.cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, -100, 0.0);
        let grads = Tensor::run_backward(&[loss], &[&xi], false, false);
        sum += &grads[0];
    }
    sum / k as f64
}
