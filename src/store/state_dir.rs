//! The state directory (`.drplan/` by default). Commands that change state hold an
//! exclusive lock on it for their whole run, so two at once get a clear "in use" error
//! instead of interleaving writes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

const LOCK_FILE: &str = "lock";

/// An open, locked state directory. The lock is released when this is dropped (or when
/// the process dies: the OS releases it, so a crash never leaves the directory stuck).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir, StoreError> {
        let io = |source| StoreError::Io { dir: path.to_path_buf(), source };
        std::fs::create_dir_all(path).map_err(io)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(StoreError::InUse { dir: path.to_path_buf(), holder });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        // Who holds it, for the message another command prints.
        lock.set_len(0)
            .and_then(|_| lock.seek(SeekFrom::Start(0)))
            .and_then(|_| write!(lock, "{}", std::process::id()))
            .map_err(io)?;
        Ok(StateDir { path: path.to_path_buf(), _lock: lock })
    }

    /// Whether a live drplan process holds the directory, told without touching the lock
    /// (looking must never make a command that is starting fail): the pid the holder
    /// wrote is that of a running process. Without /proc this says no.
    pub fn in_use(path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path.join(LOCK_FILE)) else { return false };
        let Ok(pid) = text.trim().parse::<u32>() else { return false };
        pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_opener_gets_a_clear_in_use_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).unwrap();
        let err = StateDir::open(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("in use by another drplan command"), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        drop(first);
        StateDir::open(dir.path()).expect("free again once the first one is gone");
    }
}
