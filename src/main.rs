//! `sap`: parse the command line, run, print errors once with their causes.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// How long torch's OpenMP workers (libgomp) spin after a parallel region before they sleep,
/// unless the user sets `GOMP_SPINCOUNT` or `OMP_WAIT_POLICY`. When the defenses sampled on
/// their own threads, the default (300,000 spins) kept both cores busy spinning meanwhile, and
/// 10,000 took SAP-100 forward passes from 6.4-6.7 to 5.2-5.3 dense-pass times (ResNet-20).
/// The defenses now run on the OpenMP team itself (`defense::team`), where it matters little
/// (one run each here: 1.89 with the default, 1.81 with 10,000; `sap bench defense`). Results
/// do not depend on it.
const GOMP_SPINCOUNT: &str = "10000";

/// libgomp reads its settings when it is loaded, before `main`: to change them the process
/// starts itself again with the variable set. If that fails, it runs with the defaults.
fn set_openmp_spin() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GOMP_SPINCOUNT").is_some() || std::env::var_os("OMP_WAIT_POLICY").is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
        .exec();
    tracing::debug!("could not restart with GOMP_SPINCOUNT set ({err}); keeping the defaults");
}

fn main() -> ExitCode {
    set_openmp_spin();
    // Die quietly on a closed pipe (`sap games | head`) like other Unix tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    sap_harness::memory::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SAP_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = sap_harness::cli::Cli::parse();
    let code = match sap_harness::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            sap_harness::errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    match sap_harness::console::finish() {
        None => code,
        Some(e) => {
            sap_harness::errln!("error: writing to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}
