//! Networks that expose defense points: the Nature DQN network, an MLP Q-network and
//! ResNet-20 for CIFAR-10. Each applies every ReLU through [`DefensePoints::relu`] (the
//! defense right after it) and calls the defense nowhere else (not on inputs, not on
//! logits).
//!
//! Parameters are named as in PyTorch (`layer1.0.conv1.weight`, `bn1.running_mean`,
//! `bn1.num_batches_tracked`, ...) and checkpoints are safetensors files, so a checkpoint
//! loads into the equivalent PyTorch module with `load_state_dict(strict=True)`; the
//! reference modules are in `tests/golden/reference.py`.

pub mod checkpoint;
pub mod digest;
pub mod mlp;
pub mod nature_cnn;
pub mod optim;
pub mod resnet20;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub use checkpoint::CheckpointError;
pub use mlp::MlpConfig;

use crate::defense::DefensePoints;

/// `x` as a floating-point tensor: integer pixels become f32, float inputs keep their
/// precision (f64 inputs serve finite-difference checks).
pub fn as_float(x: &Tensor) -> Tensor {
    if x.is_floating_point() {
        x.shallow_clone()
    } else {
        x.to_kind(tch::Kind::Float)
    }
}

/// A network whose forward pass calls the defense after every ReLU.
pub trait DefendedNet: Send {
    /// Logits or Q-values.
    ///
    /// `train` switches batch norm to batch statistics (and running-average updates).
    fn forward(&self, x: &Tensor, train: bool, points: &mut DefensePoints) -> Tensor;

    /// The number of defense points a forward pass visits.
    fn defense_points(&self) -> usize;
}

/// Which network, with the sizes that fix its parameter shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Architecture {
    /// Mnih et al. 2015: 4x84x84 stacked frames, pixel values 0..255, to Q-values.
    NatureCnn {
        /// Number of actions.
        actions: i64,
    },
    /// A fully connected network.
    Mlp(MlpConfig),
    /// He et al. 2016 (section 4.2): 3x32x32 images, pixel values 0..255, to logits.
    #[serde(rename = "resnet20")]
    ResNet20 {
        /// Number of classes.
        classes: i64,
    },
}

impl Architecture {
    /// A short description for messages and CSV rows (`nature-cnn`, `mlp`, `resnet20`).
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::NatureCnn { .. } => "nature-cnn",
            Architecture::Mlp(_) => "mlp",
            Architecture::ResNet20 { .. } => "resnet20",
        }
    }

    /// The number of outputs: classes, or actions.
    pub fn outputs(&self) -> i64 {
        match self {
            Architecture::NatureCnn { actions } => *actions,
            Architecture::Mlp(c) => c.outputs,
            Architecture::ResNet20 { classes } => *classes,
        }
    }

    /// The shape of one input example.
    pub fn input_shape(&self) -> Vec<i64> {
        match self {
            Architecture::NatureCnn { .. } => vec![4, 84, 84],
            Architecture::Mlp(c) => vec![c.inputs],
            Architecture::ResNet20 { .. } => vec![3, 32, 32],
        }
    }
}

/// A network with its parameters.
pub struct Model {
    /// The parameters (and batch-norm buffers), named as in PyTorch.
    pub vs: VarStore,
    /// What was built.
    pub arch: Architecture,
    net: Box<dyn DefendedNet>,
}

impl Model {
    /// Builds `arch` with freshly initialised parameters on `device`.
    ///
    /// Initial values come from torch's generator: seed it with `tch::manual_seed` first when
    /// they must repeat.
    pub fn new(arch: Architecture, device: Device) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let net: Box<dyn DefendedNet> = match &arch {
            Architecture::NatureCnn { actions } => {
                Box::new(nature_cnn::NatureCnn::new(&root, *actions))
            }
            Architecture::Mlp(config) => Box::new(config.init(&root)),
            Architecture::ResNet20 { classes } => {
                Box::new(resnet20::ResNet20::new(&root, *classes))
            }
        };
        Model { vs, arch, net }
    }

    /// Logits or Q-values, calling `points` after every ReLU.
    ///
    /// # Shapes
    /// `x`: `[batch, ...input_shape]` in the network's input units -> `[batch, outputs]`.
    pub fn forward(&self, x: &Tensor, train: bool, points: &mut DefensePoints) -> Tensor {
        self.net.forward(x, train, points)
    }

    /// The number of defense points.
    pub fn defense_points(&self) -> usize {
        self.net.defense_points()
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }
}
