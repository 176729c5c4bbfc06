//! What a run's rows depend on beyond the manifest, and the reproducible mode that makes
//! them the same on every x86-64 CPU with AVX2.
//!
//! libtorch picks its CPU kernels by instruction set (ATen's vectorised kernels, MKL's GEMM,
//! oneDNN's convolutions), so sums round differently on another CPU and a trained agent
//! diverges. The reproducible mode (manifest key `reproducible = true`) fixes, before
//! libtorch starts, every choice we know it makes by CPU:
//!
//! | variable | value | what it fixes |
//! |---|---|---|
//! | `MKL_CBWR` | `COMPATIBLE` | MKL's conditional numerical reproducibility: one code path on every x86-64 CPU |
//! | `ONEDNN_MAX_CPU_ISA` | `AVX2` | oneDNN (convolutions) never uses AVX-512 or AMX kernels |
//! | `ATEN_CPU_CAPABILITY` | `avx2` | ATen's own kernels (reductions, element-wise) run their AVX2 build |
//! | `CUBLAS_WORKSPACE_CONFIG` | `:4096:8` | cuBLAS's fixed workspace that deterministic CUDA needs |
//!
//! and turns on libtorch's deterministic algorithms (and deterministic cuDNN and oneDNN).
//! The thread count is fixed per cell already. A [`Provenance`] records all of this, with the
//! CPU, the versions and the commit, once per run directory and once per cell, so
//! `sap collect` can refuse to merge rows computed under different settings.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment the reproducible mode sets before libtorch starts.
pub const REPRODUCIBLE_ENV: [(&str, &str); 4] = [
    ("MKL_CBWR", "COMPATIBLE"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
];

/// Variables that would change libtorch's kernels behind the mode's back; the mode removes
/// them (`DNNL_MAX_CPU_ISA` is oneDNN's older name for `ONEDNN_MAX_CPU_ISA`).
pub const REPRODUCIBLE_UNSET: [&str; 3] = [
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "DNNL_MAX_CPU_ISA",
];

/// The file of a run directory (and of each cell folder) that records its provenance.
pub const FILE: &str = "provenance.toml";

extern "C" {
    fn sap_torch_set_deterministic(on: i32) -> i32;
    fn sap_torch_deterministic() -> i32;
    fn sap_torch_cpu_capability(buf: *mut c_char, len: usize);
    fn sap_torch_mkl_version(buf: *mut c_char, len: usize);
    fn sap_torch_onednn_version(buf: *mut c_char, len: usize);
    fn sap_torch_version() -> *const c_char;
}

/// Errors of the reproducible mode and of provenance records.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The CPU lacks what the reproducible mode pins the kernels to.
    #[error(
        "the reproducible mode pins libtorch's kernels to AVX2, so it needs an x86-64 CPU \
         with AVX2 and FMA; this CPU ({cpu}) lacks {missing}. Set reproducible = false: rows \
         are then reproducible only on this kind of CPU"
    )]
    NoAvx2 {
        /// The CPU's model name.
        cpu: String,
        /// The missing instruction sets.
        missing: String,
    },
    /// Executing `sap` again with the mode's environment failed.
    #[error("re-executing {exe} in reproducible mode: {source}")]
    Exec {
        /// The executable.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// libtorch refused the deterministic settings.
    #[error("libtorch refused deterministic algorithms")]
    Deterministic,
    /// A provenance file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What rows depend on beyond the manifest: the machine, the kernels libtorch may use, the
/// versions of everything that computes them, threads, the reproducible mode and the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The CPU's model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// Instruction sets of this CPU that libtorch's kernels may use.
    pub cpu_features: String,
    /// The kernel set ATen's CPU dispatch runs (`DEFAULT`, `AVX2`, `AVX512`).
    pub aten_cpu_capability: String,
    /// `ONEDNN_MAX_CPU_ISA`, or `all` when unset (oneDNN picks the best this CPU has).
    pub onednn_max_cpu_isa: String,
    /// `MKL_CBWR`, or `auto` when unset (MKL picks its code path by CPU).
    pub mkl_cbwr: String,
    /// libtorch's version.
    pub torch: String,
    /// MKL's version line, as libtorch reports it.
    pub mkl: String,
    /// oneDNN's version line, as libtorch reports it.
    pub onednn: String,
    /// The ALE build that emulated the games (`ALE 0.12.1 (ale-py's source distribution)`).
    pub ale: String,
    /// `sap`'s version.
    pub sap: String,
    /// The git commit `sap` was built from (`-dirty` when it had uncommitted changes).
    pub commit: String,
    /// torch threads of each cell.
    pub threads: u32,
    /// Whether the reproducible mode was in force.
    pub reproducible: bool,
    /// Whether libtorch's deterministic algorithms were on.
    pub deterministic: bool,
    /// Where networks run: `cpu` or `cuda`.
    pub device: String,
    /// The ROM file of an Atari cell's game (absent for other cells and in run records).
    /// Not among [`Provenance::rows_key`]: cells of different games differ here by nature;
    /// `sap collect` compares it per game instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rom: Option<RomRecord>,
}

