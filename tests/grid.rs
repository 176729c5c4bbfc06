//! The Atari robustness grid through the real `sap` binary: agent cells, the random
//! baseline, relative rewards, `--jobs`, kill and resume, failing cells.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_same_files, ok, random_network, run, sap, text, TRAINED_GRID};
use sap_harness::defense::Sampling;
use sap_harness::record::read_rows;
use sap_harness::table::{AgentRow, AttackName, DefenseKind, EpisodeRow, RelativeRow};
use sap_harness::video;

/// A grid over networks from files: Pong (6 actions) and Breakout (4), 3 episodes of at
/// most 400 frames per cell, dense and SAP-100 under FGSM at lambda 0 and 8.
fn file_grid(dir: &Path, extra: &str) -> PathBuf {
    random_network(&dir.join("pong.safetensors"), 6, 1);
    random_network(&dir.join("breakout.safetensors"), 4, 2);
    let text = format!(
        r#"name = "filegrid"
seed = 5

[[eval]]
name = "grid"
policy = "agent"
family = "atari"
checkpoints = {{ Pong = "pong.safetensors", Breakout = "breakout.safetensors" }}
episodes = 3
samples = 2
random_episodes = 2
defenses = [{{ kind = "dense" }}, {{ kind = "sap", frac = 1.0 }}]
attacks = [{{ kind = "fgsm", gradient_samples = 2 }}]
lambdas = [0, 8]
{extra}
[eval.env]
max_episode_frames = 400
"#
    );
    let path = dir.join("grid.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_grid_after_training_writes_one_row_per_episode_and_relative_rewards_per_cell() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.toml"), TRAINED_GRID).unwrap();
    let plan = ok(&["plan", "m.toml"], tmp.path());
    // 2 training cells, 2 random baselines, and per game the dense clean reference the
    // grid lacks plus SAP-100 at lambda 4; agents wait for their training cell.
    assert!(
        plan.contains("8 cells: 2 training (<= 8800 frames), 6 evaluation (<= 8400 frames"),
        "{plan}"
    );
    assert!(
        plan.contains("agent-004-Pong-t3-dense-none-l0-s3") && plan.contains("(after 0)"),
        "{plan}"
    );
    let stdout = ok(
        &["run", "m.toml", "--jobs", "2", "--run-id", "r"],
        tmp.path(),
    );
    assert!(
        stdout.contains("8 cells run, 0 already complete, 0 failed"),
        "{stdout}"
    );
    let dir = tmp.path().join("results/trained/r");

    let header = text(&dir.join("rl_eval.csv"))
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        header,
        "job,game,preset,checkpoint,train_seed,eval_seed,defense,frac,sampling,p,sigma,attack,\
         lambda,steps,step_size,random_start,restarts,loss,backward,source,source_checkpoint,\
         gradient_samples,samples,epsilon,max_episode_frames,episode,return,frames,agent_steps,\
         truncated"
    );
    let rows: Vec<AgentRow> = read_rows(&dir.join("rl_eval.csv")).unwrap();
    assert_eq!(rows.len(), 4 * 2, "4 agent cells x 2 episodes");
    let first = &rows[0];
    assert_eq!(
        (
            first.job.as_str(),
            first.game.as_str(),
            first.preset.as_str()
        ),
        ("eval0", "Pong", "dopamine-v5")
    );
    assert_eq!(
        first.checkpoint,
        "cells/train-000-Pong-dopamine-v5-s3/final.safetensors"
    );
    assert_eq!((first.train_seed, first.eval_seed), (Some(3), 3));
    assert_eq!(
        (first.treatment.defense, first.treatment.attack),
        (DefenseKind::Dense, AttackName::None)
    );
    assert_eq!((first.epsilon, first.max_episode_frames), (0.001, 600));
    let sap = &rows[2];
    assert_eq!(
        (
            sap.treatment.defense,
            sap.treatment.frac,
            sap.treatment.sampling
        ),
        (DefenseKind::Sap, Some(1.0), Some(Sampling::Exact))
    );
    let t = &sap.treatment;
    assert_eq!((t.attack, t.lambda), (AttackName::Fgsm, 4.0));
    assert_eq!((t.gradient_samples, t.samples), (Some(2), 2));
    assert_eq!(
        first.treatment.gradient_samples, None,
        "no attack, no gradient"
    );
    assert!(rows
        .iter()
        .all(|r| r.frames <= 600 && r.agent_steps * 4 == r.frames));

    // Relative rewards: recomputed here from the episode rows and the random baseline.
    let random: Vec<EpisodeRow> = read_rows(&dir.join("episodes.csv")).unwrap();
    assert_eq!(random.len(), 2 * 3);
    let relative: Vec<RelativeRow> = read_rows(&dir.join("relative_reward.csv")).unwrap();
    assert_eq!(relative.len(), 4);
    for r in &relative {
        let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len() as f64;
        let group = |d: DefenseKind, l: f64| -> Vec<f64> {
            rows.iter()
                .filter(|x| x.game == r.game && x.treatment.defense == d && x.treatment.lambda == l)
                .map(|x| x.episode_return)
                .collect()
        };
        let dense = mean(group(DefenseKind::Dense, 0.0));
        let own = mean(group(r.treatment.defense, r.treatment.lambda));
        let rand = mean(
            random
                .iter()
                .filter(|e| e.game == r.game)
                .map(|e| e.episode_return)
                .collect(),
        );
        assert_eq!((r.n, r.networks, r.eval_seeds, r.random_n), (2, 1, 1, 3));
        assert_eq!(r.mean, own);
        assert_eq!(r.dense_clean_mean, Some(dense));
        assert_eq!(r.random_mean, Some(rand));
        assert_eq!(r.relative_reward, (dense != 0.0).then(|| own / dense));
        assert_eq!(
            r.normalized_reward,
            // Meaningless, so empty, unless the dense agent beats the random policy.
            (dense > rand).then(|| (own - rand) / (dense - rand))
        );
    }
    // The training tables are collected too.
    assert!(text(&dir.join("train.csv")).lines().count() > 1);

    // The report: both plots per game in PNG and SVG with labelled axes, and the tables.
    let dir_arg = dir.to_str().unwrap().to_owned();
    let listing = ok(&["report", &dir_arg], tmp.path());
    let report = dir.join("report");
    for base in [
        "relative_reward-eval0-Pong-fgsm",
        "learning-Pong-dopamine-v5",
        "learning-Breakout-dopamine-v5",
    ] {
        assert!(listing.contains(&format!("{base}.png")), "{listing}");
        let png = std::fs::read(report.join(format!("{base}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{base}.png");
        assert!(png.len() > 10_000, "{base}.png has {} bytes", png.len());
    }
    let svg = text(&report.join("relative_reward-eval0-Pong-fgsm.svg"));
    assert!(svg.contains("lambda (L-inf radius, pixel units 0..255)"));
    assert!(svg.contains("relative reward (mean / dense clean mean)"));
    assert!(
        svg.contains("\nsap-100\n") && svg.contains("\ndense\n"),
        "legend"
    );
    let svg = text(&report.join("learning-Pong-dopamine-v5.svg"));
    assert!(svg.contains("emulator frames (thousands)") && svg.contains("return per game"));
    let md = text(&report.join("report.md"));
    assert!(md.contains("| defense | lambda | n | mean return | 95% CI | relative | normalised |"));
    assert!(
        md.contains("![Pong (dopamine-v5): relative reward under fgsm]"),
        "{md}"
    );
}

/// Runs nine Breakout episodes of at most 1000 frames under SAP-100 and FGSM with
/// `parallel` episodes in lockstep and exploration `epsilon`; returns the run's rows.
fn lockstep_run(dir: &Path, parallel: u32, epsilon: f64) -> (String, String) {
    let text = format!(
        r#"name = "lockstep"
seed = 9

[[eval]]
policy = "agent"
family = "atari"
checkpoints = {{ Breakout = "breakout.safetensors" }}
episodes = 9
samples = 2
epsilon = {epsilon}
random_episodes = 1
parallel_episodes = {parallel}
defenses = [{{ kind = "sap", frac = 1.0 }}]
attacks = [{{ kind = "fgsm", gradient_samples = 2 }}]
lambdas = [8]

[eval.env]
max_episode_frames = 1000
"#
    );
    let id = format!("p{parallel}-e{epsilon}");
    std::fs::write(dir.join(format!("{id}.toml")), text).unwrap();
    ok(&["run", &format!("{id}.toml"), "--run-id", &id], dir);
    text_of_rows(&dir.join("results/lockstep").join(&id))
}

#[test]
fn episodes_in_lockstep_keep_their_own_starts_and_draws_and_are_written_in_order() {
    // With every action exploring (epsilon 1), an episode's row depends on its start and
    // exploration draws alone, which must not depend on the episodes beside it. (With
    // greedy actions, kernels that round differently at other batch sizes may flip one, and
    // with it the rest of the episode: the README says why parallel_episodes defaults to 1.)
    // Breakout ends when the lives are gone, so an episode's frames follow its actions.
    let tmp = tempfile::tempdir().unwrap();
    mask_sensitive_network(&tmp.path().join("breakout.safetensors"));
    let runs: Vec<(String, String)> = [1, 3, 8]
        .iter()
        .map(|&p| lockstep_run(tmp.path(), p, 1.0))
        .collect();
    let rows: Vec<AgentRow> =
        read_rows(&tmp.path().join("results/lockstep/p1-e1/rl_eval.csv")).unwrap();
    assert_eq!(
        rows.len(),
        2 * 9,
        "the SAP cell and the dense clean reference"
    );
    let lengths: std::collections::BTreeSet<u64> = rows.iter().map(|r| r.frames).collect();
    assert!(lengths.len() > 3, "episode lengths {lengths:?}");
    assert_eq!(runs[0], runs[1], "parallel_episodes 1 and 3");
    assert_eq!(runs[0], runs[2], "parallel_episodes 1 and 8");

    // Greedy and exploring episodes mixed within a step, three at a time through batched
    // forwards and attacks: every episode once, in order, in each cell.
    lockstep_run(tmp.path(), 3, 0.2);
    let rows: Vec<AgentRow> =
        read_rows(&tmp.path().join("results/lockstep/p3-e0.2/rl_eval.csv")).unwrap();
    let episodes: Vec<u32> = rows.iter().map(|r| r.episode).collect();
    let once: Vec<u32> = (0..9).collect();
    assert_eq!(episodes, [once.clone(), once].concat());
}

/// A random Nature CNN (4 actions) without output biases, so that its greedy action follows
/// the features, and with them the SAP masks, rather than the largest bias.
fn mask_sensitive_network(path: &Path) {
    use sap_harness::nn::{checkpoint, Architecture, Model};
    use sap_harness::tch::{self, Device};
    tch::manual_seed(3);
    let model = Model::new(Architecture::NatureCnn { actions: 4 }, Device::Cpu);
    tch::no_grad(|| {
        let _ = model.vs.variables()["fc2.bias"].shallow_clone().zero_();
    });
    checkpoint::save(&model, path).unwrap();
}

/// `rl_eval.csv` and `relative_reward.csv` of a run.
fn text_of_rows(run: &Path) -> (String, String) {
    (
        text(&run.join("rl_eval.csv")),
        text(&run.join("relative_reward.csv")),
    )
}

#[test]
fn killing_the_run_mid_evaluation_and_resuming_gives_the_rows_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    // One episode at a time (the default): a cell's later episodes run after the first is
    // written, so a kill can land mid-cell.
    file_grid(tmp.path(), "");
    ok(
        &["run", "grid.toml", "--jobs", "2", "--run-id", "whole"],
        tmp.path(),
    );
    let whole = tmp.path().join("results/filegrid/whole");

    let cut = tmp.path().join("results/filegrid/cut");
    let mut child = sap(
        &["run", "grid.toml", "--jobs", "2", "--run-id", "cut"],
        tmp.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Kill the whole run (parent and, through PR_SET_PDEATHSIG, its cells) as soon as an
    // agent cell has written a row but is not complete.
    let started = Instant::now();
    let mut killed_mid_cell = false;
    while started.elapsed() < Duration::from_secs(120) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed mid-cell");
        }
        let cells = std::fs::read_dir(cut.join("cells")).into_iter().flatten();
        killed_mid_cell = cells.flatten().any(|e| {
            let rows = e.path().join("rl_eval.csv");
            !e.path().join("done.toml").exists()
                && std::fs::read_to_string(rows).is_ok_and(|t| t.lines().count() >= 2)
        });
        if killed_mid_cell {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait().unwrap();
    assert!(killed_mid_cell, "no agent cell was caught mid-way");
    std::thread::sleep(Duration::from_millis(300));

    let cut_arg = cut.to_str().unwrap().to_owned();
    let stdout = ok(
        &["run", "grid.toml", "--jobs", "2", "--resume", &cut_arg],
        tmp.path(),
    );
    assert!(!stdout.contains(" 0 already complete"), "{stdout}");
    assert_same_files(
        &cut,
        &whole,
        &[
            "rl_eval.csv",
            "relative_reward.csv",
            "episodes.csv",
            "summary.csv",
        ],
        "differs after kill and resume",
    );
    // A third call finds every cell complete and changes nothing.
    let stdout = ok(&["run", "grid.toml", "--resume", &cut_arg], tmp.path());
    assert!(
        stdout.contains("0 cells run, 10 already complete"),
        "{stdout}"
    );
    assert_eq!(
        text(&cut.join("rl_eval.csv")),
        text(&whole.join("rl_eval.csv"))
    );
}

#[test]
fn a_failing_cell_is_reported_while_the_other_cells_complete() {
    let tmp = tempfile::tempdir().unwrap();
    file_grid(tmp.path(), "");
    // Breakout's file now holds a network with Pong's 6 actions: its cells fail to load it.
    random_network(&tmp.path().join("breakout.safetensors"), 6, 3);
    let out = run(
        &["run", "grid.toml", "--jobs", "2", "--run-id", "f"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 2 baselines + 4 Pong cells complete; the 4 Breakout agent cells fail.
    assert!(
        stdout.contains("6 cells run, 0 already complete, 4 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: cell agent-")
            && stderr.contains("Breakout")
            && stderr.contains("breakout.safetensors")
            && stderr.contains("log: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("4 of 10 cells did not complete"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let rows: Vec<AgentRow> =
        read_rows(&tmp.path().join("results/filegrid/f/rl_eval.csv")).unwrap();
    assert_eq!(rows.len(), 4 * 3);
    assert!(rows.iter().all(|r| r.game == "Pong"));
}

#[test]
fn a_resume_of_a_run_directory_holding_another_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    file_grid(tmp.path(), "");
    let dir = tmp.path().join("other");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.resolved.toml"),
        "name = \"other\"\nseed = 1\n",
    )
    .unwrap();
    let out = run(&["run", "grid.toml", "--resume", "other"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a run of a different manifest"), "{err}");
    assert!(!dir.join("cells").exists());
    let out = run(&["report", "nowhere"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere is not a run directory"), "{err}");
    let out = run(&["run", "grid.toml", "--jobs", "0"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`0` is not allowed; allowed: an integer >= 1"),
        "{err}"
    );
}

/// Whether some pixel of the perturbation panel of `canvas` shows a change.
fn perturbed(canvas: &[u8]) -> bool {
    (video::TOP..video::TOP + video::PANEL).any(|y| {
        canvas[y * video::WIDTH + video::PERT_X..y * video::WIDTH + video::PERT_X + video::PANEL]
            .iter()
            .any(|&i| i != video::NO_CHANGE)
    })
}

#[test]
fn recording_writes_a_gif_per_recorded_episode_with_a_frame_per_step_and_leaves_rows_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    mask_sensitive_network(&tmp.path().join("breakout.safetensors"));
    // Exploring and greedy steps mixed, two episodes in lockstep, the first two recorded.
    let plain = lockstep_run(tmp.path(), 2, 0.2);
    let manifest = std::fs::read_to_string(tmp.path().join("p2-e0.2.toml")).unwrap();
    let recorded = manifest.replace(
        "parallel_episodes = 2\n",
        "parallel_episodes = 2\nrecord = 2\n",
    );
    std::fs::write(tmp.path().join("rec.toml"), recorded).unwrap();
    ok(&["run", "rec.toml", "--run-id", "rec"], tmp.path());
    let run = tmp.path().join("results/lockstep/rec");
    assert_eq!(text_of_rows(&run), plain, "recording changes no draw");

    let rows: Vec<AgentRow> = read_rows(&run.join("rl_eval.csv")).unwrap();
    for cell in std::fs::read_dir(run.join("cells")).unwrap() {
        let cell = cell.unwrap().path();
        let id = cell.file_name().unwrap().to_string_lossy().into_owned();
        if !id.starts_with("agent-") {
            continue;
        }
        let mut files: Vec<String> = std::fs::read_dir(&cell)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.contains("episode-"))
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["episode-0.gif", "episode-1.gif"],
            "{id}: no .tmp is left"
        );
        let attacked = id.contains("sap");
        for episode in 0..2u32 {
            let decoded = video::decode(&cell.join(format!("episode-{episode}.gif"))).unwrap();
            assert_eq!(
                (decoded.width, decoded.height),
                (video::WIDTH, video::HEIGHT)
            );
            let frames = decoded.frames;
            let row = rows
                .iter()
                .find(|r| {
                    r.episode == episode && (r.treatment.defense == DefenseKind::Sap) == attacked
                })
                .unwrap();
            assert_eq!(
                frames.len() as u64,
                row.agent_steps,
                "{id} episode {episode}: one frame per step"
            );
            let screen_colours = frames[0][video::TOP * video::WIDTH..]
                .iter()
                .filter(|&&i| i < video::GRAYS)
                .count();
            assert!(
                screen_colours > 1000,
                "{id}: the game screen is drawn in its colours"
            );
            let shown = frames.iter().filter(|f| perturbed(f)).count();
            if attacked {
                assert!(
                    shown > frames.len() / 2,
                    "{id}: {shown} of {} frames show the attack",
                    frames.len()
                );
            } else {
                assert_eq!(shown, 0, "{id}: the clean reference has no perturbation");
            }
        }
    }

    // The report links each video and writes a still of it.
    ok(&["report", "results/lockstep/rec"], tmp.path());
    let videos = run.join("report/videos");
    let mut names: Vec<String> = std::fs::read_dir(&videos)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2 * 2 * 2, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("sap-100-fgsm-l8-s9-episode-1.png")),
        "{names:?}"
    );
    let md = text(&run.join("report/report.md"));
    assert!(
        md.contains("## Recorded episodes") && md.contains("episode-1.gif"),
        "{md}"
    );
}

#[test]
fn an_agent_grid_under_adaptive_attacks_writes_every_attack_parameter_and_label() {
    use sap_harness::attack::{Backward, Loss, Source};
    let tmp = tempfile::tempdir().unwrap();
    mask_sensitive_network(&tmp.path().join("breakout.safetensors"));
    random_network(&tmp.path().join("surrogate.safetensors"), 4, 8);
    let manifest = r#"name = "adaptive"
seed = 4

[[eval]]
policy = "agent"
family = "atari"
checkpoints = { Breakout = "breakout.safetensors" }
episodes = 1
samples = 2
random_episodes = 1
defenses = [{ kind = "dense" }, { kind = "sap", frac = 1.0 }]
attacks = [
  { kind = "apgd", iterations = 2, restarts = 2, gradient_samples = 2, loss = "dlr" },
  { kind = "fgsm", backward = "identity", gradient_samples = 2 },
  { kind = "pgd", steps = 2, loss = "margin", source = "dense" },
  { kind = "fgsm", source = "checkpoint", checkpoint = "surrogate.safetensors" },
]
lambdas = [4]

[eval.env]
max_episode_frames = 200
"#;
    std::fs::write(tmp.path().join("a.toml"), manifest).unwrap();
    ok(&["run", "a.toml", "--run-id", "r"], tmp.path());
    let run_dir = tmp.path().join("results/adaptive/r");
    let rows: Vec<AgentRow> = read_rows(&run_dir.join("rl_eval.csv")).unwrap();
    let find = |defense: DefenseKind, attack: AttackName| {
        rows.iter()
            .find(|r| r.treatment.defense == defense && r.treatment.attack == attack)
            .map(|r| r.treatment.clone())
            .unwrap_or_else(|| panic!("no {defense:?} {attack:?} row"))
    };
    let apgd = find(DefenseKind::Sap, AttackName::Apgd);
    assert_eq!(
        (apgd.steps, apgd.restarts, apgd.step_size, apgd.random_start),
        (Some(2), Some(2), None, Some(true))
    );
    assert_eq!(
        (apgd.loss, apgd.backward, apgd.source, apgd.gradient_samples),
        (
            Some(Loss::Dlr),
            Some(Backward::Mask),
            Some(Source::Defended),
            Some(2)
        )
    );
    assert_eq!(apgd.attack_label(), "apgd-dlr");
    let bpda = rows
        .iter()
        .map(|r| &r.treatment)
        .find(|t| t.defense == DefenseKind::Sap && t.backward == Some(Backward::Identity))
        .unwrap()
        .clone();
    assert_eq!(bpda.attack_label(), "fgsm-bpda");
    // Against the dense network there is no stochastic point: the column stays empty.
    let dense_bpda = find(DefenseKind::Dense, AttackName::Fgsm);
    assert_eq!(
        (dense_bpda.backward, dense_bpda.gradient_samples),
        (None, Some(1))
    );
    let transfer = find(DefenseKind::Sap, AttackName::Pgd);
    assert_eq!(
        (transfer.source, transfer.loss, transfer.gradient_samples),
        (Some(Source::Dense), Some(Loss::Margin), Some(1))
    );
    assert_eq!(transfer.attack_label(), "pgd-margin-transfer");
    // One relative-reward row per (defense, attack), told apart by their labels.
    let relative: Vec<RelativeRow> = read_rows(&run_dir.join("relative_reward.csv")).unwrap();
    let mut labels: Vec<String> = relative
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.treatment.defense_label(),
                r.treatment.attack_label()
            )
        })
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            "dense apgd-dlr",
            "dense fgsm",
            "dense fgsm-from-surrogate",
            "dense none",
            "dense pgd-margin-transfer",
            "sap-100 apgd-dlr",
            "sap-100 fgsm-bpda",
            "sap-100 fgsm-from-surrogate",
            "sap-100 pgd-margin-transfer",
        ]
    );
    // Per defense, the attack of lowest mean return is marked; the clean row is not.
    for defense in ["dense", "sap-100"] {
        let attacked: Vec<&RelativeRow> = relative
            .iter()
            .filter(|r| r.treatment.defense_label() == defense && r.treatment.lambda > 0.0)
            .collect();
        let min = attacked
            .iter()
            .map(|r| r.mean)
            .fold(f64::INFINITY, f64::min);
        for r in &attacked {
            assert_eq!(r.worst_attack, Some(r.mean == min), "{defense}");
        }
    }
    let clean = relative.iter().find(|r| r.treatment.lambda == 0.0).unwrap();
    assert_eq!(clean.worst_attack, None);
    // The report puts every attack side by side per game and defense.
    ok(&["report", run_dir.to_str().unwrap()], tmp.path());
    let plots: Vec<String> = std::fs::read_dir(run_dir.join("report"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("attacks-Breakout-") && n.ends_with(".svg"))
        .collect();
    assert_eq!(plots.len(), 2, "dense and sap-100: {plots:?}");
    let svg = text(
        &run_dir
            .join("report")
            .join(plots.iter().find(|p| p.contains("sap-100")).unwrap()),
    );
    assert!(
        svg.contains("apgd-dlr") && svg.contains("fgsm-bpda"),
        "attacks plot"
    );

    // A surrogate of another architecture (Pong's six actions against Breakout's four) fails
    // its cells with one clear error naming the file.
    random_network(&tmp.path().join("surrogate.safetensors"), 6, 8);
    let out = run(&["run", "a.toml", "--run-id", "wrong"], tmp.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the transfer attack's surrogate network")
            && stderr.contains("surrogate.safetensors"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
