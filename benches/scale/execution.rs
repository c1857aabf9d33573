//! Figure 2: execution overhead. A real run (multi-thread runtime, real time) of the
//! bare plan — failovers only, so both sides make exactly the same fabric calls —
//! against the simulation with operations that take no real time, the durable journal
//! on and `--parallel` N, against the baseline of the same `Fabric::failover` calls made
//! with a bare `tokio` `JoinSet` per group, in group order: no engine, no journal.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan::engine::{Event, JournalLog, RunStatus, execute};
use drplan::fabric::sim::SimFabric;
use drplan::fabric::{Call, Fabric};
use drplan::model::Inventory;
use drplan::plan::validate::ResolvedPlan;
use drplan::store::journal::{JOURNAL_FILE, JournalWriter};

use crate::fixture::{self, Checked, Fixture, median, ms, real_runtime, secs, us_per};
use crate::report::{Line, Report};

/// What the journaled run left, for the journal's figures.
pub struct JournaledRun {
    pub events: Vec<Event>,
    pub wall: Duration,
    /// journal.db and its WAL after the run, in bytes.
    pub journal_bytes: u64,
}

/// The engine's real run with the journal on: wall time of `execute` alone.
fn engine_run(checked: Checked, parallel: usize) -> JournaledRun {
    let dir = tempfile::tempdir().expect("temporary directory");
    let writer = Arc::new(JournalWriter::start(dir.path()).expect("journal"));
    let journal = Arc::new(JournalLog { writer: writer.clone(), run: "bench".into() });
    let ready = fixture::ready(checked, fixture::On::Simulation, Some(journal), parallel);
    let runtime = real_runtime();
    let started = Instant::now();
    let outcome =
        runtime.block_on(execute(ready.deps, ready.plan, ready.resolved, fixture::spec("bench", parallel, false)));
    let wall = started.elapsed();
    assert_eq!(outcome.status, RunStatus::Succeeded, "the real run failed");
    // Closing writes what is queued (nothing: the run awaited every event) and lets
    // SQLite checkpoint, so the size is what a finished run keeps.
    writer.close();
    JournaledRun { events: outcome.events, wall, journal_bytes: journal_size(dir.path()) }
}

/// journal.db and its WAL, if one is left.
pub fn journal_size(dir: &Path) -> u64 {
    [JOURNAL_FILE.to_string(), format!("{JOURNAL_FILE}-wal")]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// The baseline: the same failover calls, group by group, each group's VMs joined with
/// a bare `JoinSet`.
fn bare_run(inventory: Arc<Inventory>, resolved: &ResolvedPlan) -> Duration {
    let fabric: Arc<dyn Fabric> = Arc::new(SimFabric::in_memory(inventory).expect("simulation"));
    let request = Arc::new(fixture::failover_request());
    let runtime = real_runtime();
    let started = Instant::now();
    runtime.block_on(async {
        for group in &resolved.groups {
            let mut all = tokio::task::JoinSet::new();
            for vm in &group.vms {
                let (fabric, request, vm) = (fabric.clone(), request.clone(), vm.clone());
                all.spawn(async move {
                    let call = Call::new(format!("bench/vm/{vm}/failover"), fabric.now());
                    fabric.failover(&call, &vm, &request).await.map(|_| ()).map_err(|e| format!("{vm}: {e}"))
                });
            }
            while let Some(done) = all.join_next().await {
                done.expect("task").expect("failover");
            }
        }
    });
    started.elapsed()
}

pub fn measure(fixture: &Fixture, reps: usize, report: &mut Report) -> JournaledRun {
    let n = fixture.vms;
    let inventory = fixture.unpaced_inventory();
    let (mut bares, mut engines, mut last) = (Vec::new(), Vec::new(), None);
    for _ in 0..reps {
        // Each side gets a fresh simulation: a VM fails over once.
        let checked = fixture::check(inventory.clone(), &fixture.bare);
        bares.push(bare_run(inventory.clone(), &checked.resolved));
        let run = engine_run(checked, n);
        engines.push(run.wall);
        last = Some(run);
    }
    let (bare, engine) = (median(bares), median(engines));
    let ratio = ms(engine) / ms(bare);
    let overhead = (engine.as_secs_f64() - bare.as_secs_f64()) * 1e6 / n as f64;
    report.line(Line::info(
        "baseline: the same failover calls, bare JoinSet per group",
        format!("{} = {:.1} µs/VM", secs(bare), us_per(bare, n)),
    ));
    report.line(
        Line::figure("exec", "real run, engine + journal, --parallel = VMs", format!("{:.1} µs/VM", us_per(engine, n)))
            .target("< 1.5x", ratio < 1.5)
            .ratio(ratio, "the bare calls"),
    );
    report.line(
        Line::figure("exec-overhead", "engine + journal time per VM failover", format!("{overhead:.1} µs"))
            .target("< 100 µs", overhead < 100.0),
    );
    report.column("bare_ms", ms(bare));
    report.column("engine_ms", ms(engine));
    report.column("engine_us_per_vm", us_per(engine, n));
    report.column("engine_overhead_us_per_vm", overhead);
    report.column("engine_ratio", ratio);
    last.expect("at least one rep")
}
