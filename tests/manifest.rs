//! Manifest checking: one test per error class, asserting on the message, plus expansion.

use std::path::Path;

use sap_harness::manifest::{Manifest, ManifestError};

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(Path::new("exp.toml"), text)
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("the manifest should be rejected")
        .to_string()
}

const GOOD: &str = r#"
name = "demo"
seed = 5

[[eval]]
family = "atari"
games = ["Pong", "Breakout"]
episodes = 2
seeds = [1, 2]

[[eval]]
family = "classic"
games = ["CartPole"]
episodes = 4
"#;

#[test]
fn a_good_manifest_expands_into_jobs_then_games_then_seeds() {
    let m = parse(GOOD).unwrap();
    let cells: Vec<String> = m.cells().iter().map(|c| c.id()).collect();
    assert_eq!(
        cells,
        [
            "000-Pong-dopamine-v5-random-s1",
            "001-Pong-dopamine-v5-random-s2",
            "002-Breakout-dopamine-v5-random-s1",
            "003-Breakout-dopamine-v5-random-s2",
            "004-CartPole---random-s5",
        ]
    );
}

#[test]
fn the_resolved_manifest_is_itself_a_manifest_with_the_same_meaning() {
    let m = parse(GOOD).unwrap();
    let resolved = m.to_toml();
    assert!(
        resolved.contains("repeat_action_probability = 0.25"),
        "{resolved}"
    );
    assert_eq!(parse(&resolved).unwrap(), m);
}

#[test]
fn an_unknown_key_is_named_with_its_position_and_a_suggestion() {
    let e = error(
        "name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngmes = [\"Pong\"]\nepisodes = 1\n",
    );
    assert!(e.starts_with("exp.toml:5:1: "), "{e}");
    assert!(e.contains("unknown key `gmes`"), "{e}");
    assert!(e.contains("did you mean `games`?"), "{e}");
    assert!(e.contains("allowed: `name`, `family`, `games`"), "{e}");
}

#[test]
fn a_wrong_type_names_the_key_and_the_expected_type() {
    let e = error("name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\nepisodes = \"three\"\n");
    assert!(e.starts_with("exp.toml:6:12: "), "{e}");
    assert!(e.contains("key `eval[0].episodes`"), "{e}");
    assert!(
        e.contains("invalid type: string \"three\", expected u32"),
        "{e}"
    );
}

#[test]
fn an_unknown_game_gets_a_did_you_mean() {
    let e = error("name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\", \"SpaceInvader\"]\nepisodes = 1\n");
    assert!(e.starts_with("exp.toml:5:18: "), "{e}");
    assert!(e.contains("key `eval[0].games[1]`"), "{e}");
    assert!(
        e.contains("unknown Atari game `SpaceInvader`; did you mean `SpaceInvaders`?"),
        "{e}"
    );
}

#[test]
fn a_game_of_the_other_family_says_which_family_it_belongs_to() {
    let e = error("name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"CartPole\"]\nepisodes = 1\n");
    assert!(
        e.contains("`CartPole` is not a atari game; it belongs to family \"classic\""),
        "{e}"
    );
}

#[test]
fn an_unknown_preset_lists_the_allowed_values() {
    let e = error("name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\npreset = \"dopamine\"\nepisodes = 1\n");
    assert!(e.contains("key `eval[0].preset`"), "{e}");
    assert!(e.contains("unknown value `dopamine`; allowed: `dopamine-v5`, `nature`; did you mean `dopamine-v5`?"), "{e}");
}

#[test]
fn an_out_of_range_value_states_the_allowed_range() {
    let e = error(
        "name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\nepisodes = 0\n",
    );
    assert!(
        e.starts_with("exp.toml:6:12: key `eval[0].episodes`: 0 is out of range"),
        "{e}"
    );
    assert!(e.contains("allowed: episodes in [1, 1000000]"), "{e}");
    let e = error("name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\nepisodes = 1\n[eval.env]\nrepeat_action_probability = 1.5\n");
    assert!(e.contains("key `eval[0].env.repeat_action_probability`: 1.5 is out of range; allowed: a probability in [0, 1)"), "{e}");
}

