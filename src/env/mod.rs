//! Environments behind one trait: Atari games through ALE (with the docs/ARCHITECTURE.md section 4
//! preprocessing and presets) and classic-control tasks from gym-rs.
//!
//! Handles are not `Send` (ALE holds raw pointers): build an environment inside the thread
//! that uses it.

pub mod ale;
pub mod classic;
pub mod conformance;
pub mod games;
pub mod palette;
pub mod preprocess;
pub mod preset;
pub mod roms;
pub mod scores;

pub use self::ale::AtariEnv;
pub use classic::{ClassicEnv, ClassicGame};
pub use games::Game;
pub use preset::{ActionSet, AtariSettings, Mode, Preset};

/// What the agent sees after a reset or a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// Stacked grayscale frames, oldest first, pixel values 0..255. `[4, 84, 84]` for Atari.
    Pixels(Vec<u8>),
    /// A feature vector (classic control).
    Features(Vec<f32>),
}

/// The outcome of one agent step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The observation after the step.
    pub obs: Observation,
    /// The reward the learner sees: clipped to [-1, 1] when the settings ask for it.
    pub reward: f64,
    /// The game's own score change, never clipped (episode returns are sums of this).
    pub score: f64,
    /// The episode ended by the task's rules (game over, or a life lost where lives count
    /// as episodes). Bootstrapping stops here.
    pub terminated: bool,
    /// The episode was cut by the frame cap or time limit, not by the task: a learner
    /// should still bootstrap from `obs`.
    pub truncated: bool,
    /// The real game is over (differs from `terminated` only when a life loss is terminal).
    pub game_over: bool,
    /// Lives left (0 for games without lives).
    pub lives: i32,
    /// Emulator frames (Atari) or simulator steps (classic) this step consumed.
    pub frames: u32,
}

/// Errors an environment returns instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The ROM could not be written to a temporary file for ALE to load.
    #[error("could not stage the ROM of {game} for ALE: {source}")]
    RomStaging {
        /// The game.
        game: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The game's ROM file is not in the ROM folder, or cannot be read.
    #[error(
        "the ROM of {game} is missing: {path}: {reason}. The standard file has MD5 {expected} \
         (ale-py 0.12.1). ROMs are taken from {origin}; `make setup` installs ale-py==0.12.1 \
         into the project's .venv, or set ALE_ROMS_DIR to a folder holding the standard ROM \
         files"
    )]
    RomMissing {
        /// The game.
        game: String,
        /// The file looked for.
        path: String,
        /// The standard file's MD5.
        expected: String,
        /// Why it could not be read.
        reason: String,
        /// Where the folder came from.
        origin: String,
    },
    /// The game's ROM file is not the standard one.
    #[error(
        "the ROM of {game} ({path}) is not the standard file: its MD5 is {found}, the standard \
         file's (ale-py 0.12.1) is {expected}. Results on another ROM are not comparable with \
         the literature; point ALE_ROMS_DIR at the standard ROM files, or run `make setup`, \
         which installs them with ale-py"
    )]
    RomMismatch {
        /// The game.
        game: String,
        /// The file.
        path: String,
        /// Its MD5.
        found: String,
        /// The standard file's MD5.
        expected: String,
    },
    /// ALE refused the ROM.
    #[error("ALE could not load the ROM of {game} ({path}): {message}")]
    RomLoad {
        /// The game.
        game: String,
        /// The staged ROM file.
        path: String,
        /// ALE's message.
        message: String,
    },
    /// ALE rendered a colour that the NTSC palette table does not have.
    #[error("ALE's palette for {game} differs from the NTSC table at palette index {index}: ALE renders #{ale:06x}, the table has #{table:06x}")]
    PaletteMismatch {
        /// The game.
        game: String,
        /// The palette index.
        index: u8,
        /// ALE's colour.
        ale: u32,
        /// The table's colour.
        table: u32,
    },
}

/// A reinforcement-learning environment with a discrete action set.
pub trait Environment {
    /// Starts a new episode. The episode is a pure function of the settings, `seed` and the
    /// actions that follow.
    fn reset(&mut self, seed: u64) -> Result<Observation, EnvError>;
    /// Applies action `action` (an index into the action set).
    ///
    /// # Panics
    /// If `action >= self.num_actions()`: the caller chose the index.
    fn step(&mut self, action: usize) -> Step;
    /// Size of the action set.
    fn num_actions(&self) -> usize;
    /// Shape of the observations (`[4, 84, 84]` for Atari).
    fn observation_shape(&self) -> Vec<usize>;
    /// Emulator frames (Atari, no-op starts included) or steps (classic) since the last
    /// reset.
    fn episode_frames(&self) -> u64;
    /// The last emulated screen as ALE palette indices (`[height * 160]`, 210 rows for most
    /// games and up to 250 for a few, colour
    /// [`palette::NTSC_RGB`]`[index >> 1]`); `None` for environments without a screen.
    fn screen(&self) -> Option<&[u8]> {
        None
    }
    /// A short name of action `action`: ALE's name (`FIRE`, `UPLEFT`) for Atari, the index
    /// otherwise.
    fn action_name(&self, action: usize) -> String {
        action.to_string()
    }
}
