//! The optimisers of the DQN literature and of ResNet training, written out so that their
//! whole state is a list of named tensors that checkpoints save and load:
//!
//! - Adam (Kingma and Ba 2015, Algorithm 1; PyTorch's `torch.optim.Adam`), used by Dopamine
//!   and Rainbow with lr 6.25e-5 and eps 1.5e-4.
//! - Centered RMSProp (Graves 2013), as in the Nature DQN code: lr 2.5e-4, decay 0.95 and
//!   0.01 added under the square root ("min squared gradient").
//! - SGD with momentum and weight decay (PyTorch's `torch.optim.SGD`, dampening 0, no
//!   Nesterov), as He et al. (2016) train ResNets: lr 0.1, momentum 0.9, weight decay 1e-4.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::defense::team::{self, SharedBuf};

/// An optimiser and its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;`
    /// `p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`.
    Adam {
        /// Learning rate.
        lr: f64,
        /// Added to the denominator.
        eps: f64,
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
    },
    /// `ms = d ms + (1-d) g^2; mg = d mg + (1-d) g; p -= lr * g / sqrt(ms - mg^2 + eps)`.
    RmsProp {
        /// Learning rate.
        lr: f64,
        /// Decay of the running moments.
        decay: f64,
        /// Added under the square root.
        eps: f64,
    },
    /// `d = g + wd p; buf = momentum buf + d; p -= lr * buf` (the buffer starts at 0, so the
    /// first step's buffer is `d`, as PyTorch's).
    Sgd {
        /// Learning rate (a schedule changes it with [`Optimizer::set_lr`]).
        lr: f64,
        /// Momentum of the buffer.
        momentum: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// The name used in manifests (`adam`, `rmsprop`).
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::RmsProp { .. } => "rmsprop",
            OptimizerConfig::Sgd { .. } => "sgd",
        }
    }
}

/// An optimiser over a fixed, named list of parameters.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    /// `(name, parameter)`, sorted by name.
    params: Vec<(String, Tensor)>,
    /// Two moment tensors per parameter: Adam's `m, v`, RMSProp's `ms, mg`, or SGD's
    /// momentum buffer and an unused zero tensor.
    moments: Vec<[Tensor; 2]>,
    steps: u64,
}

impl Optimizer {
    /// An optimiser for `params` (the trainable variables of a `VarStore`), moments zero.
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Self {
        let mut params = params;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let moments = params
            .iter()
            .map(|(_, p)| [p.zeros_like().detach(), p.zeros_like().detach()])
            .collect();
        Self {
            config,
            params,
            moments,
            steps: 0,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The hyperparameters.
    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// Changes the learning rate (a schedule's step).
    pub fn set_lr(&mut self, new: f64) {
        match &mut self.config {
            OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::RmsProp { lr, .. }
            | OptimizerConfig::Sgd { lr, .. } => *lr = new,
        }
    }

    /// Applies one step from the gradients the parameters hold, and zeroes them.
    ///
    /// Adam on CPU f32 tensors runs as one pass over each parameter's memory (spread over
    /// libtorch's threads) instead of a dozen tensor operations, each with its own temporary;
    /// elsewhere, and for the other optimisers, as tensor operations.
    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as i32;
        tch::no_grad(|| {
            for ((_, p), [a, b]) in self.params.iter_mut().zip(self.moments.iter_mut()) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                match self.config {
                    OptimizerConfig::Adam {
                        lr,
                        eps,
                        beta1,
                        beta2,
                    } => {
                        let c1 = 1.0 - beta1.powi(t);
                        let c2 = 1.0 - beta2.powi(t);
                        let host = AdamStep {
                            lr,
                            eps,
                            beta1,
                            beta2,
                            c1,
                            c2,
                        };
                        // The host pass zeroes the gradient as it reads it.
                        if host.apply(p, &g, a, b) {
                            continue;
                        }
                        // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
                        let _ = a.g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                        let _ = b.g_mul_scalar_(beta2).g_add_(&(&g * &g * (1.0 - beta2)));
                        // p -= lr * m_hat / (sqrt(v_hat) + eps), in PyTorch's order:
                        // (lr / c1) * m / (sqrt(v) / sqrt(c2) + eps)
                        let denom = b.sqrt() / c2.sqrt() + eps;
                        let _ = p.g_sub_(&(&*a / &denom * (lr / c1)));
                    }
                    OptimizerConfig::RmsProp { lr, decay, eps } => {
                        // ms = d ms + (1 - d) g^2;  mg = d mg + (1 - d) g
                        let _ = a.g_mul_scalar_(decay).g_add_(&(&g * &g * (1.0 - decay)));
                        let _ = b.g_mul_scalar_(decay).g_add_(&(&g * (1.0 - decay)));
                        // p -= lr * g / sqrt(ms - mg^2 + eps)
                        let denom = (&*a - &*b * &*b + eps).sqrt();
                        let _ = p.g_sub_(&(&g / &denom * lr));
                    }
                    OptimizerConfig::Sgd {
                        lr,
                        momentum,
                        weight_decay,
                    } => {
                        // d = g + wd p;  buf = momentum buf + d;  p -= lr buf
                        let d = &g + &*p * weight_decay;
                        let _ = a.g_mul_scalar_(momentum).g_add_(&d);
                        let _ = p.g_sub_(&(&*a * lr));
                    }
                }
                let _ = g.zero_();
            }
        });
    }

