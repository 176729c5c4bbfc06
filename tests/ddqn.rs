//! Double DQN pieces on hand-built data: replay stacks at episode boundaries, the target
//! formula, the optimisers against their formulas, and a checkpoint round trip.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sap_harness::nn::{Architecture, MlpConfig};
use sap_harness::rl::{
    double_dqn_targets, Batch, DoubleDqn, Exploration, LinearSchedule, Loss, Optimizer,
    OptimizerConfig, Replay,
};
use tch::{Kind, Tensor};

/// A sampled transition: (state stack, action, reward, next stack, done).
type Transition = (Vec<u8>, i64, f32, Vec<u8>, f32);

/// Frames are one value long: the value names the frame, so stacks can be read by eye.
fn sample_all(replay: &Replay<u8>, n: usize) -> Vec<Transition> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut b = Batch::default();
    replay.sample(n, &mut rng, &mut b);
    let s = replay.stack();
    let mut out: Vec<_> = (0..b.len())
        .map(|i| {
            (
                b.states[i * s..(i + 1) * s].to_vec(),
                b.actions[i],
                b.rewards[i],
                b.next_states[i * s..(i + 1) * s].to_vec(),
                b.dones[i],
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.3.cmp(&b.3)));
    out.dedup();
    out
}

#[test]
fn replay_stacks_never_reach_across_an_episode_boundary() {
    let mut r = Replay::<u8>::new(100, 1, 1, 4).unwrap();
    // Episode A: frames 1, 2, 3; terminated on the second step.
    r.begin_episode(0, &[1]);
    r.record_step(0, 0, 0.5, false, &[2]);
    r.record_step(0, 1, 1.0, true, &[3]);
    // Episode B: frames 10, 11, 12, 13, 14, 15; the last step truncated (not terminated).
    r.begin_episode(0, &[10]);
    for (k, f) in (11..=15).enumerate() {
        r.record_step(0, k as u8, -1.0, false, &[f]);
    }
    let all = sample_all(&r, 2000);
    let expected = vec![
        (vec![0, 0, 0, 1], 0, 0.5, vec![0, 0, 1, 2], 0.0),
        (vec![0, 0, 1, 2], 1, 1.0, vec![0, 1, 2, 3], 1.0),
        (vec![0, 0, 0, 10], 0, -1.0, vec![0, 0, 10, 11], 0.0),
        (vec![0, 0, 10, 11], 1, -1.0, vec![0, 10, 11, 12], 0.0),
        (vec![0, 10, 11, 12], 2, -1.0, vec![10, 11, 12, 13], 0.0),
        (vec![10, 11, 12, 13], 3, -1.0, vec![11, 12, 13, 14], 0.0),
        // Truncated: done stays 0 so the learner bootstraps from frame 15's stack.
        (vec![11, 12, 13, 14], 4, -1.0, vec![12, 13, 14, 15], 0.0),
    ];
    let mut expected = expected;
    expected.sort_by(|a, b| a.0.cmp(&b.0).then(a.3.cmp(&b.3)));
    assert_eq!(all, expected);
    assert_eq!(r.transitions(), 7);
    assert_eq!(r.slots(), 9);
}

#[test]
fn replay_of_atari_frames_costs_at_most_five_percent_over_one_frame_per_transition() {
    let frame = vec![7u8; 84 * 84];
    let capacity = 20_000;
    let mut r = Replay::<u8>::new(capacity, 2, 84 * 84, 4).unwrap();
    // Fill past capacity with 500-step episodes on both streams.
    for stream in 0..2 {
        for _ in 0..(capacity / 2 / 500 + 2) {
            r.begin_episode(stream, &frame);
            for _ in 0..499 {
                r.record_step(stream, 1, 0.0, false, &frame);
            }
            r.record_step(stream, 1, 0.0, true, &frame);
        }
    }
    let per_transition = r.bytes() as f64 / r.transitions() as f64;
    assert!(
        per_transition <= 1.05 * 7056.0,
        "{per_transition:.1} bytes per transition"
    );
    assert_eq!(r.slots(), capacity);
}

