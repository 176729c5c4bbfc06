//! `[[robustness]]` jobs: a classifier trained in the cell (or loaded from a checkpoint),
//! then evaluated under every defense x lambda with one attack.
//!
//! ```toml
//! [[robustness]]
//! task = "glyphs"            # synthetic 10-class 8x8 images, pixel units 0..255
//! hidden = [64, 64]          # MLP hidden widths
//! train_steps = 400
//! examples = 1000            # test examples
//! samples = 10               # softmax passes averaged per prediction
//! max_batch = 128            # rows per forward pass when passes are stacked
//! defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0, sampling = "exact" }]
//! attack = { kind = "fgsm", gradient_samples = 10 }
//! lambdas = [0, 2, 4, 8, 16]
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::defense_attack::{RawAttack, RawDefense, SmallestMap};
use super::AttackSpec;
use super::{ManifestError, Resolver};
use crate::attack::Attack;
use crate::defense::Defense;

/// The synthetic classification tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Ten classes of 8x8 glyphs: a fixed binary prototype per class plus pixel noise.
    Glyphs,
}

impl Task {
    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Task::Glyphs => "glyphs",
        }
    }

    /// The number of classes.
    pub const fn classes(self) -> i64 {
        match self {
            Task::Glyphs => 10,
        }
    }
}

/// A checked `[[robustness]]` job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RobustnessJob {
    /// The data set.
    pub task: Task,
    /// MLP hidden widths.
    pub hidden: Vec<i64>,
    /// Adam steps of 64 examples when no checkpoint is given.
    pub train_steps: u32,
    /// Test examples.
    pub examples: u32,
    /// Softmax passes averaged per prediction.
    pub samples: u32,
    /// Rows per forward pass when a prediction's `samples` passes and a gradient's
    /// `gradient_samples` passes are stacked along the batch (the draws do not depend on it).
    pub max_batch: u32,
    /// Defenses, each evaluated at every lambda.
    pub defenses: Vec<Defense>,
    /// The attack (its radius comes from `lambdas`).
    pub attack: AttackSpec,
    /// Attack radii, pixel units.
    pub lambdas: Vec<f64>,
    /// Seeds; each is one cell.
    pub seeds: Vec<u64>,
    /// A trained network to load instead of training (safetensors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl RobustnessJob {
    /// The attack at radius `lambda`.
    pub fn attack_at(&self, lambda: f64) -> Attack {
        self.attack.at(lambda)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRobustnessJob {
    task: Task,
    hidden: Option<Spanned<Vec<i64>>>,
    train_steps: Option<Spanned<u32>>,
    examples: Option<Spanned<u32>>,
    samples: Option<Spanned<u32>>,
    max_batch: Option<Spanned<u32>>,
    defenses: Spanned<Vec<Spanned<RawDefense>>>,
    attack: Spanned<RawAttack>,
    lambdas: Spanned<Vec<Spanned<f64>>>,
    seeds: Option<Spanned<Vec<u64>>>,
    checkpoint: Option<Spanned<String>>,
}

impl Resolver<'_> {
    pub(super) fn positive<T: PartialOrd + Default + Copy + std::fmt::Display + super::Finite>(
        &self,
        v: &Spanned<T>,
        key: String,
        what: &str,
    ) -> Result<T, ManifestError> {
        self.finite(v, &key)?;
        if *v.get_ref() <= T::default() {
            let msg = format!("{} is not allowed; allowed: {what}", v.get_ref());
            return Err(self.error(v.span(), key, msg));
        }
        Ok(*v.get_ref())
    }

    pub(super) fn resolve_robustness(
        &self,
        i: usize,
        job: RawRobustnessJob,
        seed: u64,
    ) -> Result<RobustnessJob, ManifestError> {
        let key = |k: &str| format!("robustness[{i}].{k}");
        let hidden = match &job.hidden {
            None => vec![64, 64],
            Some(h) => {
                if h.get_ref().is_empty() || h.get_ref().iter().any(|&w| !(1..=65_536).contains(&w))
                {
                    let msg = "allowed: a non-empty list of widths in 1..=65536".to_owned();
                    return Err(self.error(h.span(), key("hidden"), msg));
                }
                h.get_ref().clone()
            }
        };
        let count = |v: &Option<Spanned<u32>>, k: &str, default: u32| {
            self.or_positive(v, key(k), default, "an integer >= 1")
        };
        let train_steps = count(&job.train_steps, "train_steps", 400)?;
        let examples = count(&job.examples, "examples", 1000)?;
        let samples = count(&job.samples, "samples", 1)?;
        let max_batch = self.max_batch(&job.max_batch, key("max_batch"))?;
        let smallest = SmallestMap {
            units: hidden.iter().copied().min().unwrap_or(1) as u64,
            what: "the narrowest hidden layer of the MLP",
        };
        let defenses =
            self.resolve_defenses(&format!("robustness[{i}]"), &job.defenses, &smallest)?;
        let stochastic = defenses.iter().any(Defense::is_stochastic);
        let attack = self.resolve_attack(&key("attack"), &job.attack, stochastic)?;
        let lambdas = self.resolve_lambdas(&format!("robustness[{i}]"), &job.lambdas)?;
        let seeds = self.seed_list(job.seeds, key("seeds"), seed)?;
        Ok(RobustnessJob {
            task: job.task,
            hidden,
            train_steps,
            examples,
            samples,
            max_batch,
            defenses,
            attack,
            lambdas,
            seeds,
            checkpoint: match job.checkpoint {
                None => None,
                Some(c) => {
                    let base = self.path.parent().unwrap_or(Path::new("."));
                    let allowed = "a safetensors file of the job's MLP";
                    self.checkpoint_file(
                        &base.join(c.get_ref()),
                        c.span(),
                        key("checkpoint"),
                        allowed,
                    )?;
                    Some(c.into_inner())
                }
            },
        })
    }
}
