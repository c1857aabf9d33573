//! What the journal and the simulation's store share about their SQLite files: telling
//! a damaged file from a failing one, and opening a file only to read it, even in a
//! read-only state directory.

use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use serde::de::DeserializeOwned;

use super::{CallRecord, StoreError};

/// A SQLite error on `path`; a damaged file says so, instead of passing on SQLite's words
/// as if some operation had failed.
pub(super) fn error(path: &Path, source: rusqlite::Error) -> StoreError {
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Damaged { path: path.into(), detail: format!("the file is damaged ({source})") }
        }
        _ => StoreError::Sqlite { path: path.into(), source },
    }
}

pub(super) fn failing(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| error(&path, source)
}

/// Refuses a file that is plainly not the database it was: too short for a header, not
/// SQLite, or shorter than its header says (truncated). A missing or empty file passes:
/// the caller decides what an empty database means. Reads the first 100 bytes only.
pub(super) fn check_header(path: &Path) -> Result<(), StoreError> {
    let damaged = |detail: String| StoreError::Damaged { path: path.into(), detail };
    let Ok(mut file) = std::fs::File::open(path) else { return Ok(()) };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(());
    }
    let mut header = [0u8; 100];
    if len < 100 || file.read_exact(&mut header).is_err() {
        return Err(damaged(format!("the file is damaged: {len} bytes is too short for a SQLite database")));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(damaged("the file is damaged: it is not a SQLite database".into()));
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    // The size in the header is valid when the change counter matches the number it was
    // written with (SQLite's file format, section 1.3.7); it is rewritten with the pages.
    // With a write-ahead log waiting, a checkpoint cut off may have written the header
    // before the pages: the log still has them, and SQLite finishes the job.
    let pages = u64::from(be32(28));
    let log_waiting = with_suffix(path, "-wal").metadata().is_ok_and(|m| m.len() > 0);
    if pages > 0 && be32(24) == be32(92) && pages * page_size > len && !log_waiting {
        return Err(damaged(format!(
            "the file is damaged: it has {len} bytes where its header says {} (truncated)",
            pages * page_size
        )));
    }
    Ok(())
}

/// Opens a database only to read it: never a byte written, no table created, no pragma
/// set. In WAL mode SQLite needs the `-shm` index beside the file (creating it when it
/// can); in a read-only directory without one, the file is read as it is
/// (`immutable=1`), which is true there since nobody can write to it either — unless a
/// write-ahead log is waiting to be applied, which only a writer can do: that is an error.
pub(super) fn open_to_read(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let fail = failing(path);
    let conn = Connection::open_with_flags(path, flags).map_err(&fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(&fail)?;
    let probe = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
    match probe {
        Ok(_) => Ok(conn),
        Err(e) if matches!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)) => {
            let wal = with_suffix(path, "-wal");
            if wal.metadata().is_ok_and(|m| m.len() > 0) {
                let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                let why = format!(
                    "{} has a write-ahead log to apply first ({e}), which needs write access to the directory",
                    path.display()
                );
                return Err(StoreError::Io { dir, source: std::io::Error::other(why) });
            }
            let conn =
                Connection::open_with_flags(format!("file:{}?immutable=1", uri_path(path)), flags).map_err(&fail)?;
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).map_err(&fail)?;
            Ok(conn)
        }
        Err(e) => Err(fail(e)),
    }
}

/// A JSON record read back; `what` names it in the error ("vm web01", "job 7").
pub(super) fn decode<T: DeserializeOwned>(path: &Path, what: String, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::BadRecord { path: path.into(), what, message: e.to_string() })
}

/// Every `(key, JSON record)` row `sql` selects, decoded; `what` ("vm", "job") names a
/// record in errors, with its key.
pub(super) fn keyed_records<K, T>(
    conn: &Connection,
    path: &Path,
    sql: &str,
    what: &str,
) -> Result<Vec<(K, T)>, StoreError>
where
    K: rusqlite::types::FromSql + std::fmt::Display,
    T: DeserializeOwned,
{
    let fail = failing(path);
    let mut stmt = conn.prepare(sql).map_err(&fail)?;
    let rows: Vec<(K, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&fail)?.collect::<Result<_, _>>().map_err(&fail)?;
    rows.into_iter()
        .map(|(key, json)| {
            let record = decode(path, format!("{what} {key}"), &json)?;
            Ok((key, record))
        })
        .collect()
}

/// The columns of a call's row, in the order [`call_from_row`] reads them.
pub(super) const CALL_COLUMNS: &str = "key, operation, vm, outcome, count, ended";

/// A call's row; its end time decoded with [`decode`] once read.
pub(super) fn call_from_row(r: &rusqlite::Row) -> rusqlite::Result<(CallRecord, Option<String>)> {
    let call = CallRecord {
        key: r.get(0)?,
        operation: r.get(1)?,
        vm: r.get(2)?,
        outcome: r.get(3)?,
        count: r.get::<_, i64>(4)? as u64,
        ended: None,
    };
    Ok((call, r.get(5)?))
}

/// A call with its end time, as read by [`call_from_row`].
pub(super) fn finish_call(
    path: &Path,
    (mut call, ended): (CallRecord, Option<String>),
) -> Result<CallRecord, StoreError> {
    call.ended = ended.map(|t| decode(path, format!("call {}", call.key), &t)).transpose()?;
    Ok(call)
}

/// Whether the database has the table `name`.
pub(super) fn has_table(conn: &Connection, path: &Path, name: &str) -> Result<bool, StoreError> {
    conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
    .map_err(failing(path))
}

pub(super) fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(failing(path))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A path as the path of a `file:` URI: bytes other than unreserved ones are escaped.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::new();
    for &byte in absolute.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_database_is_reported_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES (zeroblob(20000));").unwrap();
        drop(conn);
        check_header(&path).expect("whole");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
        let err = check_header(&path).unwrap_err().to_string();
        assert!(err.contains("x.db") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn a_path_with_uri_characters_is_escaped() {
        assert!(uri_path(Path::new("/a b/c?d#e%f")).ends_with("/a%20b/c%3Fd%23e%25f"));
    }
}
