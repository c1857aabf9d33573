//! The run journal (`journal.db` in the state directory): every run, every event of it in
//! order, and the operator's answers from other shells (approvals of manual steps,
//! cancel requests). SQLite in WAL mode, so `drplan approve` can write while a run holds
//! the simulation's lock.
//!
//! Events are appended by one writer thread that commits whatever has queued up in one
//! transaction with `synchronous=FULL` (group commit): durable at the speed of many
//! events per fsync. An append returns a ticket that resolves once that event, and all
//! queued before it, is on disk. After any storage error every later ticket fails: the
//! run must stop, and no transaction is ever half-written.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{SimStore, StoreError, sqlite};

/// The schema's version, kept in SQLite's `user_version`. Journals written before there
/// was one have the tables and version 0; opening one to write sets it.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (run TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
                                   PRIMARY KEY (run, seq));
CREATE TABLE IF NOT EXISTS approvals (run TEXT NOT NULL, step TEXT NOT NULL, at TEXT NOT NULL,
                                      PRIMARY KEY (run, step));
CREATE TABLE IF NOT EXISTS cancels (run TEXT PRIMARY KEY, at TEXT NOT NULL);
";

pub const JOURNAL_FILE: &str = "journal.db";

/// How long a commit waits for more events while they trickle in from many writers. Each
/// commit costs an fsync and SQLite's own work whatever its size; when thousands of VMs
/// fail over at once, waiting this long lets one commit carry several times more
/// events, which frees CPU for the failovers. A lone writer never waits, nor do writers
/// that all came back at once.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// Opens the journal database for reading and for the small writes of other commands,
/// creating it in a new state directory.
///
/// A journal is never repaired: one that is damaged, or that lacks runs the simulation
/// beside it has seen (emptied, deleted, its write-ahead log lost), is an error before
/// anything is written to it. A journal from before schema versions is given one.
pub fn open(dir: &Path) -> Result<JournalDb, StoreError> {
    let path = dir.join(JOURNAL_FILE);
    let fail = sqlite::failing(&path);
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { dir: dir.into(), source })?;
    sqlite::check_header(&path)?;
    let condition = Condition::of(&path);
    if condition == Condition::Missing {
        // Checked before the file is created, so that a refusal leaves no trace.
        JournalDb::check_runs_of_simulation(dir, &path, condition, |_| Ok(false))?;
    }
    let conn = Connection::open(&path).map_err(&fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(&fail)?;
    let found = sqlite::user_version(&conn, &path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path, found, known: SCHEMA_VERSION });
    }
    let fresh = !sqlite::has_table(&conn, &path, "runs")?;
    let condition = if fresh && condition == Condition::Whole { Condition::NoTables } else { condition };
    let db = JournalDb { conn, path };
    db.check_against_simulation(condition, fresh)?;
    if found < SCHEMA_VERSION {
        db.conn.execute_batch(SCHEMA).map_err(&fail)?;
        db.conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(&fail)?;
    }
    db.conn.pragma_update(None, "journal_mode", "WAL").map_err(&fail)?;
    db.conn.pragma_update(None, "synchronous", "FULL").map_err(&fail)?;
    Ok(db)
}

/// Opens the journal only to read it (`runs`, `show`): nothing is written, not even a
/// missing journal created, and a read-only state directory will do. Damage is reported
/// as [`open`] reports it; a state directory without runs reads as an empty journal.
pub fn open_to_look(dir: &Path) -> Result<JournalDb, StoreError> {
    let path = dir.join(JOURNAL_FILE);
    sqlite::check_header(&path)?;
    let mut condition = Condition::of(&path);
    let mut conn = None;
    if condition != Condition::Missing {
        let reading = sqlite::open_to_read(&path)?;
        let found = sqlite::user_version(&reading, &path)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found, known: SCHEMA_VERSION });
        }
        if sqlite::has_table(&reading, &path, "runs")? {
            conn = Some(reading);
        } else if condition == Condition::Whole {
            condition = Condition::NoTables;
        }
    }
    let fresh = conn.is_none();
    let conn = match conn {
        Some(conn) => conn,
        None => {
            // Nothing to read: an empty journal in memory answers every question.
            let memory = Connection::open_in_memory().map_err(sqlite::failing(&path))?;
            memory.execute_batch(SCHEMA).map_err(sqlite::failing(&path))?;
            memory
        }
    };
    let db = JournalDb { conn, path };
    db.check_against_simulation(condition, fresh)?;
    Ok(db)
}