#[test]
fn a_missing_file_is_named_with_the_reason() {
    let e = Manifest::load(Path::new("no/such/manifest.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no/such/manifest.toml: cannot read the manifest:"),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
}

#[test]
fn a_missing_required_key_is_named() {
    let e = error("name = \"x\"\n[[eval]]\nfamily = \"atari\"\ngames = [\"Pong\"]\nepisodes = 1\n");
    assert!(e.contains("missing field `seed`"), "{e}");
}

#[test]
fn settings_that_only_apply_to_atari_are_refused_for_classic_games() {
    let e = error("name = \"x\"\nseed = 1\n[[eval]]\nfamily = \"classic\"\ngames = [\"CartPole\"]\npreset = \"nature\"\nepisodes = 1\n");
    assert!(
        e.contains("key `eval[0].preset`: presets apply to Atari games only"),
        "{e}"
    );
}

#[test]
fn a_toml_syntax_error_is_located() {
    let e = error("name = \"x\"\nseed = = 1\n");
    assert!(e.starts_with("exp.toml:2:"), "{e}");
}

fn robustness(defenses: &str, attack: &str, extra: &str) -> String {
    format!(
        "name = \"r\"\nseed = 1\n[[robustness]]\ntask = \"glyphs\"\ndefenses = [{defenses}]\n\
         attack = {attack}\nlambdas = [0, 4]\n{extra}\n"
    )
}

#[test]
fn robustness_jobs_resolve_defaults_and_round_trip() {
    let m = parse(&robustness(
        r#"{ kind = "dense" }, { kind = "sap", frac = 0.5 }, { kind = "gaussian", sigma = 0.2 }"#,
        r#"{ kind = "pgd", steps = 7, random_start = true, gradient_samples = 4 }"#,
        "",
    ))
    .unwrap();
    let job = &m.robustness[0];
    assert_eq!(job.hidden, vec![64, 64]);
    assert_eq!(job.seeds, vec![1]);
    assert_eq!(job.attack_at(4.0).step_size(), Some(2.5 * 4.0 / 7.0));
    assert_eq!(job.defenses[1].label(), "sap-50");
    assert_eq!(parse(&m.to_toml()).unwrap(), m);
}

#[test]
fn apgd_takes_autoattacks_rand_defaults_and_its_options_round_trip() {
    use sap_harness::attack::{AttackKind, Backward, Loss, Source};
    let m = parse(&robustness(
        r#"{ kind = "sap" }"#,
        r#"{ kind = "apgd" }"#,
        "",
    ))
    .unwrap();
    let a = m.robustness[0].attack_at(8.0);
    assert_eq!(
        a.kind,
        AttackKind::Apgd {
            iterations: 100,
            restarts: 1,
            random_start: true
        }
    );
    assert_eq!(a.gradient_samples, 20);
    assert_eq!(
        (a.loss, a.backward, a.source),
        (Loss::Ce, Backward::Mask, Source::Defended)
    );
    let written = r#"{ kind = "apgd", loss = "dlr", backward = "identity", iterations = 7, restarts = 2, gradient_samples = 3 }"#;
    let m = parse(&robustness(r#"{ kind = "sap" }"#, written, "")).unwrap();
    let a = m.robustness[0].attack_at(8.0);
    assert_eq!((a.loss, a.backward), (Loss::Dlr, Backward::Identity));
    assert_eq!(a.kind.gradient_steps(), 2 * (7 + 1));
    assert_eq!(parse(&m.to_toml()).unwrap(), m);
    let transfer = r#"{ kind = "pgd", loss = "margin", source = "dense" }"#;
    let m = parse(&robustness(r#"{ kind = "sap" }"#, transfer, "")).unwrap();
    assert_eq!(m.robustness[0].attack.source, Source::Dense);
    assert_eq!(parse(&m.to_toml()).unwrap(), m);
}

#[test]
fn out_of_range_defense_and_attack_parameters_name_their_key_and_the_allowed_values() {
    let dense = r#"{ kind = "dense" }"#;
    let fgsm = r#"{ kind = "fgsm" }"#;
    let cases = [
        (
            robustness(r#"{ kind = "sap", frac = 0.0 }"#, fgsm, ""),
            "key `robustness[0].defenses[0].frac`: sap frac = 0 is not allowed; allowed: 0 < frac <= 16",
        ),
        (
            robustness(r#"{ kind = "dropout", p = 1.0 }"#, fgsm, ""),
            "key `robustness[0].defenses[0].p`: dropout p = 1 is not allowed; allowed: 0 <= p < 1",
        ),
        (
            robustness(r#"{ kind = "gaussian", sigma = -0.5 }"#, fgsm, ""),
            "key `robustness[0].defenses[0].sigma`: gaussian sigma = -0.5 is not allowed",
        ),
        (
            robustness(dense, r#"{ kind = "pgd", steps = 0 }"#, ""),
            "key `robustness[0].attack.steps`: 0 is not allowed; allowed: an integer >= 1",
        ),
        (
            robustness(dense, fgsm, "samples = 0"),
            "key `robustness[0].samples`: 0 is not allowed; allowed: an integer >= 1",
        ),
        (
            robustness(dense, fgsm, "max_batch = 0"),
            "key `robustness[0].max_batch`: 0 is not allowed; allowed: an integer >= 1 (rows per \
             forward pass)",
        ),
        (
            robustness(dense, r#"{ kind = "fgsm", gradient_samples = 0 }"#, ""),
            "key `robustness[0].attack.gradient_samples`: 0 is not allowed",
        ),
        (
            robustness(dense, r#"{ kind = "fgsn" }"#, ""),
            "unknown attack `fgsn`; allowed: fgsm, pgd, eot-pgd, apgd; did you mean `fgsm`?",
        ),
        (
            robustness(r#"{ kind = "sap" }"#, r#"{ kind = "apgd", restarts = 0 }"#, ""),
            "key `robustness[0].attack.restarts`: 0 is not allowed; allowed: an integer >= 1",
        ),
        (
            robustness(r#"{ kind = "sap" }"#, r#"{ kind = "apgd", iterations = 0 }"#, ""),
            "key `robustness[0].attack.iterations`: 0 is not allowed; allowed: an integer >= 1",
        ),
        (
            robustness(dense, r#"{ kind = "apgd", steps = 10 }"#, ""),
            "key `robustness[0].attack.steps`: `steps` is not a parameter of apgd; apgd takes \
             iterations, restarts, random_start",
        ),
        (
            robustness(dense, r#"{ kind = "pgd", loss = "cw" }"#, ""),
            "key `robustness[0].attack.loss`: unknown loss `cw`; allowed: ce, margin, dlr",
        ),
        (
            robustness(dense, r#"{ kind = "apgd", backward = "identity" }"#, ""),
            "key `robustness[0].attack.backward`: backward = \"identity\" needs a defense with a \
             stochastic point",
        ),
        (
            robustness(dense, r#"{ kind = "fgsm", source = "dense" }"#, ""),
            "key `robustness[0].attack.source`: source = \"dense\" transfers a perturbation",
        ),
        (
            robustness(
                r#"{ kind = "sap" }"#,
                r#"{ kind = "fgsm", source = "dense", backward = "identity" }"#,
                "",
            ),
            "key `robustness[0].attack.backward`: backward = \"identity\" differentiates",
        ),
        (
            robustness(dense, r#"{ kind = "fgsm", source = "checkpoint" }"#, ""),
            "key `robustness[0].attack.source`: source = \"checkpoint\" needs `checkpoint`",
        ),
        (
            robustness(dense, r#"{ kind = "fgsm", checkpoint = "net.safetensors" }"#, ""),
            "key `robustness[0].attack.checkpoint`: `checkpoint` names a transfer attack's \
             surrogate network; it goes with source = \"checkpoint\"",
        ),
        (
            robustness(
                dense,
                r#"{ kind = "fgsm", source = "checkpoint", checkpoint = "nowhere.safetensors" }"#,
                "",
            ),
            "key `robustness[0].attack.checkpoint`",
        ),
        (
            robustness(dense, r#"{ kind = "fgsm", backward = "idenity" }"#, ""),
            "unknown backward `idenity`; allowed: mask, identity; did you mean `identity`?",
        ),
        (
            robustness(r#"{ kind = "sap", p = 0.5 }"#, fgsm, ""),
            "`p` is not a parameter of sap; sap takes frac, sampling",
        ),
        (
            robustness(r#"{ kind = "dropuot", p = 0.5 }"#, fgsm, ""),
            "did you mean `dropout`?",
        ),
    ];
    for (text, want) in cases {
        let msg = error(&text);
        assert!(msg.contains(want), "wanted {want:?} in:\n{msg}");
        assert!(msg.starts_with("exp.toml:"), "{msg}");
    }
    let negative = robustness(dense, fgsm, "").replace("lambdas = [0, 4]", "lambdas = [0, -4]");
    let msg = error(&negative);
    assert!(
        msg.contains("key `robustness[0].lambdas[1]`: -4 is not allowed; allowed: a radius >= 0"),
        "{msg}"
    );
}

fn train(extra: &str) -> String {
    format!(
        "name = \"t\"\nseed = 3\n[[train]]\nfamily = \"atari\"\ngames = [\"Pong\"]\n\
         frames = 400_000\n{extra}"
    )
}

#[test]
fn train_jobs_take_their_preset_defaults_and_round_trip() {
    let m = parse(&train("preset = \"nature\"\n[train.runtime]\nactors = 2\n")).unwrap();
    let job = &m.train[0];
    assert_eq!(job.ddqn.learning_starts, 50_000);
    assert_eq!(job.ddqn.target_period_updates(), 10_000);
    assert_eq!(job.ddqn.optimizer_config().name(), "rmsprop");
    assert_eq!(job.runtime.actors, 2);
    let v5 = parse(&train("")).unwrap();
    // 8,000 agent steps at one update per 4 steps.
    assert_eq!(v5.train[0].ddqn.target_period_updates(), 2_000);
    let cells: Vec<String> = m.train_cells().iter().map(|c| c.id()).collect();
    assert_eq!(cells, ["train-000-Pong-nature-s3"]);
    let resolved = m.to_toml();
    assert!(
        resolved.contains("target_period_unit = \"updates\""),
        "{resolved}"
    );
    assert_eq!(parse(&resolved).unwrap(), m);
}

#[test]
fn an_unknown_preset_in_a_train_job_lists_the_presets() {
    let e = error(&train("preset = \"dopamine\"\n"));
    assert!(e.contains("train[0].preset"), "{e}");
    assert!(e.contains("`dopamine-v5`, `nature`"), "{e}");
}

#[test]
fn zero_actors_are_refused_with_the_allowed_range() {
    let e = error(&train("[train.runtime]\nactors = 0\n"));
    assert!(e.contains("key `train[0].runtime.actors`"), "{e}");
    assert!(e.contains("allowed: an integer in [1, 4096]"), "{e}");
}

#[test]
fn a_replay_smaller_than_a_batch_is_refused() {
    let e = error(&train(
        "[train.ddqn]\nreplay_capacity = 16\nlearning_starts = 100\n",
    ));
    assert!(e.contains("key `train[0].ddqn.replay_capacity`"), "{e}");
    assert!(e.contains("smaller than a batch"), "{e}");
    assert!(e.contains("at least 32"), "{e}");
}

#[test]
fn a_budget_inside_the_warm_up_is_refused_in_agent_steps_and_frames() {
    let e = error(&train("[train.ddqn]\nlearning_starts = 100_000\n"));
    assert!(e.contains("key `train[0].frames`"), "{e}");
    assert!(e.contains("400000 frames are 100000 agent steps"), "{e}");
    assert!(e.contains("allowed: more than 400000 frames"), "{e}");
}

#[test]
fn a_target_period_without_its_unit_is_refused() {
    let e = error(&train("[train.ddqn]\ntarget_period = 100\n"));
    assert!(e.contains("key `train[0].ddqn.target_period`"), "{e}");
    assert!(e.contains("target_period_unit"), "{e}");
    let e = error(&train(
        "[train.ddqn]\ntarget_period = 10\ntarget_period_unit = \"agent_steps\"\n",
    ));
    assert!(e.contains("not a whole number of updates"), "{e}");
}

#[test]
fn mlp_widths_are_refused_for_atari_agents() {
    let e = error(&train("[train.ddqn]\nhidden = [64]\n"));
    assert!(e.contains("key `train[0].ddqn.hidden`"), "{e}");
    assert!(e.contains("Nature network"), "{e}");
}

/// A manifest with a `[[train]]` job named `ddqn` and an agent evaluation whose keys are
/// `grid` (one per line).
fn agent_grid(grid: &str) -> String {
    format!(
        "name = \"g\"\nseed = 3\n[[train]]\nname = \"ddqn\"\nfamily = \"atari\"\n\
         games = [\"Pong\", \"Breakout\"]\nframes = 400_000\n\
         [[eval]]\npolicy = \"agent\"\nfamily = \"atari\"\nepisodes = 2\n{grid}"
    )
}

const GRID: &str =
    "train = \"ddqn\"\ndefenses = [{ kind = \"dense\" }, { kind = \"sap\", frac = 0.5 }]\n\
                    attacks = [{ kind = \"fgsm\", gradient_samples = 10 }]\nlambdas = [0, 1, 2]\n";

#[test]
fn an_agent_grid_expands_into_cells_after_their_training_and_round_trips() {
    let m = parse(&agent_grid(GRID)).unwrap();
    let plan = m.plan();
    // 2 training cells, 2 random baselines, 2 games x 2 defenses x 3 lambdas.
    assert_eq!(plan.len(), 2 + 2 + 12);
    let ids: Vec<String> = plan.iter().map(|c| c.id()).collect();
    assert_eq!(ids[2], "eval-002-Pong-dopamine-v5-random-s3");
    assert_eq!(ids[4], "agent-004-Pong-t3-dense-fgsm-l0-s3");
    assert_eq!(ids[15], "agent-015-Breakout-t3-sap-50-fgsm-l2-s3");
    assert_eq!(plan[4].deps, [0]);
    assert_eq!(plan[15].deps, [1]);
    let grid = m.eval[0].agent.as_ref().unwrap();
    assert_eq!(grid.epsilon, 0.001, "the preset's evaluation epsilon");
    assert_eq!(grid.random_episodes, 2);
    assert_eq!(parse(&m.to_toml()).unwrap(), m);
}

#[test]
fn an_agent_grid_refuses_a_max_batch_of_zero_naming_the_key() {
    let m = parse(&agent_grid(GRID)).unwrap();
    assert_eq!(
        m.eval[0].agent.as_ref().unwrap().max_batch,
        128,
        "the default"
    );
    let m = parse(&agent_grid(&format!("{GRID}max_batch = 40\n"))).unwrap();
    assert_eq!(m.eval[0].agent.as_ref().unwrap().max_batch, 40);
    let msg = error(&agent_grid(&format!("{GRID}max_batch = 0\n")));
    assert!(
        msg.contains("key `eval[0].max_batch`: 0 is not allowed; allowed: an integer >= 1"),
        "{msg}"
    );
}

#[test]
fn parallel_episodes_defaults_to_1_is_capped_at_the_episodes_and_refuses_0_and_absurd_values() {
    let m = parse(&agent_grid(GRID)).unwrap();
    assert_eq!(m.eval[0].agent.as_ref().unwrap().parallel_episodes, 1);
    let m = parse(&agent_grid(&format!("{GRID}parallel_episodes = 8\n"))).unwrap();
    assert_eq!(m.eval[0].agent.as_ref().unwrap().parallel_episodes, 8);
    let agent_cells = |m: &sap_harness::manifest::Manifest| -> Vec<u32> {
        m.plan()
            .iter()
            .filter_map(|c| match &c.kind {
                sap_harness::manifest::CellKind::Agent(a) => Some(a.parallel_episodes),
                _ => None,
            })
            .collect()
    };
    // The grid's cells play 2 episodes: 8 in lockstep is 2.
    assert!(
        agent_cells(&m).iter().all(|&p| p == 2),
        "{:?}",
        agent_cells(&m)
    );
    let m = parse(&agent_grid(&format!("{GRID}parallel_episodes = 1\n"))).unwrap();
    assert!(agent_cells(&m).iter().all(|&p| p == 1));
    for bad in ["0", "1025", "-1"] {
        let msg = error(&agent_grid(&format!("{GRID}parallel_episodes = {bad}\n")));
        assert!(msg.contains("key `eval[0].parallel_episodes`"), "{msg}");
    }
    let msg = error(&agent_grid(&format!("{GRID}parallel_episodes = 0\n")));
    assert!(
        msg.contains("0 is out of range; allowed: episodes in lockstep in [1, 1024]"),
        "{msg}"
    );
    // Only agent evaluation plays episodes in lockstep.
    let random = "name = \"r\"\nseed = 1\n[[eval]]\npolicy = \"random\"\nfamily = \"atari\"\n\
                  games = [\"Pong\"]\nepisodes = 2\nparallel_episodes = 2\n";
    let msg = error(random);
    assert!(msg.contains("parallel_episodes"), "{msg}");
}

#[test]
fn record_defaults_to_none_is_written_only_when_set_and_refuses_more_than_the_episodes() {
    let m = parse(&agent_grid(GRID)).unwrap();
    assert_eq!(m.eval[0].agent.as_ref().unwrap().record, 0);
    assert!(!m.to_toml().contains("record"), "left out at 0");
    let m = parse(&agent_grid(&format!("{GRID}record = 2\n"))).unwrap();
    assert_eq!(m.eval[0].agent.as_ref().unwrap().record, 2);
    assert_eq!(parse(&m.to_toml()).unwrap(), m);
    let msg = error(&agent_grid(&format!("{GRID}record = 3\n")));
    assert!(
        msg.contains(
            "key `eval[0].record`: 3 is out of range; allowed: episodes to record per \
                      cell (at most `episodes`) in [0, 2]"
        ),
        "{msg}"
    );
    let random = "name = \"r\"\nseed = 1\n[[eval]]\npolicy = \"random\"\nfamily = \"atari\"\n\
                  games = [\"Pong\"]\nepisodes = 2\nrecord = 1\n";
    let msg = error(random);
    assert!(msg.contains("record"), "{msg}");
}

#[test]
fn an_agent_grid_naming_a_missing_train_job_lists_the_train_jobs() {
    let msg = error(&agent_grid(&GRID.replace("\"ddqn\"\n", "\"dqn\"\n")));
    assert!(
        msg.contains("key `eval[0].train`: no [[train]] job is named `dqn`; allowed: ddqn"),
        "{msg}"
    );
}

#[test]
fn an_agent_grid_naming_a_missing_checkpoint_names_the_file() {
    let grid = GRID.replace(
        "train = \"ddqn\"",
        "checkpoints = { Pong = \"missing/pong.safetensors\" }",
    );
    let msg = error(&agent_grid(&grid));
    assert!(
        msg.contains(
            "key `eval[0].checkpoints.Pong`: checkpoint missing/pong.safetensors does not exist"
        ),
        "{msg}"
    );
}

#[test]
fn empty_or_negative_lambdas_in_an_agent_grid_are_refused() {
    let msg = error(&agent_grid(&GRID.replace("[0, 1, 2]", "[]")));
    assert!(
        msg.contains(
            "key `eval[0].lambdas`: the list is empty; allowed: radii >= 0 in pixel units"
        ),
        "{msg}"
    );
    let msg = error(&agent_grid(&GRID.replace("[0, 1, 2]", "[0, -1]")));
    assert!(
        msg.contains("key `eval[0].lambdas[1]`: -1 is not allowed; allowed: a radius >= 0"),
        "{msg}"
    );
}

#[test]
fn an_attack_unknown_to_agents_is_refused_with_the_allowed_attacks() {
    let msg = error(&agent_grid(
        &GRID.replace("kind = \"fgsm\"", "kind = \"cw\""),
    ));
    assert!(
        msg.contains(
            "key `eval[0].attacks[0].kind`: unknown attack `cw`; allowed: fgsm, pgd, eot-pgd, apgd"
        ),
        "{msg}"
    );
}

#[test]
fn grid_keys_on_a_random_policy_job_are_refused() {
    let msg = error(&format!("{GOOD}lambdas = [0]\n"));
    assert!(
        msg.contains("key `eval[1].lambdas`: `lambdas` applies to policy = \"agent\" only"),
        "{msg}"
    );
}

#[test]
fn the_paper_atari_manifest_runs_the_adaptive_suite_on_the_shipped_agent() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/paper_atari.toml");
    let m = Manifest::load(&path).unwrap();
    let ids: Vec<String> = m.plan().iter().map(|c| c.id()).collect();
    for label in [
        "fgsm",
        "apgd-ce",
        "apgd-dlr",
        "apgd-ce-bpda",
        "pgd-transfer",
    ] {
        let cells = ids
            .iter()
            .filter(|id| id.contains(&format!("-Breakout-file-sap-100-{label}-l")))
            .count();
        // Each attack plays its own lambda-0 cell; FGSM also runs in the paper's job, over
        // its 8 radii.
        let want = if label == "fgsm" { 8 + 6 } else { 6 };
        assert_eq!(cells, want, "{label}: {ids:?}");
    }
}
