//! Atari games through the Arcade Learning Environment, with every preprocessing step done
//! in Rust: action repeat with a max-pool of the last two frames, grayscale, 84x84 area
//! resize, a 4-frame stack, no-op starts, sticky actions, fire on reset, life loss as
//! terminal, reward clipping and an episode cap in frames.
//!
//! Seeding and resets. ALE reads `random_seed` only when it loads a ROM, and a load costs
//! about a thousand emulator frames' time (Stella rebuilds its console). So [`AtariEnv`]
//! loads once, with `random_seed` set to its construction seed (which fixes the emulator's
//! power-on RAM and timer), snapshots the emulator, and restores that snapshot at every
//! reset. Sticky actions are drawn here, per emulator frame, exactly as ALE's
//! `StellaEnvironment::act` draws them, from a generator seeded by the episode seed; the
//! no-op count comes from the same seed. An episode is therefore a pure function of
//! (game, settings, construction seed, episode seed, actions), whatever ran before it.

use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Once;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::games::Game;
use super::preprocess::{
    clip_reward, AreaResizer, FrameStack, PaletteLut, FRAME_SIDE, STACK_DEPTH,
};
use super::preset::{ActionSet, AtariSettings, Mode};
use super::{EnvError, Environment, Observation, Step};

/// ALE's action code for NOOP.
const NOOP: i32 = 0;
/// ALE's action code for FIRE.
const FIRE: i32 = 1;
/// ALE's action code for UP.
const UP: i32 = 2;

/// ALE's emulator (`ale::ALEInterface`) and its saved states, opaque to Rust.
#[repr(C)]
struct RawAle {
    _private: [u8; 0],
}

/// `ale::ALEState`, opaque.
#[repr(C)]
struct RawState {
    _private: [u8; 0],
}

// `src/native/ale_shim.cpp`: a C interface to ALE 0.12 (compiled by build.rs from ale-py's
// source distribution). Functions that can fail catch ALE's exceptions and return a status.
extern "C" {
    fn sap_ale_set_logger_mode(mode: c_int);
    fn sap_ale_new(buf: *mut c_char, len: usize) -> *mut RawAle;
    fn sap_ale_delete(ale: *mut RawAle);
    fn sap_ale_load(
        ale: *mut RawAle,
        path: *const c_char,
        seed: c_int,
        sticky: f32,
        buf: *mut c_char,
        len: usize,
    ) -> c_int;
    fn sap_ale_act(ale: *mut RawAle, action: c_int) -> c_int;
    fn sap_ale_game_over(ale: *mut RawAle) -> c_int;
    fn sap_ale_reset_game(ale: *mut RawAle);
    fn sap_ale_lives(ale: *mut RawAle) -> c_int;
    fn sap_ale_screen_height(ale: *mut RawAle) -> c_int;
    fn sap_ale_screen_width(ale: *mut RawAle) -> c_int;
    fn sap_ale_screen(ale: *mut RawAle, out: *mut u8);
    fn sap_ale_screen_rgb(ale: *mut RawAle, out: *mut u8);
    fn sap_ale_palette(ale: *mut RawAle, out: *mut u32);
    fn sap_ale_minimal_actions(ale: *mut RawAle, out: *mut c_int, cap: c_int) -> c_int;
    fn sap_ale_legal_actions(ale: *mut RawAle, out: *mut c_int, cap: c_int) -> c_int;
    fn sap_ale_clone_state(ale: *mut RawAle) -> *mut RawState;
    fn sap_ale_restore_state(ale: *mut RawAle, state: *const RawState);
    fn sap_ale_delete_state(state: *mut RawState);
}

/// The ALE release `sap` emulates with.
pub const ALE_VERSION: &str = "0.12.1";

/// Size of the buffer ALE's error messages are copied into.
const MESSAGE_LEN: usize = 512;