/// What the journal's file looked like when opened, for the words of a damage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Missing,
    Empty,
    NoTables,
    Whole,
}

impl Condition {
    fn of(path: &Path) -> Condition {
        match std::fs::metadata(path) {
            Err(_) => Condition::Missing,
            Ok(m) if m.len() == 0 => Condition::Empty,
            Ok(_) => Condition::Whole,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Condition::Missing => "it does not exist, and ",
            Condition::Empty => "it is empty (0 bytes), and ",
            Condition::NoTables => "it holds no tables, and ",
            Condition::Whole => "",
        }
    }
}

pub struct JournalDb {
    conn: Connection,
    path: PathBuf,
}

/// A run's record: what it was asked to do, and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord<S> {
    pub id: String,
    pub plan_path: PathBuf,
    /// The plan file's hash when the run started: resume refuses a changed plan.
    pub plan_hash: String,
    pub site_path: PathBuf,
    pub status: RunRecordStatus,
    pub started_wall: String,
    /// The run's parameters, as the engine layer defines them.
    pub spec: S,
}

/// Where a run stands, as its record keeps it (in lowercase, as records always had it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunRecordStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl std::fmt::Display for RunRecordStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunRecordStatus::Running => "running",
            RunRecordStatus::Succeeded => "succeeded",
            RunRecordStatus::Failed => "failed",
            RunRecordStatus::Cancelled => "cancelled",
        })
    }
}

/// At most this many run ids are named in a damage report.
const NAMED_RUNS: usize = 5;

impl JournalDb {
    fn fail(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite::failing(&self.path)
    }

    /// Every run the simulation beside the journal made calls for must be in the journal
    /// (a run is recorded before its first call): one that is not means the journal was
    /// emptied, replaced, or lost its write-ahead log. `fresh`: the journal has no tables.
    fn check_against_simulation(&self, condition: Condition, fresh: bool) -> Result<(), StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Self::check_runs_of_simulation(dir, &self.path, condition, |id| {
            if fresh {
                return Ok(false);
            }
            self.conn
                .query_row("SELECT 1 FROM runs WHERE id = ?1", [id], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
                .map_err(self.fail())
        })
    }

