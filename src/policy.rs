//! The one abstraction both families use: a network, a defense, an optional attack and the
//! number of passes a prediction averages, with the seeded generator every defense draw and
//! random start comes from.
//!
//! The generator belongs to the wrapper, not to torch: the same seed and inputs give the same
//! outputs whatever else runs in the process (other wrappers, other threads, torch's own RNG).

use rand::SeedableRng;
use tch::{Kind, Tensor};

use crate::attack::{Attack, AttackError, Source};
use crate::defense::{
    pass_groups, stack_rows, Defense, DefenseError, DefensePoints, DefenseRng, Draws,
    DEFAULT_MAX_BATCH,
};
use crate::metrics::{Prediction, Scored};
use crate::nn::Model;

/// A wrapper setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The defense's parameters.
    #[error(transparent)]
    Defense(#[from] DefenseError),
    /// The attack's parameters.
    #[error(transparent)]
    Attack(#[from] AttackError),
    /// `samples` must be positive.
    #[error("samples = 0 is not allowed; allowed: an integer >= 1")]
    Samples,
}

/// What [`PolicyWrapper::classify`] returns.
#[derive(Debug)]
pub struct Classification {
    /// The input the network saw (the attack's output, or the clean input).
    ///
    /// `[batch, ...]` float, pixel units.
    pub inputs: Tensor,
    /// Softmax probabilities averaged over `samples` defended passes. `[batch, classes]`.
    pub probabilities: Tensor,
    /// Each pass's most probable class, `[passes, batch]` int64: what Athalye et al.'s
    /// optimistic count of a stochastic model reads (an example is correct if any pass is).
    pub pass_predictions: Tensor,
}

impl Classification {
    /// The predictions on the host, scored against `labels` (`[batch]` int64, the same as
    /// `host_labels`).
    pub fn scored(&self, labels: &Tensor, host_labels: &[i64]) -> Scored {
        let probs: Vec<f32> = Vec::try_from(
            self.probabilities
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu)
                .flatten(0, -1),
        )
        .expect("float probabilities");
        let classes = probs.len() / host_labels.len().max(1);
        let any = self.any_pass_correct(labels).to_device(tch::Device::Cpu);
        Scored {
            predictions: probs
                .chunks(classes.max(1))
                .zip(host_labels)
                .map(|(row, &label)| Prediction::from_probabilities(row, label))
                .collect(),
            any_pass_correct: Vec::<bool>::try_from(any).expect("bool per example"),
        }
    }

    /// Whether any single pass predicted the label, per example. `labels`: `[batch]` ->
    /// `[batch]` bool.
    pub fn any_pass_correct(&self, labels: &Tensor) -> Tensor {
        let labels = labels.to_device(self.pass_predictions.device());
        self.pass_predictions
            .eq_tensor(&labels.unsqueeze(0))
            .any_dim(0, false)
    }
}

/// Network + defense + attack + samples, with its own generator.
pub struct PolicyWrapper {
    net: Defended,
    rng: DefenseRng,
}

/// Network + defense + attack + samples: predictions and attacks drawing from the `Draws`
/// they are given.
struct Defended {
    model: Model,
    defense: Defense,
    attack: Option<Attack>,
    samples: u32,
    max_batch: usize,
    /// The surrogate network of a transfer attack from a checkpoint.
    source: Option<Model>,
}

impl PolicyWrapper {
    /// Wraps `model`; every draw comes from a generator seeded with `seed`.
    pub fn new(
        model: Model,
        defense: Defense,
        attack: Option<Attack>,
        samples: u32,
        seed: u64,
    ) -> Result<Self, PolicyError> {
        defense.validate()?;
        if let Some(a) = &attack {
            a.validate()?;
        }
        if samples == 0 {
            return Err(PolicyError::Samples);
        }
        Ok(PolicyWrapper {
            net: Defended {
                model,
                defense,
                attack,
                samples,
                max_batch: DEFAULT_MAX_BATCH,
                source: None,
            },
            rng: DefenseRng::seed_from_u64(seed),
        })
    }

