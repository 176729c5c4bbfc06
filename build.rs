//! Gives every binary an rpath to libtorch's `lib` folder (the PyPI wheel's `torch/lib`),
//! so `sap` runs without LD_LIBRARY_PATH; links the C++ runtime that ALE needs; compiles
//! `src/native/torch_config.cpp` (the libtorch settings tch does not expose: deterministic
//! algorithms, the CPU kernel set, library versions); and records the versions and the git
//! commit that `sap` writes into every run directory; and records where the standard ROM
//! files are (the ale-py wheel beside the torch wheel).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // Set by torch-sys (`links = "tch"`): the folder holding libtorch_cpu.so and friends.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    if let Some(lib) = &lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
        compile_torch_config(Path::new(lib));
    }
    let roms = rom_dir(lib.as_deref());
    println!("cargo:rustc-env=SAP_ROM_DIR={}", roms.display());
    // <venv>/lib/pythonX.Y/site-packages/ale_py/roms -> <venv>
    let venv = roms.ancestors().nth(5).map(Path::to_path_buf);
    let python = venv
        .as_ref()
        .map_or_else(|| PathBuf::from("python3"), |venv| venv.join("bin/python"));
    println!("cargo:rustc-env=SAP_VENV_PYTHON={}", python.display());
    compile_ale(venv.as_deref());
    // ALE is C++ and writes PNGs with zlib.
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=z");
    println!("cargo:rustc-env=SAP_GIT_COMMIT={}", git_commit());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/native/torch_config.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
}

/// The standard ROM files: `ale_py/roms` in the site-packages that hold the torch wheel
/// (`<site-packages>/torch/lib`), where `scripts/setup.sh` installs ale-py; without a torch
/// wheel, the project venv's site-packages.
fn rom_dir(torch_lib: Option<&str>) -> PathBuf {
    let site_packages = torch_lib
        .map(Path::new)
        .and_then(|lib| lib.parent()?.parent())
        .filter(|sp| sp.join("torch").is_dir())
        .map(Path::to_path_buf)
        .or_else(|| {
            let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?);
            let lib = std::fs::read_dir(root.join(".venv/lib")).ok()?;
            lib.flatten()
                .map(|e| e.path().join("site-packages"))
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(|| PathBuf::from(".venv/lib/python3/site-packages"));
    site_packages.join("ale_py").join("roms")
}

/// The ALE release whose sources `scripts/setup.sh` unpacks into `<venv>/src`.
const ALE_VERSION: &str = "0.12.1";

/// Compiles ALE from the ale-py source distribution (the emulator of the ale-py wheel that
/// Gymnasium, CleanRL, SB3 and Dopamine run) with `src/native/ale_shim.cpp`, its C interface.
fn compile_ale(venv: Option<&Path>) {
    let root = venv
        .map(|v| v.join(format!("src/ale_py-{ALE_VERSION}")))
        .unwrap_or_default();
    let ale = root.join("src/ale");
    if !ale.join("ale_interface.cpp").is_file() {
        panic!(
            "the ALE {ALE_VERSION} sources are missing from {}: run scripts/setup.sh (or `make \
             setup`), which fetches ale-py's source distribution into the project's venv",
            root.display()
        );
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let template = std::fs::read_to_string(ale.join("version.hpp.in")).expect("version.hpp.in");
    let parts: Vec<&str> = ALE_VERSION.split('.').collect();
    let version = template
        .replace("@ALE_VERSION@", ALE_VERSION)
        .replace("@ALE_VERSION_MAJOR@", parts[0])
        .replace("@ALE_VERSION_MINOR@", parts[1])
        .replace("@ALE_VERSION_PATCH@", parts[2])
        .replace("@ALE_VERSION_GIT_SHA@", "sdist");
    std::fs::write(out.join("version.hpp"), version).expect("writing version.hpp");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(root.join("src"))
        .include(&out)
        .opt_level(3)
        .warnings(false)
        .file("src/native/ale_shim.cpp")
        .file(ale.join("ale_interface.cpp"));
    // The sources CMake lists (ALE's src/ale/*/CMakeLists.txt); no SDL: no window, no sound.
    for dir in [
        "common",
        "emucore",
        "environment",
        "games",
        "games/supported",
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(ale.join(dir))
            .unwrap_or_else(|e| panic!("reading {}: {e}", ale.join(dir).display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("cpp" | "cxx")))
            .collect();
        files.sort();
        build.files(files);
    }
    build.compile("sap_ale");
    println!("cargo:rerun-if-changed=src/native/ale_shim.cpp");
    println!(
        "cargo:rerun-if-changed={}",
        ale.join("ale_interface.cpp").display()
    );
}

/// The shim against libtorch's headers, which sit beside its `lib` folder.
fn compile_torch_config(lib: &Path) {
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    // PyPI wheels of torch 2.13 use the C++11 ABI, as torch-sys assumes by default.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("src/native/torch_config.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .compile("sap_torch_config");
}

/// `git rev-parse HEAD`, with `-dirty` when tracked files differ from it; `unknown` outside
/// a git checkout.
fn git_commit() -> String {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "HEAD"]) else {
        return "unknown".to_owned();
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = root.join(dir);
        // A new commit or checkout moves HEAD or the index; edits to the sources rebuild
        // the crate anyway.
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
        println!("cargo:rerun-if-changed=src");
    }
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}
