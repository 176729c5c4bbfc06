//! The shipped agent (`models/`): it loads, its digest is the one `models/SHA256SUMS` lists,
//! and it plays Breakout far better than the random policy.

mod common;

use std::path::Path;

use common::ok;
use sap_harness::record::read_rows;
use sap_harness::table::{AgentRow, EpisodeRow};

const MODEL: &str = "models/Breakout-dopamine-v5-ddqn.safetensors";

/// Fewest points the shipped agent's mean over the test's games may have. The agent's
/// 30-game clean evaluation (models/README.md) is far above this; the random policy's mean
/// under the same settings is about 1.
const FLOOR: f64 = 8.0;

#[test]
fn the_shipped_breakout_agent_scores_far_above_the_random_policy() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    // Whole games under the agent's preset, as in its evaluation; the cap only bounds a game
    // the agent stops serving in.
    let text = format!(
        r#"name = "shipped"
seed = 11
[[eval]]
policy = "agent"
family = "atari"
preset = "dopamine-v5"
checkpoints = {{ Breakout = "{}" }}
episodes = 6
random_episodes = 6
defenses = [{{ kind = "dense" }}]
attacks = [{{ kind = "fgsm", gradient_samples = 1 }}]
lambdas = [0]
[eval.env]
max_episode_frames = 27_000
"#,
        repo.join(MODEL).display()
    );
    std::fs::write(tmp.path().join("shipped.toml"), text).unwrap();
    ok(
        &["run", "shipped.toml", "--run-id", "a", "--jobs", "2"],
        tmp.path(),
    );
    let run = tmp.path().join("results/shipped/a");
    let agent: Vec<AgentRow> = read_rows(&run.join("rl_eval.csv")).unwrap();
    let random: Vec<EpisodeRow> = read_rows(&run.join("episodes.csv")).unwrap();
    assert_eq!((agent.len(), random.len()), (6, 6));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let agent_mean = mean(&agent.iter().map(|r| r.episode_return).collect::<Vec<_>>());
    let random_mean = mean(&random.iter().map(|r| r.episode_return).collect::<Vec<_>>());
    assert!(
        agent_mean >= FLOOR && agent_mean >= 4.0 * random_mean.max(1.0),
        "the shipped agent's mean {agent_mean} (random policy: {random_mean}): {agent:?}"
    );
}

#[test]
fn the_shipped_agent_is_listed_in_models_sha256sums() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sums = std::fs::read_to_string(repo.join("models/SHA256SUMS")).unwrap();
    let name = MODEL.trim_start_matches("models/");
    assert!(
        sums.lines().any(|l| l.ends_with(&format!("  {name}"))),
        "models/SHA256SUMS lacks {name}:\n{sums}"
    );
    // The resolver checks the file against it before any cell runs.
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let mut bytes = std::fs::read(repo.join(MODEL)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(models.join(name), bytes).unwrap();
    std::fs::copy(repo.join("models/SHA256SUMS"), models.join("SHA256SUMS")).unwrap();
    let manifest = format!(
        "name = \"m\"\nseed = 1\n[[eval]]\npolicy = \"agent\"\nfamily = \"atari\"\n\
         preset = \"dopamine-v5\"\ncheckpoints = {{ Breakout = \"models/{name}\" }}\n\
         episodes = 1\ndefenses = [{{ kind = \"dense\" }}]\n\
         attacks = [{{ kind = \"fgsm\", gradient_samples = 1 }}]\nlambdas = [0]\n"
    );
    std::fs::write(tmp.path().join("m.toml"), manifest).unwrap();
    let out = common::run(&["validate", "m.toml"], tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected = sums.split_whitespace().next().unwrap();
    assert!(err.contains(name) && err.contains(expected), "{err}");
}
