//! Atari protocol presets (docs/ARCHITECTURE.md section 4). Published Atari numbers mix these protocols,
//! so every CSV row records the preset it ran under.

use serde::{Deserialize, Serialize};

/// A named Atari evaluation protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preset {
    /// Machado et al. 2018 and Dopamine: sticky actions, no no-op starts, full episodes.
    #[default]
    #[serde(rename = "dopamine-v5")]
    DopamineV5,
    /// Mnih et al. 2015 and van Hasselt et al. 2016: up to 30 no-op starts, lives as episodes.
    #[serde(rename = "nature")]
    Nature,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 2] = [Preset::DopamineV5, Preset::Nature];

    /// The name used in manifests and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Preset::DopamineV5 => "dopamine-v5",
            Preset::Nature => "nature",
        }
    }

    /// The preset's settings (training values for life loss and clipping; see [`Mode`]).
    pub fn settings(self) -> AtariSettings {
        match self {
            Preset::DopamineV5 => AtariSettings {
                frame_skip: 4,
                repeat_action_probability: 0.25,
                noop_max: 0,
                fire_on_reset: false,
                life_loss_terminal: false,
                clip_rewards: true,
                max_episode_frames: 108_000,
                action_set: ActionSet::Minimal,
            },
            Preset::Nature => AtariSettings {
                frame_skip: 4,
                repeat_action_probability: 0.0,
                noop_max: 30,
                fire_on_reset: false,
                life_loss_terminal: true,
                clip_rewards: true,
                max_episode_frames: 108_000,
                action_set: ActionSet::Minimal,
            },
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which actions the agent chooses from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionSet {
    /// The game's minimal action set (ALE's `getMinimalActionSet`).
    #[default]
    Minimal,
    /// All 18 joystick actions.
    Full,
}

/// Whether the environment serves a learner or an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Life loss may be terminal and rewards may be clipped, as the settings say.
    Train,
    /// Whole games with raw rewards: life loss is never terminal, rewards are never clipped.
    Eval,
}

/// Every Atari option, resolved from a preset and a manifest's overrides.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtariSettings {
    /// Emulator frames per agent step; the action repeats and rewards are summed.
    pub frame_skip: u32,
    /// Sticky actions: probability that ALE repeats the previous action on a frame.
    pub repeat_action_probability: f32,
    /// Up to this many no-op frames at the start of an episode (0 = none).
    pub noop_max: u32,
    /// Press FIRE (then UP) after a reset, for games that wait for it.
    pub fire_on_reset: bool,
    /// A lost life ends the learner's episode (training only).
    pub life_loss_terminal: bool,
    /// Clip rewards to [-1, 1] (training only).
    pub clip_rewards: bool,
    /// Episode cap in emulator frames (108 000 frames = 30 minutes at 60 Hz).
    pub max_episode_frames: u64,
    /// Minimal or full action set.
    pub action_set: ActionSet,
}

impl AtariSettings {
    /// The settings as they apply in `mode`: evaluation plays whole games on raw rewards.
    pub fn for_mode(mut self, mode: Mode) -> Self {
        if mode == Mode::Eval {
            self.life_loss_terminal = false;
            self.clip_rewards = false;
        }
        self
    }
}
