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
    // <venv>/lib/pythonX.Y/site-packages/ale_py/roms -> <venv>/bin/python
    let python = roms
        .ancestors()
        .nth(5)
        .map_or_else(|| PathBuf::from("python3"), |venv| venv.join("bin/python"));
    println!("cargo:rustc-env=SAP_VENV_PYTHON={}", python.display());
    // ale-sys links ALE statically but not the C++ standard library it needs.
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-env=SAP_GIT_COMMIT={}", git_commit());
    println!(
        "cargo:rustc-env=SAP_ALE_SYS_VERSION={}",
        locked_version("ale-sys")
    );
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

/// A package's version in Cargo.lock (`unknown` if absent).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .and_then(|i| lock[i + needle.len()..].split('"').next())
        .unwrap_or("unknown")
        .to_owned()
}