    /// Stacks a prediction's `samples` passes and a gradient's `gradient_samples` passes
    /// along the batch, up to `max_batch` rows per forward pass (default
    /// [`DEFAULT_MAX_BATCH`]). The masks are the same for every bound (each pass's rows keep
    /// their streams, [`Draws::pass_keys`]); a larger bound trades memory for speed.
    ///
    /// # Panics
    /// If `max_batch` is 0 (manifests refuse it at validation).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        assert!(max_batch > 0, "max_batch >= 1");
        self.net.max_batch = max_batch;
        self
    }

    /// Gives a transfer attack with [`Source::Checkpoint`] its surrogate network: gradients
    /// are taken on `source` without a defense, and the perturbed input goes to the wrapped
    /// network.
    pub fn with_source(mut self, source: Model) -> Self {
        self.net.source = Some(source);
        self
    }

    /// Restarts the generator from `seed`, so that a part of the work (a batch, an episode)
    /// depends only on its own seed, whatever ran before it.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = DefenseRng::seed_from_u64(seed);
    }

    /// The wrapped network.
    pub fn model(&self) -> &Model {
        &self.net.model
    }

    /// Gives the network back, e.g. to wrap it with another defense.
    pub fn into_model(self) -> Model {
        self.net.model
    }

    /// The defense.
    pub fn defense(&self) -> Defense {
        self.net.defense
    }

    /// The attack, if any.
    pub fn attack(&self) -> Option<Attack> {
        self.net.attack
    }

    /// Passes averaged per prediction: `samples`, or 1 for a deterministic defense (all
    /// passes would agree).
    pub fn effective_samples(&self) -> u32 {
        self.net.effective_samples()
    }

    /// Softmax probabilities averaged over `samples` defended passes.
    ///
    /// # Shapes
    /// `x`: `[batch, ...]` pixel units -> `[batch, classes]`.
    pub fn probabilities(&mut self, x: &Tensor) -> Tensor {
        let draws = &mut Draws::Shared(&mut self.rng);
        self.net
            .average(draws, x, |logits| logits.softmax(-1, Kind::Float))
    }

    /// Q-values averaged over `samples` defended passes.
    ///
    /// # Shapes
    /// `x`: `[batch, ...]` pixel units -> `[batch, actions]`.
    pub fn q_values(&mut self, x: &Tensor) -> Tensor {
        self.net
            .average(&mut Draws::Shared(&mut self.rng), x, |q| q)
    }

    /// The attack's output for `x` against `labels` (the clean input without an attack).
    pub fn perturb(&mut self, x: &Tensor, labels: &Tensor) -> Tensor {
        self.net
            .perturb(&mut Draws::Shared(&mut self.rng), x, labels)
    }

    /// Attacks `x` (if configured) against the true `labels`, then predicts.
    ///
    /// # Shapes
    /// `x`: `[batch, ...]` pixel units; `labels`: `[batch]` int64.
    pub fn classify(&mut self, x: &Tensor, labels: &Tensor) -> Classification {
        let draws = &mut Draws::Shared(&mut self.rng);
        self.net.classify(draws, x, labels)
    }

    /// [`PolicyWrapper::classify`] for rows that each draw from their own generator
    /// (`rngs[b]` for row b; the wrapper's own is not used): row b's attack and probabilities
    /// are those of a wrapper with generator `rngs[b]` given that example alone.
    ///
    /// # Panics
    /// If `rngs` does not hold one generator per row of `x`.
    pub fn classify_rows(
        &self,
        x: &Tensor,
        labels: &Tensor,
        rngs: &mut [DefenseRng],
    ) -> Classification {
        self.net.classify(&mut Draws::PerRow(rngs), x, labels)
    }

    /// The actions for a batch of observations. With an attack, each observation is first
    /// perturbed against the clean greedy action (cross-entropy of softmax(Q); Huang et al.
    /// 2017), and the agent acts on what the attack returns.
    ///
    /// # Shapes
    /// `obs`: `[batch, ...]` pixel units (uint8 or float) -> `batch` actions.
    pub fn act(&mut self, obs: &Tensor) -> Vec<i64> {
        self.net.act(&mut Draws::Shared(&mut self.rng), obs).0
    }

    /// [`PolicyWrapper::act`] for rows that each draw from their own generator (`rngs[b]`
    /// for row b; the wrapper's own is not used): row b's action is the one a wrapper with
    /// generator `rngs[b]` would choose for that observation alone, whatever the other rows.
    ///
    /// # Panics
    /// If `rngs` does not hold one generator per row of `obs`.
    pub fn act_rows(&self, obs: &Tensor, rngs: &mut [DefenseRng]) -> Vec<i64> {
        self.net.act(&mut Draws::PerRow(rngs), obs).0
    }

    /// [`PolicyWrapper::act_rows`], also returning the input the network acted on: `obs`
    /// after the attack (float pixel values, on the network's device). The draws and the
    /// actions are those of `act_rows`.
    pub fn act_rows_seen(&self, obs: &Tensor, rngs: &mut [DefenseRng]) -> (Vec<i64>, Tensor) {
        self.net.act(&mut Draws::PerRow(rngs), obs)
    }
}

