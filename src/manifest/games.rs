//! The games of a job and the environment settings it plays them under: `games` lists
//! checked against each family's games, and `[env]` overrides of an Atari preset.

use std::collections::HashSet;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::error::suggestion;
use super::resolver::Resolver;
use super::{Family, ManifestError};
use crate::env::{games::game_names, AtariSettings, ClassicGame, Game, Preset};

/// A `games` list with the position of each name.
pub(super) type RawGames = Spanned<Vec<Spanned<String>>>;

/// Overrides of a preset's settings; absent keys keep the preset's value.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvOverrides {
    frame_skip: Option<Spanned<u32>>,
    repeat_action_probability: Option<Spanned<f32>>,
    noop_max: Option<Spanned<u32>>,
    fire_on_reset: Option<bool>,
    life_loss_terminal: Option<bool>,
    clip_rewards: Option<bool>,
    max_episode_frames: Option<Spanned<u64>>,
    action_set: Option<crate::env::ActionSet>,
}

impl Resolver<'_> {
    /// Checks a job's `games`: non-empty, no repeats, each a game of `family`.
    pub(super) fn check_games(
        &self,
        prefix: &str,
        family: Family,
        games: &RawGames,
    ) -> Result<(), ManifestError> {
        if games.get_ref().is_empty() {
            let msg = "the list is empty; name at least one game".to_owned();
            return Err(self.error(games.span(), format!("{prefix}.games"), msg));
        }
        let mut seen = HashSet::new();
        for (g, game) in games.get_ref().iter().enumerate() {
            let game_key = format!("{prefix}.games[{g}]");
            let name = game.get_ref().as_str();
            if !seen.insert(name) {
                return Err(self.error(game.span(), game_key, format!("`{name}` is listed twice")));
            }
            self.check_game(family, name, game.span(), game_key)?;
        }
        Ok(())
    }

    /// A classic-control job may not name a preset or Atari settings.
    pub(super) fn reject_atari_keys(
        &self,
        prefix: &str,
        preset: &Option<Spanned<Preset>>,
        env: &Option<Spanned<RawEnvOverrides>>,
    ) -> Result<(), ManifestError> {
        if let Some(p) = preset {
            let msg = "presets apply to Atari games only; remove it for family \"classic\"";
            return Err(self.error(p.span(), format!("{prefix}.preset"), msg.into()));
        }
        if let Some(e) = env {
            let table = prefix.split('[').next().unwrap_or(prefix);
            let msg = format!(
                "environment settings apply to Atari games only; remove [{table}.env] for family \
                 \"classic\""
            );
            return Err(self.error(e.span(), format!("{prefix}.env"), msg));
        }
        Ok(())
    }

    pub(super) fn check_game(
        &self,
        family: Family,
        name: &str,
        span: Range<usize>,
        key: String,
    ) -> Result<(), ManifestError> {
        let classic_names: Vec<&str> = ClassicGame::ALL.iter().map(|g| g.name()).collect();
        let (known, other_family) = match family {
            Family::Atari => {
                if let Some(game) = Game::from_name(name) {
                    // A missing or non-standard ROM file would stop the run's first cell of
                    // the game: say so now, at the key.
                    return crate::env::roms::read_verified(game)
                        .map(drop)
                        .map_err(|e| self.error(span, key, e.to_string()));
                }
                (false, ClassicGame::from_name(name).is_some())
            }
            Family::Classic => (
                ClassicGame::from_name(name).is_some(),
                Game::from_name(name).is_some(),
            ),
        };
        if known {
            return Ok(());
        }
        let msg = if other_family {
            let other = if family == Family::Atari {
                "classic"
            } else {
                "atari"
            };
            format!(
                "`{name}` is not a {} game; it belongs to family \"{other}\"",
                family.name()
            )
        } else {
            match family {
                Family::Atari => format!(
                    "unknown Atari game `{name}`{}; `sap games` lists the {} games",
                    suggestion(name, game_names()),
                    game_names().len()
                ),
                Family::Classic => format!(
                    "unknown classic game `{name}`; allowed: {}{}",
                    classic_names.join(", "),
                    suggestion(name, classic_names.iter().copied())
                ),
            }
        };
        Err(self.error(span, key, msg))
    }

    /// Applies `[<prefix>.env]` overrides to a preset's settings.
    pub(super) fn apply_overrides(
        &self,
        prefix: &str,
        mut s: AtariSettings,
        o: RawEnvOverrides,
    ) -> Result<AtariSettings, ManifestError> {
        let key = |k: &str| format!("{prefix}.env.{k}");
        if let Some(v) = &o.frame_skip {
            s.frame_skip = self.check_range(v, key("frame_skip"), 1..64, true, "frames")?;
        }
        if let Some(v) = &o.repeat_action_probability {
            let what = "a probability";
            s.repeat_action_probability =
                self.check_range(v, key("repeat_action_probability"), 0.0..1.0, false, what)?;
        }
        if let Some(v) = &o.noop_max {
            s.noop_max = self.check_range(v, key("noop_max"), 0..10_000, true, "frames")?;
        }
        if let Some(v) = &o.max_episode_frames {
            let what = "frames";
            s.max_episode_frames =
                self.check_range(v, key("max_episode_frames"), 1..u64::MAX, true, what)?;
        }
        s.fire_on_reset = o.fire_on_reset.unwrap_or(s.fire_on_reset);
        s.life_loss_terminal = o.life_loss_terminal.unwrap_or(s.life_loss_terminal);
        s.clip_rewards = o.clip_rewards.unwrap_or(s.clip_rewards);
        s.action_set = o.action_set.unwrap_or(s.action_set);
        Ok(s)
    }
}
