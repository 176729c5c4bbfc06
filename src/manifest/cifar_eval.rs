//! `[[cifar_eval]]` jobs: trained (or given) ResNet-20 networks under every defense x attack x
//! lambda, for accuracy and calibration (see [`super::cifar`] for the manifest).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::cifar::{CifarTrainJob, PAPER_LAMBDAS, TEST_IMAGES};
use super::defense_attack::{RawAttack, RawDefense};
use super::Variant;
use super::{AttackSpec, ManifestError, Resolver};
use crate::defense::Defense;

/// A checked `[[cifar_eval]]` job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CifarEvalJob {
    /// The name in CSV rows; `cifar_eval<i>` by default.
    pub name: String,
    /// The `[[cifar_train]]` job whose final networks are evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// Networks from files: label (the `variant` column) -> safetensors file relative to
    /// the manifest's folder.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checkpoints: BTreeMap<String, String>,
    /// CIFAR-10 in any published form (folder or archive) whose test split is used.
    pub data: String,
    /// The trained variants evaluated (`train` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// Test examples (the first ones of the test set).
    pub examples: u32,
    /// Examples attacked and predicted together.
    pub batch_size: u32,
    /// Softmax passes averaged per prediction (stochastic defenses).
    pub samples: u32,
    /// Rows per forward pass when a prediction's `samples` passes and a gradient's
    /// `gradient_samples` passes are stacked along the batch (the draws do not depend on it).
    pub max_batch: u32,
    /// Defenses, each evaluated under every attack and lambda.
    pub defenses: Vec<Defense>,
    /// Attacks without their radius.
    pub attacks: Vec<AttackSpec>,
    /// Attack radii, pixel units.
    pub lambdas: Vec<f64>,
    /// Evaluation seeds (defense draws, random starts); each is one cell per network.
    pub seeds: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCifarEval {
    name: Option<Spanned<String>>,
    train: Option<Spanned<String>>,
    checkpoints: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    data: Option<Spanned<String>>,
    variants: Option<Spanned<Vec<Variant>>>,
    examples: Option<Spanned<u32>>,
    batch_size: Option<Spanned<u32>>,
    samples: Option<Spanned<u32>>,
    max_batch: Option<Spanned<u32>>,
    defenses: Spanned<Vec<Spanned<RawDefense>>>,
    attacks: Option<Spanned<Vec<Spanned<RawAttack>>>>,
    lambdas: Option<Spanned<Vec<Spanned<f64>>>>,
    seeds: Option<Spanned<Vec<u64>>>,
}

/// The networks of a `[[cifar_eval]]` job: the training job, the checkpoint files by label,
/// the data folder and the variants.
type EvalNetworks = (
    Option<String>,
    BTreeMap<String, String>,
    String,
    Vec<Variant>,
);

