//! Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks", Algorithm 1), L-infinity, untargeted, in
//! pixel units, following AutoAttack's `APGDAttack` (`autoattack/autopgd_base.py`) for what
//! the paper leaves open:
//!
//! ```text
//! x_0     = clip(x + U(-lambda, lambda), 0, 255)  (random start; else x)
//! eta     = 2 lambda                               (per example)
//! z       = P(x_k + eta sign(g(x_k)))
//! x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))   a = 1 at k = 0, then 0.75
//! ```
//!
//! where `P` projects onto the ball of radius lambda around x intersected with [0, 255] and
//! `g` is the Monte-Carlo gradient of the loss over `gradient_samples` defended passes
//! (EOT). Each example keeps the iterate of highest loss (`x_max`). Checkpoints come after
//! `max(22% N, 1)` iterations, then after windows shrinking by `max(3% N, 1)` to no less than
//! `max(6% N, 1)` (N = iterations). At a checkpoint an example's step is halved, and it
//! restarts from its `x_max` with the gradient there, when its loss rose in at most 75% of the
//! window's iterations, or when its step was not halved at the previous checkpoint and its
//! best loss has not risen since.
//!
//! Where this differs from AutoAttack's code: the loss of an iterate is its mean over the
//! EOT passes (AutoAttack keeps the last pass's), the first window counts rises from the
//! starting point's loss, and the attack returns each example's highest-loss point over all
//! restarts (AutoAttack returns a point at which one pass misclassified; with a stochastic
//! defense a prediction averages many passes, which the highest mean loss serves better).

use tch::{Kind, Tensor};

use super::gradient::{loss_gradient, GradientSpec};
use super::{PIXEL_MAX, PIXEL_MIN};
use crate::defense::{Defense, Draws};
use crate::nn::Model;

/// Momentum of the update (`a` after the first iteration).
pub const MOMENTUM: f64 = 0.75;
/// A window whose loss rose in at most this share of its iterations halves the step.
pub const RISE_SHARE: f64 = 0.75;

/// APGD's parameters.
#[derive(Clone, Copy, Debug)]
pub struct ApgdParams {
    /// L-infinity radius, pixel units.
    pub lambda: f64,
    /// Iterations per restart (> 0).
    pub iterations: u32,
    /// Runs from fresh starting points; each example keeps its best (> 0).
    pub restarts: u32,
    /// Start from a uniform point of the ball rather than from x.
    pub random_start: bool,
    /// The loss, the passes per gradient and the defense points' backward.
    pub gradient: GradientSpec,
}

/// The checkpoint schedule: the iteration counts (1-based) after which step sizes are
/// checked, for `iterations` iterations.
pub fn checkpoints(iterations: u32) -> Vec<u32> {
    let n = iterations as f64;
    let first = ((0.22 * n) as u32).max(1);
    let decrease = ((0.03 * n) as u32).max(1);
    let least = ((0.06 * n) as u32).max(1);
    let mut out = Vec::new();
    let (mut window, mut at) = (first, first);
    while at <= iterations {
        out.push(at);
        window = window.saturating_sub(decrease).max(least);
        at += window;
    }
    out
}

/// Runs `restarts` APGD runs and returns, per example, the point of highest loss.
///
/// # Shapes
/// `x`: `[batch, ...]` pixel units; `labels`: `[batch]` int64 -> same shape as `x` (float).
pub fn apgd(
    model: &Model,
    defense: Defense,
    draws: &mut Draws,
    x: &Tensor,
    labels: &Tensor,
    params: ApgdParams,
) -> Tensor {
    let x = crate::nn::as_float(&x.detach());
    if params.lambda == 0.0 {
        return x;
    }
    let mut best: Option<(Tensor, Tensor)> = None;
    for _ in 0..params.restarts {
        let (adv, loss) = run(model, defense, draws, &x, labels, &params);
        best = Some(match best {
            None => (adv, loss),
            Some((best_x, best_loss)) => {
                let better = loss.gt_tensor(&best_loss);
                (
                    adv.where_self(&rows(&better, &x), &best_x),
                    loss.maximum(&best_loss),
                )
            }
        });
    }
    best.expect("restarts >= 1").0
}