/// Reads a message the shim wrote into `buf`.
fn message(buf: &[c_char]) -> String {
    // SAFETY: the shim NUL-terminates within the buffer (and it starts zeroed).
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// An owned ALE 0.12 instance: a thin safe layer over `src/native/ale_shim.cpp`. It is
/// neither `Send` nor `Sync`.
pub struct AleHandle {
    ptr: NonNull<RawAle>,
    _not_send: PhantomData<*mut ()>,
}

impl AleHandle {
    /// A fresh emulator with ALE's logging limited to errors.
    ///
    /// # Panics
    /// If ALE cannot be constructed (it allocates and reads nothing from disk).
    pub fn new() -> Self {
        static QUIET: Once = Once::new();
        // SAFETY: sets a global integer.
        QUIET.call_once(|| unsafe { sap_ale_set_logger_mode(2) });
        let mut buf = [0 as c_char; MESSAGE_LEN];
        // SAFETY: the shim returns a heap object owned by this handle (freed in Drop), or
        // null with a message in `buf`.
        let ptr = unsafe { sap_ale_new(buf.as_mut_ptr(), buf.len()) };
        Self {
            ptr: NonNull::new(ptr)
                .unwrap_or_else(|| panic!("ALE could not start: {}", message(&buf))),
            _not_send: PhantomData,
        }
    }

    fn raw(&self) -> *mut RawAle {
        self.ptr.as_ptr()
    }

    /// Loads a ROM file with the given seed and sticky-action probability. Both settings
    /// only take effect at load time, so they are set first. ALE 0.12 tells the game by the
    /// file's MD5. Returns ALE's message when it refuses the file.
    pub fn load(
        &mut self,
        rom_path: &CString,
        seed: i32,
        repeat_action_probability: f32,
    ) -> Result<(), String> {
        let mut buf = [0 as c_char; MESSAGE_LEN];
        // SAFETY: valid handle, NUL-terminated path and a buffer of the stated length.
        let status = unsafe {
            sap_ale_load(
                self.raw(),
                rom_path.as_ptr(),
                seed,
                repeat_action_probability,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        match status {
            0 => Ok(()),
            _ => Err(message(&buf)),
        }
    }

    /// Emulates one frame with an ALE action code; returns the reward.
    #[inline]
    pub fn act(&mut self, action: i32) -> i32 {
        // SAFETY: valid handle; ALE turns illegal codes into NOOP.
        unsafe { sap_ale_act(self.raw(), action) }
    }

    /// Whether the game is over.
    #[inline]
    pub fn game_over(&mut self) -> bool {
        // SAFETY: valid handle.
        unsafe { sap_ale_game_over(self.raw()) != 0 }
    }

    /// Starts a new game without reloading the ROM (as ale-py's `reset_game`).
    pub fn reset_game(&mut self) {
        // SAFETY: valid handle.
        unsafe { sap_ale_reset_game(self.raw()) }
    }

    /// Lives left.
    #[inline]
    pub fn lives(&mut self) -> i32 {
        // SAFETY: valid handle.
        unsafe { sap_ale_lives(self.raw()) }
    }

    /// The loaded game's screen as (height, width). Most games are 210 x 160, but ALE
    /// renders some taller (Adventure and AirRaid 250, JourneyEscape 230, Pooyan 220,
    /// Carnival 214), so every screen buffer is sized from here.
    pub fn screen_dims(&mut self) -> (usize, usize) {
        // SAFETY: valid handle.
        unsafe {
            (
                sap_ale_screen_height(self.raw()).max(0) as usize,
                sap_ale_screen_width(self.raw()).max(0) as usize,
            )
        }
    }

    /// Copies the screen as palette indices (`[height * width]`, [`Self::screen_dims`]).
    ///
    /// # Panics
    /// If `out` is not exactly one screen long: ALE would write past a shorter buffer.
    #[inline]
    pub fn screen_indices(&mut self, out: &mut [u8]) {
        let (h, w) = self.screen_dims();
        assert_eq!(out.len(), h * w, "screen buffer of the wrong size");
        // SAFETY: `out` holds a whole screen of ALE's current dimensions.
        unsafe { sap_ale_screen(self.raw(), out.as_mut_ptr()) }
    }

    /// Copies the screen as interleaved RGB (`[height * width * 3]`).
    ///
    /// # Panics
    /// If `out` is not exactly one RGB screen long.
    pub fn screen_rgb(&mut self, out: &mut [u8]) {
        let (h, w) = self.screen_dims();
        assert_eq!(out.len(), h * w * 3, "RGB screen buffer of the wrong size");
        // SAFETY: `out` holds a whole RGB screen of ALE's current dimensions.
        unsafe { sap_ale_screen_rgb(self.raw(), out.as_mut_ptr()) }
    }

    /// The packed RGB (`0x00RRGGBB`) of every palette index in the loaded game's TV format:
    /// NTSC for most games, PAL for a few (Adventure, Klax, Pacman, SpaceWar, ...).
    pub fn palette(&mut self) -> [u32; 256] {
        let mut out = [0u32; 256];
        // SAFETY: valid handle; `out` holds the 256 values the shim writes.
        unsafe { sap_ale_palette(self.raw(), out.as_mut_ptr()) };
        out
    }

    /// Snapshots the whole emulator, its random generators included.
    pub fn clone_system_state(&mut self) -> AleSnapshot {
        // SAFETY: valid handle; the returned state is owned by the snapshot.
        let ptr = unsafe { sap_ale_clone_state(self.raw()) };
        AleSnapshot {
            ptr: NonNull::new(ptr).expect("cloneState returned null"),
        }
    }

    /// Restores a snapshot taken from this handle's game.
    pub fn restore_system_state(&mut self, snapshot: &AleSnapshot) {
        // SAFETY: valid handle and state; ALE copies from the state.
        unsafe { sap_ale_restore_state(self.raw(), snapshot.ptr.as_ptr()) }
    }

    /// Reads an action set through `f` (the shim reports its size and fills up to `cap`).
    fn action_set(
        &mut self,
        f: unsafe extern "C" fn(*mut RawAle, *mut c_int, c_int) -> c_int,
    ) -> Vec<i32> {
        let mut v = vec![0; 18];
        // SAFETY: valid handle; the buffer holds `cap` codes (ALE has 18 actions).
        let n = unsafe { f(self.raw(), v.as_mut_ptr(), v.len() as c_int) };
        v.truncate(n.clamp(0, 18) as usize);
        v
    }

    /// The minimal action set, as ALE action codes.
    pub fn minimal_actions(&mut self) -> Vec<i32> {
        self.action_set(sap_ale_minimal_actions)
    }

    /// The full (legal) action set, as ALE action codes.
    pub fn legal_actions(&mut self) -> Vec<i32> {
        self.action_set(sap_ale_legal_actions)
    }
}

impl Default for AleHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AleHandle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sap_ale_new and is freed once.
        unsafe { sap_ale_delete(self.raw()) }
    }
}

/// A saved emulator state, freed on drop.
pub struct AleSnapshot {
    ptr: NonNull<RawState>,
}

impl Drop for AleSnapshot {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sap_ale_clone_state and is freed once.
        unsafe { sap_ale_delete_state(self.ptr.as_ptr()) }
    }
}

