//! `sap bench`: throughput measured side by side in one run, printed as ratios.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::at_least_one;
use crate::env::Game;
use crate::manifest::did_you_mean;
use clap::ValueEnum;

/// Benchmark targets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchTarget {
    /// Bare ALE `act()` loop against the full preprocessing pipeline.
    Env,
    /// Dense, SAP-100 exact and independent forward passes, and FGSM with 10 gradient
    /// samples stacked and one per forward, on ResNet-20 (batch 128) and the Nature CNN
    /// (batch 32, and batch 1 as an agent acts).
    Defense,
    /// Double DQN on Pong: learner-only updates/s, actors-only and end-to-end agent
    /// steps/s, and batched inference against local network copies.
    Ddqn,
    /// Multi-game scaling of `sap run`: cells per hour of a fixed tiny grid with --jobs 1
    /// and --jobs N.
    Jobs,
    /// One agent cell (Pong, SAP-100, FGSM with 10 gradient samples, one torch thread):
    /// agent steps/s with batch-1 passes, with the passes stacked, and with 16 episodes in
    /// lockstep (`--cap` frames per episode).
    Grid,
    /// ResNet-20 training steps (batch 128) on a synthetic CIFAR-10: images/s with the
    /// background batch pipeline against batches made beforehand (--iterations steps).
    Cifar,
    /// The cost of the reproducible mode: dense and SAP-100 forwards and Double DQN updates,
    /// each round in a child with the default kernels and one in the reproducible mode.
    Reproducible,
    /// This machine's CPU cost of emulator frames and of Nature CNN and ResNet-20 passes
    /// under each kind of defense, saved (`--out`) for `sap plan`'s CPU-time estimates.
    Rates,
}

/// Measure throughput; prints ratios measured side by side in one run.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    pub target: BenchTarget,
    /// Atari games to measure.
    #[arg(long, value_delimiter = ',', default_values_t = ["Pong".to_string(), "Breakout".to_string()])]
    pub games: Vec<String>,
    /// Emulator frames per loop and round.
    #[arg(long, default_value_t = 100_000)]
    pub frames: u64,
    /// Alternating rounds; the best of each loop is kept.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Batches per workload and round (`defense`).
    #[arg(long, default_value_t = 5)]
    pub iterations: u32,
    /// Agent steps per measurement (`ddqn`).
    #[arg(long, default_value_t = 2_000)]
    pub steps: u64,
    /// Actor threads (`ddqn`).
    #[arg(long, default_value_t = 1)]
    pub actors: usize,
    /// Environments per actor (`ddqn`).
    #[arg(long, default_value_t = 4)]
    pub envs_per_actor: usize,
    /// torch threads of the learner (`ddqn`).
    #[arg(long, default_value_t = 1)]
    pub learner_threads: usize,
    /// Cells at once, compared with 1 (`jobs`).
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub jobs: u32,
    /// Episode cap in emulator frames of the grid's cells (`jobs`, `grid`).
    #[arg(long, default_value_t = 2_000)]
    pub cap: u64,
    /// Background batch threads (`cifar`).
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub workers: u32,
    /// Test images per evaluation setting and round (`cifar`; 0 skips the evaluation
    /// part).
    #[arg(long, default_value_t = 200)]
    pub eval_images: u32,
    /// Where to save the rates (`rates`; default: the file `sap plan` reads,
    /// `$XDG_CACHE_HOME/sap-harness/rates.toml` or `~/.cache/sap-harness/rates.toml`).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Internal (`reproducible`): measure once in this mode and print the rates.
    #[arg(long, hide = true)]
    pub child_mode: Option<crate::bench::reproducible::Mode>,
}

