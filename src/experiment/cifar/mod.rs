//! The CIFAR-10 family: ResNet-20 training cells (dense and adversarial) and evaluation
//! cells (defense x attack x lambda, accuracy and calibration).

pub mod eval;
pub mod train;

pub use train::{adversarial_batch, learning_rate};
