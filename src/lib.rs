//! sap-harness: experiments on Stochastic Activation Pruning (Dhillon et al., ICLR 2018).
//! `docs/ARCHITECTURE.md` explains the layers and the definitions the code follows.
//!
//! Map of the crate:
//! - [`env`]: the `Environment` trait; Atari through ALE 0.12 (compiled from ale-py's
//!   sources) on the standard ROM files, checked by MD5 and frame for frame against ale-py,
//!   with all preprocessing in Rust (presets `dopamine-v5`, `nature`); classic control
//!   through gym-rs.
//! - [`data`]: CIFAR-10 loader (binary and Python versions, folders and archives), a synthetic set in its format, and the
//!   background batch pipeline (shuffle, crop, flip).
//! - [`defense`]: dense, SAP (exact and independent sampling), dropout, Gaussian noise; a
//!   host sampler and a tensor-op sampler for activations on an accelerator.
//! - [`nn`]: Nature CNN, MLP and ResNet-20 with a defense point after every ReLU;
//!   safetensors checkpoints named as in PyTorch, written atomically, and the checkpoint
//!   folder of training cells; the optimisers (Adam, centered RMSProp, SGD).
//! - [`attack`]: FGSM, iterative FGSM / PGD and EOT-PGD with Monte-Carlo (EOT) gradients.
//! - [`policy`]: `PolicyWrapper`, network + defense + attack + samples, with its own
//!   seeded generator; `classify` and `act`.
//! - [`rl`]: replay memory and its frames, Double DQN, epsilon schedules, and the one way
//!   actions are chosen from Q-values ([`rl::act`]).
//! - [`runtime`]: the actor-learner runtime on crossbeam channels.
//! - [`vocab`]: the values every layer names (family, policy, variant) and the treatment
//!   columns (defense, attack, radius, passes) of every evaluation row.
//! - [`manifest`]: TOML manifests, checked with located errors, expanded into cells; an
//!   evaluation cell's [`manifest::Condition`].
//! - [`run_dir`]: the run folder: file names, cell folders, completion marks, locks,
//!   creating and resuming runs, collecting rows into tables, the gradient-masking checks.
//! - [`experiment`]: the [`experiment::CellRunner`] of each cell kind (DDQN training,
//!   random-policy episodes, agents, classifiers, CIFAR-10 training and evaluation) and the
//!   one loop that runs a cell.
//! - [`table`]: every result table's row type, with the treatment columns laid out flat.
//! - [`plot`]: the PNG font, line plots with confidence bands, PNG + SVG pairs.
//! - [`metrics`]: accuracy, confidence, ECE, NLL and reliability bins of classifiers.
//! - [`report`]: `sap report`: plots (PNG, SVG) and a markdown summary of a run.
//! - [`video`]: recorded episodes (`record = N`) as GIFs: game, network input, perturbation.
//! - [`record`]: crash-safe CSV appends and atomic table writes.
//! - [`stats`]: means, standard deviations, Student-t confidence intervals.
//! - [`seed`]: named seed streams, so results depend only on the manifest's seeds.
//! - [`runner`]: `sap run --jobs N`: cells as child processes with a live display.
//! - [`slurm`]: sbatch array scripts, one task per cell.
//! - [`progress`]: a progress bar on a terminal, log lines elsewhere.
//! - [`provenance`]: what rows depend on beyond the manifest (CPU, kernels, versions,
//!   threads, device), recorded per run and cell; the reproducible mode.
//! - [`bench`]: throughput measurements printed as ratios.
//! - [`cli`]: the `sap` command line, one file per group of subcommands.
//! - [`console`]: standard output and error written without panicking.

#![warn(missing_docs)]

pub mod attack;
pub mod bench;
pub mod cli;
pub mod console;
pub mod data;
pub mod defense;
pub mod env;
pub mod experiment;
pub mod manifest;
pub mod memory;
pub mod metrics;
pub mod nn;
pub mod plot;
pub mod policy;
pub mod progress;
pub mod provenance;
pub mod record;
pub mod report;
pub mod rl;
pub mod run_dir;
pub mod runner;
pub mod runtime;
pub mod seed;
pub mod slurm;
pub mod stats;
pub mod table;
pub mod video;
pub mod vocab;

/// Re-exported so downstream code and tests use the same tch as the harness.
pub use tch;