    fn check_runs_of_simulation(
        dir: &Path,
        path: &Path,
        condition: Condition,
        known: impl Fn(&str) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if !dir.join("sim.db").exists() {
            return Ok(());
        }
        let mut missing = Vec::new();
        for id in SimStore::open_read_only(dir)?.run_ids()? {
            if !known(&id)? {
                missing.push(id);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut named = missing.iter().take(NAMED_RUNS).cloned().collect::<Vec<_>>().join(", ");
        if missing.len() > NAMED_RUNS {
            named.push_str(&format!(" and {} more", missing.len() - NAMED_RUNS));
        }
        let runs = if missing.len() == 1 { "run" } else { "runs" };
        Err(StoreError::Damaged {
            path: path.into(),
            detail: format!(
                "{}the simulation (sim.db) shows calls of {runs} {named} that {file} does not have: it is damaged or was replaced",
                condition.words()
            ),
        })
    }

    fn bad(&self, what: String, e: serde_json::Error) -> StoreError {
        StoreError::BadRecord { path: self.path.clone(), what, message: e.to_string() }
    }

    pub fn put_run<S: Serialize>(&self, run: &RunRecord<S>) -> Result<(), StoreError> {
        let json = serde_json::to_string(run).map_err(|e| self.bad(format!("run {}", run.id), e))?;
        self.conn
            .execute("INSERT OR REPLACE INTO runs (id, record) VALUES (?1, ?2)", params![run.id, json])
            .map_err(self.fail())?;
        Ok(())
    }

    pub fn run<S: DeserializeOwned>(&self, id: &str) -> Result<Option<RunRecord<S>>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT record FROM runs WHERE id = ?1", params![id], |r| r.get(0))
            .optional()
            .map_err(self.fail())?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| self.bad(format!("run {id}"), e))).transpose()
    }

    /// Every run, oldest first.
    pub fn runs<S: DeserializeOwned>(&self) -> Result<Vec<RunRecord<S>>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT id, record FROM runs ORDER BY rowid").map_err(self.fail())?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        rows.into_iter().map(|(id, j)| serde_json::from_str(&j).map_err(|e| self.bad(format!("run {id}"), e))).collect()
    }

    /// A run's events in order.
    pub fn events<E: DeserializeOwned>(&self, run: &str) -> Result<Vec<E>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT seq, record FROM events WHERE run = ?1 ORDER BY seq").map_err(self.fail())?;
        let rows: Vec<(i64, String)> = stmt
            .query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        rows.into_iter()
            .map(|(seq, j)| serde_json::from_str(&j).map_err(|e| self.bad(format!("event {run}/{seq}"), e)))
            .collect()
    }

    /// Marks a manual step of a run done; `drplan approve` writes this from any shell.
    pub fn approve(&self, run: &str, step: &str, at: &str) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT OR IGNORE INTO approvals (run, step, at) VALUES (?1, ?2, ?3)", params![run, step, at])
            .map_err(self.fail())?;
        Ok(())
    }

    pub fn approved(&self, run: &str, step: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM approvals WHERE run = ?1 AND step = ?2", params![run, step], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(self.fail())
    }

    pub fn request_cancel(&self, run: &str, at: &str) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT OR IGNORE INTO cancels (run, at) VALUES (?1, ?2)", params![run, at])
            .map_err(self.fail())?;
        Ok(())
    }

    pub fn cancel_requested(&self, run: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM cancels WHERE run = ?1", params![run], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(self.fail())
    }
}

