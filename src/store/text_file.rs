//! The text files commands start from (the site file, plan scripts, a plan folder's
//! `drplan.toml`), read whole but never past a limit: `--site /dev/zero` or a runaway
//! generator's output ends in a clear error naming the file and the limit, not in a
//! process that eats the machine's memory.

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// What kind of file is read, and the most bytes it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub what: &'static str,
    pub bytes: u64,
}

const MIB: u64 = 1024 * 1024;

/// Site files: the generated site of 100,000 VMs (`examples/generate`, the scale bench)
/// is about 42 MiB; six times that leaves room for larger and more verbose sites while
/// still bounding what a command may hold in memory.
pub const SITE_FILE: Limit = Limit { what: "a site file", bytes: 256 * MIB };

/// Plan scripts, hook scripts and the modules they import. A plan that names each VM of
/// the 100,000-VM site in its groups is about 1.5 MiB, and plans usually select VMs by
/// tag instead; a script several times that size is not written by people, and Rhai
/// holds many times a script's size while it compiles it.
pub const SCRIPT: Limit = Limit { what: "a plan script", bytes: 4 * MIB };

/// A plan folder's `drplan.toml`: DNS servers, keys and hook script names, a few KiB.
pub const PLAN_CONFIG: Limit = Limit { what: "a plan folder's drplan.toml", bytes: MIB };

/// Reads the UTF-8 text of `path`, at most `limit.bytes` of it: a longer file is an error
/// of kind `FileTooLarge` that names the limit (callers name the file). Only what is
/// allowed plus one byte is ever read, whatever the file is (a device, a pipe).
pub fn read(path: &Path, limit: Limit) -> std::io::Result<String> {
    let bytes = read_bytes(path, limit)?;
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// The bytes of `path` within `limit`, as `read` reads them, for a reader that says
/// itself where text that is not UTF-8 goes wrong (the site file names the line).
pub fn read_bytes(path: &Path, limit: Limit) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let too_large = || {
        Error::new(
            ErrorKind::FileTooLarge,
            format!("it is larger than {} MiB, the limit for {}", limit.bytes / MIB, limit.what),
        )
    };
    // A regular file says its size: refuse without reading it.
    if file.metadata().is_ok_and(|m| m.is_file() && m.len() > limit.bytes) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(limit.bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit.bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limit = Limit { what: "a test file", bytes: 2 * MIB };

    #[test]
    fn a_file_within_its_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "x".repeat(2 * MIB as usize)).unwrap();
        assert_eq!(read(&path, SMALL).unwrap().len(), 2 * MIB as usize);
    }

    #[test]
    fn a_file_past_its_limit_is_refused_naming_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "x".repeat(2 * MIB as usize + 1)).unwrap();
        let err = read(&path, SMALL).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "it is larger than 2 MiB, the limit for a test file");
    }

    #[test]
    fn an_endless_device_is_read_no_further_than_the_limit() {
        let err = read(Path::new("/dev/zero"), SMALL).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileTooLarge);
    }
}