#[test]
fn uniform_sampling_visits_every_transition_about_equally() {
    // Two streams with different episode lengths; 30 transitions in all.
    let mut r = Replay::<u8>::new(200, 2, 1, 2).unwrap();
    r.begin_episode(0, &[0]);
    for f in 1..=20u8 {
        r.record_step(0, 0, f as f32, f % 5 == 0, &[f]);
        if f % 5 == 0 && f < 20 {
            r.begin_episode(0, &[100 + f]);
        }
    }
    r.begin_episode(1, &[200]);
    for f in 1..=10u8 {
        r.record_step(1, 0, 1000.0 + f as f32, false, &[200 + f]);
    }
    assert_eq!(r.transitions(), 30);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut b = Batch::default();
    let n = 60_000;
    r.sample(n, &mut rng, &mut b);
    let mut counts = std::collections::BTreeMap::new();
    for &rew in &b.rewards {
        *counts.entry(rew as i64).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 30);
    // Each count is Binomial(60000, 1/30): mean 2000, sd 44.0; 5 sd = 220.
    for (reward, c) in counts {
        assert!((c as f64 - 2000.0).abs() < 220.0, "reward {reward}: {c}");
    }
}

#[test]
fn double_dqn_targets_use_the_online_argmax_and_the_target_value() {
    // Online prefers action 1 in the first row and action 0 in the second; the target
    // network disagrees, so a plain DQN target (max of target) would differ.
    let q_online = Tensor::from_slice(&[1.0f32, 3.0, 5.0, 2.0]).view([2, 2]);
    let q_target = Tensor::from_slice(&[10.0f32, 4.0, 7.0, 20.0]).view([2, 2]);
    let rewards = Tensor::from_slice(&[1.0f32, -1.0]);
    let dones = Tensor::from_slice(&[0.0f32, 0.0]);
    let y = double_dqn_targets(&q_online, &q_target, &rewards, &dones, 0.5);
    // y0 = 1 + 0.5 * Q_target(s', 1) = 1 + 2 = 3;  y1 = -1 + 0.5 * Q_target(s', 0) = 2.5
    assert_eq!(Vec::<f32>::try_from(&y).unwrap(), vec![3.0, 2.5]);
    let dones = Tensor::from_slice(&[1.0f32, 0.0]);
    let y = double_dqn_targets(&q_online, &q_target, &rewards, &dones, 0.5);
    assert_eq!(Vec::<f32>::try_from(&y).unwrap(), vec![1.0, 2.5]);
}

#[test]
fn epsilon_schedules_take_their_documented_values() {
    let v5 = LinearSchedule {
        start: 1.0,
        end: 0.01,
        decay_steps: 250_000,
    };
    assert_eq!(v5.value(0), 1.0);
    assert!((v5.value(25_000) - 0.901).abs() < 1e-12);
    assert_eq!(v5.value(250_000), 0.01);
    let nature = Exploration::Linear(LinearSchedule {
        start: 1.0,
        end: 0.1,
        decay_steps: 1_000_000,
    });
    assert!((nature.epsilon(3, 8, 500_000) - 0.55).abs() < 1e-12);
    let apex = Exploration::Apex {
        base: 0.4,
        alpha: 7.0,
    };
    // Slot 2 of 3: 0.4^(1 + 7 * 2/2) = 0.4^8.
    assert!((apex.epsilon(2, 3, 0) - 0.4f64.powi(8)).abs() < 1e-15);
}

/// One scalar parameter with gradient `g` at each step, through our optimiser.
fn trajectory(config: OptimizerConfig, grads: &[f64]) -> Vec<f64> {
    let p = Tensor::from_slice(&[0.5f64]).set_requires_grad(true);
    let mut opt = Optimizer::new(config, vec![("p".into(), p.shallow_clone())]);
    grads
        .iter()
        .map(|&g| {
            // loss = g * p has gradient g.
            (&p * g).sum(Kind::Double).backward();
            opt.step();
            p.double_value(&[0])
        })
        .collect()
}

