//! Defenses applied after every ReLU of a network: dense (none), Stochastic Activation
//! Pruning, dropout and Gaussian activation noise (docs/ARCHITECTURE.md section 5).
//!
//! A network's `forward` calls [`DefensePoints::relu`] for each ReLU (the ReLU, then the
//! defense) and nowhere else. Randomness never comes from torch's process-global RNG: at
//! each defense point every row of the batch draws from its own stream, keyed either
//!
//! - by the row's own key, [`DefensePoints::with_row_keys`]: `derive(key_b, "point", i)` at
//!   point i, so a row's draws are the same whatever batch it is part of and wherever it sits
//!   in it (batched passes, batched episodes); or
//! - by a generator the caller lends, [`DefensePoints::new`]: each point takes one 64-bit seed
//!   from it, and row `b` draws from `derive(seed, "example", b)`.
//!
//! Results therefore depend only on the keys or the generator's seed and the inputs, not on
//! the number of worker threads or on what else runs in the process.

pub mod sap;
pub mod team;
pub mod tensor;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

pub use sap::Sampling;

use crate::seed;

/// The generator a defense draws from (owned by the policy wrapper).
pub type DefenseRng = ChaCha8Rng;

/// The largest SAP `frac`: r = 16 n draws drop a unit holding the mean share 1/n of its map
/// with probability (1 - 1/n)^(16 n) < e^-16 ~ 1.1e-7, under f32's precision.
pub const MAX_SAP_FRAC: f64 = 16.0;

/// A defense, applied post hoc to a trained network (no fine-tuning).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Defense {
    /// No defense: the activation passes unchanged.
    Dense,
    /// Stochastic Activation Pruning: `round(frac * n)` draws per map (SAP-100: frac = 1).
    Sap {
        /// Draws as a fraction of the map's size; > 0 (values above 1 approach dense).
        frac: f64,
        /// How the kept set is drawn.
        sampling: Sampling,
    },
    /// Inverted dropout: each unit zeroed with probability `p`, survivors scaled by 1/(1-p).
    Dropout {
        /// Drop probability in [0, 1).
        p: f64,
    },
    /// Additive Gaussian noise with standard deviation `sigma * mean |h|` of the map.
    Gaussian {
        /// Noise scale relative to the map's mean absolute activation; >= 0.
        sigma: f64,
    },
}

/// A defense parameter out of its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefenseError {
    /// `frac` must be a positive number.
    #[error("sap frac = {0} is not allowed; allowed: 0 < frac <= {MAX_SAP_FRAC} (1.0 is SAP-100)")]
    Frac(f64),
    /// `frac` above [`MAX_SAP_FRAC`]: no closer to dense in f32, only slower.
    #[error(
        "sap frac = {0} is not allowed; allowed: 0 < frac <= {MAX_SAP_FRAC} (1.0 is SAP-100). \
         With r = {MAX_SAP_FRAC} x n draws a unit holding at least the mean share 1/n of its \
         map is dropped with probability below e^-{MAX_SAP_FRAC} (under f32 precision): larger \
         frac is dense to f32 precision at r times the cost; use kind = \"dense\""
    )]
    FracTooLarge(f64),
    /// `p` must lie in [0, 1).
    #[error("dropout p = {0} is not allowed; allowed: 0 <= p < 1")]
    DropProbability(f64),
    /// `sigma` must be non-negative and finite.
    #[error("gaussian sigma = {0} is not allowed; allowed: a finite number >= 0")]
    Sigma(f64),
}

