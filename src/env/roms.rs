//! Where the standard ROM files come from, and the check that each is the standard file.
//!
//! The ROMs are the files of the `ale-py` wheel that the project's venv pins
//! (`scripts/setup.sh` installs `ale-py==0.12.1`; the wheel bundles them under
//! `ale_py/roms/`). The folder is found in this order:
//!
//! 1. `ALE_ROMS_DIR`, the variable ale-py itself reads, when it is set;
//! 2. the `ale_py/roms` folder beside the torch package that `sap` was built against (the
//!    project's `.venv`), recorded at build time.
//!
//! Every file is read whole and its MD5 compared with the standard file's
//! ([`Game::expected_md5`]) before ALE sees it; ALE then loads exactly the bytes that were
//! checked (a private copy), so a file replaced in between cannot slip through.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::games::Game;
use super::EnvError;

/// The variable that names a folder of ROM files (the same one ale-py reads).
pub const ROM_DIR_VAR: &str = "ALE_ROMS_DIR";

/// Where the expected MD5s come from.
pub const ROM_SOURCE: &str = "ale-py 0.12.1 (ale_py/roms/md5.json)";

/// The folder found at build time: `ale_py/roms` in the site-packages of the torch wheel.
const BUILT_IN_DIR: &str = env!("SAP_ROM_DIR");

/// A folder of ROM files and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RomDir {
    /// The folder.
    pub path: PathBuf,
    /// Whether it came from [`ROM_DIR_VAR`] (else from the build).
    pub from_env: bool,
}

impl RomDir {
    /// The folder in force: [`ROM_DIR_VAR`] when set and not empty, else the built-in one.
    pub fn current() -> Self {
        match std::env::var_os(ROM_DIR_VAR).filter(|v| !v.is_empty()) {
            Some(v) => RomDir {
                path: PathBuf::from(v),
                from_env: true,
            },
            None => RomDir {
                path: PathBuf::from(BUILT_IN_DIR),
                from_env: false,
            },
        }
    }

    /// A short account of where the folder came from, for messages.
    pub fn origin(&self) -> String {
        if self.from_env {
            format!("{ROM_DIR_VAR}={}", self.path.display())
        } else {
            format!(
                "the ale-py ROM folder of the project's venv ({}); set {ROM_DIR_VAR} to use \
                 another",
                self.path.display()
            )
        }
    }
}

/// A ROM file whose MD5 is the standard one.
#[derive(Clone, Debug)]
pub struct VerifiedRom {
    /// The game.
    pub game: Game,
    /// The file it was read from.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl VerifiedRom {
    /// The MD5 (lowercase hex), which is the game's [`Game::expected_md5`].
    pub fn md5(&self) -> &'static str {
        self.game.expected_md5()
    }
}

/// The MD5 of `bytes` as lowercase hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the game's ROM from the folder in force ([`RomDir::current`]) and checks it.
pub fn read_verified(game: Game) -> Result<VerifiedRom, EnvError> {
    read_verified_in(&RomDir::current(), game)
}

/// Reads the game's ROM from `dir` and checks its MD5 against the standard file's.
pub fn read_verified_in(dir: &RomDir, game: Game) -> Result<VerifiedRom, EnvError> {
    let path = dir.path.join(game.rom_filename());
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            return Err(EnvError::RomMissing {
                game: game.name().into(),
                path: path.display().to_string(),
                expected: game.expected_md5().into(),
                reason: if e.kind() == std::io::ErrorKind::NotFound {
                    "it does not exist".into()
                } else {
                    format!("it cannot be read ({e})")
                },
                origin: dir.origin(),
            })
        }
    };
    let found = md5_hex(&bytes);
    if found != game.expected_md5() {
        return Err(EnvError::RomMismatch {
            game: game.name().into(),
            path: path.display().to_string(),
            found,
            expected: game.expected_md5().into(),
        });
    }
    Ok(VerifiedRom { game, path, bytes })
}

/// The state of one game's file in `dir`: its MD5 when it is there, and whether that is the
/// standard one (for `sap games`).
pub fn inspect(dir: &Path, game: Game) -> Option<(String, bool)> {
    let bytes = std::fs::read(dir.join(game.rom_filename())).ok()?;
    let md5 = md5_hex(&bytes);
    let standard = md5 == game.expected_md5();
    Some((md5, standard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_hex_matches_the_rfc_1321_test_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    fn folder_with(file: &str, bytes: &[u8]) -> (tempfile::TempDir, RomDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), bytes).unwrap();
        let rom_dir = RomDir {
            path: dir.path().to_owned(),
            from_env: true,
        };
        (dir, rom_dir)
    }

    #[test]
    fn a_missing_rom_names_the_game_the_file_and_the_expected_md5() {
        let (_tmp, dir) = folder_with("other.bin", b"x");
        let pong = Game::from_name("Pong").unwrap();
        let msg = read_verified_in(&dir, pong).unwrap_err().to_string();
        assert!(msg.contains("Pong"), "{msg}");
        assert!(msg.contains("pong.bin"), "{msg}");
        assert!(msg.contains(pong.expected_md5()), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(msg.contains(ROM_DIR_VAR), "{msg}");
    }

    #[test]
    fn a_rom_that_is_not_the_standard_file_is_refused_with_both_md5s() {
        let (_tmp, dir) = folder_with("pong.bin", b"not pong");
        let pong = Game::from_name("Pong").unwrap();
        let msg = read_verified_in(&dir, pong).unwrap_err().to_string();
        assert!(msg.contains(&md5_hex(b"not pong")), "{msg}");
        assert!(msg.contains(pong.expected_md5()), "{msg}");
        assert!(msg.contains("pong.bin"), "{msg}");
    }
}
