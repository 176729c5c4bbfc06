//! Rows of the classifier tables: the synthetic robustness grid, CIFAR-10 training epochs,
//! CIFAR-10 evaluations with their reliability bins and per-image predictions.

use serde::{Deserialize, Serialize};

use super::treated_row;
use crate::vocab::Variant;

treated_row! {
    /// One row of `classifier_eval.csv`: a defense at one attack radius.
    pub struct ClassifierRow {
        /// Data set.
        pub task: String,
        /// Architecture.
        pub network: String,
        /// Checkpoint file evaluated.
        pub checkpoint: String,
        /// Seed of the training run.
        pub train_seed: u64,
        /// Seed of the evaluation (test set, defense draws, random starts).
        pub eval_seed: u64,
        ..Treatment,
        /// Test examples.
        pub n: usize,
        /// Accuracy on the attacked inputs.
        pub accuracy: f64,
        /// Athalye et al.'s optimistic accuracy: an example counts as correct if any one
        /// of the `samples` passes predicts its label (reported beside, never instead).
        pub optimistic_accuracy: f64,
        /// Mean top probability.
        pub mean_confidence: f64,
        /// Expected calibration error, 15 bins.
        pub ece: f64,
        /// Mean negative log-likelihood of the label.
        pub nll: f64,
    }
}

impl ClassifierRow {
    /// What identifies a row for resuming: task, seed, defense, attack, lambda.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.task, self.train_seed, self.treatment.key())
    }
}

/// One epoch of training (`cifar_train.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CifarTrainRow {
    /// The `[[cifar_train]]` job.
    pub job: String,
    /// `dense` or `adv`.
    pub variant: Variant,
    /// Training seed.
    pub seed: u64,
    /// Epoch, from 1 (the last row's epoch may be partial: see `batches`).
    pub epoch: u64,
    /// Iterations done at the end of the row.
    pub iteration: u64,
    /// Batches of this epoch trained.
    pub batches: u64,
    /// Learning rate of the epoch's last batch.
    pub lr: f64,
    /// Mean cross-entropy over the epoch's training batches (for adv, the mixed batches).
    pub loss: f64,
    /// Accuracy on the epoch's training batches as trained (augmented; for adv, mixed).
    pub train_accuracy: f64,
    /// FGSM examples among the epoch's training images.
    pub adv_examples: u64,
    /// Mean cross-entropy on the test images after the epoch.
    pub test_loss: f64,
    /// Accuracy on the test images after the epoch.
    pub test_accuracy: f64,
    /// Test images evaluated.
    pub test_examples: u32,
    /// Training images per second over the epoch, waiting for batches included (test
    /// evaluation and checkpoints excluded).
    pub images_per_s: f64,
}

impl CifarTrainRow {
    /// A row used only to learn the header.
    pub fn sample() -> Self {
        CifarTrainRow {
            job: String::new(),
            variant: Variant::Dense,
            seed: 0,
            epoch: 0,
            iteration: 0,
            batches: 0,
            lr: 0.0,
            loss: 0.0,
            train_accuracy: 0.0,
            adv_examples: 0,
            test_loss: 0.0,
            test_accuracy: 0.0,
            test_examples: 0,
            images_per_s: 0.0,
        }
    }
}