/// A standard ROM file (checked by MD5, [`super::roms`]) copied to a private temporary
/// folder under its canonical name, where ALE loads it: ALE reads exactly the checked bytes.
pub struct StagedRom {
    _dir: tempfile::TempDir,
    path: CString,
    md5: &'static str,
}

impl StagedRom {
    /// Reads and checks the game's ROM from the ROM folder in force, and stages it.
    pub fn new(game: Game) -> Result<Self, EnvError> {
        let rom = super::roms::read_verified(game)?;
        let staging = |source| EnvError::RomStaging {
            game: game.name().into(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("sap-rom-")
            .tempdir()
            .map_err(staging)?;
        let path = dir.path().join(game.rom_filename());
        std::fs::write(&path, &rom.bytes).map_err(staging)?;
        let path = CString::new(path.to_string_lossy().into_owned()).expect("temp path has NUL");
        Ok(Self {
            _dir: dir,
            path,
            md5: rom.md5(),
        })
    }

    /// The MD5 of the staged file (the standard one).
    pub fn md5(&self) -> &'static str {
        self.md5
    }

    /// The ROM's path.
    pub fn path(&self) -> &CString {
        &self.path
    }

    /// Loads this ROM into `ale`, or says which game did not load.
    pub fn load_into(
        &self,
        ale: &mut AleHandle,
        game: Game,
        seed: i32,
        repeat_action_probability: f32,
    ) -> Result<(), EnvError> {
        ale.load(&self.path, seed, repeat_action_probability)
            .map_err(|message| EnvError::RomLoad {
                game: game.name().into(),
                path: self.path.to_string_lossy().into_owned(),
                message,
            })
    }
}

/// Loads a game once (seed 0, no sticky actions) and returns its (minimal, full) action
/// counts.
pub fn action_counts(game: Game) -> Result<(usize, usize), EnvError> {
    let rom = StagedRom::new(game)?;
    let mut ale = AleHandle::new();
    rom.load_into(&mut ale, game, 0, 0.0)?;
    Ok((ale.minimal_actions().len(), ale.legal_actions().len()))
}

/// An Atari game with the preprocessing of the Atari presets (`docs/ARCHITECTURE.md`).
pub struct AtariEnv {
    game: Game,
    settings: AtariSettings,
    ale: AleHandle,
    /// The emulator right after loading the ROM; every reset restores it.
    start: AleSnapshot,
    /// The screen (palette indices) at `start`.
    start_screen: Vec<u8>,
    actions: Vec<i32>,
    lut: PaletteLut,
    resizer: AreaResizer,
    stack: FrameStack,
    /// The last two emulated screens as palette indices.
    screens: [Vec<u8>; 2],
    pooled: Vec<u8>,
    frame: Vec<u8>,
    /// Sticky actions: the action ALE is actually pressing, and the generator that decides
    /// whether a new request replaces it on each frame.
    held: i32,
    sticky_rng: ChaCha8Rng,
    /// Emulator frames since the episode's reset, no-op starts included.
    episode_frames: u64,
    lives: i32,
    /// The last episode ended on a life loss with the game still running.
    continue_after_life_loss: bool,
}

impl AtariEnv {
    /// Builds the environment. `mode` decides whether life loss and clipping apply;
    /// `ale_seed` goes to ALE's `random_seed`.
    pub fn new(
        game: Game,
        settings: AtariSettings,
        mode: Mode,
        ale_seed: u64,
    ) -> Result<Self, EnvError> {
        let settings = settings.for_mode(mode);
        let rom = StagedRom::new(game)?;
        let mut ale = AleHandle::new();
        // Sticky actions are drawn in `emulate`, so ALE's own probability stays 0.
        rom.load_into(&mut ale, game, (ale_seed % i32::MAX as u64) as i32, 0.0)?;
        let actions = match settings.action_set {
            ActionSet::Minimal => ale.minimal_actions(),
            ActionSet::Full => ale.legal_actions(),
        };
        // The game's own TV format: most games are NTSC, a few PAL or SECAM.
        let lut = PaletteLut::from_indexed(&ale.palette());
        let (height, width) = ale.screen_dims();
        let screen_len = height * width;
        let mut start_screen = vec![0; screen_len];
        ale.screen_indices(&mut start_screen);
        check_palette(&mut ale, game, &lut, &start_screen)?;
        let start = ale.clone_system_state();
        Ok(Self {
            game,
            settings,
            ale,
            start,
            start_screen,
            actions,
            lut,
            resizer: AreaResizer::new(height, width, FRAME_SIDE, FRAME_SIDE),
            stack: FrameStack::new(STACK_DEPTH, FRAME_SIDE * FRAME_SIDE),
            screens: [vec![0; screen_len], vec![0; screen_len]],
            pooled: vec![0; screen_len],
            frame: vec![0; FRAME_SIDE * FRAME_SIDE],
            held: NOOP,
            sticky_rng: ChaCha8Rng::seed_from_u64(0),
            episode_frames: 0,
            lives: 0,
            continue_after_life_loss: false,
        })
    }

