//! Reference scores for human-normalised Atari scores (docs/ARCHITECTURE.md section 7):
//! `hns = (score - random) / (human - random)`.
//!
//! Source: Mnih et al. 2015, "Human-level control through deep reinforcement learning",
//! Nature 518, 529-533, Extended Data Table 2, the "Random play" and "Human" columns for
//! the paper's 49 games (raw game scores; the human tester played about two hours per game
//! and the random agent chose an action at 10 Hz). Games are named as this harness names
//! them (`JamesBond`, `QBert`, `RiverRaid`, `RoboTank`). Later papers (Atari-57, e.g.
//! DQN Zoo and rliable) use other human scores for some games (Boxing 12.1 rather than 4.3):
//! their normalised scores are not comparable with these.

/// A game's random-play and human scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReferenceScores {
    /// The random agent's mean score.
    pub random: f64,
    /// The human tester's mean score.
    pub human: f64,
}

/// (game, random, human) of the Nature DQN table, in its order.
pub const NATURE_DQN: [(&str, f64, f64); 49] = [
    ("Alien", 227.8, 6875.0),
    ("Amidar", 5.8, 1676.0),
    ("Assault", 222.4, 1496.0),
    ("Asterix", 210.0, 8503.0),
    ("Asteroids", 719.1, 13157.0),
    ("Atlantis", 12850.0, 29028.0),
    ("BankHeist", 14.2, 734.4),
    ("BattleZone", 2360.0, 37800.0),
    ("BeamRider", 363.9, 5775.0),
    ("Bowling", 23.1, 154.8),
    ("Boxing", 0.1, 4.3),
    ("Breakout", 1.7, 31.8),
    ("Centipede", 2091.0, 11963.0),
    ("ChopperCommand", 811.0, 9882.0),
    ("CrazyClimber", 10781.0, 35411.0),
    ("DemonAttack", 152.1, 3401.0),
    ("DoubleDunk", -18.6, -15.5),
    ("Enduro", 0.0, 309.6),
    ("FishingDerby", -91.7, 5.5),
    ("Freeway", 0.0, 29.6),
    ("Frostbite", 65.2, 4335.0),
    ("Gopher", 257.6, 2321.0),
    ("Gravitar", 173.0, 2672.0),
    ("Hero", 1027.0, 25763.0),
    ("IceHockey", -11.2, 0.9),
    ("JamesBond", 29.0, 406.7),
    ("Kangaroo", 52.0, 3035.0),
    ("Krull", 1598.0, 2395.0),
    ("KungFuMaster", 258.5, 22736.0),
    ("MontezumaRevenge", 0.0, 4367.0),
    ("MsPacman", 307.3, 15693.0),
    ("NameThisGame", 2292.0, 4076.0),
    ("Pong", -20.7, 9.3),
    ("PrivateEye", 24.9, 69571.0),
    ("QBert", 163.9, 13455.0),
    ("RiverRaid", 1339.0, 13513.0),
    ("RoadRunner", 11.5, 7845.0),
    ("RoboTank", 2.2, 11.9),
    ("Seaquest", 68.4, 20182.0),
    ("SpaceInvaders", 148.0, 1652.0),
    ("StarGunner", 664.0, 10250.0),
    ("Tennis", -23.8, -8.9),
    ("TimePilot", 3568.0, 5925.0),
    ("Tutankham", 11.4, 167.7),
    ("UpNDown", 533.4, 9082.0),
    ("Venture", 0.0, 1188.0),
    ("VideoPinball", 16257.0, 17298.0),
    ("WizardOfWor", 563.5, 4757.0),
    ("Zaxxon", 32.5, 9173.0),
];

/// The reference scores of `game` (a CamelCase Atari name), if the table has it.
pub fn reference(game: &str) -> Option<ReferenceScores> {
    NATURE_DQN
        .iter()
        .find(|(name, _, _)| *name == game)
        .map(|&(_, random, human)| ReferenceScores { random, human })
}

/// The human-normalised score of `score` on `game`; `None` for a game the table lacks or a
/// score that is not finite.
pub fn hns(game: &str, score: f64) -> Option<f64> {
    let r = reference(game)?;
    let v = (score - r.random) / (r.human - r.random);
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_normalises_against_random_minus_20_7_and_human_9_3() {
        assert!((hns("Pong", 9.3).unwrap() - 1.0).abs() < 1e-12);
        assert!(hns("Pong", -20.7).unwrap().abs() < 1e-12);
        assert!((hns("Pong", -5.7).unwrap() - 0.5).abs() < 1e-12);
        assert!((hns("Pong", 21.0).unwrap() - 41.7 / 30.0).abs() < 1e-12);
        // Breakout: (18.6 - 1.7) / (31.8 - 1.7).
        assert!((hns("Breakout", 18.6).unwrap() - 16.9 / 30.1).abs() < 1e-12);
    }

    #[test]
    fn a_game_outside_the_table_has_no_normalised_score() {
        assert_eq!(hns("Berzerk", 100.0), None);
        assert_eq!(hns("CartPole", 500.0), None);
        assert_eq!(hns("Pong", f64::NAN), None);
    }

    #[test]
    fn every_game_of_the_table_is_a_bundled_game_and_humans_beat_random() {
        for (name, random, human) in NATURE_DQN {
            assert!(crate::env::games::Game::from_name(name).is_some(), "{name}");
            assert!(human > random, "{name}");
        }
        let mut names: Vec<&str> = NATURE_DQN.iter().map(|g| g.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 49, "49 distinct games");
    }
}
