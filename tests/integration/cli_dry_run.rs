//! The dry run does what the run does: what a step finds answering, what it draws.

use std::time::Duration;

use drplan::fabric::libvirt::{STATE_FILE, VmRecord};
use drplan::model::{FailoverKind, Phase, ProtectionState, Side};
use drplan::store::SharedStore;

use crate::util::Workdir;

/// The database tier, then a step that waits on `address:port`.
fn waiting_on(address: &str, port: u16) -> String {
    format!(
        "let plan = recovery_plan(\"db\", #{{ source: \"primary\", target: \"secondary\" }});\n\
         plan.group(\"database\", replication_group(\"sql-cluster\"))\n\
         .post(|ctx| wait_port({address}, {port}, \"2m\"));\nplan\n"
    )
}

#[test]
fn wait_port_answers_only_for_a_port_the_vm_serves_in_a_dry_run_and_a_run_alike() {
    // sql01 serves 1433 (the site file's services): it answers as soon as sql01 is up.
    let work = Workdir::contoso().plan(&waiting_on("ctx.vm(\"sql01\").ip", 1433));
    work.run(&["dry-run", "plan.rhai"]).ok();
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    // Port 22 it does not serve, and nothing of the run is at 10.9.9.9: both fail, both
    // after the whole timeout, the dry run as the run.
    for target in ["ctx.vm(\"sql01\").ip, 22", "\"10.9.9.9\", 1433"] {
        let (address, port) = target.rsplit_once(", ").unwrap();
        let work = Workdir::contoso().plan(&waiting_on(address, port.parse().unwrap()));
        let dry = work.run(&["dry-run", "plan.rhai", "--format", "json"]).fails(1);
        let real = work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).fails(1);
        let failed = |steps: &serde_json::Value| {
            steps.as_array().unwrap().iter().find(|e| e["kind"] == "action.failed").unwrap()["detail"].clone()
        };
        let dry_failure = failed(&dry.json()["steps"]);
        let id = work.last_run().unwrap();
        let show = work.run(&["show", &id, "--format", "json"]).ok().json();
        assert_eq!(failed(&show["steps"]), dry_failure, "{target}");
        assert!(dry_failure.as_str().unwrap().contains("nothing answered"), "{dry_failure}");
        assert_eq!(dry.json()["rto_ms"], show["rto_ms"], "the timeout is spent in both: {target}");
        assert!(real.stdout.contains("FAILED") || real.stderr.contains("failed"), "{}", real.stderr);
    }
}

#[test]
fn a_dry_run_draws_its_predicted_timeline_like_show() {
    let work = Workdir::contoso_plans();
    let svg = work.path().join("predicted.svg");
    work.run(&["dry-run", "failover.rhai", "--svg", svg.to_str().unwrap()]).ok();
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&drawn).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(drawn.contains("(dry run)") && drawn.contains("database") && drawn.contains("web03"), "{drawn}");
}

/// Sites a and b as libvirt sites, app01 at a, nothing listening at their URIs: a dry
/// run asks the real fabric for its state only (`libvirt.db`), never its hypervisors.
const LIBVIRT_SITES: &str = r#"
[[sites]]
name = "a"
kind = "onprem"
hosts = ["kvm-a"]
libvirt = { uri = "qemu+unix:///system?socket=/nonexistent/a.sock", storage = "/nonexistent/a" }
networks = [{ name = "prod", libvirt_network = "net-a", subnets = [{ name = "lan", cidr = "10.7.1.0/24" }] }]

[[sites]]
name = "b"
kind = "onprem"
hosts = ["kvm-b"]
libvirt = { uri = "qemu+unix:///system?socket=/nonexistent/b.sock", storage = "/nonexistent/b" }
networks = [{ name = "prod-dr", libvirt_network = "net-b", subnets = [{ name = "lan", cidr = "10.7.2.0/24" }] }]

[[pairings]]
source = "a"
target = "b"

[[network_mappings]]
source = "a/prod"
target = "b/prod-dr"

[[policies]]
name = "gold"
copy_frequency = "30s"
retention = "1h"

[[vms]]
name = "app01"
site = "a"
host = "kvm-a"
os = "linux"
nics = [{ network = "prod", subnet = "lan", ip = "10.7.1.20", target_ip = "10.7.2.20" }]
"#;

const APP_PLAN: &str = "let plan = recovery_plan(\"app\", #{ source: \"a\", target: \"b\" });\n\
                        plan.group(\"app\", [\"app01\"]);\nplan\n";

/// What app01's failback took at the real site the last time: the dry run models it.
fn measured() -> drplan::model::MeasuredDurations {
    drplan::model::MeasuredDurations {
        shutdown: Some(Duration::from_millis(2_100)),
        final_sync: Some(Duration::from_millis(900)),
        processing: Some(Duration::from_millis(300)),
        boot: Some(Duration::from_millis(9_400)),
        commit: Some(Duration::from_millis(40)),
        at: None,
    }
}