    /// The game.
    pub fn game(&self) -> Game {
        self.game
    }

    /// The settings in force (after the mode was applied).
    pub fn settings(&self) -> &AtariSettings {
        &self.settings
    }

    /// The ALE action codes behind the action indices.
    pub fn action_codes(&self) -> &[i32] {
        &self.actions
    }

    /// Emulates one frame with `requested` as the agent's action; returns the reward.
    ///
    /// Sticky actions as in ALE (Machado et al. 2018): on every frame, with probability
    /// `repeat_action_probability` the previous action is pressed again instead.
    #[inline]
    fn emulate(&mut self, requested: i32) -> i32 {
        let p = self.settings.repeat_action_probability;
        if p == 0.0 || self.sticky_rng.gen::<f64>() >= p as f64 {
            self.held = requested;
        }
        self.episode_frames += 1;
        self.ale.act(self.held)
    }

    fn capped(&self) -> bool {
        self.episode_frames >= self.settings.max_episode_frames
    }

    /// Pools the two screens, preprocesses, and pushes the result onto the stack.
    fn push_pooled_frame(&mut self) {
        self.lut
            .max_pool_gray(&self.screens[0], &self.screens[1], &mut self.pooled);
        self.resizer.resize(&self.pooled, &mut self.frame);
        self.stack.push(&self.frame);
    }

