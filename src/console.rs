//! Writing to standard output and standard error without panicking.
//!
//! `println!` and `eprintln!` panic when the stream cannot be written (a full disk behind a
//! redirection, say), which would lose the error that mattered. [`outln!`](crate::outln)
//! and [`errln!`](crate::errln) never panic: the first failure to write standard output is
//! kept and reported by [`finish`] once, on standard error, with a failing exit status; a
//! failure to write standard error itself has nowhere to go and is dropped.

use std::io::{self, Write};
use std::sync::Mutex;

static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Writes formatted text to standard output, remembering the first failure.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        remember(e);
    }
}

/// Writes formatted text to standard error; a failure is dropped.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

fn remember(e: io::Error) {
    let mut slot = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e.to_string());
    }
}

/// Flushes standard output and returns the first failure to write it, if any.
pub fn finish() -> Option<String> {
    if let Err(e) = io::stdout().lock().flush() {
        remember(e);
    }
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// `println!` that never panics (see [`crate::console`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::console::write_out(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics (see [`crate::console`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}
