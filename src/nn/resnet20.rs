//! ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2): a 3x3 stem, three stages of three
//! basic blocks with 16, 32 and 64 filters, global average pooling and a linear layer.
//!
//! Shortcuts are identities; where a stage halves the resolution and doubles the width, the
//! shortcut subsamples by 2 and pads the new channels with zeros (the paper's option A, so the
//! network has 0.27M parameters). Defense points: after the stem's ReLU and after both ReLUs
//! of each block, 1 + 9 x 2 = 19.
//!
//! Parameter names follow the common PyTorch CIFAR ResNet (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer1.0.bn1`, ..., `linear`).

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use super::DefendedNet;
use crate::defense::DefensePoints;

/// Per-channel mean of the CIFAR-10 training images, in pixel units (0.4914, 0.4822, 0.4465
/// in [0, 1] units).
pub const CIFAR10_MEAN: [f64; 3] = [0.4914 * 255.0, 0.4822 * 255.0, 0.4465 * 255.0];
/// Per-channel standard deviation of the CIFAR-10 training images, in pixel units (0.2470,
/// 0.2435, 0.2616 in [0, 1] units).
pub const CIFAR10_STD: [f64; 3] = [0.2470 * 255.0, 0.2435 * 255.0, 0.2616 * 255.0];

fn conv3x3(path: nn::Path, i: i64, o: i64, stride: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(path, i, o, 3, config)
}

/// Batch norm with PyTorch's `num_batches_tracked` buffer, so the state dict matches
/// `torch.nn.BatchNorm2d`.
#[derive(Debug)]
struct BatchNorm {
    bn: nn::BatchNorm,
    num_batches_tracked: Tensor,
}

impl BatchNorm {
    fn new(path: nn::Path, channels: i64) -> Self {
        let bn = nn::batch_norm2d(&path, channels, Default::default());
        let counter = Tensor::zeros([], (Kind::Int64, path.device()));
        BatchNorm {
            bn,
            num_batches_tracked: path.add("num_batches_tracked", counter, false),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        self.bn.forward_t(x, train)
    }
}

#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    conv2: nn::Conv2D,
    bn2: BatchNorm,
    /// Channels of zero padding on each side of the shortcut (0: plain identity).
    pad: i64,
    stride: i64,
}

impl BasicBlock {
    fn new(path: nn::Path, i: i64, o: i64, stride: i64) -> Self {
        BasicBlock {
            conv1: conv3x3(&path / "conv1", i, o, stride),
            bn1: BatchNorm::new(&path / "bn1", o),
            conv2: conv3x3(&path / "conv2", o, o, 1),
            bn2: BatchNorm::new(&path / "bn2", o),
            pad: (o - i) / 2,
            stride,
        }
    }

    fn forward(&self, x: &Tensor, train: bool, points: &mut DefensePoints) -> Tensor {
        let h = points.relu(&self.bn1.forward(&self.conv1.forward(x), train));
        let h = self.bn2.forward(&self.conv2.forward(&h), train);
        let shortcut = if self.stride == 1 && self.pad == 0 {
            x.shallow_clone()
        } else {
            // Option A: x[:, :, ::2, ::2] with zero channels added on both sides.
            x.slice(2, 0, None, self.stride)
                .slice(3, 0, None, self.stride)
                .constant_pad_nd([0, 0, 0, 0, self.pad, self.pad])
        };
        points.relu(&(h + shortcut))
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct ResNet20 {
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
    linear: nn::Linear,
    mean: Tensor,
    std: Tensor,
}

impl ResNet20 {
    /// Builds the network under `path` with `classes` outputs.
    pub fn new(path: &nn::Path, classes: i64) -> Self {
        let mut blocks = Vec::new();
        let mut width = 16;
        for (stage, planes) in [16i64, 32, 64].into_iter().enumerate() {
            for b in 0..3 {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let name = path / format!("layer{}", stage + 1) / b;
                blocks.push(BasicBlock::new(name, width, planes, stride));
                width = planes;
            }
        }
        let linear_config = nn::LinearConfig {
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanIn,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        };
        let device = path.device();
        ResNet20 {
            conv1: conv3x3(path / "conv1", 3, 16, 1),
            bn1: BatchNorm::new(path / "bn1", 16),
            blocks,
            linear: nn::linear(path / "linear", 64, classes, linear_config),
            mean: Tensor::from_slice(&CIFAR10_MEAN)
                .to_kind(Kind::Float)
                .view([1, 3, 1, 1])
                .to_device(device),
            std: Tensor::from_slice(&CIFAR10_STD)
                .to_kind(Kind::Float)
                .view([1, 3, 1, 1])
                .to_device(device),
        }
    }
}

impl DefendedNet for ResNet20 {
    /// # Shapes
    /// `x`: `[batch, 3, 32, 32]`, pixel values 0..255 -> `[batch, classes]`.
    fn forward(&self, x: &Tensor, train: bool, points: &mut DefensePoints) -> Tensor {
        // Normalised inside the network: inputs and perturbations stay in pixel units.
        let x = (super::as_float(x) - &self.mean) / &self.std;
        let mut h = points.relu(&self.bn1.forward(&self.conv1.forward(&x), train)); // [b, 16, 32, 32]
        for block in &self.blocks {
            h = block.forward(&h, train, points); // [b, 16|32|64, 32|16|8, ...]
        }
        let pooled = h.mean_dim([2i64, 3].as_slice(), false, h.kind()); // [b, 64]
        self.linear.forward(&pooled)
    }

    fn defense_points(&self) -> usize {
        1 + 2 * self.blocks.len()
    }
}