    /// Zeroes every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The state as named tensors (`{name}.m0`, `{name}.m1`, and `step` as a one-element
    /// i64 tensor), for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_owned(), Tensor::from_slice(&[self.steps as i64]))];
        for ((name, _), [a, b]) in self.params.iter().zip(&self.moments) {
            out.push((format!("{name}.m0"), a.shallow_clone()));
            out.push((format!("{name}.m1"), b.shallow_clone()));
        }
        out
    }

    /// Restores a state written by [`Optimizer::state`]. Returns the name of the first
    /// missing or misshapen tensor as the error.
    pub fn load_state(&mut self, lookup: impl Fn(&str) -> Option<Tensor>) -> Result<(), String> {
        let step = lookup("step").ok_or("step")?;
        if step.numel() != 1 || step.kind() != Kind::Int64 {
            return Err("step".into());
        }
        let mut restored = Vec::with_capacity(self.moments.len());
        for ((name, p), _) in self.params.iter().zip(&self.moments) {
            let mut pair = Vec::with_capacity(2);
            for m in ["m0", "m1"] {
                let key = format!("{name}.{m}");
                let t = lookup(&key).ok_or_else(|| key.clone())?;
                if t.size() != p.size() {
                    return Err(key);
                }
                pair.push(t.to_kind(p.kind()).to_device(p.device()));
            }
            let b = pair.pop().expect("two moments");
            let a = pair.pop().expect("two moments");
            restored.push([a, b]);
        }
        self.moments = restored;
        self.steps = step.int64_value(&[0]) as u64;
        Ok(())
    }
}

/// One Adam step's scalars, for the host pass.
#[derive(Clone, Copy)]
struct AdamStep {
    lr: f64,
    eps: f64,
    beta1: f64,
    beta2: f64,
    /// `1 - beta1^t`.
    c1: f64,
    /// `1 - beta2^t`.
    c2: f64,
}

/// Elements per piece of a parameter handed to one thread.
const ADAM_PIECE: usize = 1 << 16;

impl AdamStep {
    /// The step on `p` from its gradient `g` and moments `m`, `v` in one pass over their
    /// memory, when all four are contiguous f32 CPU tensors of the same size, leaving `g`
    /// zero; returns false (and touches nothing) otherwise. Each element follows PyTorch's
    /// single-tensor Adam, in f32: `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;`
    /// `p -= m / (sqrt(v) / sqrt(c2) + eps) * (lr/c1)`.
    fn apply(self, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> bool {
        let n = p.numel();
        let host = [p, g, m, v].iter().all(|t| {
            t.device() == tch::Device::Cpu
                && t.kind() == Kind::Float
                && t.is_contiguous()
                && t.numel() == n
        });
        if !host {
            return false;
        }
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let (ob1, ob2) = ((1.0 - self.beta1) as f32, (1.0 - self.beta2) as f32);
        let step = (self.lr / self.c1) as f32;
        let sqrt_c2 = self.c2.sqrt() as f32;
        let eps = self.eps as f32;
        let [pp, gp, mp, vp] = [p, g, m, v].map(|t| SharedBuf::new(t.data_ptr() as *mut f32));
        team::for_each(n.div_ceil(ADAM_PIECE), |piece| {
            let start = piece * ADAM_PIECE;
            let len = ADAM_PIECE.min(n - start);
            // SAFETY: four distinct tensors of n f32 each (the moments and the gradient are
            // the optimiser's and autograd's own buffers); this piece is this call's alone.
            let (p, g, m, v) = unsafe {
                (
                    pp.piece(start, len),
                    gp.piece(start, len),
                    mp.piece(start, len),
                    vp.piece(start, len),
                )
            };
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = std::mem::take(g);
                // The tensor operations' order, so that both paths round alike.
                *m = *m * b1 + g * ob1;
                *v = *v * b2 + g * g * ob2;
                *p -= *m / (v.sqrt() / sqrt_c2 + eps) * step;
            }
        });
        true
    }
}
