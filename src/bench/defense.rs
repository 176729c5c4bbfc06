//! `sap bench defense`: images/s of defended forward passes and of an FGSM attack with a
//! Monte-Carlo gradient (its passes stacked along the batch, and one per forward), on
//! ResNet-20 (batch 128) and the Nature CNN (batch 32, and batch 1 as an agent acts), measured
//! side by side in one run. Targets: SAP-100 exact forward <= 2.0 x dense time, independent
//! <= 1.5 x. The tensor-op rows run the draws an accelerator makes ([`crate::defense::tensor`])
//! on the same device, so the faster path can be chosen for the CPU.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::attack::{Attack, AttackKind};
use crate::defense::{Defense, DefensePoints, DefenseRng, Draws, Sampling, DEFAULT_MAX_BATCH};
use crate::nn::{Architecture, Model};

/// What one row measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    /// A forward pass under a defense, without gradients.
    Forward(Defense),
    /// The same with the defense's draws made by tensor operations (the accelerator's
    /// path) rather than by the host sampler.
    ForwardTensorOps(Defense),
    /// FGSM under a defense with `gradient_samples` passes per gradient, the passes stacked
    /// along the batch (up to [`DEFAULT_MAX_BATCH`] rows per forward).
    Fgsm(Defense, u32),
    /// The same with one pass per forward (`max_batch` = the batch size): what stacking
    /// gains.
    FgsmUnstacked(Defense, u32),
    /// APGD-CE with `gradient_samples` passes per gradient (EOT) for one iteration: two
    /// gradient estimates (the starting point's and the iterate's), the unit the attack's
    /// cost scales by (a run of N iterations takes N + 1). Timed once per round, whatever
    /// `iterations` says: one batch is already many passes.
    ApgdIteration(Defense, u32),
}

impl Workload {
    /// A label for the table.
    pub fn label(&self) -> String {
        match self {
            Workload::Forward(d) => format!("forward {}", d.label()),
            Workload::ForwardTensorOps(d) => format!("forward {} (tensor ops)", d.label()),
            Workload::Fgsm(d, k) => format!("fgsm k={k} {}", d.label()),
            Workload::FgsmUnstacked(d, k) => format!("fgsm k={k} {} (one pass/forward)", d.label()),
            Workload::ApgdIteration(d, k) => format!("apgd-ce k={k} {} (1 iteration)", d.label()),
        }
    }
}

/// One network's measurements.
#[derive(Clone, Debug)]
pub struct DefenseBench {
    /// The network.
    pub arch: Architecture,
    /// Examples per batch.
    pub batch: i64,
    /// Each workload with its best images/s over the rounds.
    pub rows: Vec<(Workload, f64)>,
}

impl DefenseBench {
    /// Images/s of a whole APGD run of `iterations` iterations under `defense` with `k`
    /// gradient samples, from the one-iteration timing (two gradient estimates, so a run
    /// costs `(iterations + 1) / 2` of them).
    pub fn apgd_images_per_s(&self, defense: Defense, k: u32, iterations: u32) -> Option<f64> {
        let one = self.ips(Workload::ApgdIteration(defense, k))?;
        Some(one * 2.0 / (iterations as f64 + 1.0))
    }

    /// Time per batch of `workload` relative to the dense forward pass (> 1 is slower).
    pub fn time_ratio(&self, workload: Workload) -> Option<f64> {
        let dense = self.ips(Workload::Forward(Defense::Dense))?;
        Some(dense / self.ips(workload)?)
    }

    fn ips(&self, workload: Workload) -> Option<f64> {
        self.rows.iter().find(|(w, _)| *w == workload).map(|r| r.1)
    }
}

/// The workloads measured on every network.
pub fn workloads() -> Vec<Workload> {
    let independent = Defense::Sap {
        frac: 1.0,
        sampling: Sampling::Independent,
    };
    vec![
        Workload::Forward(Defense::Dense),
        Workload::Forward(Defense::SAP_100),
        Workload::Forward(independent),
        Workload::ForwardTensorOps(Defense::SAP_100),
        Workload::ForwardTensorOps(independent),
        Workload::Fgsm(Defense::SAP_100, 10),
        Workload::FgsmUnstacked(Defense::SAP_100, 10),
        Workload::ApgdIteration(Defense::SAP_100, APGD_SAMPLES),
    ]
}

/// APGD's gradient samples in the benchmark: AutoAttack's `rand` version.
pub const APGD_SAMPLES: u32 = 20;

fn run_once(model: &Model, x: &Tensor, labels: &Tensor, w: Workload, rng: &mut DefenseRng) {
    match w {
        Workload::Forward(defense) | Workload::ForwardTensorOps(defense) => tch::no_grad(|| {
            let mut points = DefensePoints::new(defense, rng);
            if matches!(w, Workload::ForwardTensorOps(_)) {
                points = points.with_tensor_ops();
            }
            let out = model.forward(x, false, &mut points);
            // Forces the computation on asynchronous devices.
            let _ = out.sum(Kind::Float).double_value(&[]);
        }),
        Workload::Fgsm(defense, k) | Workload::FgsmUnstacked(defense, k) => {
            let attack = Attack::new(AttackKind::Fgsm, 8.0, k);
            let max_batch = match w {
                Workload::Fgsm(..) => DEFAULT_MAX_BATCH,
                _ => x.size()[0] as usize,
            };
            let draws = &mut Draws::Shared(rng);
            let adv = attack.perturb(model, defense, draws, x, labels, max_batch);
            let _ = adv.sum(Kind::Float).double_value(&[]);
        }
        Workload::ApgdIteration(defense, k) => {
            let kind = AttackKind::Apgd {
                iterations: 1,
                restarts: 1,
                random_start: true,
            };
            let attack = Attack::new(kind, 8.0, k);
            let draws = &mut Draws::Shared(rng);
            let adv = attack.perturb(model, defense, draws, x, labels, DEFAULT_MAX_BATCH);
            let _ = adv.sum(Kind::Float).double_value(&[]);
        }
    }
}