/// `sap bench`: the measurement `args.target` names.
pub(super) fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.target {
        BenchTarget::Env => env(args)?,
        BenchTarget::Ddqn => ddqn(args)?,
        BenchTarget::Jobs => jobs(args)?,
        BenchTarget::Grid => grid(args)?,
        BenchTarget::Cifar => cifar(args)?,
        BenchTarget::Reproducible => reproducible(args)?,
        BenchTarget::Defense => defense(args)?,
        BenchTarget::Rates => rates(args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The environment pipeline against bare ALE.
fn env(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        games,
        frames,
        rounds,
        ..
    } = args;
    let games = games
        .iter()
        .map(|name| {
            Game::from_name(name).with_context(|| {
                let hint = did_you_mean(name, crate::env::games::game_names())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                format!("--games: unknown Atari game `{name}`{hint} (`sap games` lists them)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if frames == 0 || rounds == 0 {
        anyhow::bail!("--frames and --rounds must be at least 1");
    }
    crate::outln!(
        "env pipeline vs bare ALE, one thread, {frames} frames x {rounds} rounds (best kept)"
    );
    crate::outln!(
        "{:<14} {:>14} {:>16} {:>7}",
        "game",
        "bare frames/s",
        "pipeline fr/s",
        "ratio"
    );
    for b in crate::bench::bench_env(&games, frames, rounds)? {
        crate::outln!(
            "{:<14} {:>14.0} {:>16.0} {:>7.3}",
            b.game.name(),
            b.bare_fps,
            b.pipeline_fps,
            b.ratio()
        );
    }
    Ok(())
}

/// Double DQN learner, actors and end-to-end rates.
fn ddqn(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        steps,
        actors,
        envs_per_actor,
        learner_threads,
        ..
    } = args;
    if steps < 100 || actors == 0 || envs_per_actor == 0 || learner_threads == 0 {
        anyhow::bail!(
            "--steps must be at least 100; --actors, --envs-per-actor and \
                 --learner-threads at least 1"
        );
    }
    let config = crate::runtime::RuntimeConfig {
        actors,
        envs_per_actor,
        sync_period: 50,
        channel_capacity: 8,
        actor_threads: 1,
        learner_threads,
    };
    let bench = crate::bench::bench_ddqn(config, steps)?;
    print_ddqn_bench(&bench);
    use crate::bench::ddqn::{pytorch_ddqn_reference, REFERENCE_ROUNDS, REFERENCE_UPDATES};
    match pytorch_ddqn_reference(REFERENCE_UPDATES, REFERENCE_ROUNDS, &[1, 2]) {
        Ok(torch) => print_ddqn_reference(&bench, &torch),
        Err(e) => crate::outln!("PyTorch reference skipped: {e:#}"),
    }
    Ok(())
}

/// Our learner against PyTorch's update at the same thread counts, and end to end against
/// four times PyTorch's two-thread rate.
fn print_ddqn_reference(b: &crate::bench::DdqnBench, torch: &[crate::bench::ddqn::TorchUpdates]) {
    use crate::bench::ddqn::{REFERENCE_ROUNDS, REFERENCE_UPDATES};
    crate::outln!(
        "\nthe same update in PyTorch (scripts/ddqn_reference.py), {REFERENCE_UPDATES} updates x \
         {REFERENCE_ROUNDS} rounds each, best kept; torch {}: updates/s",
        torch.first().map_or("?", |t| t.version.as_str())
    );
    crate::outln!(
        "{:>7} {:>10} {:>14} {:>14} {:>12} {:>12}",
        "threads",
        "ours",
        "torch default",
        "torch + alloc",
        "ours/default",
        "ours/+alloc"
    );
    for t in torch {
        let Some(&(_, ours)) = b.learner_by_threads.iter().find(|(n, _)| *n == t.threads) else {
            continue;
        };
        crate::outln!(
            "{:>7} {:>10.1} {:>14.1} {:>14.1} {:>12.3} {:>12.3}",
            t.threads,
            ours,
            t.default_allocator,
            t.same_allocator,
            ours / t.default_allocator,
            ours / t.same_allocator
        );
    }
    crate::outln!(
        "(\"torch + alloc\": PyTorch with the allocator settings sap gives itself, \
         src/memory.rs; target: ours >= 1.0 x PyTorch at 1 and 2 threads)"
    );
    if let Some(two) = torch.iter().find(|t| t.threads == 2) {
        for (what, rate) in [
            ("default", two.default_allocator),
            ("+ alloc", two.same_allocator),
        ] {
            crate::outln!(
                "end to end / (4 x torch {what} at 2 threads) = {:.3}   (target >= 0.9)",
                b.end_to_end_steps_per_s / (4.0 * rate)
            );
        }
    }
}

/// `sap run` with --jobs 1 against --jobs N.
fn jobs(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        jobs, rounds, cap, ..
    } = args;
    if rounds == 0 || cap < 100 {
        anyhow::bail!("--rounds must be at least 1 and --cap at least 100 frames");
    }
    let exe = std::env::current_exe().context("finding the sap executable")?;
    let (one, many) = crate::bench::bench_jobs(&exe, jobs as usize, rounds, cap)?;
    crate::outln!(
        "local runner: fixed grid of {} cells (Pong, Breakout; dense and SAP-100 under \
             FGSM, lambda 0 and 4; 2 episodes of <= {cap} frames), best of {rounds} rounds",
        one.cells
    );
    crate::outln!(
        "{:<8} {:>14} {:>10} {:>12}",
        "jobs",
        "torch threads",
        "seconds",
        "cells/hour"
    );
    for b in [&one, &many] {
        crate::outln!(
            "{:<8} {:>14} {:>10.1} {:>12.0}",
            b.jobs,
            b.threads_per_job,
            b.seconds,
            b.cells_per_hour()
        );
    }
    crate::outln!(
        "cells/hour with --jobs {} / with --jobs 1 = {:.3}",
        many.jobs,
        many.cells_per_hour() / one.cells_per_hour()
    );
    Ok(())
}

/// One agent cell with batch-1 passes, stacked passes, and 16 episodes in lockstep.
fn grid(args: BenchArgs) -> Result<()> {
    let BenchArgs { rounds, cap, .. } = args;
    if rounds == 0 || cap < 100 {
        anyhow::bail!("--rounds must be at least 1 and --cap at least 100 frames");
    }
    let rows = crate::bench::bench_grid(rounds, cap)?;
    crate::outln!(
        "agent cell: Pong, random Nature CNN, SAP-100, FGSM lambda 8 with gradient_samples 10, \
         samples 1; 16 episodes of <= {cap} frames; 1 torch thread; best of {rounds} rounds"
    );
    crate::outln!(
        "{:<18} {:>10} {:>12} {:>10} {:>14} {:>12}",
        "parallel_episodes",
        "max_batch",
        "agent steps",
        "seconds",
        "agent steps/s",
        "vs first"
    );
    let first = rows[0].steps_per_second();
    for b in &rows {
        crate::outln!(
            "{:<18} {:>10} {:>12} {:>10.1} {:>14.1} {:>12.3}",
            b.parallel_episodes,
            b.max_batch,
            b.agent_steps,
            b.seconds,
            b.steps_per_second(),
            b.steps_per_second() / first
        );
    }
    crate::outln!(
        "agent steps/s with parallel_episodes 16 / with 1 (both max_batch {}) = {:.3} (target \
         >= 4 against batch-1 passes, the first row)",
        rows[2].max_batch,
        rows[2].steps_per_second() / rows[1].steps_per_second()
    );
    Ok(())
}

/// Measures this machine's rates and saves them where `sap plan` reads them.
fn rates(args: BenchArgs) -> Result<()> {
    let BenchArgs { rounds, out, .. } = args;
    if rounds == 0 {
        anyhow::bail!("--rounds must be at least 1");
    }
    let path = match out {
        Some(p) => p,
        None => crate::bench::rates::default_path()
            .context("neither XDG_CACHE_HOME nor HOME is set: give the rates file with --out")?,
    };
    crate::outln!("measuring with one torch thread, best of {rounds} rounds (about a minute)");
    let rates = crate::bench::rates::measure(rounds)?;
    rates.save(&path)?;
    crate::outln!("{}", rates.describe());
    crate::outln!(
        "saved to {}; `sap plan` estimates CPU time from it",
        path.display()
    );
    Ok(())
}

/// ResNet-20 training with and without the batch pipeline, then evaluation.
fn cifar(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        iterations,
        rounds,
        workers,
        eval_images,
        ..
    } = args;
    if rounds == 0 || iterations == 0 {
        anyhow::bail!("--rounds and --iterations must be at least 1");
    }
    let b = crate::bench::bench_cifar(iterations as usize, rounds, workers as usize)?;
    crate::outln!(
        "ResNet-20 training, batch {}, SGD momentum 0.9, on {:?} with {} torch threads; \
             {} batch threads (crop + flip); {iterations} steps x {rounds} rounds, best kept",
        b.batch,
        tch::Device::cuda_if_available(),
        b.torch_threads,
        b.workers
    );
    crate::outln!("{:<36} {:>10}", "measurement", "images/s");
    crate::outln!(
        "{:<36} {:>10.1}",
        "model only (batches made beforehand)",
        b.model_only_images_per_s
    );
    crate::outln!(
        "{:<36} {:>10.1}",
        "with the batch pipeline",
        b.pipeline_images_per_s
    );
    crate::outln!(
        "pipeline-on / model-only = {:.3}   (target >= 0.95: the model never waits for data)",
        b.ratio()
    );
    if eval_images > 0 {
        let rates = crate::bench::bench_cifar_eval(eval_images as usize, 100, rounds)?;
        crate::outln!(
            "\nResNet-20 evaluation (untrained weights), {eval_images} test images in \
                 batches of 100, FGSM lambda 8; {rounds} rounds, best kept"
        );
        crate::outln!(
            "{:<52} {:>7} {:>10} {:>9}",
            "setting",
            "passes",
            "images/s",
            "vs dense"
        );
        let dense = rates[0].images_per_s;
        for r in &rates {
            crate::outln!(
                "{:<52} {:>7} {:>10.1} {:>9.3}",
                r.what,
                r.passes_per_image,
                r.images_per_s,
                r.images_per_s / dense
            );
        }
    }
    Ok(())
}

/// The cost of the reproducible mode.
fn reproducible(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        rounds,
        iterations,
        child_mode,
        ..
    } = args;
    if rounds == 0 || iterations == 0 {
        anyhow::bail!("--rounds and --iterations must be at least 1");
    }
    match child_mode {
        Some(mode) => {
            if mode == crate::bench::reproducible::Mode::Reproducible {
                crate::provenance::enter_reproducible_mode()?;
            }
            crate::bench::reproducible::measure_child(iterations);
        }
        None => {
            crate::provenance::check_cpu_for_reproducible_mode()?;
            let exe = std::env::current_exe().context("finding the sap executable")?;
            let b = crate::bench::bench_reproducible(&exe, rounds, iterations)?;
            print_reproducible_bench(&b, rounds, iterations);
        }
    }
    Ok(())
}

/// Dense and defended forward passes and FGSM.
fn defense(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        rounds, iterations, ..
    } = args;
    if rounds == 0 || iterations == 0 {
        anyhow::bail!("--rounds and --iterations must be at least 1");
    }
    print_defense_bench(rounds, iterations);
    Ok(())
}