    /// Starts a fresh (zeroed) stack from the screen in `screens[1]` alone.
    fn restart_stack(&mut self) -> Observation {
        let [first, last] = &mut self.screens;
        first.copy_from_slice(last);
        self.stack.clear();
        self.push_pooled_frame();
        Observation::Pixels(self.stack.to_vec())
    }

    /// Repeats `code` for up to `frame_skip` frames; returns (summed reward, frames run).
    /// Stops early at game over or the frame cap. Leaves the last two screens in
    /// `self.screens` (the same screen twice when only one frame ran).
    fn repeat_action(&mut self, code: i32) -> (f64, u32) {
        let skip = self.settings.frame_skip;
        let mut reward = 0.0;
        for k in 0..skip {
            reward += self.emulate(code) as f64;
            let last = k + 1 == skip || self.ale.game_over() || self.capped();
            // Max-pool the last two frames: grab the second-to-last and the last.
            if k + 2 == skip && !last {
                self.ale.screen_indices(&mut self.screens[0]);
            }
            if last {
                self.ale.screen_indices(&mut self.screens[1]);
                let grabbed_previous = skip >= 2 && k + 1 == skip;
                if !grabbed_previous {
                    // Ended before the second-to-last frame was grabbed: pool the last
                    // screen with itself.
                    let [first, last] = &mut self.screens;
                    first.copy_from_slice(last);
                }
                return (reward, k + 1);
            }
        }
        unreachable!("the last frame returns")
    }

