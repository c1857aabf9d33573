//! Figure 5: the journal. Events per second with durability on — the events of the
//! execution figure's run appended again to a fresh `JournalWriter` in the engine's
//! order (one writer per VM of the group under way; the run's and groups' own events
//! one at a time), each writer awaiting every event before its next: stricter than the
//! engine, which waits only for the events it acts on — against the baseline of the
//! same rows in one transaction with no durability barrier; and the bytes the run's
//! journal keeps per VM.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use drplan::engine::Event;
use drplan::store::journal::{self, JournalWriter};

use crate::execution::JournaledRun;
use crate::fixture::real_runtime;
use crate::report::{Line, Report};

/// The events as the engine's `JournalLog` writes them: (seq, JSON).
fn rows(events: &[Event]) -> Vec<(u64, String)> {
    events.iter().map(|e| (e.seq, serde_json::to_string(e).expect("events serialize"))).collect()
}

/// The run's events in the order the engine journals them: steps of events that are
/// appended one after the other (run and group events), and batches of VMs whose
/// events go concurrently, each VM's in order.
enum Phase {
    Serial(Vec<(u64, String)>),
    Concurrent(Vec<Vec<(u64, String)>>),
}

fn phases(events: &[Event]) -> Vec<Phase> {
    let mut phases = Vec::new();
    let mut serial = Vec::new();
    let mut vms: BTreeMap<&str, Vec<(u64, String)>> = BTreeMap::new();
    for (event, row) in events.iter().zip(rows(events)) {
        match &event.vm {
            Some(vm) => {
                if !serial.is_empty() {
                    phases.push(Phase::Serial(std::mem::take(&mut serial)));
                }
                vms.entry(vm).or_default().push(row);
            }
            None => {
                if !vms.is_empty() {
                    phases.push(Phase::Concurrent(std::mem::take(&mut vms).into_values().collect()));
                }
                serial.push(row);
            }
        }
    }
    if !vms.is_empty() {
        phases.push(Phase::Concurrent(vms.into_values().collect()));
    }
    if !serial.is_empty() {
        phases.push(Phase::Serial(serial));
    }
    phases
}

/// Appends every event durably, as the engine does; events per second.
fn durable_rate(events: &[Event]) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let writer = Arc::new(JournalWriter::start(dir.path()).expect("journal"));
    let phases = phases(events);
    let runtime = real_runtime();
    let started = Instant::now();
    runtime.block_on(async {
        for phase in phases {
            match phase {
                Phase::Serial(rows) => {
                    for (seq, json) in rows {
                        writer.append("bench", seq, json).await.expect("ticket").expect("durable");
                    }
                }
                Phase::Concurrent(vms) => {
                    let mut all = tokio::task::JoinSet::new();
                    for rows in vms {
                        let writer = writer.clone();
                        all.spawn(async move {
                            for (seq, json) in rows {
                                writer.append("bench", seq, json).await.expect("ticket").expect("durable");
                            }
                        });
                    }
                    while let Some(done) = all.join_next().await {
                        done.expect("writer task");
                    }
                }
            }
        }
    });
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    writer.close();
    rate
}

/// The baseline: the same rows, one transaction, no barrier.
fn one_transaction_rate(events: &[Event]) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(journal::open(dir.path()).expect("journal"));
    let rows = rows(events);
    let mut conn = rusqlite::Connection::open(dir.path().join(journal::JOURNAL_FILE)).expect("journal");
    let started = Instant::now();
    let tx = conn.transaction().expect("transaction");
    {
        let mut insert = tx.prepare("INSERT INTO events (run, seq, record) VALUES (?1, ?2, ?3)").expect("insert");
        for (seq, json) in &rows {
            insert.execute(rusqlite::params!["bench", *seq as i64, json]).expect("insert");
        }
    }
    tx.commit().expect("commit");
    rows.len() as f64 / started.elapsed().as_secs_f64()
}

pub fn measure(run: &JournaledRun, vms: usize, report: &mut Report) {
    let events = run.events.len();
    let per_vm = events as f64 / vms as f64;
    let in_run = events as f64 / run.wall.as_secs_f64();
    let baseline = one_transaction_rate(&run.events);
    let durable = durable_rate(&run.events);
    let bytes_per_vm = run.journal_bytes as f64 / vms as f64;
    // What journaling costs a VM at this rate: its events' share of the writer's time.
    let us_per_vm = per_vm / durable * 1e6;
    report.line(Line::info(
        "journal in the execution run",
        format!(
            "{events} events ({per_vm:.1} per VM) in {:.0} ms = {in_run:.0} events/s",
            run.wall.as_secs_f64() * 1e3
        ),
    ));
    report
        .line(Line::info("baseline: the same rows in one transaction, no barrier", format!("{baseline:.0} events/s")));
    report.line(
        Line::figure("journal-rate", "journal, durable, each event awaited", format!("{durable:.0} events/s"))
            .ratio(durable / baseline, "one transaction"),
    );
    report.line(Line::info("journal time per VM at that rate", format!("{us_per_vm:.1} µs")));
    report.line(Line::figure("journal-bytes", "journal size per VM", format!("{bytes_per_vm:.0} B")));
    report.column("journal_events", events as f64);
    report.column("journal_events_per_vm", per_vm);
    report.column("journal_events_per_s_in_run", in_run);
    report.column("journal_events_per_s", durable);
    report.column("journal_baseline_events_per_s", baseline);
    report.column("journal_ratio", durable / baseline);
    report.column("journal_us_per_vm", us_per_vm);
    report.column("journal_bytes_per_vm", bytes_per_vm);
}