/// Prints the reproducible mode's cost: per workload the median rates of both modes and the
/// time ratio's median and range over the rounds.
fn print_reproducible_bench(b: &crate::bench::ReproducibleBench, rounds: u32, iterations: u32) {
    let p = crate::provenance::Provenance::current(1);
    crate::outln!(
        "reproducible mode vs default kernels on {} ({}; default ATen kernels: {}), 1 torch \
         thread, {iterations} batches (DDQN MLP: {} updates) per workload, {rounds} rounds, \
         each a child process per mode",
        p.cpu,
        p.cpu_features,
        p.aten_cpu_capability,
        iterations * 4
    );
    crate::outln!(
        "{:<58} {:>10} {:>12} {:>9} {:>17}",
        "workload (items/s: images or updates)",
        "default",
        "reproducible",
        "time x",
        "range over rounds"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    for (w, ratios) in b.time_ratios().into_iter().enumerate() {
        let d = median(b.default.iter().map(|r| r[w]).collect());
        let r = median(b.reproducible.iter().map(|r| r[w]).collect());
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        crate::outln!(
            "{:<58} {:>10.1} {:>12.1} {:>9.3} {:>8.3}..{:<8.3}",
            crate::bench::reproducible::WORKLOADS[w],
            d,
            r,
            median(ratios),
            lo,
            hi
        );
    }
    crate::outln!("time x = reproducible time / default time, median over rounds (> 1: slower)");
}

fn print_ddqn_bench(b: &crate::bench::DdqnBench) {
    let c = &b.config;
    crate::outln!(
        "Double DQN on Pong (dopamine-v5), Nature CNN, batch 32, 1 update per 4 agent steps, \
         CPU; {} actors x {} envs, {} learner torch threads, 1 per actor",
        c.actors,
        c.envs_per_actor,
        c.learner_threads
    );
    crate::outln!("{:<44} {:>12}", "measurement", "rate");
    for (what, v) in [
        ("learner only, updates/s", b.learner_updates_per_s),
        (
            "actors only (local copies), agent steps/s",
            b.actor_steps_per_s,
        ),
        (
            "actors only (batched inference), steps/s",
            b.batched_inference_steps_per_s,
        ),
        ("end to end, agent steps/s", b.end_to_end_steps_per_s),
    ] {
        crate::outln!("{what:<44} {v:>12.1}");
    }
    crate::outln!(
        "end-to-end / (4 x learner-only) = {:.3}   (target >= 0.85: the learner is never \
         starved)",
        b.ratio()
    );
    crate::outln!(
        "local copies / batched inference = {:.3}",
        b.actor_steps_per_s / b.batched_inference_steps_per_s
    );
    crate::outln!(
        "replay: {:.1} bytes per stored transition ({:.4} x one 84x84 frame)",
        b.bytes_per_transition,
        b.bytes_per_transition / 7056.0
    );
}

fn print_defense_bench(rounds: u32, iterations: u32) {
    crate::outln!(
        "defended networks on {:?}, {} torch threads, {iterations} batches x {rounds} rounds \
         (best kept)",
        tch::Device::cuda_if_available(),
        tch::get_num_threads()
    );
    crate::outln!(
        "{:<11} {:>5}  {:<42} {:>10} {:>12}",
        "network",
        "batch",
        "workload",
        "images/s",
        "time/dense"
    );
    let benches = crate::bench::bench_defense(rounds, iterations);
    for b in &benches {
        for (w, ips) in &b.rows {
            let ratio = b.time_ratio(*w).map_or("-".into(), |r| format!("{r:.3}"));
            crate::outln!(
                "{:<11} {:>5}  {:<42} {:>10.1} {:>12}",
                b.arch.name(),
                b.batch,
                w.label(),
                ips,
                ratio
            );
        }
    }
    use crate::bench::defense::APGD_SAMPLES;
    for b in &benches {
        let sap = crate::defense::Defense::SAP_100;
        if let Some(ips) = b.apgd_images_per_s(sap, APGD_SAMPLES, 100) {
            crate::outln!(
                "{} batch {}: APGD-CE on SAP-100, {APGD_SAMPLES} EOT samples, 100 iterations \
                 (AutoAttack's rand version): {ips:.3} images/s, from the one-iteration row",
                b.arch.name(),
                b.batch
            );
        }
    }
    crate::outln!(
        "targets: SAP-100 exact forward time/dense <= 2.0; independent <= 1.5 (host sampler; \
         the tensor-op rows show the path an accelerator takes, measured here on the CPU)"
    );
    print_reference(&benches, rounds, iterations);
}

/// PyTorch's exact SAP-100 on the same networks and batches, run right after ours, and the
/// ratios side by side.
fn print_reference(benches: &[crate::bench::DefenseBench], rounds: u32, iterations: u32) {
    use crate::defense::Defense;
    let threads = tch::get_num_threads();
    let reference = match crate::bench::pytorch_reference(rounds, iterations, threads) {
        Ok(r) => r,
        Err(e) => {
            crate::outln!("PyTorch reference skipped: {e:#}");
            return;
        }
    };
    crate::outln!(
        "\nPyTorch reference (scripts/sap_reference.py: torch.multinomial per example), same \
         networks, batches and threads"
    );
    crate::outln!(
        "{:<11} {:>5}  {:>14} {:>14} {:>18} {:>16}",
        "network",
        "batch",
        "torch dense/s",
        "torch sap/s",
        "torch sap/dense",
        "ours/torch time"
    );
    for r in &reference {
        let ours = benches
            .iter()
            .find(|b| b.arch.name() == r.network && b.batch == r.batch);
        let ours_sap = ours.and_then(|b| {
            b.rows
                .iter()
                .find(|(w, _)| *w == crate::bench::defense::Workload::Forward(Defense::SAP_100))
                .map(|x| x.1)
        });
        crate::outln!(
            "{:<11} {:>5}  {:>14.1} {:>14.1} {:>18.3} {:>16}",
            r.network,
            r.batch,
            r.dense,
            r.sap,
            r.dense / r.sap,
            ours_sap.map_or("-".into(), |o| format!("{:.3}", r.sap / o))
        );
    }
    if let Some(r) = reference.first() {
        crate::outln!("(torch {}, {} threads)", r.torch, r.threads);
    }
}
