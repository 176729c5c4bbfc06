//! The Atari games this harness can run: the ROMs bundled with the `ale` crate, named in
//! CamelCase (`Pong`, `SpaceInvaders`, `MontezumaRevenge`).
//!
//! Defender is bundled but left out: ALE 0.6's `DefenderSettings::setMode` presses SELECT
//! until a RAM byte reads mode 1, which never happens with the bundled ROM, so loading it
//! hangs forever.

use ale::BundledRom;

/// Every bundled game: its CamelCase name and the ROM.
const GAMES: [(&str, BundledRom); 61] = [
    ("Adventure", BundledRom::Adventure),
    ("AirRaid", BundledRom::AirRaid),
    ("Alien", BundledRom::Alien),
    ("Amidar", BundledRom::Amidar),
    ("Assault", BundledRom::Assault),
    ("Asterix", BundledRom::Asterix),
    ("Asteroids", BundledRom::Asteroids),
    ("Atlantis", BundledRom::Atlantis),
    ("BankHeist", BundledRom::BankHeist),
    ("BattleZone", BundledRom::BattleZone),
    ("BeamRider", BundledRom::BeamRider),
    ("Berzerk", BundledRom::Berzerk),
    ("Bowling", BundledRom::Bowling),
    ("Boxing", BundledRom::Boxing),
    ("Breakout", BundledRom::Breakout),
    ("Carnival", BundledRom::Carnival),
    ("Centipede", BundledRom::Centipede),
    ("ChopperCommand", BundledRom::ChopperCommand),
    ("CrazyClimber", BundledRom::CrazyClimber),
    ("DemonAttack", BundledRom::DemonAttack),
    ("DoubleDunk", BundledRom::DoubleDunk),
    ("ElevatorAction", BundledRom::ElevatorAction),
    ("Enduro", BundledRom::Enduro),
    ("FishingDerby", BundledRom::FishingDerby),
    ("Freeway", BundledRom::Freeway),
    ("Frostbite", BundledRom::Frostbite),
    ("Gopher", BundledRom::Gopher),
    ("Gravitar", BundledRom::Gravitar),
    ("Hero", BundledRom::Hero),
    ("IceHockey", BundledRom::IceHockey),
    ("JamesBond", BundledRom::JamesBond),
    ("JourneyEscape", BundledRom::JourneyEscape),
    ("Kaboom", BundledRom::Kaboom),
    ("Kangaroo", BundledRom::Kangaroo),
    ("Krull", BundledRom::Krull),
    ("KungFuMaster", BundledRom::KungFuMaster),
    ("MontezumaRevenge", BundledRom::MontezumaRevenge),
    ("MsPacman", BundledRom::MsPacman),
    ("NameThisGame", BundledRom::NameThisGame),
    ("Phoenix", BundledRom::Phoenix),
    ("Pitfall", BundledRom::Pitfall),
    ("Pong", BundledRom::Pong),
    ("Pooyan", BundledRom::Pooyan),
    ("PrivateEye", BundledRom::PrivateEye),
    ("QBert", BundledRom::QBert),
    ("RiverRaid", BundledRom::RiverRaid),
    ("RoadRunner", BundledRom::RoadRunner),
    ("RoboTank", BundledRom::RoboTank),
    ("Seaquest", BundledRom::Seaquest),
    ("Skiing", BundledRom::Skiing),
    ("SpaceInvaders", BundledRom::SpaceInvaders),
    ("StarGunner", BundledRom::StarGunner),
    ("Tennis", BundledRom::Tennis),
    ("TimePilot", BundledRom::TimePilot),
    ("Tutankham", BundledRom::Tutankham),
    ("UpNDown", BundledRom::UpNDown),
    ("Venture", BundledRom::Venture),
    ("VideoPinball", BundledRom::VideoPinball),
    ("WizardOfWor", BundledRom::WizardOfWor),
    ("YarsRevenge", BundledRom::YarsRevenge),
    ("Zaxxon", BundledRom::Zaxxon),
];

/// An Atari game with a bundled ROM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Game(usize);

impl Game {
    /// Looks a game up by its CamelCase name (exact match).
    pub fn from_name(name: &str) -> Option<Game> {
        GAMES.iter().position(|(n, _)| *n == name).map(Game)
    }

    /// Every playable bundled game, in alphabetical order.
    pub fn all() -> impl Iterator<Item = Game> {
        (0..GAMES.len()).map(Game)
    }

    /// The CamelCase name.
    pub fn name(self) -> &'static str {
        GAMES[self.0].0
    }

    /// The ROM's file name, which tells ALE which game settings to use.
    pub fn rom_filename(self) -> &'static str {
        GAMES[self.0].1.filename()
    }

    /// The ROM's bytes.
    pub fn rom_data(self) -> &'static [u8] {
        GAMES[self.0].1.data()
    }
}

impl std::fmt::Display for Game {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every bundled game's name, for messages and did-you-mean suggestions.
pub fn game_names() -> Vec<&'static str> {
    GAMES.iter().map(|(n, _)| *n).collect()
}