    /// FIRE then UP, one frame each, for games that wait for FIRE (Baselines' FireResetEnv).
    fn press_fire(&mut self) {
        if self.actions.contains(&FIRE) {
            self.emulate(FIRE);
            self.emulate(UP);
        }
    }
}

/// Checks the palette table against ALE's RGB rendering of the current screen.
fn check_palette(
    ale: &mut AleHandle,
    game: Game,
    lut: &PaletteLut,
    indices: &[u8],
) -> Result<(), EnvError> {
    let mut rgb = vec![0u8; indices.len() * 3];
    ale.screen_rgb(&mut rgb);
    for (&index, px) in indices.iter().zip(rgb.chunks_exact(3)) {
        let ale_rgb = (px[0] as u32) << 16 | (px[1] as u32) << 8 | px[2] as u32;
        let table = lut.rgb(index);
        if ale_rgb != table {
            return Err(EnvError::PaletteMismatch {
                game: game.name().into(),
                index,
                ale: ale_rgb,
                table,
            });
        }
    }
    Ok(())
}

impl Environment for AtariEnv {
    fn reset(&mut self, seed: u64) -> Result<Observation, EnvError> {
        if self.continue_after_life_loss {
            // A life was lost but the game goes on (training with lives as episodes): take
            // one no-op step to leave the life-loss frames and start a fresh stack. Same
            // game, so no restore and no new no-op starts.
            self.continue_after_life_loss = false;
            self.repeat_action(NOOP);
            if !self.ale.game_over() && !self.capped() {
                if self.settings.fire_on_reset {
                    self.press_fire();
                    self.ale.screen_indices(&mut self.screens[1]);
                }
                self.lives = self.ale.lives();
                return Ok(self.restart_stack());
            }
        }
        self.ale.restore_system_state(&self.start);
        self.screens[1].copy_from_slice(&self.start_screen);
        self.sticky_rng = ChaCha8Rng::seed_from_u64(crate::seed::derive(seed, "sticky", 0));
        // ALE presses NOOP after a reset until the agent acts.
        self.held = NOOP;
        self.episode_frames = 0;
        if self.settings.noop_max > 0 {
            // No-op starts: 1..=noop_max single emulator frames (OpenAI Baselines'
            // NoopResetEnv, below the frame skip), the count drawn from the episode seed.
            let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::derive(seed, "noop", 0));
            let noops = rng.gen_range(1..=self.settings.noop_max);
            for _ in 0..noops {
                self.emulate(NOOP);
            }
            self.ale.screen_indices(&mut self.screens[1]);
        }
        if self.settings.fire_on_reset {
            self.press_fire();
            self.ale.screen_indices(&mut self.screens[1]);
        }
        self.lives = self.ale.lives();
        Ok(self.restart_stack())
    }

    fn step(&mut self, action: usize) -> Step {
        let code = self.actions[action];
        let lives_before = self.lives;
        let (score, frames) = self.repeat_action(code);
        self.push_pooled_frame();
        let game_over = self.ale.game_over();
        self.lives = self.ale.lives();
        let life_lost = self.lives < lives_before;
        let lost_life_ends = self.settings.life_loss_terminal && life_lost && !game_over;
        let terminated = game_over || lost_life_ends;
        // CRUCIAL: the cap truncates; it does not terminate. A learner bootstraps from here.
        let truncated = !terminated && self.capped();
        self.continue_after_life_loss = lost_life_ends && !truncated;
        let reward = if self.settings.clip_rewards {
            clip_reward(score)
        } else {
            score
        };
        Step {
            obs: Observation::Pixels(self.stack.to_vec()),
            reward,
            score,
            terminated,
            truncated,
            game_over,
            lives: self.lives,
            frames,
        }
    }

    fn num_actions(&self) -> usize {
        self.actions.len()
    }

    fn observation_shape(&self) -> Vec<usize> {
        vec![STACK_DEPTH, FRAME_SIDE, FRAME_SIDE]
    }

    fn episode_frames(&self) -> u64 {
        self.episode_frames
    }

    fn screen(&self) -> Option<&[u8]> {
        Some(&self.screens[1])
    }

    fn action_name(&self, action: usize) -> String {
        let code = self.actions[action];
        ACTION_NAMES
            .get(code as usize)
            .map_or_else(|| format!("ACTION{code}"), |n| (*n).to_owned())
    }
}

/// ALE's names of its action codes 0..17.
pub const ACTION_NAMES: [&str; 18] = [
    "NOOP",
    "FIRE",
    "UP",
    "RIGHT",
    "LEFT",
    "DOWN",
    "UPRIGHT",
    "UPLEFT",
    "DOWNRIGHT",
    "DOWNLEFT",
    "UPFIRE",
    "RIGHTFIRE",
    "LEFTFIRE",
    "DOWNFIRE",
    "UPRIGHTFIRE",
    "UPLEFTFIRE",
    "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
];