#[test]
fn adam_and_centered_rmsprop_follow_their_formulas_step_by_step() {
    let grads = [0.3, -1.2, 0.7, 2.0];
    let (lr, eps, b1, b2): (f64, f64, f64, f64) = (0.01, 1e-3, 0.9, 0.999);
    let (mut p, mut m, mut v) = (0.5, 0.0, 0.0);
    let mut expected = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let mh = m / (1.0 - b1.powi(t as i32 + 1));
        let vh = v / (1.0 - b2.powi(t as i32 + 1));
        p -= lr * mh / (vh.sqrt() + eps);
        expected.push(p);
    }
    let adam = OptimizerConfig::Adam {
        lr,
        eps,
        beta1: b1,
        beta2: b2,
    };
    for (a, e) in trajectory(adam, &grads).iter().zip(&expected) {
        assert!((a - e).abs() < 1e-12, "adam {a} vs {e}");
    }
    let (lr, d, eps): (f64, f64, f64) = (2.5e-4, 0.95, 0.01);
    let (mut p, mut ms, mut mg): (f64, f64, f64) = (0.5, 0.0, 0.0);
    let mut expected = Vec::new();
    for g in grads {
        ms = d * ms + (1.0 - d) * g * g;
        mg = d * mg + (1.0 - d) * g;
        p -= lr * g / (ms - mg * mg + eps).sqrt();
        expected.push(p);
    }
    let rms = OptimizerConfig::RmsProp { lr, decay: d, eps };
    for (a, e) in trajectory(rms, &grads).iter().zip(&expected) {
        assert!((a - e).abs() < 1e-12, "rmsprop {a} vs {e}");
    }
}

#[test]
fn adam_on_large_f32_parameters_follows_its_formula_in_every_piece() {
    // f32 CPU parameters take the one-pass host path, split in pieces over the threads:
    // 200,001 values (four pieces, the last short), each its own gradient, three steps,
    // against the formula in f64. f32 rounding of a few operations per step stays far
    // below the 1e-5 relative tolerance; a wrong piece or a skipped moment update does not.
    let n = 200_001usize;
    let (lr, eps, b1, b2): (f64, f64, f64, f64) = (0.01, 1e-3, 0.9, 0.999);
    let adam = OptimizerConfig::Adam {
        lr,
        eps,
        beta1: b1,
        beta2: b2,
    };
    let start: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    let p = Tensor::from_slice(&start).set_requires_grad(true);
    let mut opt = Optimizer::new(adam, vec![("p".into(), p.shallow_clone())]);
    let grad = |t: usize, i: usize| ((i * 31 + t * 7) % 101) as f64 / 25.0 - 2.0;
    let mut want: Vec<f64> = start.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0f64; n], vec![0f64; n]);
    for t in 0..3 {
        let g: Vec<f32> = (0..n).map(|i| grad(t, i) as f32).collect();
        // loss = sum(g * p) has gradient g.
        (&p * Tensor::from_slice(&g)).sum(Kind::Float).backward();
        opt.step();
        for i in 0..n {
            let g = g[i] as f64;
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let mh = m[i] / (1.0 - b1.powi(t as i32 + 1));
            let vh = v[i] / (1.0 - b2.powi(t as i32 + 1));
            want[i] -= lr * mh / (vh.sqrt() + eps);
        }
    }
    let got = Vec::<f32>::try_from(&p.detach()).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&a, &e)| (a as f64 - e).abs() / e.abs().max(1e-2))
        .fold(0f64, f64::max);
    assert!(worst < 1e-5, "largest relative error {worst}");
    // The gradients were zeroed after the step.
    assert_eq!(p.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
}

fn learner(seed: u64, optimizer: OptimizerConfig) -> DoubleDqn {
    let arch = Architecture::Mlp(MlpConfig {
        inputs: 3,
        hidden: vec![8, 8],
        outputs: 2,
        input_scale: 1.0,
    });
    DoubleDqn::new(arch, tch::Device::Cpu, optimizer, 0.99, Loss::Huber, seed)
}

