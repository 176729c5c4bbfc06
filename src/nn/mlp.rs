//! A fully connected network (classic-control Q-networks, small classifiers): a ReLU and a
//! defense point after every hidden layer.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::DefendedNet;
use crate::defense::DefensePoints;

/// Layer sizes of an MLP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Input features.
    pub inputs: i64,
    /// Hidden layer widths, in order.
    pub hidden: Vec<i64>,
    /// Outputs (actions or classes).
    pub outputs: i64,
    /// Inputs are multiplied by this first (1/255 for pixel inputs, 1 for raw features).
    pub input_scale: f64,
}

impl MlpConfig {
    /// Builds the network under `path`. Parameter names: `hidden.0`, `hidden.1`, ..., `out`.
    pub fn init(&self, path: &nn::Path) -> Mlp {
        let mut hidden = Vec::new();
        let mut width = self.inputs;
        for (i, &h) in self.hidden.iter().enumerate() {
            hidden.push(nn::linear(
                path / "hidden" / i,
                width,
                h,
                Default::default(),
            ));
            width = h;
        }
        Mlp {
            hidden,
            out: nn::linear(path / "out", width, self.outputs, Default::default()),
            input_scale: self.input_scale,
        }
    }
}

/// See [`MlpConfig`].
#[derive(Debug)]
pub struct Mlp {
    hidden: Vec<nn::Linear>,
    out: nn::Linear,
    input_scale: f64,
}

impl DefendedNet for Mlp {
    /// # Shapes
    /// `x`: `[batch, inputs]` (or `[batch, ...]`, flattened) -> `[batch, outputs]`.
    fn forward(&self, x: &Tensor, _train: bool, points: &mut DefensePoints) -> Tensor {
        let mut h = super::as_float(x).flatten(1, -1) * self.input_scale;
        for layer in &self.hidden {
            h = points.relu(&layer.forward(&h)); // [batch, width]
        }
        self.out.forward(&h)
    }

    fn defense_points(&self) -> usize {
        self.hidden.len()
    }
}
