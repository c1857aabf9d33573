//! The crash test: a run's `drplan` process is killed with SIGKILL at random points, 50
//! times over two runs, and resumed each time. Afterwards every VM has been failed over
//! exactly once (the fabric counts the calls per idempotency key and keeps a job per
//! failover), and the journal is consistent: events numbered without gap or repeat,
//! one `vm.succeeded` per VM, the run ending with `run.succeeded`. The kill points are
//! seeded; `DRPLAN_CRASH_SEED=n` tries others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{RECORD_DNS, Workdir};
use drplan::engine::{Event, EventKind};
use drplan::fabric::Fabric;
use drplan::fabric::sim::SimFabric;
use drplan::model::JobStatus;
use drplan::store::StateDir;

const PLAN: &str = r#"
import "dns" as dns;
let plan = recovery_plan("tiers", #{ source: "primary", target: "secondary" });
plan.group("database", replication_group("sql-cluster"));
plan.group("app", vms_tagged("tier", "app"));
plan.group("web", vms_tagged("tier", "web")).post_each(|vm, ctx| dns::point_vm(vm));
plan
"#;

const VMS: [&str; 8] = ["sql01", "sql02", "app01", "app02", "app03", "web01", "web02", "web03"];

/// xorshift64*: the kill points are random but the same for a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Kills the run `kills` times at random points, resuming it each time, then lets it
/// finish; returns the run's id. The site runs at speed 100 (the contoso tiers take
/// about six seconds), so kills within 250 ms land all along the run.
fn kill_and_resume(work: &Workdir, kind: &str, parallel: &str, kills: usize, seed: u64) -> String {
    // DRPLAN_CRASH_SEED=n tries other kill points.
    let seed = std::env::var("DRPLAN_CRASH_SEED").ok().and_then(|s| s.parse::<u64>().ok()).map_or(seed, |s| s ^ seed);
    let mut rng = Rng(seed);
    let mut killed = 0;
    loop {
        let args: Vec<String> = match work.last_run() {
            None => {
                ["failover", "plan.rhai", "--kind", kind, "--parallel", parallel, "--yes"].map(String::from).to_vec()
            }
            Some(id) => ["resume", &id, "--yes"].map(String::from).to_vec(),
        };
        let mut child = work.drplan(&args).spawn();
        if killed == kills {
            let run = child.wait();
            assert!(run.code == 0, "the last resume must finish the run ({args:?} exited {})", run.code);
            return work.last_run().unwrap();
        }
        let deadline = Instant::now() + Duration::from_millis(rng.below(250));
        while Instant::now() < deadline && child.try_wait().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        match child.try_wait() {
            Some(status) => panic!("{args:?} ended before its kill ({status}) after {killed} kills; seed {seed}"),
            None => {
                child.kill(); // SIGKILL
                killed += 1;
            }
        }
    }
}

fn check_exactly_once(work: &Workdir, run: &str, kind: &str) {
    let text = std::fs::read_to_string(&work.site).unwrap();
    let inventory = Arc::new(drplan::model::site_file::parse_site(&text, &work.site).unwrap());
    let state = StateDir::open(&work.state()).unwrap();
    let sim = SimFabric::open(inventory, &state).unwrap();
    for (key, count) in sim.call_counts() {
        assert_eq!(count, 1, "idempotency key {key} was presented {count} times");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let jobs = runtime.block_on(sim.jobs()).unwrap();
    let operation = format!("{kind} failover");
    for vm in VMS {
        let done = jobs.iter().filter(|j| j.vm == vm && j.operation == operation && j.status == JobStatus::Succeeded);
        assert_eq!(done.count(), 1, "{vm} must be failed over exactly once");
        let status = runtime.block_on(sim.replication_status(vm, sim.now())).unwrap();
        assert_eq!(status.active_site, "secondary", "{vm}");
    }

    let journal = drplan::store::journal::open(&work.state()).unwrap();
    let events: Vec<Event> = journal.events(run).unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "the journal's events are numbered without gap or repeat");
    }
    let mut up: BTreeMap<&str, usize> = BTreeMap::new();
    for event in events.iter().filter(|e| e.kind == EventKind::VmSucceeded) {
        *up.entry(event.vm.as_deref().unwrap()).or_default() += 1;
    }
    assert_eq!(up.len(), VMS.len());
    assert!(up.values().all(|n| *n == 1), "one vm.succeeded per VM: {up:?}");
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::RunStarted).count(), 1);
    assert_eq!(events.last().unwrap().kind, EventKind::RunSucceeded);
    for web in ["web01", "web02", "web03"] {
        let dns = events.iter().any(|e| e.kind == EventKind::ActionSucceeded && e.vm.as_deref() == Some(web));
        assert!(dns, "{web}'s DNS action ran to the end");
    }
}

/// The contoso site at speed 100 (see `kill_and_resume`) and the three tiers' plan.
fn tiers() -> Workdir {
    Workdir::contoso()
        .site_edit(|site| site.replace("speed = 600", "speed = 100"))
        .plan(PLAN)
        .file("drplan.toml", RECORD_DNS)
}

#[test]
fn killed_planned_failovers_resume_and_fail_each_vm_over_exactly_once() {
    let work = tiers();
    let run = kill_and_resume(&work, "planned", "8", 25, 0x5eed_0001);
    check_exactly_once(&work, &run, "planned");
}

#[test]
fn killed_unplanned_failovers_resume_and_fail_each_vm_over_exactly_once() {
    let work = tiers();
    let run = kill_and_resume(&work, "unplanned", "2", 25, 0x5eed_0002);
    check_exactly_once(&work, &run, "unplanned");
}
