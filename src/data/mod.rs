//! Data sets of the classifier family: CIFAR-10 in its published forms, a synthetic set in
//! the binary format, and the augmented training batches made on background threads.

pub mod cifar;
pub mod pipeline;
