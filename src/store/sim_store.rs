//! The simulated datacenter's state in SQLite (`sim.db` in the state directory): its
//! clock, one record per VM, the job list, and the fabric calls seen per idempotency key.
//! Every change is one transaction, so a command killed at any point leaves either the
//! state before the change or the state after it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StateDir, StoreError, sqlite};
use crate::model::{Job, Timestamp};

/// 2: calls keep when they ended (`ended`), for causal time.
const SCHEMA_VERSION: i64 = 2;

/// How the keys of the calls the operator makes from the command line begin; every other
/// key begins with the id of the run that made the call.
pub const CLI_KEY_PREFIX: &str = "cli/";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta  (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vms   (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs  (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, operation TEXT NOT NULL, vm TEXT NOT NULL,
                                  outcome TEXT, count INTEGER NOT NULL, ended TEXT);
";

/// What brings a database of an older version to this one, by the version it was at.
const MIGRATIONS: &[(i64, &str)] = &[(1, "ALTER TABLE calls ADD COLUMN ended TEXT;")];

/// What one fabric call did, kept per idempotency key so a repeated key does the work once.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub key: String,
    pub operation: String,
    pub vm: String,
    /// The JSON outcome; `None` while the call is under way (or its process died).
    pub outcome: Option<String>,
    /// How many times the key was presented.
    pub count: u64,
    /// When the call ended (modelled time), once it has.
    pub ended: Option<Timestamp>,
}

/// The changes of one fabric operation, written atomically.
pub struct SimBatch<'a, V: Serialize> {
    pub clock: Timestamp,
    pub vms: Vec<(&'a str, &'a V)>,
    pub jobs: Vec<&'a Job>,
    pub calls: Vec<&'a CallRecord>,
}

pub struct SimStore {
    conn: Connection,
    path: PathBuf,
}

impl SimStore {
    pub fn open(dir: &StateDir) -> Result<SimStore, StoreError> {
        let path = dir.file("sim.db");
        sqlite::check_header(&path)?;
        let conn = Connection::open(&path).map_err(sqlite::failing(&path))?;
        Self::prepare(conn, path)
    }

    /// Reads the state another drplan command holds the lock of: its last committed
    /// state, without writing anything (WAL lets readers in beside the writer), in a
    /// read-only state directory too.
    pub fn open_read_only(dir: &Path) -> Result<SimStore, StoreError> {
        let path = dir.join("sim.db");
        sqlite::check_header(&path)?;
        let conn = sqlite::open_to_read(&path)?;
        let found = sqlite::user_version(&conn, &path)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found, known: SCHEMA_VERSION });
        }
        Ok(SimStore { conn, path })
    }

    /// A store that lives and dies in memory: what a dry run writes, nobody keeps.
    pub fn in_memory() -> Result<SimStore, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        Self::prepare(conn, path)
    }

    fn prepare(conn: Connection, path: PathBuf) -> Result<SimStore, StoreError> {
        let fail = |source| sqlite::error(&path, source);
        // WAL with synchronous=NORMAL survives any process crash without corruption; only
        // an OS crash could lose the last commits, which a simulation can afford.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found, known: SCHEMA_VERSION });
        }
        // Only a new or older database is written to here: opening to read changes no byte.
        if found == 0 {
            conn.execute_batch(SCHEMA).map_err(fail)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(fail)?;
        } else if found < SCHEMA_VERSION {
            let steps: String = MIGRATIONS.iter().filter(|(from, _)| *from >= found).map(|(_, sql)| *sql).collect();
            conn.execute_batch(&format!("BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                .map_err(fail)?;
        }
        Ok(SimStore { conn, path })
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite::failing(&self.path)
    }

    fn decode<T: DeserializeOwned>(&self, what: String, json: &str) -> Result<T, StoreError> {
        sqlite::decode(&self.path, what, json)
    }

    /// The modelled time saved by the last change; `None` for a new state directory.
    pub fn clock(&self) -> Result<Option<Timestamp>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'clock'", [], |r| r.get(0))
            .optional()
            .map_err(self.fail())?;
        text.map(|t| self.decode("clock".into(), &t)).transpose()
    }

    pub fn vms<V: DeserializeOwned>(&self) -> Result<Vec<(String, V)>, StoreError> {
        sqlite::keyed_records(&self.conn, &self.path, "SELECT name, record FROM vms ORDER BY name", "vm")
    }

    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let jobs = sqlite::keyed_records::<i64, Job>(
            &self.conn,
            &self.path,
            "SELECT id, record FROM jobs ORDER BY id",
            "job",
        )?;
        Ok(jobs.into_iter().map(|(_, job)| job).collect())
    }

    pub fn calls(&self) -> Result<Vec<CallRecord>, StoreError> {
        let sql = format!("SELECT {} FROM calls", sqlite::CALL_COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(self.fail())?;
        let rows: Vec<_> = stmt
            .query_map([], sqlite::call_from_row)
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        rows.into_iter().map(|row| sqlite::finish_call(&self.path, row)).collect()
    }

    /// The runs this simulation has seen calls of: the first part of every call key but
    /// the operator's (`RUN/vm/NAME/failover/N`, `RUN/...` for actions). One indexed
    /// look-up per run, however many calls each made.
    pub fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut next =
            self.conn.prepare("SELECT key FROM calls WHERE key >= ?1 ORDER BY key LIMIT 1").map_err(self.fail())?;
        let mut runs = Vec::new();
        let mut from = String::new();
        while let Some(key) = next.query_row([&from], |r| r.get::<_, String>(0)).optional().map_err(self.fail())? {
            from = match key.split_once('/') {
                Some((run, _)) => {
                    if !key.starts_with(CLI_KEY_PREFIX) {
                        runs.push(run.to_string());
                    }
                    // Past every key `run/...`: '0' follows '/'.
                    format!("{run}0")
                }
                None => format!("{key}\0"),
            };
        }
        Ok(runs)
    }

    /// Writes one operation's changes in a single transaction.
    pub fn apply<V: Serialize>(&mut self, batch: &SimBatch<'_, V>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |source| sqlite::error(&path, source);
        let encode = |what: &str, value: &dyn erased::Json| {
            value.to_json().map_err(|e| StoreError::BadRecord {
                path: path.clone(),
                what: what.into(),
                message: e.to_string(),
            })
        };
        let tx = self.conn.transaction().map_err(fail)?;
        // Cached statements: every fabric operation writes a few batches, and compiling
        // the SQL again each time cost more than the writes.
        let execute = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
            tx.prepare_cached(sql).and_then(|mut statement| statement.execute(params)).map_err(fail)
        };
        execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?1)",
            params![encode("clock", &batch.clock)?],
        )?;
        for (name, record) in &batch.vms {
            execute(
                "INSERT OR REPLACE INTO vms (name, record) VALUES (?1, ?2)",
                params![name, encode(name, *record)?],
            )?;
        }
        for job in &batch.jobs {
            execute(
                "INSERT OR REPLACE INTO jobs (id, record) VALUES (?1, ?2)",
                params![job.id as i64, encode("job", *job)?],
            )?;
        }
        for call in &batch.calls {
            execute(
                "INSERT OR REPLACE INTO calls (key, operation, vm, outcome, count, ended) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    call.key,
                    call.operation,
                    call.vm,
                    call.outcome,
                    call.count as i64,
                    call.ended.map(|t| encode("call end", &t)).transpose()?
                ],
            )?;
        }
        tx.commit().map_err(fail)
    }
}