treated_row! {
    /// One row of `cifar_eval.csv`: a network under one defense, attack and radius.
    pub struct CifarEvalRow {
        /// The `[[cifar_eval]]` job.
        pub job: String,
        /// The data set: `cifar10`, or `cifar10-synthetic` for the stand-in `sap synth-cifar`
        /// writes.
        pub dataset: String,
        /// Its folder as the manifest names it (the real files or a synthetic set).
        pub data: String,
        /// The architecture (`resnet20`).
        pub network: String,
        /// The network's label: its variant (`dense`, `adv`) or its `checkpoints` key.
        pub variant: String,
        /// The `[[cifar_train]]` job that trained it (empty for a file).
        pub train_job: Option<String>,
        /// FGSM fraction of each training batch (adv only).
        pub adv_fraction: Option<f64>,
        /// FGSM radius of adversarial training, pixel units (adv only).
        pub adv_lambda: Option<f64>,
        /// The checkpoint file.
        pub checkpoint: String,
        /// Training seed (empty for a file).
        pub train_seed: Option<u64>,
        /// Evaluation seed.
        pub eval_seed: u64,
        ..Treatment,
        /// Test images.
        pub n: usize,
        /// Accuracy on the (attacked) images.
        pub accuracy: f64,
        /// Athalye et al.'s optimistic accuracy: an image counts as correct if any one of
        /// the `samples` passes predicts its label (reported beside, never instead).
        pub optimistic_accuracy: f64,
        /// Mean top probability.
        pub mean_confidence: f64,
        /// Expected calibration error over 15 equal-width confidence bins.
        pub ece: f64,
        /// Mean negative log-likelihood of the label (probabilities floored at 1e-12).
        pub nll: f64,
    }
}

treated_row! {
    /// One row of `worst_case.csv`: a network under one defense at one radius, against every
    /// attack of its job at once (AutoAttack's convention): an image counts as correct only
    /// if it is correct under each attack. The treatment's attack is `worst-case`.
    pub struct WorstCaseRow {
        /// The `[[cifar_eval]]` job.
        pub job: String,
        /// The data set: `cifar10`, or `cifar10-synthetic` for the stand-in `sap synth-cifar`
        /// writes.
        pub dataset: String,
        /// Its folder as the manifest names it.
        pub data: String,
        /// The network's label: its variant or its `checkpoints` key.
        pub variant: String,
        /// The checkpoint file.
        pub checkpoint: String,
        /// Training seed (empty for a file).
        pub train_seed: Option<u64>,
        /// Evaluation seed.
        pub eval_seed: u64,
        ..Treatment,
        /// The attacks combined, by label, joined with ` + `.
        pub attacks: String,
        /// Test images.
        pub n: usize,
        /// Share of images correct under every attack.
        pub accuracy: f64,
        /// Share of images that every attack left correct in at least one of the `samples`
        /// passes (Athalye et al.'s optimistic count).
        pub optimistic_accuracy: f64,
    }
}

treated_row! {
    /// One confidence bin of a CIFAR-10 evaluation row (`reliability.csv`).
    pub struct ReliabilityRow {
        /// The `[[cifar_eval]]` job.
        pub job: String,
        /// The network's label.
        pub variant: String,
        /// The checkpoint file.
        pub checkpoint: String,
        /// Training seed (empty for a file).
        pub train_seed: Option<u64>,
        /// Evaluation seed.
        pub eval_seed: u64,
        ..Treatment,
        /// Bin number, from 0.
        pub bin: usize,
        /// Lower confidence edge (excluded; 0 is included in bin 0).
        pub bin_low: f64,
        /// Upper confidence edge (included).
        pub bin_high: f64,
        /// Predictions in the bin.
        pub count: usize,
        /// Their accuracy (empty when the bin is empty).
        pub accuracy: Option<f64>,
        /// Their mean confidence (empty when the bin is empty).
        pub mean_confidence: Option<f64>,
    }
}

/// One test image's prediction (`cells/<id>/predictions.csv`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    /// The batch it was attacked and predicted in.
    pub batch: u64,
    /// Index in the test set.
    pub example: u64,
    /// True class.
    pub label: i64,
    /// Most probable class of the averaged softmax.
    pub predicted: i64,
    /// Its probability.
    pub confidence: f64,
    /// Probability of the true class.
    pub p_label: f64,
    /// Whether any single one of the `samples` passes predicted the label.
    pub any_pass_correct: bool,
}

impl PredictionRow {
    /// A row used only to learn the header.
    pub fn sample() -> Self {
        PredictionRow {
            batch: 0,
            example: 0,
            label: 0,
            predicted: 0,
            confidence: 0.0,
            p_label: 0.0,
            any_pass_correct: false,
        }
    }
}
