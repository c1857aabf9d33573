//! The state directory (`.drplan/` by default). Commands that change state hold an
//! exclusive lock on it for their whole run, so two at once get a clear "in use" error
//! instead of interleaving writes.
//!
//! The lock is an `flock` on the directory itself, not on a file in it: a file can be
//! deleted under a running command (and the next command would lock a new file and get
//! in), a directory that holds files cannot be replaced without the holder's knowledge.
//! After locking, the path is checked to still name the directory that was locked.
//! The file `lock` beside the databases says who holds it (pid and process start time),
//! for messages and for [`StateDir::in_use`]; drplan before this kept its lock on that
//! file, so it is locked too, and an older drplan is kept out as well.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::StoreError;

const LOCK_FILE: &str = "lock";

/// How many times `open` tries again when the directory is replaced while it locks it.
const ATTEMPTS: usize = 3;

/// An open, locked state directory. The lock is released when this is dropped (or when
/// the process dies: the OS releases it, so a crash never leaves the directory stuck).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _dir: File,
    _holder: File,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir, StoreError> {
        let io = |source| StoreError::Io { dir: path.to_path_buf(), source };
        std::fs::create_dir_all(path).map_err(io)?;
        for _ in 0..ATTEMPTS {
            let dir = File::open(path).map_err(io)?;
            match dir.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(in_use(path)),
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
            // Renamed or replaced between the open and the lock: the lock is on a
            // directory nobody else will look at. Lock the one the path names now.
            if !same_file(&dir, path) {
                continue;
            }
            let mut holder = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path.join(LOCK_FILE))
                .map_err(io)?;
            match holder.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(in_use(path)),
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
            let me = std::process::id();
            let record = match start_time(me) {
                Some(start) => format!("{me} {start}\n"),
                None => format!("{me}\n"),
            };
            holder
                .set_len(0)
                .and_then(|_| holder.seek(SeekFrom::Start(0)))
                .and_then(|_| holder.write_all(record.as_bytes()))
                .map_err(io)?;
            return Ok(StateDir { path: path.to_path_buf(), _dir: dir, _holder: holder });
        }
        Err(io(std::io::Error::other("the directory was replaced each time it was locked")))
    }

    /// Whether a live drplan process holds the directory, told without touching the lock
    /// (looking must never make a command that is starting fail). Yes when the kernel's
    /// lock table shows the directory locked, or when the process the `lock` file names
    /// is alive and is the same process: a pid reused by another process since has
    /// another start time. Without /proc this says no.
    pub fn in_use(path: &Path) -> bool {
        let me = std::process::id();
        let named_holder_alive = holder(path).is_some_and(|(pid, start)| {
            pid != me
                && match start {
                    Some(start) => start_time(pid) == Some(start),
                    None => Path::new(&format!("/proc/{pid}")).exists(),
                }
        });
        named_holder_alive || locked_by_another(path, me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

fn in_use(path: &Path) -> StoreError {
    let holder = match holder(path) {
        Some((pid, _)) => format!(" (pid {pid})"),
        None => String::new(),
    };
    StoreError::InUse { dir: path.to_path_buf(), holder }
}

/// What the `lock` file says: the holder's pid, and its start time when written.
fn holder(path: &Path) -> Option<(u32, Option<u64>)> {
    let mut text = String::new();
    File::open(path.join(LOCK_FILE)).ok()?.take(64).read_to_string(&mut text).ok()?;
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    Some((pid, fields.next().and_then(|s| s.parse().ok())))
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// A process's start time (clock ticks after boot, field 22 of /proc/PID/stat): with the
/// pid, it names one process, where the pid alone may be reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(22 - 3).and_then(|s| s.parse().ok())
}

/// Whether /proc/locks shows an flock on the directory held by another process.
fn locked_by_another(path: &Path, me: u32) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else { return false };
    // Lines read `1: FLOCK  ADVISORY  WRITE 1234 fe:00:5423815 0 EOF`; the device is
    // major:minor in hex, as the kernel encodes st_dev.
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields.as_slice(), [_, "FLOCK", _, "WRITE", pid, id, ..]
            if *id == wanted && pid.parse::<u32>().is_ok_and(|pid| pid != me))
    })
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

    #[test]
    fn deleting_the_lock_file_does_not_let_a_second_opener_in() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateDir::open(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let err = StateDir::open(dir.path()).expect_err("the directory is still locked");
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    }

    #[test]
    fn a_lock_file_naming_a_live_process_that_is_not_the_holder_is_not_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleep = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleep.id();
        let start = start_time(pid).expect("/proc is mounted");
        std::fs::write(dir.path().join(LOCK_FILE), format!("{pid} {}\n", start + 1)).unwrap();
        let reused = StateDir::in_use(dir.path());
        // The same pid with its true start time is the process that wrote it.
        std::fs::write(dir.path().join(LOCK_FILE), format!("{pid} {start}\n")).unwrap();
        let same = StateDir::in_use(dir.path());
        sleep.kill().unwrap();
        sleep.wait().unwrap();
        assert!(!reused, "a pid reused by another process is not a holder");
        assert!(same, "the process that wrote the lock file is");
    }

    #[test]
    fn a_directory_another_process_holds_is_in_use_even_without_its_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        // flock(1) holds the directory's lock, as another drplan would.
        let mut holder = std::process::Command::new("flock")
            .arg("--exclusive")
            .arg(dir.path())
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !StateDir::in_use(dir.path()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let seen = StateDir::in_use(dir.path());
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(seen, "the kernel's lock table shows the directory locked");
    }
}
