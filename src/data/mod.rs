//! Data sets of the classifier family: CIFAR-10 in its binary version, a synthetic set in
//! exactly that format, and the augmented training batches made on background threads.

pub mod cifar;
pub mod pipeline;