impl Defense {
    /// SAP-100 with exact sampling, the paper's main setting.
    pub const SAP_100: Defense = Defense::Sap {
        frac: 1.0,
        sampling: Sampling::Exact,
    };

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), DefenseError> {
        match *self {
            Defense::Dense => Ok(()),
            Defense::Sap { frac, .. } if !(frac > 0.0 && frac.is_finite()) => {
                Err(DefenseError::Frac(frac))
            }
            Defense::Sap { frac, .. } if frac > MAX_SAP_FRAC => {
                Err(DefenseError::FracTooLarge(frac))
            }
            Defense::Dropout { p } if !(0.0..1.0).contains(&p) => {
                Err(DefenseError::DropProbability(p))
            }
            Defense::Gaussian { sigma } if !(sigma >= 0.0 && sigma.is_finite()) => {
                Err(DefenseError::Sigma(sigma))
            }
            _ => Ok(()),
        }
    }

    /// Whether two passes on the same input can differ.
    pub fn is_stochastic(&self) -> bool {
        match *self {
            Defense::Dense => false,
            Defense::Dropout { p } => p > 0.0,
            Defense::Gaussian { sigma } => sigma > 0.0,
            Defense::Sap { .. } => true,
        }
    }

    /// The one label of a defense, in CLI tables, reports and plot legends alike: `dense`,
    /// `sap-100`, `sap-50-independent`, `dropout-0.5`, `gaussian-0.25`.
    pub fn label(&self) -> String {
        match *self {
            Defense::Dense => "dense".into(),
            Defense::Sap { frac, sampling } => {
                let base = format!("sap-{}", trim_float(frac * 100.0));
                match sampling {
                    Sampling::Exact => base,
                    Sampling::Independent => format!("{base}-independent"),
                }
            }
            Defense::Dropout { p } => format!("dropout-{}", trim_float(p)),
            Defense::Gaussian { sigma } => format!("gaussian-{}", trim_float(sigma)),
        }
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// How a defense's per-unit tensor combines with the activation.
enum Combine {
    /// `out = h * factor` (SAP, dropout).
    Multiply,
    /// `out = h + noise` (Gaussian).
    Add,
}

/// Where the rows' streams come from.
enum Streams<'a> {
    /// None: a deterministic pass.
    None,
    /// One seed per defense point from the generator; row b's key is `derive(seed,
    /// "example", b)`.
    Generator(&'a mut DefenseRng),
    /// One key per row; row b's key at point i is `derive(keys[b], "point", i)`.
    Rows(Vec<u64>),
}

/// The defense points of one forward pass: the defense, where its draws come from, and the
/// number of points visited so far.
pub struct DefensePoints<'a> {
    defense: Defense,
    streams: Streams<'a>,
    visited: usize,
    /// Draw with tensor operations ([`tensor`]) even for activations in host memory.
    tensor_ops: bool,
    /// The backward pass treats every point as the identity (BPDA).
    identity_backward: bool,
}

impl DefensePoints<'static> {
    /// Points that pass activations through unchanged (training, dense evaluation).
    pub fn dense() -> Self {
        DefensePoints {
            defense: Defense::Dense,
            streams: Streams::None,
            visited: 0,
            tensor_ops: false,
            identity_backward: false,
        }
    }

    /// Points applying `defense`, row b of every batch drawing from its own stream `keys[b]`
    /// (see the module's documentation): a row's draws do not depend on the other rows.
    ///
    /// # Panics
    /// In [`DefensePoints::relu`], if a batch has not one row per key.
    pub fn with_row_keys(defense: Defense, keys: Vec<u64>) -> Self {
        DefensePoints {
            defense,
            streams: Streams::Rows(keys),
            visited: 0,
            tensor_ops: false,
            identity_backward: false,
        }
    }
}

impl<'a> DefensePoints<'a> {
    /// Points applying `defense`, drawing one seed per point from `rng`.
    pub fn new(defense: Defense, rng: &'a mut DefenseRng) -> Self {
        DefensePoints {
            defense,
            streams: Streams::Generator(rng),
            visited: 0,
            tensor_ops: false,
            identity_backward: false,
        }
    }

    /// Makes the draws with tensor operations on the activation's device ([`tensor`]) for
    /// activations in host memory too; on an accelerator they always are. The host sampler
    /// is the default on the CPU, where it measures faster (`sap bench defense`).
    pub fn with_tensor_ops(mut self) -> Self {
        self.tensor_ops = true;
        self
    }

    /// Makes the backward pass treat every defense point as the identity (BPDA, Athalye et
    /// al. 2018): the forward pass is unchanged, the gradient is that of the network whose
    /// expectation the defense preserves. Without it the mask, the rescaling factor and the
    /// noise are constants of the backward pass.
    pub fn with_identity_backward(mut self) -> Self {
        self.identity_backward = true;
        self
    }

    /// How many defense points this pass has visited.
    pub fn visited(&self) -> usize {
        self.visited
    }

    /// Applies the defense to one post-ReLU activation `h` (`[batch, ...]`), independently
    /// per example; `h` itself is left as it is. In the backward pass the mask, the
    /// rescaling factor and the noise are constants: the gradient is `factor * grad_out`
    /// (as the authors' MXNet operator).
    ///
    /// # Shapes
    /// `h`: `[batch, d1, d2, ...]`; the output has the same shape, kind and device.
    pub fn apply(&mut self, h: &Tensor) -> Tensor {
        self.defend(h.shallow_clone(), false)
    }

    /// A network's defense point: `relu(pre)`, then the defense as [`DefensePoints::apply`].
    /// The activation is made here, so nothing else holds its storage: when it needs no
    /// gradient and lies in CPU memory as contiguous f32, the defense writes over it in
    /// place (no copies).
    pub fn relu(&mut self, pre: &Tensor) -> Tensor {
        self.defend(pre.relu(), true)
    }

