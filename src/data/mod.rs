//! Data sets of the classifier family: CIFAR-10 in its binary version, and a synthetic set
//! in exactly that format.

pub mod cifar;
