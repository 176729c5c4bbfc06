//! Choosing actions from Q-values, in one place for every player: the actors of training,
//! the evaluation phases of training, and the defended agent of an evaluation grid.
//!
//! - greedy: the argmax of each row of Q-values, the first action on ties;
//! - epsilon-greedy: one uniform draw decides whether to explore (`u < epsilon`), and only
//!   then a second draw picks the action uniformly. The order of the draws is part of the
//!   definition: a row depends only on its own generator.

use rand::Rng;
use tch::{Device, Tensor};

use crate::defense::DefensePoints;
use crate::nn::Model;

/// The exploring action, or `None` when the greedy action is to be taken: draws `u` in
/// [0, 1) and, when `u < epsilon`, an action uniformly from `0..actions`.
pub fn explore(rng: &mut impl Rng, epsilon: f64, actions: usize) -> Option<usize> {
    (rng.gen::<f64>() < epsilon).then(|| rng.gen_range(0..actions))
}

/// The greedy action of each row of Q-values, on the host.
///
/// # Shapes
/// `q`: `[batch, actions]` -> `batch` actions.
pub fn greedy(q: &Tensor) -> Vec<i64> {
    let best = q.argmax(-1, false).to_device(Device::Cpu);
    Vec::<i64>::try_from(best).expect("argmax gives int64")
}

/// The undefended network's greedy actions for a batch of observations, in one forward pass
/// without gradients.
///
/// # Shapes
/// `x`: `[batch, ...]` on the model's device -> `batch` actions.
pub fn greedy_dense(model: &Model, x: &Tensor) -> Vec<i64> {
    tch::no_grad(|| greedy(&model.forward(x, false, &mut DefensePoints::dense())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn greedy_takes_the_first_of_tied_actions() {
        let q = Tensor::from_slice(&[1.0f32, 3.0, 3.0, 0.5, -1.0, -2.0]).view([2, 3]);
        assert_eq!(greedy(&q), [1, 0]);
    }

    #[test]
    fn explore_draws_the_probability_first_and_the_action_only_when_exploring() {
        let mut a = ChaCha8Rng::seed_from_u64(5);
        let mut b = a.clone();
        assert_eq!(explore(&mut a, 0.0, 6), None);
        let _: f64 = b.gen();
        assert_eq!(
            a.gen::<u64>(),
            b.gen::<u64>(),
            "one draw when not exploring"
        );
        let mut c = ChaCha8Rng::seed_from_u64(5);
        let mut d = c.clone();
        let action = explore(&mut c, 1.0, 6).expect("epsilon 1 always explores");
        let _: f64 = d.gen();
        assert_eq!(action, d.gen_range(0..6));
        assert_eq!(c.gen::<u64>(), d.gen::<u64>(), "two draws when exploring");
    }
}