fn batch(seed: u64) -> Batch<f32> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = Batch::default();
    for _ in 0..16 {
        b.states.extend((0..3).map(|_| rng.gen_range(-1.0f32..1.0)));
        b.next_states
            .extend((0..3).map(|_| rng.gen_range(-1.0f32..1.0)));
        b.actions.push(rng.gen_range(0..2));
        b.rewards.push(rng.gen_range(-1.0f32..1.0));
        b.dones.push(if rng.gen_bool(0.2) { 1.0 } else { 0.0 });
    }
    b
}

fn params(d: &DoubleDqn) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = d
        .state()
        .into_iter()
        .filter(|(k, _)| k.starts_with("online.") || k.starts_with("target."))
        .map(|(k, t)| (k, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_checkpoint_round_trip_gives_the_identical_next_update() {
    for optimizer in [
        OptimizerConfig::Adam {
            lr: 1e-2,
            eps: 1.5e-4,
            beta1: 0.9,
            beta2: 0.999,
        },
        OptimizerConfig::RmsProp {
            lr: 1e-2,
            decay: 0.95,
            eps: 0.01,
        },
    ] {
        let mut a = learner(1, optimizer);
        for k in 0..5 {
            a.update(&batch(k));
        }
        a.sync_target();
        a.update(&batch(5));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.safetensors");
        Tensor::write_safetensors(&a.state(), &path).unwrap();
        // Different initial weights, then the checkpoint.
        let mut b = learner(2, optimizer);
        b.load_state(&Tensor::read_safetensors(&path).unwrap())
            .unwrap();
        assert_eq!(b.updates(), 6);
        let next = batch(99);
        let sa = a.update(&next);
        let sb = b.update(&next);
        assert_eq!(sa, sb, "{}", optimizer.name());
        assert_eq!(params(&a), params(&b), "{}", optimizer.name());
    }
}

#[test]
fn a_checkpoint_of_another_network_is_refused_naming_the_tensor() {
    let adam = OptimizerConfig::Adam {
        lr: 1e-3,
        eps: 1e-8,
        beta1: 0.9,
        beta2: 0.999,
    };
    let a = learner(1, adam);
    let other = DoubleDqn::new(
        Architecture::Mlp(MlpConfig {
            inputs: 3,
            hidden: vec![4],
            outputs: 2,
            input_scale: 1.0,
        }),
        tch::Device::Cpu,
        adam,
        0.99,
        Loss::Huber,
        1,
    );
    let mut b = learner(2, adam);
    let err = b.load_state(&other.state()).unwrap_err();
    assert_eq!(
        err,
        sap_harness::rl::StateError::Shape {
            key: "online.hidden.0.bias".into(),
            found: vec![4],
            expected: vec![8],
        }
    );
    assert!(err.to_string().contains("online.hidden.0.bias"), "{err}");
    drop(a);
}

#[test]
fn an_update_leaves_the_target_networks_batch_norm_statistics_untouched() {
    // ResNet-20 has batch norm: a forward in training mode would move its running
    // statistics, so the target network would no longer be a frozen copy.
    let adam = OptimizerConfig::Adam {
        lr: 1e-3,
        eps: 1e-8,
        beta1: 0.9,
        beta2: 0.999,
    };
    let arch = Architecture::ResNet20 { classes: 3 };
    let mut d = DoubleDqn::new(arch, tch::Device::Cpu, adam, 0.99, Loss::Huber, 4);
    let stats = |m: &sap_harness::nn::Model| -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<(String, Vec<f32>)> =
            m.vs.variables()
                .into_iter()
                .filter(|(k, _)| k.contains("running_"))
                .map(|(k, t)| (k, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
                .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = stats(&d.target);
    assert!(!before.is_empty(), "ResNet-20 has batch-norm statistics");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut b = Batch::default();
    for _ in 0..4 {
        use rand::Rng;
        b.states
            .extend((0..3 * 32 * 32).map(|_| rng.gen_range(0.0f32..255.0)));
        b.next_states
            .extend((0..3 * 32 * 32).map(|_| rng.gen_range(0.0f32..255.0)));
        b.actions.push(rng.gen_range(0..3));
        b.rewards.push(1.0);
        b.dones.push(0.0);
    }
    d.update(&b);
    assert_eq!(stats(&d.target), before);
}