/// The libvirt sites with app01 in `phase` as the real fabric keeps it, active on
/// `active`, protected under gold, with what [`measured`] says.
fn real_site_with(phase: Phase, active: Side) -> Workdir {
    let work = Workdir::with_site(LIBVIRT_SITES).plan(APP_PLAN);
    let store = SharedStore::open(&work.state(), STATE_FILE).unwrap();
    let mut protection = ProtectionState::unprotected();
    protection.phase = phase;
    protection.active = active;
    protection.policy = Some("gold".into());
    protection.changes_tracked = true;
    let mut record = VmRecord::new(protection);
    record.measured = measured();
    let written: Result<(), ()> = store
        .update::<VmRecord, _, _>("app01", |stored| {
            *stored = Some(record);
            Ok(())
        })
        .unwrap();
    written.unwrap();
    work
}

/// `m` minutes ago by the real fabric's clock, the wall clock.
fn minutes_ago(m: i64) -> drplan::model::Timestamp {
    chrono::Utc::now() - chrono::TimeDelta::minutes(m)
}

#[test]
fn r37_a_dry_run_of_a_failback_on_a_real_site_found_replicating_back_models_the_way_home() {
    // After a planned failover to b, its commit and its reprotect: replicating b -> a.
    let work = real_site_with(Phase::Protected { since: minutes_ago(30) }, Side::Recovery);

    let dry = work.run(&["dry-run", "plan.rhai", "--kind", "failback", "--format", "json"]).ok().json();
    assert_eq!(dry["status"], "succeeded", "{dry}");
    let header = work.run(&["dry-run", "plan.rhai", "--kind", "failback"]).ok().stdout;
    assert!(header.starts_with("Dry run of plan \"app\": failback from b to a,"), "{header}");
    let said = dry["durations"].as_str().unwrap();
    assert!(said.starts_with("measured in this site's past runs and drills for app01 (shutdown 2.1s"), "{said}");
    // R38: shut down at b, the last changes synced back, app01's own machine booted at a
    // with its own address, nothing lost; the site's measured durations, end to end.
    let app01 = &dry["groups"][0]["vms"][0];
    assert_eq!(app01["detail"].as_str().unwrap().split(';').next(), Some("10.7.1.20 on a/kvm-a"), "{app01}");
    assert_eq!(app01["data_loss_ms"], 0);
    let steps = dry["steps"].as_array().unwrap();
    let landed = steps.iter().find(|e| e["kind"] == "vm.succeeded").unwrap();
    assert_eq!(landed["data"]["job"]["operation"], "failback");
    assert_eq!(landed["data"]["source_shutdown"]["shutdown"], "done");
    let downtime = &landed["data"]["downtime"];
    assert_eq!(
        (downtime["secs"].as_u64(), downtime["nanos"].as_u64()),
        (Some(12), Some(700_000_000)),
        "2.1+0.9+0.3+9.4 s"
    );
    // R37: then committed at home and reprotected forward, under its own policy again.
    let done: Vec<String> = steps
        .iter()
        .filter(|e| e["kind"] == "action.succeeded")
        .map(|e| format!("{}: {}", e["step"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done[0].starts_with("commit: failover committed"), "{done:?}");
    assert!(done[1].starts_with("reprotect: replicating a -> b under policy gold"), "{done:?}");
    assert_eq!(dry["rto_ms"], 12_740, "the way home and the commit app01 measured (R34)");
    // A failback brings the whole plan home, as `drplan failback` does.
    let narrowed = work.run(&["dry-run", "plan.rhai", "--kind", "failback", "--vm", "app01"]).fails(2);
    assert!(narrowed.stderr.contains("a failback brings the whole plan home"), "{}", narrowed.stderr);

    // A new failover is what the real run refuses, in the same words (R20).
    for kind in ["planned", "unplanned"] {
        let dry = work.run(&["dry-run", "plan.rhai", "--kind", kind]).fails(1);
        let real = work.run(&["failover", "plan.rhai", "--kind", kind, "--yes"]).fails(1);
        assert_eq!(dry.plan_errors(), real.plan_errors(), "{kind}: {}", real.stderr);
        let refused = dry.plan_errors().concat();
        let why = if kind == "planned" {
            "protected on the recovery site; going back is a failback"
        } else {
            "it runs on b already; fail it back first"
        };
        assert!(refused.contains(why), "{kind}: {}", dry.stderr);
    }
}

#[test]
fn r34_a_dry_run_on_a_real_site_found_failed_over_and_not_committed_refuses_as_the_site_would() {
    let point = drplan::model::RecoveryPoint { time: minutes_ago(10), consistency: drplan::model::Consistency::Crash };
    let failed_over =
        Phase::FailedOver { kind: FailoverKind::Unplanned, point, at: minutes_ago(9), data_loss: Duration::ZERO };
    let work = real_site_with(failed_over, Side::Recovery);
    // Not home yet: a failback waits for the commit and the reprotect (R34, R36).
    let back = work.run(&["dry-run", "plan.rhai", "--kind", "failback"]).fails(1);
    assert!(back.stderr.contains("cannot failback app01: it is failed over (unplanned, point"), "{}", back.stderr);
    assert!(back.stderr.contains("not committed. Next: change recovery point, commit."), "{}", back.stderr);
    let again = work.run(&["dry-run", "plan.rhai", "--kind", "unplanned"]).fails(1);
    let real = work.run(&["failover", "plan.rhai", "--kind", "unplanned", "--yes"]).fails(1);
    assert!(!again.plan_errors().is_empty(), "{}", again.stderr);
    assert_eq!(again.plan_errors(), real.plan_errors(), "{}", real.stderr);
}
