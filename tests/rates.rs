//! `sap plan`'s CPU-time estimates: each cell's CPU seconds from the rates `sap bench
//! rates` saves, checked against the cost model worked by hand on round numbers.

use sap_harness::bench::rates::{Cost, NetworkCosts, Rates};
use sap_harness::manifest::{CellKind, Manifest, PlanCell};

/// Rates with round numbers: 0.1 ms per frame; every Nature CNN forward 1 ms per call and
/// 1 ms per row, every gradient 2 ms per call and 3 ms per row.
fn rates() -> Rates {
    let forward = Cost {
        fixed_s: 1e-3,
        per_row_s: 1e-3,
    };
    let gradient = Cost {
        fixed_s: 2e-3,
        per_row_s: 3e-3,
    };
    let net = NetworkCosts {
        batch: 32,
        dense_forward: forward,
        dense_gradient: gradient,
        sap_forward: forward,
        sap_gradient: gradient,
        other_forward: forward,
        other_gradient: gradient,
        train: gradient,
    };
    Rates {
        measured: "2026-01-01 00:00 UTC".into(),
        cpu: "test CPU".into(),
        emulator_frame_s: 1e-4,
        nature_cnn: net,
        resnet20: net,
    }
}

/// An agent grid on Pong (frame skip 4, 1000-frame cap): 4 episodes, SAP-100 under FGSM
/// with 2 gradient samples at lambda 8, `parallel_episodes` as given.
fn plan(parallel: u32) -> Vec<PlanCell> {
    let text = format!(
        r#"name = "estimate"
seed = 1

[[eval]]
policy = "agent"
family = "atari"
checkpoints = {{ Pong = "pong.safetensors" }}
preset = "dopamine-v5"
episodes = 4
random_episodes = 3
samples = 1
parallel_episodes = {parallel}
defenses = [{{ kind = "sap", frac = 1.0 }}]
attacks = [{{ kind = "fgsm", gradient_samples = 2 }}]
lambdas = [8]

[eval.env]
max_episode_frames = 1000

[[robustness]]
task = "glyphs"
defenses = [{{ kind = "dense" }}]
attack = {{ kind = "fgsm" }}
lambdas = [1]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(&path, text).unwrap();
    let (m, _missing_checkpoint) = Manifest::load_for_plan(&path).unwrap();
    m.plan()
}

fn attacked_sap_cell(plan: &[PlanCell]) -> &PlanCell {
    plan.iter()
        .find(|c| matches!(&c.kind, CellKind::Agent(a) if a.condition.defense.is_stochastic()))
        .expect("a SAP agent cell")
}

#[test]
fn an_agent_cell_costs_its_frames_its_two_predictions_and_its_attack_per_step() {
    let plan = plan(1);
    let cell = attacked_sap_cell(&plan);
    // 4 episodes x 1000 frames / frame skip 4 = 1000 agent steps, one episode at a time.
    // Per step: 4 frames (0.4 ms); a prediction for the label and one for the action, each
    // a call of 1 row (2 x 2 ms); 2 gradient passes of 1 row stacked into one call
    // (2 ms + 2 x 3 ms). 12.4 ms per step.
    let s = rates().cpu_seconds(cell).unwrap();
    assert!((s - 12.4).abs() < 1e-9, "{s}");
}

#[test]
fn episodes_in_lockstep_share_the_fixed_cost_of_each_call() {
    let plan = plan(4);
    let cell = attacked_sap_cell(&plan);
    // 250 steps of 4 episodes. Per step: 16 frames (1.6 ms); 2 predictions of 4 rows
    // (2 x 5 ms); 2 gradient passes of 4 rows in one call (2 ms + 8 x 3 ms). 37.6 ms.
    let s = rates().cpu_seconds(cell).unwrap();
    assert!((s - 9.4).abs() < 1e-9, "{s}");
}

#[test]
fn random_episodes_cost_their_frames_and_glyph_classifiers_have_no_estimate() {
    let plan = plan(1);
    let random = plan
        .iter()
        .find(|c| matches!(c.kind, CellKind::Episodes(_)))
        .unwrap();
    // 3 episodes of at most 1000 frames at 0.1 ms.
    let s = rates().cpu_seconds(random).unwrap();
    assert!((s - 0.3).abs() < 1e-9, "{s}");
    let glyphs = plan
        .iter()
        .find(|c| matches!(c.kind, CellKind::Robustness { .. }))
        .unwrap();
    assert_eq!(rates().cpu_seconds(glyphs), None);
}

#[test]
fn saved_rates_load_back_and_a_damaged_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache/rates.toml");
    rates().save(&path).unwrap();
    assert_eq!(Rates::load(&path).unwrap(), rates());
    std::fs::write(&path, "measured = 3\n").unwrap();
    let err = format!("{:#}", Rates::load(&path).unwrap_err());
    assert!(
        err.contains(&path.display().to_string()) && err.contains("sap bench rates"),
        "{err}"
    );
}