/// One event to append: its run, its place in the run, its JSON.
struct Append {
    run: String,
    seq: u64,
    json: String,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Appends events durably with group commit (see the module's doc).
pub struct JournalWriter {
    queue: Mutex<Option<mpsc::Sender<Append>>>,
    failed: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Resolves once the appended event is durable, or with the storage error.
pub type Ticket = tokio::sync::oneshot::Receiver<Result<(), String>>;

impl JournalWriter {
    pub fn start(dir: &Path) -> Result<JournalWriter, StoreError> {
        let db = open(dir)?;
        let (tx, rx) = mpsc::channel::<Append>();
        let failed = Arc::new(Mutex::new(None));
        let thread_failed = failed.clone();
        let thread = std::thread::Builder::new()
            .name("drplan-journal".into())
            .spawn(move || write_batches(db, rx, thread_failed))
            .map_err(|source| StoreError::Io { dir: dir.into(), source })?;
        Ok(JournalWriter { queue: Mutex::new(Some(tx)), failed, thread: Mutex::new(Some(thread)) })
    }

    /// Queues an event; the ticket says when it is durable.
    pub fn append(&self, run: &str, seq: u64, json: String) -> Ticket {
        let (done, ticket) = tokio::sync::oneshot::channel();
        if let Some(error) = self.failed.lock().expect("journal lock").clone() {
            let _ = done.send(Err(error));
            return ticket;
        }
        let queue = self.queue.lock().expect("journal lock");
        match queue.as_ref() {
            Some(queue) => {
                if let Err(mpsc::SendError(append)) = queue.send(Append { run: run.into(), seq, json, done }) {
                    let _ = append.done.send(Err("the journal writer stopped".into()));
                }
            }
            None => {
                let _ = done.send(Err("the journal is closed".into()));
            }
        }
        ticket
    }

    /// Writes what is queued and stops the writer.
    pub fn close(&self) {
        self.queue.lock().expect("journal lock").take();
        if let Some(thread) = self.thread.lock().expect("journal lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_batches(mut db: JournalDb, queue: mpsc::Receiver<Append>, failed: Arc<Mutex<Option<String>>>) {
    let mut previous = 0;
    while let Ok(first) = queue.recv() {
        let mut batch: Vec<Append> = std::iter::once(first).chain(queue.try_iter()).collect();
        if batch.len() > 1 && batch.len() < previous {
            // Several writers, fewer back than last time: more are coming, and one commit
            // can cover them. (When all came back at once, nobody else is coming.)
            std::thread::sleep(LINGER);
            batch.extend(queue.try_iter());
        }
        previous = batch.len();
        let previous = failed.lock().expect("journal lock").clone();
        let result = match previous {
            Some(error) => Err(error),
            None => write_batch(&mut db, &batch).map_err(|e| {
                let error = format!("journal write failed: {e}");
                *failed.lock().expect("journal lock") = Some(error.clone());
                error
            }),
        };
        for append in batch {
            let _ = append.done.send(result.clone());
        }
    }
}

fn write_batch(db: &mut JournalDb, batch: &[Append]) -> Result<(), rusqlite::Error> {
    let tx = db.conn.transaction()?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO events (run, seq, record) VALUES (?1, ?2, ?3)")?;
        for append in batch {
            insert.execute(params![append.run, append.seq as i64, append.json])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appended_events_are_durable_once_their_ticket_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let writer = JournalWriter::start(dir.path()).unwrap();
        let tickets: Vec<Ticket> = (0..100).map(|i| writer.append("r1", i, format!("{{\"n\":{i}}}"))).collect();
        for ticket in tickets {
            ticket.await.unwrap().unwrap();
        }
        // Another connection, as another process would, sees them all, in order.
        let db = open(dir.path()).unwrap();
        let events: Vec<serde_json::Value> = db.events("r1").unwrap();
        assert_eq!(events.len(), 100);
        assert_eq!(events[99]["n"], 99);
    }

    #[tokio::test]
    async fn after_a_storage_error_every_append_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let writer = JournalWriter::start(dir.path()).unwrap();
        writer.append("r1", 0, "{}".into()).await.unwrap().unwrap();
        // The same (run, seq) twice breaks the primary key: a write that must not pass.
        let err = writer.append("r1", 0, "{}".into()).await.unwrap().unwrap_err();
        assert!(err.contains("journal write failed"), "{err}");
        let later = writer.append("r1", 1, "{}".into()).await.unwrap().unwrap_err();
        assert_eq!(later, err);
        let db = open(dir.path()).unwrap();
        assert_eq!(db.events::<serde_json::Value>("r1").unwrap().len(), 1, "nothing half-written");
    }

    #[test]
    fn approvals_and_cancels_from_another_shell() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path()).unwrap();
        let other = open(dir.path()).unwrap();
        assert!(!db.approved("r1", "group/db/post/1").unwrap());
        other.approve("r1", "group/db/post/1", "now").unwrap();
        assert!(db.approved("r1", "group/db/post/1").unwrap());
        other.request_cancel("r1", "now").unwrap();
        assert!(db.cancel_requested("r1").unwrap());
        let run = RunRecord {
            id: "r1".into(),
            plan_path: "p.rhai".into(),
            plan_hash: "h".into(),
            site_path: "s.toml".into(),
            status: RunRecordStatus::Running,
            started_wall: "now".into(),
            spec: 7u32,
        };
        db.put_run(&run).unwrap();
        assert_eq!(other.run::<u32>("r1").unwrap(), Some(run.clone()));
        assert_eq!(other.runs::<u32>().unwrap(), vec![run]);
    }

    #[test]
    fn a_run_status_is_stored_as_the_lowercase_word_it_always_was() {
        let text = serde_json::to_string(&RunRecordStatus::Cancelled).unwrap();
        assert_eq!(text, "\"cancelled\"");
        let read: RunRecordStatus = serde_json::from_str("\"running\"").unwrap();
        assert_eq!(read, RunRecordStatus::Running);
    }

    #[test]
    fn a_journal_from_a_newer_drplan_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        drop(conn);
        for err in [open(dir.path()).err().unwrap(), open_to_look(dir.path()).err().unwrap()] {
            assert!(matches!(err, StoreError::NewerSchema { found: 7, known: 1, .. }), "{err}");
            assert!(err.to_string().contains("journal.db was written by a newer drplan"), "{err}");
        }
    }

    #[test]
    fn a_journal_from_before_schema_versions_is_migrated_when_opened_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute("INSERT INTO runs (id, record) VALUES ('r0', '{}')", []).unwrap();
        drop(conn);
        let version =
            |conn: &Connection| conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap();
        let look = open_to_look(dir.path()).unwrap();
        assert_eq!(version(&look.conn), 0, "a look writes nothing");
        drop(look);
        let db = open(dir.path()).unwrap();
        assert_eq!(version(&db.conn), SCHEMA_VERSION);
        let kept: String = db.conn.query_row("SELECT id FROM runs", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, "r0");
    }

