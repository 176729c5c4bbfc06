//! One writer per run folder and per cell folder: an advisory lock on a `.lock` file.
//!
//! `sap run` (and `sap slurm`, while it prepares the folder) holds the run folder's lock for
//! as long as it runs; every cell, in `sap run-cell` or in a `sap run` child, holds its cell
//! folder's lock while it writes. A second writer refuses at once, naming the holder. The
//! lock file keeps the holder's pid, host, command and start time for that message.
//!
//! The lock is `flock(2)`, which the kernel releases when the holder's process ends, however
//! it ends: a kill -9 leaves no lock behind, only the file naming the last holder, which the
//! next writer takes over with a warning. On Linux NFS clients `flock` is carried out as a
//! POSIX byte-range lock, which NFSv4 (and NFSv3 with its lock manager) honours across
//! nodes, as Slurm clusters' shared file systems do. On a file system that refuses locks
//! (Lustre mounted with `noflock`) the lock cannot be taken and `sap` says so and goes on
//! without one; where a file system grants locks only per node (Lustre's `localflock`), two
//! writers on different nodes are not detected.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The lock file's name inside a run or cell folder.
pub const FILE: &str = ".lock";

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FolderLock {
    file: Option<File>,
    path: PathBuf,
}

impl FolderLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FolderLock {
    /// Clears the holder's account before the lock goes with the file: a lock file that
    /// still names a holder was left by one that did not end normally.
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.set_len(0);
        }
    }
}

/// This host's name.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; gethostname NUL-terminates on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".to_owned()
    }
}

/// Who holds (or last held) a lock, as written in its file.
fn holder_text(pid: u32, what: &str) -> String {
    let command: Vec<String> = std::env::args().collect();
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut t = toml::Table::new();
    t.insert("pid".into(), toml::Value::Integer(i64::from(pid)));
    t.insert("host".into(), toml::Value::String(host_name()));
    t.insert("holder".into(), toml::Value::String(what.to_owned()));
    t.insert("command".into(), toml::Value::String(command.join(" ")));
    t.insert("since".into(), toml::Value::String(since));
    t.to_string()
}

/// A one-line account of a lock file's holder, from its text.
fn describe(text: &str) -> String {
    let t: toml::Table = toml::from_str(text).unwrap_or_default();
    let get = |k: &str| {
        t.get(k)
            .map(|v| match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "?".to_owned())
    };
    format!(
        "{} (pid {} on host {}, since {}: `{}`)",
        get("holder"),
        get("pid"),
        get("host"),
        get("since"),
        get("command")
    )
}

/// Whether the lock file names a process other than this one (a holder that ended without
/// its file being cleared: the lock itself died with it).
fn names_another_process(text: &str) -> bool {
    let t: toml::Table = toml::from_str(text).unwrap_or_default();
    t.get("pid").and_then(toml::Value::as_integer) != Some(i64::from(std::process::id()))
        && t.contains_key("pid")
}

/// Takes the lock of `folder` (which must exist) for `what` (`sap run`, `cell <id>`), or
/// fails at once naming the holder.
pub fn acquire(folder: &Path, what: &str) -> Result<FolderLock> {
    let path = folder.join(FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    // SAFETY: a valid descriptor; flock only changes the lock state of the open file.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    let mut previous = String::new();
    let _ = file.read_to_string(&mut previous);
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            bail!(
                "{} is in use by {}; two writers would write every row twice. Wait for it to \
                 end, or stop it, then run again (a resume continues where it stopped)",
                folder.display(),
                describe(&previous)
            );
        }
        tracing::warn!(
            "cannot lock {} ({err}): this file system refuses locks, so a second writer \
             would not be detected",
            path.display()
        );
        return Ok(FolderLock { file: None, path });
    }
    if !previous.trim().is_empty() && names_another_process(&previous) {
        tracing::warn!(
            "taking over the lock of {}, held by {}, which ended without releasing it (killed \
             or crashed); its cells resume from what they wrote",
            folder.display(),
            describe(&previous)
        );
    }
    let text = holder_text(std::process::id(), what);
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the lock file {}", path.display()))?;
    Ok(FolderLock {
        file: Some(file),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_a_folder_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "sap run").unwrap();
        let e = acquire(dir.path(), "sap run").unwrap_err().to_string();
        assert!(e.contains("is in use by sap run"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains(&host_name()), "{e}");
        drop(first);
        assert_eq!(
            common_text(&dir.path().join(FILE)),
            "",
            "a released lock names nobody"
        );
        let again = acquire(dir.path(), "cell x").unwrap();
        assert!(common_text(again.path()).contains("holder = \"cell x\""));
    }

    fn common_text(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn a_lock_file_left_by_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "pid = 999999999\nhost = \"elsewhere\"\nholder = \"sap run\"\n",
        )
        .unwrap();
        let lock = acquire(dir.path(), "sap run").unwrap();
        let text = common_text(lock.path());
        assert!(
            text.contains(&format!("pid = {}", std::process::id())),
            "{text}"
        );
    }
}
