//! `[[cifar_train]]` and `[[cifar_eval]]` jobs: ResNet-20 on CIFAR-10, trained dense or
//! adversarially, then evaluated under every defense x attack x lambda for accuracy and
//! calibration.
//!
//! ```toml
//! [[cifar_train]]
//! name = "resnet20"
//! data = "data/cifar-10-batches-py"    # CIFAR-10 in any published form (folder or .tar.gz), relative to this file
//! variants = ["dense", "adv"]          # adv: a fraction of each batch replaced by FGSM examples
//! iterations = 64_000                  # He et al. 2016: lr / 10 at 32k and 48k
//!
//! [[cifar_eval]]
//! train = "resnet20"                   # or checkpoints = { dense = "resnet20.safetensors" }
//! samples = 10                         # softmax passes averaged per prediction
//! max_batch = 128                      # rows per forward pass when passes are stacked
//! defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0 }]
//! attacks = [{ kind = "fgsm", gradient_samples = 10 }, { kind = "eot-pgd" }]
//! lambdas = [0, 1, 2, 4, 8, 16, 32, 64]   # pixel units
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ManifestError, Resolver, Variant};

impl CifarTrainJob {
    /// (fraction, lambda) of the `adv` variant's FGSM examples; `None` when it is not listed.
    pub fn adv(&self) -> Option<(f64, f64)> {
        self.adv_fraction.zip(self.adv_lambda)
    }
}

/// A checked `[[cifar_train]]` job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CifarTrainJob {
    /// The name `[[cifar_eval]]` jobs refer to; `cifar_train<i>` by default.
    pub name: String,
    /// CIFAR-10 in any published form (see [`crate::data::cifar::detect`]), relative to the manifest's folder.
    pub data: String,
    /// Variants trained; each variant x seed is one cell.
    pub variants: Vec<Variant>,
    /// Seeds (weights, batch order, augmentation).
    pub seeds: Vec<u64>,
    /// Training images used: the first ones of the training set (all 50,000 by default; fewer
    /// make quick trials).
    pub train_examples: u32,
    /// SGD iterations (He et al. 2016: 64,000).
    pub iterations: u64,
    /// Images per batch (128).
    pub batch_size: u32,
    /// Initial learning rate (0.1).
    pub lr: f64,
    /// SGD momentum (0.9).
    pub momentum: f64,
    /// L2 weight decay (1e-4).
    pub weight_decay: f64,
    /// Iterations at which the learning rate is multiplied by `lr_decay` (32k, 48k; by
    /// default one half and three quarters of `iterations`).
    pub lr_milestones: Vec<u64>,
    /// Factor applied at each milestone (0.1).
    pub lr_decay: f64,
    /// Fraction of each batch replaced by FGSM examples (0.2); present only when the `adv`
    /// variant is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adv_fraction: Option<f64>,
    /// FGSM radius of the adversarial examples, pixel units (2); present only when the `adv`
    /// variant is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adv_lambda: Option<f64>,
    /// Iterations between checkpoints.
    pub checkpoint_every: u64,
    /// Test images evaluated after each epoch (the first ones of the test set).
    pub test_examples: u32,
    /// Background threads making batches.
    pub workers: u32,
    /// 4-pixel pad random crop and horizontal flip.
    pub augment: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCifarTrain {
    name: Option<Spanned<String>>,
    data: Spanned<String>,
    variants: Option<Spanned<Vec<Variant>>>,
    seeds: Option<Spanned<Vec<u64>>>,
    train_examples: Option<Spanned<u32>>,
    iterations: Option<Spanned<u64>>,
    batch_size: Option<Spanned<u32>>,
    lr: Option<Spanned<f64>>,
    momentum: Option<Spanned<f64>>,
    weight_decay: Option<Spanned<f64>>,
    lr_milestones: Option<Spanned<Vec<Spanned<u64>>>>,
    lr_decay: Option<Spanned<f64>>,
    adv_fraction: Option<Spanned<f64>>,
    adv_lambda: Option<Spanned<f64>>,
    checkpoint_every: Option<Spanned<u64>>,
    test_examples: Option<Spanned<u32>>,
    workers: Option<Spanned<u32>>,
    augment: Option<bool>,
}

/// The paper's attack radii, pixel units.
pub const PAPER_LAMBDAS: [f64; 8] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Images in the CIFAR-10 training split.
const TRAIN_IMAGES: u32 = (crate::data::cifar::RECORDS_PER_FILE * 5) as u32;
/// Images in the CIFAR-10 test split.
pub(super) const TEST_IMAGES: u32 = crate::data::cifar::RECORDS_PER_FILE as u32;

