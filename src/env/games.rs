//! The Atari games this harness can run: every single-player game of the community's standard
//! ROM set (104 of the 108 files ale-py 0.12.1 ships), named in CamelCase (`Pong`,
//! `SpaceInvaders`, `MontezumaRevenge`). Names are Gymnasium's (`rom.title()` without
//! underscores), but for four games that keep the names this harness gave them first:
//! `JamesBond`, `QBert`, `RiverRaid` and `RoboTank`; Gymnasium's `Jamesbond`, `Qbert`,
//! `Riverraid` and `Robotank` are accepted for them too.
//!
//! Left out: Combat, Joust, MazeCraze and Warlords. ale-py ships their files for its
//! multi-agent (PettingZoo) games, but ALE 0.12 has no single-player settings for them and
//! refuses to load them, in ale-py as here.
//!
//! The standard set is the one `ale-py` ships (formerly AutoROM's), which Gymnasium, CleanRL,
//! Stable-Baselines3 and Dopamine run. Each game's expected MD5 below is copied from
//! `ale_py/roms/md5.json` of the `ale-py` 0.12.1 wheel; [`super::roms`] refuses any other
//! file. How each game compares with ale-py 0.12 frame for frame is in
//! [`super::conformance`].

/// Every game: its CamelCase name, ALE's ROM id (the file is `<id>.bin`; ALE picks the
/// game's settings by this name) and the MD5 of the standard file (ale-py 0.12.1).
const GAMES: [(&str, &str, &str); 104] = [
    ("Adventure", "adventure", "4b27f5397c442d25f0c418ccdacf1926"),
    ("AirRaid", "air_raid", "35be55426c1fec32dfb503b4f0651572"),
    ("Alien", "alien", "f1a0a23e6464d954e3a9579c4ccd01c8"),
    ("Amidar", "amidar", "acb7750b4d0c4bd34969802a7deb2990"),
    ("Assault", "assault", "de78b3a064d374390ac0710f95edde92"),
    ("Asterix", "asterix", "89a68746eff7f266bbf08de2483abe55"),
    ("Asteroids", "asteroids", "ccbd36746ed4525821a8083b0d6d2c2c"),
    ("Atlantis", "atlantis", "9ad36e699ef6f45d9eb6c4cf90475c9f"),
    ("Atlantis2", "atlantis2", "826481f6fc53ea47c9f272f7050eedf7"),
    (
        "Backgammon",
        "backgammon",
        "8556b42aa05f94bc29ff39c39b11bff4",
    ),
    (
        "BankHeist",
        "bank_heist",
        "00ce0bdd43aed84a983bef38fe7f5ee3",
    ),
    (
        "BasicMath",
        "basic_math",
        "819aeeb9a2e11deb54e6de334f843894",
    ),
    (
        "BattleZone",
        "battle_zone",
        "41f252a66c6301f1e8ab3612c19bc5d4",
    ),
    (
        "BeamRider",
        "beam_rider",
        "79ab4123a83dc11d468fb2108ea09e2e",
    ),
    ("Berzerk", "berzerk", "136f75c4dd02c29283752b7e5799f978"),
    ("Blackjack", "blackjack", "0a981c03204ac2b278ba392674682560"),
    ("Bowling", "bowling", "c9b7afad3bfd922e006a6bfc1d4f3fe7"),
    ("Boxing", "boxing", "c3ef5c4653212088eda54dc91d787870"),
    ("Breakout", "breakout", "f34f08e5eb96e500e851a80be3277a56"),
    ("Carnival", "carnival", "028024fb8e5e5f18ea586652f9799c96"),
    ("Casino", "casino", "b816296311019ab69a21cb9e9e235d12"),
    ("Centipede", "centipede", "91c2098e88a6b13f977af8c003e0bca5"),
    (
        "ChopperCommand",
        "chopper_command",
        "c1cb228470a87beb5f36e90ac745da26",
    ),
    (
        "CrazyClimber",
        "crazy_climber",
        "55ef7b65066428367844342ed59f956c",
    ),
    ("Crossbow", "crossbow", "8cd26dcf249456fe4aeb8db42d49df74"),
    (
        "Darkchambers",
        "darkchambers",
        "106855474c69d08c8ffa308d47337269",
    ),
    ("Defender", "defender", "0f643c34e40e3f1daafd9c524d3ffe64"),
    (
        "DemonAttack",
        "demon_attack",
        "f0e0addc07971561ab80d9abe1b8d333",
    ),
    (
        "DonkeyKong",
        "donkey_kong",
        "36b20c427975760cb9cf4a47e41369e4",
    ),
    (
        "DoubleDunk",
        "double_dunk",
        "368d88a6c071caba60b4f778615aae94",
    ),
    (
        "Earthworld",
        "earthworld",
        "5aea9974b975a6a844e6df10d2b861c4",
    ),
    (
        "ElevatorAction",
        "elevator_action",
        "71f8bacfbdca019113f3f0801849057e",
    ),
    ("Enduro", "enduro", "94b92a882f6dbaa6993a46e2dcc58402"),
    ("Entombed", "entombed", "6b683be69f92958abe0e2a9945157ad5"),
    ("Et", "et", "615a3bf251a38eb6638cdc7ffbde5480"),
    (
        "FishingDerby",
        "fishing_derby",
        "b8865f05676e64f3bec72b9defdacfa7",
    ),
    (
        "FlagCapture",
        "flag_capture",
        "30512e0e83903fc05541d2f6a6a62654",
    ),
    ("Freeway", "freeway", "8e0ab801b1705a740b476b7f588c6d16"),
    ("Frogger", "frogger", "081e2c114c9c20b61acf25fc95c71bf4"),
    ("Frostbite", "frostbite", "4ca73eb959299471788f0b685c3ba0b5"),
    ("Galaxian", "galaxian", "211774f4c5739042618be8ff67351177"),
    ("Gopher", "gopher", "c16c79aad6272baffb8aae9a7fff0864"),
    ("Gravitar", "gravitar", "8ac18076d01a6b63acf6e2cab4968940"),
    ("Hangman", "hangman", "f16c709df0a6c52f47ff52b9d95b7d8d"),
    (
        "HauntedHouse",
        "haunted_house",
        "f0a6e99f5875891246c3dbecbf2d2cea",
    ),
    ("Hero", "hero", "fca4a5be1251927027f2c24774a02160"),
    (
        "HumanCannonball",
        "human_cannonball",
        "7972e5101fa548b952d852db24ad6060",
    ),
    (
        "IceHockey",
        "ice_hockey",
        "a4c08c4994eb9d24fb78be1793e82e26",
    ),
    ("JamesBond", "jamesbond", "e51030251e440cffaab1ac63438b44ae"),
    (
        "JourneyEscape",
        "journey_escape",
        "718ae62c70af4e5fd8e932fee216948a",
    ),
    ("Kaboom", "kaboom", "5428cdfada281c569c74c7308c7f2c26"),
    ("Kangaroo", "kangaroo", "4326edb70ff20d0ee5ba58fa5cb09d60"),
    (
        "KeystoneKapers",
        "keystone_kapers",
        "6c1f3f2e359dbf55df462ccbcdd2f6bf",
    ),
    ("KingKong", "king_kong", "0dd4c69b5f9a7ae96a7a08329496779a"),
    ("Klax", "klax", "eed9eaf1a0b6a2b9bc4c8032cb43e3fb"),
    ("Koolaid", "koolaid", "534e23210dd1993c828d944c6ac4d9fb"),
    ("Krull", "krull", "4baada22435320d185c95b7dd2bcdb24"),
    (
        "KungFuMaster",
        "kung_fu_master",
        "5b92a93b23523ff16e2789b820e2a4c5",
    ),
    (
        "LaserGates",
        "laser_gates",
        "8e4cd60d93fcde8065c1a2b972a26377",
    ),
    (
        "LostLuggage",
        "lost_luggage",
        "2d76c5d1aad506442b9e9fb67765e051",
    ),
    (
        "MarioBros",
        "mario_bros",
        "e908611d99890733be31733a979c62d8",
    ),
    (
        "MiniatureGolf",
        "miniature_golf",
        "df62a658496ac98a3aa4a6ee5719c251",
    ),
    (
        "MontezumaRevenge",
        "montezuma_revenge",
        "3347a6dd59049b15a38394aa2dafa585",
    ),
    ("MrDo", "mr_do", "aa7bb54d2c189a31bb1fa20099e42859"),
    ("MsPacman", "ms_pacman", "87e79cd41ce136fd4f72cc6e2c161bee"),
    (
        "NameThisGame",
        "name_this_game",
        "36306070f0c90a72461551a7a4f3a209",
    ),
    ("Othello", "othello", "113cd09c9771ac278544b7e90efe7df2"),
    ("Pacman", "pacman", "fc2233fc116faef0d3c31541717ca2db"),
    ("Phoenix", "phoenix", "7e52a95074a66640fcfde124fffd491a"),
    ("Pitfall", "pitfall", "3e90cf23106f2e08b2781e41299de556"),
    ("Pitfall2", "pitfall2", "6d842c96d5a01967be9680080dd5be54"),
    ("Pong", "pong", "60e0ea3cbe0913d39803477945e9e5ec"),
    ("Pooyan", "pooyan", "4799a40b6e889370b7ee55c17ba65141"),
    (
        "PrivateEye",
        "private_eye",
        "ef3a4f64b6494ba770862768caf04b86",
    ),
    ("QBert", "qbert", "484b0076816a104875e00467d431c2d2"),
    ("RiverRaid", "riverraid", "393948436d1f4cc3192410bb918f9724"),
    (
        "RoadRunner",
        "road_runner",
        "ce5cc62608be2cd3ed8abd844efb8919",
    ),
    ("RoboTank", "robotank", "4f618c2429138e0280969193ed6c107e"),
    ("Seaquest", "seaquest", "240bfbac5163af4df5ae713985386f92"),
    (
        "SirLancelot",
        "sir_lancelot",
        "dd0cbe5351551a538414fb9e37fc56e8",
    ),
    ("Skiing", "skiing", "b76fbadc8ffb1f83e2ca08b6fb4d6c9f"),
    ("Solaris", "solaris", "e72eb8d4410152bdcb69e7fba327b420"),
    (
        "SpaceInvaders",
        "space_invaders",
        "72ffbef6504b75e69ee1045af9075f66",
    ),
    ("SpaceWar", "space_war", "b702641d698c60bcdc922dbd8c9dd49c"),
    (
        "StarGunner",
        "star_gunner",
        "a3c1c70024d7aabb41381adbfb6d3b25",
    ),
    ("Superman", "superman", "a9531c763077464307086ec9a1fd057d"),
    ("Surround", "surround", "4d7517ae69f95cfbc053be01312b7dba"),
    ("Tennis", "tennis", "42cdd6a9e42a3639e190722b8ea3fc51"),
    ("Tetris", "tetris", "b0e1ee07fbc73493eac5651a52f90f00"),
    (
        "TicTacToe3D",
        "tic_tac_toe_3d",
        "0db4f4150fecf77e4ce72ca4d04c052f",
    ),
    (
        "TimePilot",
        "time_pilot",
        "fc2104dd2dadf9a6176c1c1c8f87ced9",
    ),
    ("Trondead", "trondead", "fb27afe896e7c928089307b32e5642ee"),
    ("Turmoil", "turmoil", "7a5463545dfb2dcfdafa6074b2f2c15e"),
    ("Tutankham", "tutankham", "085322bae40d904f53bdcc56df0593fc"),
    ("UpNDown", "up_n_down", "a499d720e7ee35c62424de882a3351b6"),
    ("Venture", "venture", "3e899eba0ca8cd2972da1ae5479b4f0d"),
    (
        "VideoCheckers",
        "video_checkers",
        "539d26b6e9df0da8e7465f0f5ad863b7",
    ),
    (
        "VideoChess",
        "video_chess",
        "f0b7db930ca0e548c41a97160b9f6275",
    ),
    (
        "VideoCube",
        "video_cube",
        "3f540a30fdee0b20aed7288e4a5ea528",
    ),
    (
        "VideoPinball",
        "video_pinball",
        "107cc025334211e6d29da0b6be46aec7",
    ),
    (
        "WizardOfWor",
        "wizard_of_wor",
        "7e8aa18bc9502eb57daaf5e7c1e94da7",
    ),
    (
        "WordZapper",
        "word_zapper",
        "ec3beb6d8b5689e867bafb5d5f507491",
    ),
    (
        "YarsRevenge",
        "yars_revenge",
        "c5930d0e8cdae3e037349bfa08e871be",
    ),
    ("Zaxxon", "zaxxon", "eea0da9b987d661264cce69a7c13c3bd"),
];