/// Serializing through a trait object, so `apply` can encode records of any type.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;
    use chrono::DateTime;

    #[test]
    fn state_survives_reopening_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let job = Job {
            id: 1,
            operation: "protect".into(),
            vm: "sql01".into(),
            status: JobStatus::Running,
            started: t,
            finished: None,
            detail: String::new(),
        };
        let call = CallRecord {
            key: "run/1".into(),
            operation: "protect".into(),
            vm: "sql01".into(),
            outcome: None,
            count: 1,
            ended: Some(t),
        };
        {
            let state = StateDir::open(dir.path()).unwrap();
            let mut store = SimStore::open(&state).unwrap();
            assert_eq!(store.clock().unwrap(), None);
            let record = vec![1, 2, 3];
            store
                .apply(&SimBatch { clock: t, vms: vec![("sql01", &record)], jobs: vec![&job], calls: vec![&call] })
                .unwrap();
        }
        let state = StateDir::open(dir.path()).unwrap();
        let store = SimStore::open(&state).unwrap();
        assert_eq!(store.clock().unwrap(), Some(t));
        assert_eq!(store.vms::<Vec<u8>>().unwrap(), vec![("sql01".to_string(), vec![1, 2, 3])]);
        assert_eq!(store.jobs().unwrap(), vec![job]);
        assert_eq!(store.calls().unwrap(), vec![call]);
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_calls() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("sim.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE vms (name TEXT PRIMARY KEY, record TEXT NOT NULL);
                 CREATE TABLE jobs (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
                 CREATE TABLE calls (key TEXT PRIMARY KEY, operation TEXT NOT NULL, vm TEXT NOT NULL,
                                     outcome TEXT, count INTEGER NOT NULL);
                 INSERT INTO calls VALUES ('run/1', 'commit', 'sql01', NULL, 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let state = StateDir::open(dir.path()).unwrap();
        let store = SimStore::open(&state).unwrap();
        let calls = store.calls().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].key.as_str(), calls[0].ended), ("run/1", None));
        let version: i64 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn the_runs_of_the_calls_are_their_keys_first_parts_without_the_operators() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut store = SimStore::open(&state).unwrap();
        let keys = ["r-2/vm/a/failover/1", "r/vm/a/failover/1", "r/vm/b/failover/2", "cli/9-1/protect/a", "r-2/x/1"];
        let calls: Vec<CallRecord> = keys
            .iter()
            .map(|key| CallRecord {
                key: key.to_string(),
                operation: "o".into(),
                vm: "a".into(),
                outcome: None,
                count: 1,
                ended: None,
            })
            .collect();
        let t = DateTime::from_timestamp(0, 0).unwrap();
        store.apply(&SimBatch::<()> { clock: t, vms: vec![], jobs: vec![], calls: calls.iter().collect() }).unwrap();
        assert_eq!(store.run_ids().unwrap(), ["r-2", "r"], "in key order");
    }

    #[test]
    fn an_unreadable_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut store = SimStore::open(&state).unwrap();
        let t = DateTime::from_timestamp(0, 0).unwrap();
        store.apply(&SimBatch { clock: t, vms: vec![("web01", &"text")], jobs: vec![], calls: vec![] }).unwrap();
        let err = store.vms::<Vec<u8>>().unwrap_err().to_string();
        assert!(err.contains("vm web01"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sim.db"),
            b"this is not sqlite at all, not even close....................................................",
        )
        .unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let err = SimStore::open(&state).err().expect("must fail").to_string();
        assert!(err.contains("sim.db"), "{err}");
    }
}
