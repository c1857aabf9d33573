//! The state of a real fabric (`libvirt.db` in the state directory): one record per VM,
//! the jobs, and the calls seen per idempotency key. Unlike the simulation's store it is
//! shared while in use: `drplan replicate` runs for days beside the commands, so no
//! lock is held for a process's life. Each change is a read-modify-write of one VM's
//! record in one IMMEDIATE transaction (writers queue on SQLite's lock), and nothing is
//! cached between changes: the record read is the record as it is now.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CallRecord, StoreError, sqlite};
use crate::model::Job;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms   (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs  (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, operation TEXT NOT NULL, vm TEXT NOT NULL,
                                  outcome TEXT, count INTEGER NOT NULL, ended TEXT);
";

/// How long a writer waits for another process's transaction: a replication cycle's
/// bookkeeping takes milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SharedStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SharedStore {
    /// Opens (creating) `name` in the folder `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<SharedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { dir: dir.into(), source })?;
        let path = dir.join(name);
        sqlite::check_header(&path)?;
        let fail = sqlite::failing(&path);
        let conn = Connection::open(&path).map_err(&fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&fail)?;
        // Real VMs: a record lost to a power cut could mean a replica defined twice.
        conn.pragma_update(None, "synchronous", "FULL").map_err(&fail)?;
        let found = sqlite::user_version(&conn, &path)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found, known: SCHEMA_VERSION });
        }
        if found == 0 {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                .map_err(&fail)?;
        }
        Ok(SharedStore { conn: Mutex::new(conn), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decode<T: DeserializeOwned>(&self, what: String, json: &str) -> Result<T, StoreError> {
        sqlite::decode(&self.path, what, json)
    }

    pub fn vm<V: DeserializeOwned>(&self, name: &str) -> Result<Option<V>, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row("SELECT record FROM vms WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(sqlite::failing(&self.path))?;
        json.map(|j| self.decode(format!("vm {name}"), &j)).transpose()
    }

    pub fn vms<V: DeserializeOwned>(&self) -> Result<Vec<(String, V)>, StoreError> {
        sqlite::keyed_records(&self.conn(), &self.path, "SELECT name, record FROM vms ORDER BY name", "vm")
    }

    /// Changes one VM's record atomically: `change` sees the record as it is now (`None`
    /// before the first), and what it leaves is written unless it fails. Another
    /// process's change to the same record waits for this one, or this one for it.
    pub fn update<V, T, E>(
        &self,
        name: &str,
        change: impl FnOnce(&mut Option<V>) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError>
    where
        V: Serialize + DeserializeOwned,
    {
        let mut conn = self.conn();
        let fail = sqlite::failing(&self.path);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&fail)?;
        let json: Option<String> =
            tx.query_row("SELECT record FROM vms WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(&fail)?;
        let mut record: Option<V> = json.map(|j| self.decode(format!("vm {name}"), &j)).transpose()?;
        let outcome = change(&mut record);
        if outcome.is_ok() {
            match &record {
                Some(record) => {
                    let json = serde_json::to_string(record).expect("records serialize");
                    tx.execute("INSERT OR REPLACE INTO vms (name, record) VALUES (?1, ?2)", params![name, json])
                        .map_err(&fail)?;
                }
                None => {
                    tx.execute("DELETE FROM vms WHERE name = ?1", [name]).map_err(&fail)?;
                }
            }
            tx.commit().map_err(&fail)?;
        }
        Ok(outcome)
    }

    /// Saves a job; a job with id 0 gets the next id, returned.
    pub fn save_job(&self, job: &Job) -> Result<u64, StoreError> {
        let conn = self.conn();
        let fail = sqlite::failing(&self.path);
        let mut job = job.clone();
        if job.id == 0 {
            let last: Option<i64> = conn.query_row("SELECT MAX(id) FROM jobs", [], |r| r.get(0)).map_err(&fail)?;
            job.id = last.map_or(1, |id| id as u64 + 1);
        }
        let json = serde_json::to_string(&job).expect("jobs serialize");
        conn.execute("INSERT OR REPLACE INTO jobs (id, record) VALUES (?1, ?2)", params![job.id as i64, json])
            .map_err(&fail)?;
        Ok(job.id)
    }

    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let jobs = sqlite::keyed_records::<i64, Job>(
            &self.conn(),
            &self.path,
            "SELECT id, record FROM jobs ORDER BY id",
            "job",
        )?;
        Ok(jobs.into_iter().map(|(_, job)| job).collect())
    }

    pub fn call(&self, key: &str) -> Result<Option<CallRecord>, StoreError> {
        let sql = format!("SELECT {} FROM calls WHERE key = ?1", sqlite::CALL_COLUMNS);
        let row = self.conn().query_row(&sql, [key], sqlite::call_from_row).optional();
        row.map_err(sqlite::failing(&self.path))?.map(|row| sqlite::finish_call(&self.path, row)).transpose()
    }

    pub fn save_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        let ended = call.ended.map(|t| serde_json::to_string(&t).expect("times serialize"));
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO calls (key, operation, vm, outcome, count, ended) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![call.key, call.operation, call.vm, call.outcome, call.count as i64, ended],
            )
            .map_err(sqlite::failing(&self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_change_writes_nothing_and_a_good_one_is_read_back_by_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = SharedStore::open(dir.path(), "real.db").unwrap();
        let made: Result<(), String> = store
            .update::<Vec<u32>, _, _>("vm1", |r| {
                *r = Some(vec![1, 2]);
                Ok(())
            })
            .unwrap();
        made.unwrap();
        let failed: Result<(), String> = store
            .update::<Vec<u32>, _, _>("vm1", |r| {
                r.as_mut().unwrap().push(3);
                Err("no".to_string())
            })
            .unwrap();
        assert!(failed.is_err());
        let other = SharedStore::open(dir.path(), "real.db").unwrap();
        assert_eq!(other.vm::<Vec<u32>>("vm1").unwrap(), Some(vec![1, 2]));
        assert_eq!(other.vms::<Vec<u32>>().unwrap().len(), 1);
    }

    #[test]
    fn jobs_get_the_next_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = SharedStore::open(dir.path(), "real.db").unwrap();
        let job = Job {
            id: 0,
            operation: "protect".into(),
            vm: "a".into(),
            status: crate::model::JobStatus::Running,
            started: chrono::Utc::now(),
            finished: None,
            detail: String::new(),
        };
        assert_eq!(store.save_job(&job).unwrap(), 1);
        assert_eq!(store.save_job(&job).unwrap(), 2);
        assert_eq!(store.jobs().unwrap().len(), 2);
    }
}