/// `mask` (`[batch]`) shaped to broadcast over `like`'s rows.
fn rows(mask: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![1i64; like.dim()];
    shape[0] = like.size()[0];
    mask.view(shape.as_slice())
}

/// One run: (the highest-loss point, its loss) per example.
fn run(
    model: &Model,
    defense: Defense,
    draws: &mut Draws,
    x: &Tensor,
    labels: &Tensor,
    p: &ApgdParams,
) -> (Tensor, Tensor) {
    let lower = (x - p.lambda).clamp_min(PIXEL_MIN);
    let upper = (x + p.lambda).clamp_max(PIXEL_MAX);
    let project = |t: Tensor| t.maximum(&lower).minimum(&upper);
    let batch = x.size()[0];
    let mut adv = if p.random_start {
        let noise = draws.uniform_noise(x.numel(), batch as usize, p.lambda);
        let noise = Tensor::from_slice(&noise)
            .view(x.size().as_slice())
            .to_device(x.device());
        project(x + noise)
    } else {
        x.shallow_clone()
    };
    let gradient = |draws: &mut Draws, at: &Tensor| {
        loss_gradient(model, defense, draws, at, labels, p.gradient)
    };
    let (mut grad, mut loss) = gradient(draws, &adv);
    let (mut best_x, mut best_grad, mut best_loss) = (
        adv.shallow_clone(),
        grad.shallow_clone(),
        loss.shallow_clone(),
    );
    let mut step = rows(
        &Tensor::full([batch], 2.0 * p.lambda, (Kind::Float, x.device())),
        x,
    );
    let mut previous = adv.shallow_clone();
    let schedule = checkpoints(p.iterations);
    let mut window_start = 0u32;
    let mut rises = Tensor::zeros([batch], (Kind::Float, x.device()));
    let mut best_at_last_check = best_loss.shallow_clone();
    let mut halved_at_last_check = Tensor::ones([batch], (Kind::Bool, x.device()));
    for i in 0..p.iterations {
        let a = if i == 0 { 1.0 } else { MOMENTUM };
        let momentum = &adv - &previous;
        previous = adv.shallow_clone();
        let z = project(&adv + &step * grad.sign());
        adv = project(&adv + (z - &adv) * a + momentum * (1.0 - a));
        let (g, l) = gradient(draws, &adv);
        rises += l.gt_tensor(&loss).to_kind(Kind::Float);
        (grad, loss) = (g, l);
        let improved = loss.gt_tensor(&best_loss);
        let improved_rows = rows(&improved, x);
        best_x = adv.where_self(&improved_rows, &best_x);
        best_grad = grad.where_self(&improved_rows, &best_grad);
        best_loss = loss.maximum(&best_loss);
        let done = i + 1;
        if schedule.contains(&done) {
            let window = (done - window_start) as f64;
            let stalled = rises.le(RISE_SHARE * window);
            let no_progress = halved_at_last_check
                .logical_not()
                .logical_and(&best_at_last_check.ge_tensor(&best_loss));
            let halve = stalled.logical_or(&no_progress);
            let halve_rows = rows(&halve, x);
            step = (&step / 2.0).where_self(&halve_rows, &step);
            adv = best_x.where_self(&halve_rows, &adv);
            grad = best_grad.where_self(&halve_rows, &grad);
            halved_at_last_check = halve;
            best_at_last_check = best_loss.copy();
            rises = rises.zeros_like();
            window_start = done;
        }
    }
    (best_x, best_loss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoints_for_100_iterations_are_autoattacks() {
        // 22, then windows of 19, 16, 13, 10, 7, 6, 6, ...
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    }

    #[test]
    fn few_iterations_still_get_checkpoints_of_at_least_one_iteration() {
        assert_eq!(checkpoints(1), vec![1]);
        assert_eq!(checkpoints(4), vec![1, 2, 3, 4]);
        assert_eq!(checkpoints(10), vec![2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }
}