/// Which ROM file an Atari cell played.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RomRecord {
    /// The game (CamelCase).
    pub game: String,
    /// ALE's file name (`bank_heist.bin`).
    pub file: String,
    /// The file's MD5.
    pub md5: String,
}

impl RomRecord {
    /// The record of `game`'s standard ROM file, the only one `sap` loads.
    pub fn standard(game: crate::env::Game) -> Self {
        RomRecord {
            game: game.name().to_owned(),
            file: game.rom_filename(),
            md5: game.expected_md5().to_owned(),
        }
    }
}

/// The ALE build `sap` emulates with.
pub fn ale_version() -> String {
    format!(
        "ALE {} (ale-py's source distribution)",
        crate::env::ale::ALE_VERSION
    )
}

/// Copies a C string that the shim writes into a buffer.
fn shim_string(f: unsafe extern "C" fn(*mut c_char, usize)) -> String {
    let mut buf = vec![0 as c_char; 512];
    // SAFETY: the shim writes at most `len` bytes, NUL included.
    unsafe {
        f(buf.as_mut_ptr(), buf.len());
        CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .trim()
            .to_owned()
    }
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// The instruction sets (of those libtorch's x86 kernels dispatch on) this CPU has.
fn cpu_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) { out.push($f); })*
            };
        }
        detect!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512vnni",
            "avx512bf16"
        );
    }
    out
}

/// Whether every variable of [`REPRODUCIBLE_ENV`] has the mode's value in this process.
fn env_is_reproducible() -> bool {
    REPRODUCIBLE_ENV
        .iter()
        .all(|(k, v)| std::env::var(k).as_deref() == Ok(*v))
        && REPRODUCIBLE_UNSET
            .iter()
            .all(|k| std::env::var_os(k).is_none())
}

/// Checks that this CPU can run the kernels the reproducible mode pins (AVX2 and FMA).
pub fn check_cpu_for_reproducible_mode() -> Result<(), ProvenanceError> {
    check_features(&cpu_model(), &cpu_features())
}

/// Checks that a CPU named `cpu` with instruction sets `features` can run the kernels the
/// reproducible mode pins (AVX2 and FMA).
pub fn check_features(cpu: &str, features: &[&str]) -> Result<(), ProvenanceError> {
    let missing: Vec<&str> = ["avx2", "fma"]
        .into_iter()
        .filter(|f| !features.contains(f))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ProvenanceError::NoAvx2 {
            cpu: cpu.to_owned(),
            missing: missing.join(" and "),
        })
    }
}

/// Puts this process into the reproducible mode. When any variable of
/// [`REPRODUCIBLE_ENV`] differs (or one of [`REPRODUCIBLE_UNSET`] is set), it sets them all
/// and executes this program again with the
/// same arguments (libtorch and MKL read them once, at their first use, so they must be
/// there from the start); then it turns on deterministic algorithms. Call it first, before
/// any tensor work; it returns only in a process already in the mode.
pub fn enter_reproducible_mode() -> Result<(), ProvenanceError> {
    check_cpu_for_reproducible_mode()?;
    if !env_is_reproducible() {
        for (k, v) in REPRODUCIBLE_ENV {
            std::env::set_var(k, v);
        }
        for k in REPRODUCIBLE_UNSET {
            std::env::remove_var(k);
        }
        let exe = std::env::current_exe().map_err(|source| ProvenanceError::Exec {
            exe: PathBuf::from("sap"),
            source,
        })?;
        use std::os::unix::process::CommandExt;
        let source = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .exec();
        return Err(ProvenanceError::Exec { exe, source });
    }
    set_deterministic(true)
}

