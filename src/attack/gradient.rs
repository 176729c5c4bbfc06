//! The Monte-Carlo input gradient of a defended network:
//! `g = (1/k) sum_i grad_x CE(f_i(x), y)` over `k` stochastic passes `f_i` (the paper's
//! estimate; Expectation over Transformation in Athalye et al. 2018).

use tch::{Reduction, Tensor};

use crate::defense::{pass_groups, stack_rows, Defense, DefensePoints, Draws};
use crate::nn::Model;

/// The mean over `k` defended passes of the gradient of the summed cross-entropy with respect
/// to the input (never the parameters). Summing over the batch keeps each example's gradient
/// independent of the batch size. Passes are stacked along the batch, up to `max_batch` rows
/// per forward; each pass's masks come from [`Draws::pass_keys`], so the stacking leaves them as
/// they are, and the pass gradients are added in pass order.
///
/// # Shapes
/// `x`: `[batch, ...]` float; `labels`: `[batch]` int64 -> same shape as `x`.
pub fn input_gradient(
    model: &Model,
    defense: Defense,
    draws: &mut Draws,
    x: &Tensor,
    labels: &Tensor,
    k: u32,
    max_batch: usize,
) -> Tensor {
    assert!(k > 0, "at least one gradient sample");
    let x = crate::nn::as_float(&x.detach());
    let batch = x.size()[0];
    let keys = draws.pass_keys(defense, k as usize, batch as usize);
    let mut sum = x.zeros_like();
    for group in pass_groups(k as usize, batch as usize, max_batch) {
        let copies = group.len();
        let xi = stack_rows(&x, copies).set_requires_grad(true);
        let rows = stack_rows(labels, copies);
        let mut points = DefensePoints::with_row_keys(defense, keys[group].concat());
        let outputs = model.forward(&xi, false, &mut points);
        let loss = outputs.cross_entropy_loss::<Tensor>(&rows, None, Reduction::Sum, -100, 0.0);
        let grads = Tensor::run_backward(&[loss], &[&xi], false, false);
        for s in 0..copies {
            sum += grads[0].narrow(0, s as i64 * batch, batch);
        }
    }
    sum / k as f64
}
