//! The crash test: a run's `drplan` process is killed with SIGKILL at random points, 50
//! times over two runs, and resumed each time. Afterwards every VM has been failed over
//! exactly once (the fabric counts the calls per idempotency key and keeps a job per
//! failover), and the journal is consistent: events numbered without gap or repeat,
//! one `vm.succeeded` per VM, the run ending with `run.succeeded`. The kill points are
//! seeded; `DRPLAN_CRASH_SEED=n` tries others.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{CONTOSO_SITE, Workdir};
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

fn spawn(work: &Workdir, args: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("drplan"))
        .arg("--state")
        .arg(work.state())
        .arg("--site")
        .arg(&work.site)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn last_run(work: &Workdir) -> Option<String> {
    let runs = work.run(&["runs", "--format", "json"]);
    (runs.code == 0).then(|| runs.json().as_array()?.last()?["id"].as_str().map(String::from)).flatten()
}

/// Kills the run `kills` times at random points, resuming it each time, then lets it
/// finish; returns the run's id. The site runs at speed 100 (the contoso tiers take
/// about six seconds), so kills within 250 ms land all along the run.
fn kill_and_resume(work: &Workdir, plan: &str, kind: &str, parallel: &str, kills: usize, seed: u64) -> String {
    // DRPLAN_CRASH_SEED=n tries other kill points.
    let seed = std::env::var("DRPLAN_CRASH_SEED").ok().and_then(|s| s.parse::<u64>().ok()).map_or(seed, |s| s ^ seed);
    let mut rng = Rng(seed);
    let mut killed = 0;
    loop {
        let args: Vec<String> = match last_run(work) {
            None => ["failover", plan, "--kind", kind, "--parallel", parallel, "--yes"].map(String::from).to_vec(),
            Some(id) => ["resume", &id, "--yes"].map(String::from).to_vec(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(work, &args);
        if killed == kills {
            let status = child.wait().unwrap();
            assert!(status.success(), "the last resume must finish the run ({args:?} exited {status})");
            return last_run(work).unwrap();
        }
        let deadline = Instant::now() + Duration::from_millis(rng.below(250));
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        match child.try_wait().unwrap() {
            Some(status) => panic!("{args:?} ended before its kill ({status}) after {killed} kills; seed {seed}"),
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
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
        let status = runtime.block_on(sim.replication_status(vm)).unwrap();
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

fn lab() -> (Workdir, String) {
    let site = std::fs::read_to_string(CONTOSO_SITE).unwrap().replace("speed = 600", "speed = 100");
    let work = Workdir::with_site(&site);
    let plan = work.path().join("plan.rhai");
    std::fs::write(&plan, PLAN).unwrap();
    (work, plan.to_str().unwrap().to_string())
}

#[test]
fn killed_planned_failovers_resume_and_fail_each_vm_over_exactly_once() {
    let (work, plan) = lab();
    let run = kill_and_resume(&work, &plan, "planned", "8", 25, 0x5eed_0001);
    check_exactly_once(&work, &run, "planned");
}

#[test]
fn killed_unplanned_failovers_resume_and_fail_each_vm_over_exactly_once() {
    let (work, plan) = lab();
    let run = kill_and_resume(&work, &plan, "unplanned", "2", 25, 0x5eed_0002);
    check_exactly_once(&work, &run, "unplanned");
}