    /// The defense on `h`; `owned` says that no other tensor shares `h`'s storage, which
    /// then may be overwritten.
    fn defend(&mut self, h: Tensor, owned: bool) -> Tensor {
        let point = self.visited as u64;
        self.visited += 1;
        let defense = self.defense;
        if !defense.is_stochastic() {
            return h;
        }
        let size = h.size();
        let batch = size[0] as usize;
        let keys: Vec<u64> = match &mut self.streams {
            Streams::None => return h,
            Streams::Generator(rng) => example_keys(rng.next_u64(), batch),
            Streams::Rows(rows) => {
                assert_eq!(rows.len(), batch, "one stream key per row of the batch");
                rows.iter()
                    .map(|&k| seed::derive(k, "point", point))
                    .collect()
            }
        };
        let numel = h.numel();
        if numel == 0 {
            return h;
        }
        let n = numel / batch;
        let combine = match defense {
            Defense::Gaussian { .. } => Combine::Add,
            _ => Combine::Multiply,
        };
        if self.tensor_ops || h.device() != Device::Cpu {
            // On an accelerator the draws are made there, with no copy to the host.
            let t = tensor::draw(defense, &h, &keys).expect("a stochastic defense");
            return self.combine(h, t, combine);
        }
        // From here on `h` is in host memory.
        let contiguous_f32 = h.kind() == Kind::Float && h.is_contiguous();
        if owned && contiguous_f32 && !h.requires_grad() {
            // SAFETY: `h` is a contiguous f32 CPU tensor of `numel` elements made by
            // `relu` for this call alone (`owned`); no other reference to its storage exists.
            let data = team::SharedBuf::new(h.data_ptr() as *mut f32);
            team::for_each(batch, |b| {
                // SAFETY: row b of the batch; every example is visited once, so no two calls
                // share a row.
                let x = unsafe { data.piece(b * n, n) };
                with_scratch(|scratch| {
                    if let Defense::Sap { frac, sampling } = defense {
                        let r = sap::draws(frac, n);
                        return sap::apply_in_place(x, r, sampling, keys[b], scratch);
                    }
                    let mut f = std::mem::take(&mut scratch.factor);
                    f.resize(n, 0.0);
                    example(defense, x, keys[b], scratch, &mut f);
                    match combine {
                        Combine::Multiply => x.iter_mut().zip(&f).for_each(|(v, f)| *v *= f),
                        Combine::Add => x.iter_mut().zip(&f).for_each(|(v, f)| *v += f),
                    }
                    scratch.factor = f;
                })
            });
            return h;
        }
        let host = if contiguous_f32 {
            h.detach()
        } else {
            h.detach().to_kind(Kind::Float).contiguous()
        };
        let t = Tensor::empty(size.as_slice(), (Kind::Float, Device::Cpu));
        {
            // SAFETY: `host` and `t` are contiguous f32 CPU tensors of `numel` elements; `t` is
            // fresh and `host` is only read.
            let x = unsafe { std::slice::from_raw_parts(host.data_ptr() as *const f32, numel) };
            let out = team::SharedBuf::new(t.data_ptr() as *mut f32);
            team::for_each(batch, |b| {
                // SAFETY: row b of the batch; every example is visited once, so no two calls
                // share a row.
                let o = unsafe { out.piece(b * n, n) };
                let x = &x[b * n..(b + 1) * n];
                with_scratch(|scratch| example(defense, x, keys[b], scratch, o))
            });
        }
        let t = t.to_kind(h.kind());
        self.combine(h, t, combine)
    }

    /// `h` combined with a point's factor or noise `t`. Added noise is a constant of the
    /// backward pass either way; with the identity backward, so is the change a factor makes
    /// (`h + (h t - h)` with the bracket detached).
    fn combine(&self, h: Tensor, t: Tensor, combine: Combine) -> Tensor {
        match combine {
            Combine::Multiply if self.identity_backward && h.requires_grad() => {
                let change = (h.detach() * (t - 1.0)).detach();
                h + change
            }
            Combine::Multiply => h * t,
            Combine::Add => h + t,
        }
    }
}

/// Runs `f` with this thread's scratch buffers, kept between calls so that a worker
/// allocates them once rather than once per map.
fn with_scratch<R>(f: impl FnOnce(&mut sap::Scratch) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<sap::Scratch> = Default::default();
    }
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The stream keys of rows `0..batch` at a defense point seeded `layer_seed` by a generator:
/// `derive(layer_seed, "example", b)`.
pub fn example_keys(layer_seed: u64, batch: usize) -> Vec<u64> {
    (0..batch as u64)
        .map(|b| seed::derive(layer_seed, "example", b))
        .collect()
}

