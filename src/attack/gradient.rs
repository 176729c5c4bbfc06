//! The Monte-Carlo input gradient of a defended network:
//! `g = (1/k) sum_i grad_x L(f_i(x), y)` over `k` stochastic passes `f_i` (the paper's
//! estimate; Expectation over Transformation in Athalye et al. 2018), for a loss `L` of
//! [`Loss`], with the defense points' backward either as in the forward pass (`mask`) or the
//! identity (`identity`, BPDA).

use tch::Tensor;

use super::{Backward, Loss};
use crate::defense::{pass_groups, stack_rows, Defense, DefensePoints, Draws};
use crate::nn::Model;

/// How a gradient is estimated: the loss, the passes and the defense points' backward.
#[derive(Clone, Copy, Debug)]
pub struct GradientSpec {
    /// The loss maximised.
    pub loss: Loss,
    /// Stochastic passes averaged (> 0).
    pub samples: u32,
    /// Rows per forward pass when passes are stacked.
    pub max_batch: usize,
    /// The defense points' backward pass.
    pub backward: Backward,
}

impl GradientSpec {
    /// Cross-entropy, `samples` passes, the points' own backward.
    pub fn cross_entropy(samples: u32, max_batch: usize) -> Self {
        GradientSpec {
            loss: Loss::Ce,
            samples,
            max_batch,
            backward: Backward::Mask,
        }
    }
}

/// The mean over `k` defended passes of the gradient of the summed cross-entropy with respect
/// to the input (never the parameters). See [`loss_gradient`].
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
    let spec = GradientSpec::cross_entropy(k, max_batch);
    loss_gradient(model, defense, draws, x, labels, spec).0
}

/// The mean over `spec.samples` defended passes of the gradient of the summed loss with
/// respect to the input (never the parameters), and each example's loss averaged over the
/// same passes. Summing over the batch keeps each example's gradient independent of the
/// batch size. Passes are stacked along the batch, up to `max_batch` rows per forward; each
/// pass's masks come from [`Draws::pass_keys`], so the stacking leaves them as they are, and
/// the pass gradients are added in pass order.
///
/// # Shapes
/// `x`: `[batch, ...]` float; `labels`: `[batch]` int64 -> (same shape as `x`, `[batch]`).
pub fn loss_gradient(
    model: &Model,
    defense: Defense,
    draws: &mut Draws,
    x: &Tensor,
    labels: &Tensor,
    spec: GradientSpec,
) -> (Tensor, Tensor) {
    let k = spec.samples;
    assert!(k > 0, "at least one gradient sample");
    let x = crate::nn::as_float(&x.detach());
    let batch = x.size()[0];
    let keys = draws.pass_keys(defense, k as usize, batch as usize);
    let mut sum = x.zeros_like();
    let mut losses: Option<Tensor> = None;
    for group in pass_groups(k as usize, batch as usize, spec.max_batch) {
        let copies = group.len();
        let xi = stack_rows(&x, copies).set_requires_grad(true);
        let rows = stack_rows(labels, copies);
        let mut points = DefensePoints::with_row_keys(defense, keys[group].concat());
        if spec.backward == Backward::Identity {
            points = points.with_identity_backward();
        }
        let outputs = model.forward(&xi, false, &mut points);
        let each = spec.loss.per_example(&outputs, &rows);
        let grads = Tensor::run_backward(&[each.sum(tch::Kind::Float)], &[&xi], false, false);
        let each = each.detach();
        for s in 0..copies {
            sum += grads[0].narrow(0, s as i64 * batch, batch);
            let pass = each.narrow(0, s as i64 * batch, batch);
            losses = Some(match losses {
                None => pass,
                Some(sum) => sum + pass,
            });
        }
    }
    let losses = losses.expect("at least one pass");
    (sum / k as f64, losses / k as f64)
}