impl Defended {
    fn effective_samples(&self) -> u32 {
        if self.defense.is_stochastic() {
            self.samples
        } else {
            1
        }
    }

    /// Attacks `x` (if configured) against `labels`, then predicts: the mean softmax over
    /// `samples` passes and each pass's argmax.
    fn classify(&self, draws: &mut Draws, x: &Tensor, labels: &Tensor) -> Classification {
        let inputs = self.perturb(draws, x, labels);
        let mut argmaxes = Vec::new();
        let probabilities = self.average(draws, &inputs, |logits| {
            argmaxes.push(logits.argmax(-1, false));
            logits.softmax(-1, Kind::Float)
        });
        // Stacked passes give one argmax per group of passes: split them into passes.
        let batch = x.size()[0];
        let pass_predictions = Tensor::cat(&argmaxes, 0).view([-1, batch]);
        Classification {
            inputs,
            probabilities,
            pass_predictions,
        }
    }

    /// The mean over `samples` defended passes of `map(outputs)`, without gradients. Passes
    /// are stacked up to `max_batch` rows per forward and added in pass order.
    fn average(
        &self,
        draws: &mut Draws,
        x: &Tensor,
        mut map: impl FnMut(Tensor) -> Tensor,
    ) -> Tensor {
        let n = self.effective_samples() as usize;
        let batch = x.size()[0];
        let keys = draws.pass_keys(self.defense, n, batch as usize);
        tch::no_grad(|| {
            let mut sum: Option<Tensor> = None;
            for group in pass_groups(n, batch as usize, self.max_batch) {
                let copies = group.len();
                let mut points = DefensePoints::with_row_keys(self.defense, keys[group].concat());
                let out = map(self
                    .model
                    .forward(&stack_rows(x, copies), false, &mut points));
                for s in 0..copies {
                    let pass = out.narrow(0, s as i64 * batch, batch);
                    sum = Some(match sum {
                        None => pass,
                        Some(sum) => sum + pass,
                    });
                }
            }
            sum.expect("at least one pass") / n as f64
        })
    }

    fn perturb(&self, draws: &mut Draws, x: &Tensor, labels: &Tensor) -> Tensor {
        match self.attack {
            Some(attack) => {
                let model = match attack.source {
                    Source::Checkpoint => self.source.as_ref().expect(
                        "a transfer attack from a checkpoint has its surrogate \
                         (PolicyWrapper::with_source)",
                    ),
                    _ => &self.model,
                };
                attack.perturb(model, self.defense, draws, x, labels, self.max_batch)
            }
            None => crate::nn::as_float(&x.detach()),
        }
    }

    /// The actions, and the input they were chosen on (after the attack).
    fn act(&self, draws: &mut Draws, obs: &Tensor) -> (Vec<i64>, Tensor) {
        let x = obs.to_kind(Kind::Float).to_device(self.model.device());
        let seen = if self.attack.is_some() {
            let clean = self.average(draws, &x, |q| q).argmax(-1, false);
            self.perturb(draws, &x, &clean)
        } else {
            x
        };
        let actions = crate::rl::act::greedy(&self.average(draws, &seen, |q| q));
        (actions, seen)
    }
}