/// Where a batch's stochastic passes (and an attack's random start) take their seeds.
pub enum Draws<'a> {
    /// One generator for the whole batch (a classifier's batch of images).
    Shared(&'a mut DefenseRng),
    /// One generator per row (episodes played in lockstep): each row draws what it would
    /// draw in a batch of its own from [`Draws::Shared`].
    PerRow(&'a mut [DefenseRng]),
}

impl Draws<'_> {
    /// The rows' stream keys of `passes` stochastic passes over a batch of `batch` rows.
    /// Shared: one seed per pass from the generator, then pass s row b has key
    /// `derive(seed_s, "row", b)`; per row: row b's seed of pass s from its own generator,
    /// and key `derive(seed, "row", 0)`. The passes draw the same masks whether they run one
    /// by one or stacked along the batch ([`pass_groups`], [`DefensePoints::with_row_keys`]).
    /// A deterministic defense draws nothing.
    ///
    /// # Panics
    /// Per row, if there is not one generator per row.
    pub fn pass_keys(&mut self, defense: Defense, passes: usize, batch: usize) -> Vec<Vec<u64>> {
        if !defense.is_stochastic() {
            return vec![vec![0; batch]; passes];
        }
        match self {
            Draws::Shared(rng) => (0..passes)
                .map(|_| {
                    let seed = rng.next_u64();
                    (0..batch as u64)
                        .map(|b| seed::derive(seed, "row", b))
                        .collect()
                })
                .collect(),
            Draws::PerRow(rngs) => {
                assert_eq!(rngs.len(), batch, "one generator per row");
                (0..passes)
                    .map(|_| {
                        rngs.iter_mut()
                            .map(|rng| seed::derive(rng.next_u64(), "row", 0))
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// `numel` values uniform in `[-radius, radius]` for a batch of `batch` rows in row-major
    /// order: shared, all from the generator in order; per row, each row's from its own.
    ///
    /// # Panics
    /// Per row, if there is not one generator per row.
    pub fn uniform_noise(&mut self, numel: usize, batch: usize, radius: f64) -> Vec<f32> {
        let draw = |rng: &mut DefenseRng, count: usize, out: &mut Vec<f32>| {
            out.extend((0..count).map(|_| rng.gen_range(-radius..=radius) as f32))
        };
        let mut out = Vec::with_capacity(numel);
        match self {
            Draws::Shared(rng) => draw(rng, numel, &mut out),
            Draws::PerRow(rngs) => {
                assert_eq!(rngs.len(), batch, "one generator per row");
                for rng in rngs.iter_mut() {
                    draw(rng, numel / batch, &mut out);
                }
            }
        }
        out
    }
}

/// Passes `0..passes` over `batch` rows in consecutive groups stacked into one forward pass
/// of at most `max_batch` rows (at least one pass per group).
pub fn pass_groups(
    passes: usize,
    batch: usize,
    max_batch: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let per_group = (max_batch / batch.max(1)).max(1);
    (0..passes)
        .step_by(per_group)
        .map(move |start| start..(start + per_group).min(passes))
}

/// `x` (`[batch, ...]`) stacked `copies` times along the batch: `[copies * batch, ...]`.
pub fn stack_rows(x: &Tensor, copies: usize) -> Tensor {
    if copies == 1 {
        return x.shallow_clone();
    }
    let mut reps = vec![1i64; x.dim()];
    reps[0] = copies as i64;
    x.repeat(reps.as_slice())
}

/// The default bound on the rows of a forward pass that stacks stochastic passes: small
/// batches (an agent's one observation) gain most from stacking, while on the CPU a pass of
/// many more rows than this ran slower per row than one pass at a time (`sap bench defense`:
/// ResNet-20 FGSM with 10 gradient samples at batch 128, all ten stacked into 1280 rows, took
/// 1.7 times as long as one pass per forward).
pub const DEFAULT_MAX_BATCH: usize = 128;

/// One row's factor (SAP, dropout) or noise (Gaussian) into `out`, drawn from the row's
/// stream `key`.
fn example(defense: Defense, h: &[f32], key: u64, s: &mut sap::Scratch, out: &mut [f32]) {
    let rng = &mut Xoshiro256PlusPlus::seed_from_u64(key);
    match defense {
        Defense::Dense => out.fill(1.0),
        Defense::Sap { frac, sampling } => {
            sap::factors(h, sap::draws(frac, h.len()), sampling, key, s, out)
        }
        Defense::Dropout { p } => {
            let scale = (1.0 / (1.0 - p)) as f32;
            for o in out.iter_mut() {
                *o = if rng.gen::<f64>() < p { 0.0 } else { scale };
            }
        }
        Defense::Gaussian { sigma } => {
            let mean_abs = h.iter().map(|&v| v.abs() as f64).sum::<f64>() / h.len() as f64;
            let sd = sigma * mean_abs;
            for o in out.iter_mut() {
                let z: f64 = rng.sample(StandardNormal);
                *o = (sd * z) as f32;
            }
        }
    }
}