/// Measures each network at its batch size: every workload `iterations` times per round,
/// rounds alternating between workloads, best round kept (the least disturbed by other work
/// on a shared machine).
pub fn bench_defense(rounds: u32, iterations: u32) -> Vec<DefenseBench> {
    let device = Device::cuda_if_available();
    let nets = [
        (Architecture::ResNet20 { classes: 10 }, 128),
        (Architecture::NatureCnn { actions: 6 }, 32),
        // An agent acting on one observation: what stacking the passes gains there.
        (Architecture::NatureCnn { actions: 6 }, 1),
    ];
    let mut out = Vec::new();
    for (arch, batch) in nets {
        tch::manual_seed(0);
        let model = Model::new(arch.clone(), device);
        let outputs = arch.outputs();
        let mut data_rng = ChaCha8Rng::seed_from_u64(1);
        let mut shape = vec![batch];
        shape.extend(arch.input_shape());
        let numel: i64 = shape.iter().product();
        let pixels: Vec<f32> = (0..numel)
            .map(|_| data_rng.gen_range(0..=255) as f32)
            .collect();
        let x = Tensor::from_slice(&pixels)
            .view(shape.as_slice())
            .to_device(device);
        let labels: Vec<i64> = (0..batch).map(|_| data_rng.gen_range(0..outputs)).collect();
        let labels = Tensor::from_slice(&labels).to_device(device);
        let mut rng = DefenseRng::seed_from_u64(2);
        let work = workloads();
        let mut best = vec![0f64; work.len()];
        for w in &work {
            run_once(&model, &x, &labels, *w, &mut rng); // warm-up
        }
        for _ in 0..rounds {
            for (i, w) in work.iter().enumerate() {
                // Small batches repeat more, for a measurable time per round.
                let repeats = match w {
                    Workload::ApgdIteration(..) => (32 / batch).max(1),
                    _ => iterations as i64 * (32 / batch).max(1),
                };
                let start = Instant::now();
                for _ in 0..repeats {
                    run_once(&model, &x, &labels, *w, &mut rng);
                }
                let ips = (batch * repeats) as f64 / start.elapsed().as_secs_f64();
                best[i] = best[i].max(ips);
            }
        }
        out.push(DefenseBench {
            arch,
            batch,
            rows: work.into_iter().zip(best).collect(),
        });
    }
    out
}

/// PyTorch's timing of one network (`scripts/sap_reference.py`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceTiming {
    /// The network (`resnet20`, `nature-cnn`).
    pub network: String,
    /// Examples per batch.
    pub batch: i64,
    /// Images/s of the dense forward pass.
    pub dense: f64,
    /// Images/s of the forward pass with exact SAP-100 after every ReLU.
    pub sap: f64,
    /// Torch threads it ran with.
    pub threads: i64,
    /// Torch's version.
    pub torch: String,
}

/// The Python of the project's venv: `SAP_PYTHON`, or `.venv/bin/python` in the source tree.
pub fn venv_python() -> std::path::PathBuf {
    std::env::var_os("SAP_PYTHON").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        std::path::PathBuf::from,
    )
}

/// Runs the PyTorch reference of exact SAP-100 (`scripts/sap_reference.py`) with `threads`
/// torch threads and the same rounds and batches as [`bench_defense`].
pub fn pytorch_reference(
    rounds: u32,
    iterations: u32,
    threads: i32,
) -> anyhow::Result<Vec<ReferenceTiming>> {
    use anyhow::Context;
    let args = [
        ("--rounds", rounds.to_string()),
        ("--iterations", iterations.to_string()),
        ("--threads", threads.to_string()),
    ];
    let out = super::run_reference_script("sap_reference.py", &args, |_| {})?;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            parse_reference_line(l).with_context(|| format!("sap_reference.py: output line `{l}`"))
        })
        .collect()
}

/// One line of `scripts/sap_reference.py`: network, batch, dense and SAP images/s, threads,
/// torch's version.
fn parse_reference_line(line: &str) -> anyhow::Result<ReferenceTiming> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [network, batch, dense, sap, threads, torch] = f.as_slice() else {
        anyhow::bail!("expected 6 fields, found {}", f.len());
    };
    Ok(ReferenceTiming {
        network: (*network).to_owned(),
        batch: batch.parse()?,
        dense: dense.parse()?,
        sap: sap.parse()?,
        threads: threads.parse()?,
        torch: (*torch).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_line_is_read_field_by_field_and_a_short_one_is_refused() {
        let r = parse_reference_line("resnet20 128 2500.5 80.25 2 2.13.0+cpu").unwrap();
        assert_eq!(
            (r.network.as_str(), r.batch, r.threads),
            ("resnet20", 128, 2)
        );
        assert_eq!(
            (r.dense, r.sap, r.torch.as_str()),
            (2500.5, 80.25, "2.13.0+cpu")
        );
        assert!(parse_reference_line("resnet20 128 2500.5").is_err());
        assert!(parse_reference_line("resnet20 many 1 1 2 x").is_err());
    }
}
