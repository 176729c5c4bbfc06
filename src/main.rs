//! `sap`: parse the command line, run, print errors once with their causes.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`sap games | head`) like other Unix tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