impl Resolver<'_> {
    /// A data path: checked to hold CIFAR-10 in one of its forms (when files are checked).
    pub(super) fn cifar_data(
        &self,
        data: &Spanned<String>,
        key: String,
    ) -> Result<String, ManifestError> {
        if self.check_files() {
            let base = self.path.parent().unwrap_or(Path::new("."));
            if let Err(e) = crate::data::cifar::check(&base.join(data.get_ref())) {
                let msg = format!("{e} (paths are relative to the manifest's folder)");
                self.file_problem(self.error(data.span(), key, msg))?;
            }
        }
        Ok(data.get_ref().clone())
    }

    pub(super) fn variant_list(
        &self,
        v: &Spanned<Vec<Variant>>,
        key: String,
    ) -> Result<Vec<Variant>, ManifestError> {
        let list = v.get_ref();
        let mut seen = Vec::new();
        for variant in list {
            if seen.contains(variant) {
                let msg = format!("`{}` is listed twice", variant.name());
                return Err(self.error(v.span(), key, msg));
            }
            seen.push(*variant);
        }
        if seen.is_empty() {
            let msg = "the list is empty; allowed: \"dense\", \"adv\"".to_owned();
            return Err(self.error(v.span(), key, msg));
        }
        Ok(seen)
    }

    pub(super) fn resolve_cifar_train(
        &self,
        i: usize,
        job: RawCifarTrain,
        seed: u64,
    ) -> Result<CifarTrainJob, ManifestError> {
        let key = |k: &str| format!("cifar_train[{i}].{k}");
        let name = match &job.name {
            None => format!("cifar_train{i}"),
            Some(n) => self.plain_name(n, key("name"))?,
        };
        let data = self.cifar_data(&job.data, key("data"))?;
        let variants = match &job.variants {
            None => vec![Variant::Dense],
            Some(v) => self.variant_list(v, key("variants"))?,
        };
        let seeds = self.seed_list(job.seeds, key("seeds"), seed)?;
        let iterations = self.or_positive(
            &job.iterations,
            key("iterations"),
            64_000,
            "an integer >= 1",
        )?;
        let train_examples = self.or_in_range(
            &job.train_examples,
            key("train_examples"),
            TRAIN_IMAGES,
            1..TRAIN_IMAGES,
            true,
            "images",
        )?;
        let batch_size = match &job.batch_size {
            None => 128,
            Some(v) => {
                let what = "images, at most train_examples";
                self.check_range(v, key("batch_size"), 1..train_examples, true, what)?
            }
        };
        let positive_f = |v: &Option<Spanned<f64>>, k: &str, default: f64, what: &str| match v {
            None => Ok(default),
            Some(v) if v.get_ref().is_finite() => self.positive(v, key(k), what),
            Some(v) => Err(self.error(v.span(), key(k), format!("allowed: {what}"))),
        };
        let lr = positive_f(&job.lr, "lr", 0.1, "a learning rate > 0")?;
        let unit = |v: &Option<Spanned<f64>>, k: &str, default: f64, what: &str| {
            self.or_in_range(v, key(k), default, 0.0..1.0, true, what)
        };
        let momentum = unit(&job.momentum, "momentum", 0.9, "a momentum")?;
        let weight_decay = self.or_in_range(
            &job.weight_decay,
            key("weight_decay"),
            1e-4,
            0.0..1.0,
            true,
            "a decay",
        )?;
        let lr_decay = unit(&job.lr_decay, "lr_decay", 0.1, "a factor")?;
        let lr_milestones =
            self.lr_milestones(&job.lr_milestones, key("lr_milestones"), iterations)?;
        let adv = self.adv_settings((&job.adv_fraction, &job.adv_lambda), &variants, key)?;
        let checkpoint_every = self.or_positive(
            &job.checkpoint_every,
            key("checkpoint_every"),
            2_000,
            "iterations >= 1",
        )?;
        let test_examples = self.or_in_range(
            &job.test_examples,
            key("test_examples"),
            TEST_IMAGES,
            1..TEST_IMAGES,
            true,
            "images",
        )?;
        let workers = self.or_in_range(&job.workers, key("workers"), 2, 1..64, true, "threads")?;
        Ok(CifarTrainJob {
            name,
            data,
            variants,
            seeds,
            train_examples,
            iterations,
            batch_size,
            lr,
            momentum,
            weight_decay,
            lr_milestones,
            lr_decay,
            adv_fraction: adv.map(|a| a.0),
            adv_lambda: adv.map(|a| a.1),
            checkpoint_every,
            test_examples,
            workers,
            augment: job.augment.unwrap_or(true),
        })
    }

    /// `lr_milestones`: increasing iterations in 1..`iterations`; by default half and three
    /// quarters of the way.
    fn lr_milestones(
        &self,
        given: &Option<Spanned<Vec<Spanned<u64>>>>,
        key: String,
        iterations: u64,
    ) -> Result<Vec<u64>, ManifestError> {
        let Some(m) = given else {
            return Ok(vec![iterations / 2, iterations * 3 / 4]);
        };
        let mut out: Vec<u64> = Vec::new();
        for (j, v) in m.get_ref().iter().enumerate() {
            let x = *v.get_ref();
            if x == 0 || x >= iterations || out.last().is_some_and(|&p| p >= x) {
                let msg = format!(
                    "{x} is not allowed; allowed: increasing iterations in 1..{iterations}"
                );
                return Err(self.error(v.span(), format!("{key}[{j}]"), msg));
            }
            out.push(x);
        }
        Ok(out)
    }

    /// (fraction, lambda) of the `adv` variant's FGSM examples, `None` when the variant is not
    /// listed (and then neither key may be given).
    fn adv_settings(
        &self,
        (fraction, lambda): (&Option<Spanned<f64>>, &Option<Spanned<f64>>),
        variants: &[Variant],
        key: impl Fn(&str) -> String,
    ) -> Result<Option<(f64, f64)>, ManifestError> {
        let adv_fraction = self.or_in_range(
            fraction,
            key("adv_fraction"),
            0.2,
            0.0..1.0,
            true,
            "a fraction of the batch",
        )?;
        let adv_lambda = self.or_in_range(
            lambda,
            key("adv_lambda"),
            2.0,
            0.0..255.0,
            true,
            "pixel units",
        )?;
        if !variants.contains(&Variant::Adv) {
            for (k, given) in [
                ("adv_fraction", fraction.as_ref().map(Spanned::span)),
                ("adv_lambda", lambda.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = given {
                    let msg = format!("`{k}` applies to the \"adv\" variant, which is not listed");
                    return Err(self.error(span, key(k), msg));
                }
            }
        }
        Ok(variants
            .contains(&Variant::Adv)
            .then_some((adv_fraction, adv_lambda)))
    }
}