    /// A state directory whose simulation has seen calls of runs `ids` (and the CLI's).
    fn simulation_with_calls_of(ids: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::store::StateDir::open(dir.path()).unwrap();
        let mut sim = SimStore::open(&state).unwrap();
        let calls: Vec<crate::store::CallRecord> = ids
            .iter()
            .map(|id| format!("{id}/vm/web01/failover/1"))
            .chain(["cli/1-2/protect/web01".to_string()])
            .map(|key| crate::store::CallRecord {
                key,
                operation: "failover".into(),
                vm: "web01".into(),
                outcome: None,
                count: 1,
                ended: None,
            })
            .collect();
        let batch = crate::store::SimBatch::<()> {
            clock: chrono::DateTime::UNIX_EPOCH,
            vms: vec![],
            jobs: vec![],
            calls: calls.iter().collect(),
        };
        sim.apply(&batch).unwrap();
        dir
    }

    #[test]
    fn an_emptied_journal_beside_a_simulation_that_saw_runs_is_damage_and_is_left_as_it_is() {
        let dir = simulation_with_calls_of(&["r1", "r2"]);
        let path = dir.path().join(JOURNAL_FILE);
        std::fs::write(&path, b"").unwrap();
        for err in [open(dir.path()).err().unwrap(), open_to_look(dir.path()).err().unwrap()] {
            let text = err.to_string();
            assert!(matches!(err, StoreError::Damaged { .. }), "{text}");
            assert!(text.contains("journal.db: it is empty (0 bytes)"), "{text}");
            assert!(
                text.contains(
                    "shows calls of runs r1, r2 that journal.db does not have: it is damaged or was replaced"
                ),
                "{text}"
            );
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "never repaired");
        std::fs::remove_file(&path).unwrap();
        let err = open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("it does not exist, and the simulation"), "{err}");
        assert!(!path.exists(), "not created");
    }

    #[test]
    fn a_journal_without_a_run_the_simulation_saw_is_damage() {
        let dir = simulation_with_calls_of(&["r1", "r2", "r3"]);
        let db = open_to_look(dir.path()).err().unwrap();
        assert!(db.to_string().contains("it does not exist, and the simulation"), "{db}");
        // A journal that was replaced by one holding only r2.
        let path = dir.path().join(JOURNAL_FILE);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute("INSERT INTO runs (id, record) VALUES ('r2', '{}')", []).unwrap();
        drop(conn);
        let err = open_to_look(dir.path()).err().unwrap().to_string();
        assert!(err.contains("shows calls of runs r1, r3 that journal.db does not have"), "{err}");
        assert!(open(dir.path()).is_err());
    }

    #[test]
    fn a_truncated_journal_is_damage_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path()).unwrap();
        for i in 0..200 {
            db.approve(&format!("r{i}"), &"step".repeat(50), "now").unwrap();
        }
        drop(db);
        let path = dir.path().join(JOURNAL_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
        let err = open_to_look(dir.path()).err().unwrap().to_string();
        assert!(err.contains("journal.db: the file is damaged"), "{err}");
        assert!(err.contains("truncated"), "{err}");
        assert!(open(dir.path()).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len / 2, "never repaired");
    }
}
