//! The Nature DQN network (Mnih et al. 2015): three convolutions and one hidden fully
//! connected layer, each followed by a ReLU and a defense point (4 points).

use tch::nn::{self, Module};
use tch::Tensor;

use super::DefendedNet;
use crate::defense::DefensePoints;

/// Conv 32x8x8/4, conv 64x4x4/2, conv 64x3x3/1, fc 512, fc actions. Parameter names:
/// `conv1`, `conv2`, `conv3`, `fc1`, `fc2` (`.weight`, `.bias`).
#[derive(Debug)]
pub struct NatureCnn {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    conv3: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl NatureCnn {
    /// Builds the network under `path` for `actions` actions.
    pub fn new(path: &nn::Path, actions: i64) -> Self {
        let conv = |name: &str, i, o, k, stride| {
            let config = nn::ConvConfig {
                stride,
                ..Default::default()
            };
            nn::conv2d(path / name, i, o, k, config)
        };
        NatureCnn {
            conv1: conv("conv1", 4, 32, 8, 4),
            conv2: conv("conv2", 32, 64, 4, 2),
            conv3: conv("conv3", 64, 64, 3, 1),
            fc1: nn::linear(path / "fc1", 64 * 7 * 7, 512, Default::default()),
            fc2: nn::linear(path / "fc2", 512, actions, Default::default()),
        }
    }
}

impl DefendedNet for NatureCnn {
    /// # Shapes
    /// `x`: `[batch, 4, 84, 84]`, pixel values 0..255 (any numeric kind) -> `[batch, actions]`.
    fn forward(&self, x: &Tensor, _train: bool, points: &mut DefensePoints) -> Tensor {
        // Scaled inside the network, so observations and perturbations stay in pixel units.
        let x = super::as_float(x) / 255.0;
        let h = points.relu(&self.conv1.forward(&x)); // [batch, 32, 20, 20]
        let h = points.relu(&self.conv2.forward(&h)); // [batch, 64, 9, 9]
        let h = points.relu(&self.conv3.forward(&h)); // [batch, 64, 7, 7]
        let h = points.relu(&self.fc1.forward(&h.flatten(1, -1))); // [batch, 512]
        self.fc2.forward(&h)
    }

    fn defense_points(&self) -> usize {
        4
    }
}