/// Gymnasium's names of the games this harness names otherwise: (Gymnasium, ours).
const ALIASES: [(&str, &str); 4] = [
    ("Jamesbond", "JamesBond"),
    ("Qbert", "QBert"),
    ("Riverraid", "RiverRaid"),
    ("Robotank", "RoboTank"),
];

/// An Atari game of the standard ROM set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Game(usize);

impl Game {
    /// Looks a game up by its CamelCase name (exact match), or by Gymnasium's name where
    /// it differs.
    pub fn from_name(name: &str) -> Option<Game> {
        let name = ALIASES
            .iter()
            .find(|(gym, _)| *gym == name)
            .map_or(name, |(_, ours)| ours);
        GAMES.iter().position(|(n, _, _)| *n == name).map(Game)
    }

    /// Looks a game up by ALE's ROM id (`bank_heist`).
    pub fn from_rom_id(id: &str) -> Option<Game> {
        GAMES.iter().position(|(_, i, _)| *i == id).map(Game)
    }

    /// Every game, in alphabetical order.
    pub fn all() -> impl Iterator<Item = Game> {
        (0..GAMES.len()).map(Game)
    }

    /// The CamelCase name.
    pub fn name(self) -> &'static str {
        GAMES[self.0].0
    }

    /// ALE's ROM id (`bank_heist`).
    pub fn rom_id(self) -> &'static str {
        GAMES[self.0].1
    }

    /// The ROM's file name (`bank_heist.bin`), which tells ALE which game settings to use.
    pub fn rom_filename(self) -> String {
        format!("{}.bin", self.rom_id())
    }

    /// The MD5 of the standard ROM file, as lowercase hex.
    pub fn expected_md5(self) -> &'static str {
        GAMES[self.0].2
    }
}

impl std::fmt::Display for Game {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every game's name, for messages and did-you-mean suggestions.
pub fn game_names() -> Vec<&'static str> {
    GAMES.iter().map(|(n, _, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gymnasium_names_of_renamed_games_find_them() {
        assert_eq!(Game::from_name("Qbert"), Game::from_name("QBert"));
        assert_eq!(Game::from_name("Robotank").unwrap().name(), "RoboTank");
        assert!(Game::from_name("qbert").is_none());
    }

    #[test]
    fn names_and_rom_ids_are_unique_and_the_md5s_are_hex() {
        let mut names = game_names();
        names.dedup();
        assert_eq!(names.len(), GAMES.len(), "names are sorted and unique");
        for g in Game::all() {
            assert_eq!(Game::from_rom_id(g.rom_id()), Some(g));
            let md5 = g.expected_md5();
            assert!(
                md5.len() == 32
                    && md5
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }
}
