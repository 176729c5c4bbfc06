//! Helpers shared by the integration tests that drive the real `sap` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sap_harness::nn::{checkpoint, Architecture, MlpConfig, Model};
use sap_harness::tch::Device;

/// Torch's generator is global to the process and tests run at the same time: whatever seeds
/// it and draws from it holds this lock, so that no other test draws in between.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `f` run right after `tch::manual_seed(seed)`, with torch's generator to itself.
pub fn seeded<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    let _alone = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    sap_harness::tch::manual_seed(seed);
    f()
}

/// An MLP on pixel inputs (scaled by 1/255) initialised from `seed`.
pub fn mlp(inputs: i64, hidden: Vec<i64>, outputs: i64, seed: i64) -> Model {
    seeded(seed, || {
        Model::new(
            Architecture::Mlp(MlpConfig {
                inputs,
                hidden,
                outputs,
                input_scale: 1.0 / 255.0,
            }),
            Device::Cpu,
        )
    })
}

/// `sap ARGS` in `cwd`, logging at info level.
pub fn sap(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sap"));
    // A rates file the user saved must not change what `sap plan` prints in tests.
    c.args(args)
        .current_dir(cwd)
        .env("SAP_LOG", "info")
        .env("XDG_CACHE_HOME", "/nonexistent/sap-test-cache");
    c
}

/// Runs `sap ARGS` to completion.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    sap(args, cwd).output().expect("sap runs")
}

/// Runs `sap ARGS`, asserts success and returns stdout.
pub fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    assert!(
        out.status.success(),
        "sap {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Nature CNN with `actions` outputs and seeded random weights, saved as safetensors.
pub fn random_network(path: &Path, actions: i64, seed: i64) {
    sap_harness::tch::manual_seed(seed);
    let model = Model::new(Architecture::NatureCnn { actions }, Device::Cpu);
    checkpoint::save(&model, path).unwrap();
}

/// A file's text, or a panic naming it.
pub fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tiny two-game manifest: DDQN for 600 agent steps on Pong and Breakout, then the
/// trained agents under SAP-100 and FGSM at lambda 4 (plus the dense clean reference the
/// plan adds), 2 episodes of at most 600 frames per cell.
pub const TRAINED_GRID: &str = r#"name = "trained"
seed = 3
[[train]]
name = "ddqn"
family = "atari"
games = ["Pong", "Breakout"]
frames = 2400
eval_every = 2400
eval_episodes = 1
checkpoint_every = 2400
[train.env]
max_episode_frames = 2000
[train.ddqn]
learning_starts = 200
replay_capacity = 1000
epsilon_decay_steps = 500

[[eval]]
policy = "agent"
family = "atari"
train = "ddqn"
episodes = 2
samples = 2
random_episodes = 3
defenses = [{ kind = "sap", frac = 1.0 }]
attacks = [{ kind = "fgsm", gradient_samples = 2 }]
lambdas = [4]
[eval.env]
max_episode_frames = 600
"#;

/// Asserts that each file of `names` has the same text under `a` and `b`; `what` says why
/// they should.
pub fn assert_same_files(a: &Path, b: &Path, names: &[&str], what: &str) {
    for name in names {
        assert_eq!(text(&a.join(name)), text(&b.join(name)), "{name}: {what}");
    }
}

/// Writes the six CIFAR-10 binary files as sparse files of the right size: enough for
/// manifest checks, which look at names and sizes only.
pub fn fake_cifar(dir: &Path) {
    use sap_harness::data::cifar::{Split, RECORDS_PER_FILE, RECORD_BYTES};
    std::fs::create_dir_all(dir).unwrap();
    for name in Split::Train.files().iter().chain(Split::Test.files()) {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_len((RECORDS_PER_FILE * RECORD_BYTES) as u64).unwrap();
    }
}

/// Copies the shipped agent and its digests (`models/`) under `root`, as the repository lays
/// them out for the manifests that name them.
pub fn copy_models(root: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("models")).unwrap();
    for file in ["Breakout-dopamine-v5-ddqn.safetensors", "SHA256SUMS"] {
        std::fs::copy(
            repo.join("models").join(file),
            root.join("models").join(file),
        )
        .unwrap();
    }
}

/// The project venv's Python (with torch and numpy), which `scripts/setup.sh` creates.
pub fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (make test does) to create the project venv",
        python.display()
    );
    python
}