/// Turns libtorch's deterministic algorithms (with deterministic cuDNN and oneDNN, and no
/// cuDNN benchmarking) on or off.
pub fn set_deterministic(on: bool) -> Result<(), ProvenanceError> {
    // SAFETY: a plain call into libtorch's global context; no pointers cross.
    match unsafe { sap_torch_set_deterministic(i32::from(on)) } {
        0 => Ok(()),
        _ => Err(ProvenanceError::Deterministic),
    }
}

/// Whether this process computes in the reproducible mode: the environment set and
/// deterministic algorithms on.
pub fn in_reproducible_mode() -> bool {
    // SAFETY: reads a flag of libtorch's global context.
    env_is_reproducible() && unsafe { sap_torch_deterministic() } == 1
}

impl Provenance {
    /// This process's provenance, for cells that run with `threads` torch threads.
    pub fn current(threads: u32) -> Self {
        let var = |k: &str, unset: &str| std::env::var(k).unwrap_or_else(|_| unset.to_owned());
        // SAFETY: the shim returns a pointer to a string literal.
        let torch = unsafe { CStr::from_ptr(sap_torch_version()) }
            .to_string_lossy()
            .into_owned();
        Provenance {
            cpu: cpu_model(),
            cpu_features: cpu_features().join(" "),
            aten_cpu_capability: shim_string(sap_torch_cpu_capability),
            onednn_max_cpu_isa: var("ONEDNN_MAX_CPU_ISA", "all"),
            mkl_cbwr: var("MKL_CBWR", "auto"),
            torch,
            mkl: shim_string(sap_torch_mkl_version),
            onednn: shim_string(sap_torch_onednn_version),
            ale: ale_version(),
            sap: env!("CARGO_PKG_VERSION").to_owned(),
            commit: env!("SAP_GIT_COMMIT").to_owned(),
            threads,
            reproducible: in_reproducible_mode(),
            // SAFETY: reads a flag of libtorch's global context.
            deterministic: unsafe { sap_torch_deterministic() } == 1,
            device: if tch::Cuda::is_available() {
                "cuda".to_owned()
            } else {
                "cpu".to_owned()
            },
            rom: None,
        }
    }

    /// The settings rows depend on, as (key, value). In the reproducible mode the CPU itself
    /// drops out: its kernels are pinned, so any x86-64 CPU with AVX2 gives the same rows.
    pub fn rows_key(&self) -> Vec<(&'static str, String)> {
        let mut key = Vec::new();
        if !self.reproducible {
            key.push(("cpu", self.cpu.clone()));
            key.push(("cpu_features", self.cpu_features.clone()));
        }
        key.extend([
            ("aten_cpu_capability", self.aten_cpu_capability.clone()),
            ("onednn_max_cpu_isa", self.onednn_max_cpu_isa.clone()),
            ("mkl_cbwr", self.mkl_cbwr.clone()),
            ("torch", self.torch.clone()),
            ("mkl", self.mkl.clone()),
            ("onednn", self.onednn.clone()),
            ("ale", self.ale.clone()),
            ("sap", self.sap.clone()),
            ("commit", self.commit.clone()),
            ("threads", self.threads.to_string()),
            ("reproducible", self.reproducible.to_string()),
            ("deterministic", self.deterministic.to_string()),
            ("device", self.device.clone()),
        ]);
        key
    }

    /// The settings rows depend on that differ between `self` and `other`, one line each:
    /// `key: ours vs theirs`. Keys that only one side's mode compares (the CPU outside the
    /// reproducible mode) are left out: the `reproducible` line already tells them apart.
    pub fn differences(&self, other: &Provenance) -> Vec<String> {
        let theirs = other.rows_key();
        self.rows_key()
            .into_iter()
            .filter_map(|(k, v)| {
                let (_, tv) = theirs.iter().find(|(tk, _)| *tk == k)?;
                (*tv != v).then(|| format!("{k}: {v:?} vs {tv:?}"))
            })
            .collect()
    }

    /// Writes the record atomically.
    pub fn write(&self, path: &Path) -> Result<(), crate::record::RecordError> {
        let text = toml::to_string_pretty(self).expect("a provenance always serialises");
        crate::record::write_atomic(path, text.as_bytes())
    }

    /// Reads a record; `None` when the file does not exist (runs made before records).
    pub fn read(path: &Path) -> Result<Option<Self>, ProvenanceError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ProvenanceError::File {
                    path: path.to_owned(),
                    message: format!("cannot read it: {e}"),
                })
            }
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| ProvenanceError::File {
                path: path.to_owned(),
                message: format!("not a provenance record: {}", e.message()),
            })
    }
}
