//! The journal's throughput with durability on (`synchronous=FULL`, each event awaited
//! before going on, as the engine does), against a baseline measured in the same run:
//! the same rows written in one transaction with no durability barrier.
//!
//! `cargo bench --bench journal`

use std::time::Instant;

use drplan::store::journal::{self, JournalWriter};

const EVENTS: u64 = 20_000;
/// A typical event, as JSON.
const EVENT: &str = r#"{"seq":0,"at":"2026-01-05T08:04:00.938Z","kind":"vm.succeeded","group":"database","vm":"sql01","detail":"10.2.1.10 on secondary/hv-s01; point 2026-01-05T08:01:00Z; data loss 0s"}"#;

/// `tasks` concurrent writers, each awaiting every event it appends.
fn journaled(tasks: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let writer = std::sync::Arc::new(JournalWriter::start(dir.path()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let mut all = tokio::task::JoinSet::new();
        for task in 0..tasks {
            let writer = writer.clone();
            all.spawn(async move {
                for i in 0..EVENTS / tasks {
                    let seq = task * (EVENTS / tasks) + i;
                    writer.append("bench", seq, EVENT.to_string()).await.unwrap().unwrap();
                }
            });
        }
        while all.join_next().await.is_some() {}
    });
    EVENTS as f64 / started.elapsed().as_secs_f64()
}

/// The baseline: the same rows, one transaction, no barrier.
fn one_transaction() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    drop(journal::open(dir.path()).unwrap());
    let mut conn = rusqlite::Connection::open(dir.path().join(journal::JOURNAL_FILE)).unwrap();
    let started = Instant::now();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx.prepare("INSERT INTO events (run, seq, record) VALUES (?1, ?2, ?3)").unwrap();
        for seq in 0..EVENTS {
            insert.execute(rusqlite::params!["bench", seq as i64, EVENT]).unwrap();
        }
    }
    tx.commit().unwrap();
    EVENTS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let baseline = one_transaction();
    println!("journal: {EVENTS} events of {} bytes", EVENT.len());
    println!("  baseline, one transaction, no durability barrier: {baseline:>10.0} events/s");
    for tasks in [1, 10, 100] {
        let rate = journaled(tasks);
        println!(
            "  durable, {tasks:>3} concurrent writers awaiting each event: {rate:>10.0} events/s ({:.2}x the baseline)",
            rate / baseline
        );
    }
}