impl Resolver<'_> {
    /// The networks of `[[cifar_train]]` job `t`: its variants (or those `variants` lists)
    /// on its data (or `data`).
    fn trained_networks(
        &self,
        job: &RawCifarEval,
        t: &Spanned<String>,
        trains: &[CifarTrainJob],
        key: &dyn Fn(&str) -> String,
    ) -> Result<EvalNetworks, ManifestError> {
        let Some(found) = trains.iter().find(|j| j.name == *t.get_ref()) else {
            let names: Vec<&str> = trains.iter().map(|j| j.name.as_str()).collect();
            let allowed = if names.is_empty() {
                "the manifest has no [[cifar_train]] job; add one or give `checkpoints`".to_owned()
            } else {
                format!(
                    "allowed: {}{}",
                    names.join(", "),
                    super::suggestion(t.get_ref(), names.iter().copied())
                )
            };
            let msg = format!(
                "no [[cifar_train]] job is named `{}`; {allowed}",
                t.get_ref()
            );
            return Err(self.error(t.span(), key("train"), msg));
        };
        let variants = match &job.variants {
            None => found.variants.clone(),
            Some(v) => {
                let list = self.variant_list(v, key("variants"))?;
                if let Some(missing) = list.iter().find(|x| !found.variants.contains(x)) {
                    let msg = format!(
                        "[[cifar_train]] job `{}` does not train `{}`; it trains {}",
                        found.name,
                        missing.name(),
                        found
                            .variants
                            .iter()
                            .map(|v| v.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    return Err(self.error(v.span(), key("variants"), msg));
                }
                list
            }
        };
        let data = match &job.data {
            None => found.data.clone(),
            Some(d) => self.cifar_data(d, key("data"))?,
        };
        Ok((Some(found.name.clone()), BTreeMap::new(), data, variants))
    }

    /// The networks a `checkpoints` table names, each label a plain name and each file a
    /// loadable checkpoint, on the `data` the job must give.
    fn checkpoint_networks(
        &self,
        job: &RawCifarEval,
        files: &Spanned<BTreeMap<String, Spanned<String>>>,
        key: &dyn Fn(&str) -> String,
    ) -> Result<EvalNetworks, ManifestError> {
        if let Some(v) = &job.variants {
            let msg = "with `checkpoints` its keys label the networks; remove `variants`";
            return Err(self.error(v.span(), key("variants"), msg.into()));
        }
        let Some(data) = &job.data else {
            let msg = "with `checkpoints`, give `data`: CIFAR-10 as a folder or archive";
            return Err(self.error(files.span(), key("data"), msg.into()));
        };
        let data = self.cifar_data(data, key("data"))?;
        if files.get_ref().is_empty() {
            let msg = "the table is empty; allowed: label = \"file.safetensors\"".into();
            return Err(self.error(files.span(), key("checkpoints"), msg));
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let mut out = BTreeMap::new();
        for (label, file) in files.get_ref() {
            let k = key(&format!("checkpoints.{label}"));
            let spanned = Spanned::new(file.span(), label.clone());
            self.plain_name(&spanned, k.clone())?;
            let path = base.join(file.get_ref());
            let allowed = "a ResNet-20 safetensors file, e.g. a training cell's \
                           final.safetensors";
            self.checkpoint_file(&path, file.span(), k, allowed)?;
            out.insert(label.clone(), file.get_ref().clone());
        }
        Ok((None, out, data, Vec::new()))
    }

    pub(super) fn resolve_cifar_eval(
        &self,
        i: usize,
        job: RawCifarEval,
        seed: u64,
        trains: &[CifarTrainJob],
    ) -> Result<CifarEvalJob, ManifestError> {
        let prefix = format!("cifar_eval[{i}]");
        let key = |k: &str| format!("{prefix}.{k}");
        let name = match &job.name {
            None => format!("cifar_eval{i}"),
            Some(n) => self.plain_name(n, key("name"))?,
        };
        let (train, checkpoints, data, variants) = match (&job.train, &job.checkpoints) {
            (Some(_), Some(c)) => {
                let msg = "give either `train` or `checkpoints`, not both".to_owned();
                return Err(self.error(c.span(), key("checkpoints"), msg));
            }
            (None, None) => {
                let msg = "name the networks to evaluate: `train = \"<name of a [[cifar_train]] \
                           job>\"` or `checkpoints = { dense = \"file.safetensors\" }`"
                    .to_owned();
                return Err(self.error(job.defenses.span(), key("train"), msg));
            }
            (Some(t), None) => self.trained_networks(&job, t, trains, &key)?,
            (None, Some(files)) => self.checkpoint_networks(&job, files, &key)?,
        };
        let examples = self.or_in_range(
            &job.examples,
            key("examples"),
            TEST_IMAGES,
            1..TEST_IMAGES,
            true,
            "test images",
        )?;
        let batch_size = self.or_in_range(
            &job.batch_size,
            key("batch_size"),
            200,
            1..10_000,
            true,
            "images",
        )?;
        let samples = self.or_positive(&job.samples, key("samples"), 1, "an integer >= 1")?;
        let max_batch = self.max_batch(&job.max_batch, key("max_batch"))?;
        let defenses = self.resolve_defenses(
            &prefix,
            &job.defenses,
            &super::defense_attack::RESNET20_SMALLEST,
        )?;
        let stochastic = defenses.iter().any(crate::defense::Defense::is_stochastic);
        let attacks = match &job.attacks {
            None => vec![AttackSpec {
                kind: crate::attack::AttackKind::Fgsm,
                gradient_samples: 1,
                loss: Default::default(),
                backward: Default::default(),
                source: Default::default(),
                checkpoint: None,
            }],
            Some(raw) => self.resolve_attacks(&prefix, raw, stochastic)?,
        };
        let lambdas = match &job.lambdas {
            None => PAPER_LAMBDAS.to_vec(),
            Some(l) => self.resolve_lambdas(&prefix, l)?,
        };
        let seeds = self.seed_list(job.seeds, key("seeds"), seed)?;
        Ok(CifarEvalJob {
            name,
            train,
            checkpoints,
            data,
            variants,
            examples,
            batch_size,
            samples,
            max_batch,
            defenses,
            attacks,
            lambdas,
            seeds,
        })
    }
}
