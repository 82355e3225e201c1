//! One owner of `storage.data_dir`: an exclusive lock on `data_dir/dms.lock`.
//!
//! Whoever opens the stores of a data directory — `dms serve`, or a CLI command running
//! in-process because no server holds the directory — first takes this lock, and keeps it for
//! as long as it has the stores open. So there is never more than one process writing the
//! embedded store, the metadata database or the change log, and start-up recovery (committing
//! what a crash left pending, resuming interrupted jobs) runs only in the holder.
//!
//! The lock is an advisory `flock` (std's `File::try_lock`) on the lock file, released by the
//! kernel when the holder exits, however it exits: a SIGKILLed server leaves no stale lock. The
//! file also says who holds it ([`Holder`]: pid, command, and for `dms serve` the address it
//! answers on), so a CLI command that cannot take the lock knows where to send its request
//! instead. Nothing here depends on timing: "is a server running" is "is the lock held by a
//! `serve`", never "did `/health` answer quickly".

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "dms.lock";

/// Who holds a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The `dms` subcommand: `serve`, `import`, `backfill`, ...
    pub command: String,
    /// Where a `serve` answers, once it has bound its listener.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
}

impl Holder {
    /// The base URL of a serving holder (an unspecified bind address becomes loopback).
    pub fn base_url(&self) -> Option<String> {
        let mut addr = self.addr?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Some(format!("http://{addr}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot lock data directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    dir: PathBuf,
    holder: std::sync::Mutex<Holder>,
}

/// The outcome of [`DataDirLock::try_acquire`].
#[derive(Debug)]
pub enum Acquired {
    Mine(DataDirLock),
    /// Another process holds it; what it wrote about itself, when readable.
    Held(Option<Holder>),
}

impl DataDirLock {
    /// Takes the lock of `dir` (created when missing) for `command`, or reports its holder.
    pub fn try_acquire(dir: &Path, command: &str) -> Result<Acquired, LockError> {
        let io = |source| LockError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // Never truncate on open: the file holds the current holder's description.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Acquired::Held(read_holder(dir))),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let lock = DataDirLock {
            file,
            dir: dir.to_path_buf(),
            holder: std::sync::Mutex::new(Holder {
                pid: std::process::id(),
                command: command.to_string(),
                addr: None,
            }),
        };
        lock.publish().map_err(io)?;
        Ok(Acquired::Mine(lock))
    }

    /// The data directory this lock holds.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the address a `serve` answers on, so CLI commands can reach it.
    pub fn set_addr(&self, addr: SocketAddr) -> Result<(), LockError> {
        self.holder.lock().unwrap_or_else(|p| p.into_inner()).addr = Some(addr);
        self.publish().map_err(|source| LockError::Io {
            dir: self.dir.display().to_string(),
            source,
        })
    }

    fn publish(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec(&*self.holder.lock().unwrap_or_else(|p| p.into_inner()))
            .map_err(std::io::Error::other)?;
        let mut f = &self.file;
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&json)?;
        f.sync_data()
    }
}

/// What the lock file of `dir` says about its holder (`None` while it is being rewritten or
/// when nobody ever held it).
pub fn read_holder(dir: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(dir.join(LOCK_FILE))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits until the holder of `dir` is a `serve` that has published its address, for at most
/// `patience`; `Ok(None)` when the directory is free (the caller may take it), `Err` with the
/// holder when it is held by something that is not a server (or a server that never bound).
pub async fn serving_holder(dir: &Path, patience: Duration) -> Result<Option<Holder>, Holder> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if !is_held(dir) {
            return Ok(None);
        }
        let holder = read_holder(dir);
        match holder {
            Some(h) if h.command == "serve" && h.addr.is_some() => return Ok(Some(h)),
            Some(h) if h.command != "serve" => return Err(h),
            // A serve still starting up (or a file being rewritten): its address comes next.
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            h => {
                return Err(h.unwrap_or(Holder {
                    pid: 0,
                    command: "unknown".into(),
                    addr: None,
                }));
            }
        }
    }
}

/// Whether some process holds the lock of `dir` right now.
pub fn is_held(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquirer_sees_the_holder_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::Mine(lock) = DataDirLock::try_acquire(dir.path(), "serve").unwrap() else {
            panic!("a fresh directory is free");
        };
        assert!(is_held(dir.path()));
        let addr: SocketAddr = "0.0.0.0:11183".parse().unwrap();
        lock.set_addr(addr).unwrap();
        match DataDirLock::try_acquire(dir.path(), "import").unwrap() {
            Acquired::Held(Some(h)) => {
                assert_eq!(h.command, "serve");
                assert_eq!(h.pid, std::process::id());
                assert_eq!(h.base_url().unwrap(), "http://127.0.0.1:11183");
            }
            other => panic!("expected the serve holder, got {other:?}"),
        }
        drop(lock);
        assert!(!is_held(dir.path()));
        let Acquired::Mine(again) = DataDirLock::try_acquire(dir.path(), "import").unwrap() else {
            panic!("a released directory is free");
        };
        assert_eq!(read_holder(dir.path()).unwrap().command, "import");
        drop(again);
    }
}
