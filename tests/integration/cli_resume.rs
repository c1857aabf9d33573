//! Reports an operator can act on, and runs that go on where they stopped: a live run
//! says it is running, a resumed run is one timeline (one span per group and VM, the
//! RTO from the first start, each attempt listed, the clock never going back), a
//! failback resumed finishes what a failback is (R37), `cancel --force` stops a run
//! even while an action waits, and manual steps wait for people in real time.

use std::time::{Duration, Instant};

use crate::util::Workdir;

const PLAN: &str = r#"
let plan = recovery_plan("tiers", #{ source: "primary", target: "secondary", rto: "30m" });
plan.group("database", replication_group("sql-cluster"));
plan.group("app", vms_tagged("tier", "app"));
plan.group("web", vms_tagged("tier", "web"));
plan
"#;

/// A planned failover of the folder's plan, as every run here starts.
const PLANNED: [&str; 5] = ["failover", "plan.rhai", "--kind", "planned", "--yes"];

/// `PLAN` with a manual step "Check" between the database and app tiers; `options` is its
/// Rhai map.
fn with_check(options: &str) -> String {
    PLAN.replace("plan.group(\"app\"", &format!("plan.manual(\"Check\", {options});\nplan.group(\"app\""))
}

const BOOT_FAILURE: &str = "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"app02\"\n";

fn without(work: &Workdir, text: &str) {
    let site = std::fs::read_to_string(&work.site).unwrap().replace(text, "");
    std::fs::write(&work.site, site).unwrap();
}

fn at(event: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    event["at"].as_str().unwrap().parse().unwrap()
}

#[test]
fn show_of_a_live_run_says_it_is_running() {
    let work = Workdir::contoso().plan(&with_check(r#"#{ timeout: "2h" }"#));
    let child = work.drplan(PLANNED).spawn();
    let id = work.wait_for_event("manual.waiting");
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "running");
    let human = work.run(&["show", &id]).ok();
    assert!(human.stdout.contains("is still RUNNING"), "{}", human.stdout);
    assert!(!human.stdout.contains("FAILED"), "{}", human.stdout);
    work.run(&["approve", &id]).ok();
    child.wait().ok();
    assert_eq!(work.run(&["show", &id, "--format", "json"]).ok().json()["status"], "succeeded");
}

#[test]
fn a_resumed_run_is_one_timeline_from_its_first_start_with_each_attempt_listed() {
    let work = Workdir::contoso().site_edit(|s| s + BOOT_FAILURE).plan(PLAN);
    work.run(&PLANNED).fails(1);
    let id = work.last_run().unwrap();
    let first = work.run(&["show", &id, "--format", "json"]).ok().json();
    let failed_at = first["steps"].as_array().unwrap().iter().map(at).max().unwrap();
    // An hour passes before the operator has fixed the replica.
    work.run(&["advance", "1h"]).ok();
    without(&work, BOOT_FAILURE);
    work.run(&["resume", &id, "--yes"]).ok();

    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    let steps = show["steps"].as_array().unwrap();
    let resumed = steps.iter().find(|e| e["kind"] == "run.resumed").unwrap();
    assert!(at(resumed) >= failed_at + chrono::TimeDelta::hours(1), "the clock never goes back");
    assert_eq!(show["started"], first["started"], "the RTO counts from the first start");
    assert!(show["rto_ms"].as_u64().unwrap() > 3_600_000, "the hour of the failed attempt counts: {}", show["rto_ms"]);
    let attempts = show["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!((attempts[0]["status"].as_str(), attempts[1]["status"].as_str()), (Some("failed"), Some("succeeded")));
    let groups: Vec<&str> = show["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(groups, ["database", "app", "web"], "no group twice");
    for group in show["groups"].as_array().unwrap() {
        assert_eq!(group["status"], "succeeded", "{group}");
        for vm in group["vms"].as_array().unwrap() {
            assert_eq!(vm["status"], "succeeded", "{vm}");
        }
    }
    let human = work.run(&["show", &id]).ok().stdout;
    assert!(human.contains("Attempts (the RTO counts from the first)"), "{human}");
    let svg = work.path().join("run.svg");
    work.run(&["show", &id, "--svg", svg.to_str().unwrap()]).ok();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert_eq!(svg.matches(">app<").count(), 1, "the app group is drawn once");
}

#[test]
fn r37_a_resumed_failback_commits_and_reprotects_and_runs_says_what_is_left() {
    // A copy of the site: the test edits it.
    let work = Workdir::contoso().site_edit(|site| site).plan(PLAN);
    work.run(&PLANNED).ok();
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    work.run(&["advance", "6h"]).ok();
    // web02's replica will not shut down: a planned failback cannot go on for it.
    let stuck = "\n[[faults]]\nkind = \"shutdown-failure\"\nvm = \"web02\"\n";
    let site = std::fs::read_to_string(&work.site).unwrap() + stuck;
    std::fs::write(&work.site, site).unwrap();
    work.run(&["failback", "plan.rhai", "--yes"]).fails(1);
    let id = work.last_run().unwrap();
    let runs = work.run(&["runs", "--format", "json"]).ok().json();
    let run = runs.as_array().unwrap().last().unwrap();
    assert_eq!(run["kind"], "failback");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["left"], "1 of 8 VMs to fail back");

    without(&work, stuck);
    work.run(&["resume", &id, "--yes"]).ok();
    for vm in ["sql01", "app02", "web02"] {
        let status = work.run(&["status", vm, "--format", "json"]).ok().json();
        let status = &status["vms"][0];
        assert_eq!(status["active_site"], "primary", "{vm} is home");
        assert_eq!(status["direction"], serde_json::json!(["primary", "secondary"]), "{vm} is reprotected: {status}");
    }
}

#[test]
fn r35_cancel_force_stops_a_run_promptly_while_an_action_waits() {
    let plan = PLAN.replace(
        "plan.group(\"web\", vms_tagged(\"tier\", \"web\"));",
        "plan.group(\"web\", vms_tagged(\"tier\", \"web\")).post(|ctx| wait(\"3650d\"));",
    );
    let work = Workdir::contoso().plan(&plan);
    let child = work.drplan(PLANNED).spawn();
    let id = work.wait_for_event("action.started");
    let asked = Instant::now();
    let cancelled = work.run(&["cancel", &id, "--force"]).ok();
    assert!(cancelled.stdout.contains("cancelled"), "{}", cancelled.stdout);
    let run = child.wait().fails(1);
    assert!(asked.elapsed() < Duration::from_secs(10), "took {:?}", asked.elapsed());
    assert!(run.stderr.contains("cancelled"), "{}", run.stderr);
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "cancelled");
}

#[test]
fn r21_a_manual_step_waits_for_a_person_in_real_time_not_modelled_time() {
    // Thirty modelled minutes pass in three real seconds at speed 600: the step's
    // timeout must be the operator's half hour, not the simulation's.
    let work = Workdir::contoso().plan(&with_check(r#"#{ timeout: "30m" }"#));
    let child = work.drplan(PLANNED).spawn();
    let id = work.wait_for_event("manual.waiting");
    std::thread::sleep(Duration::from_secs(4));
    work.run(&["approve", &id]).ok();
    child.wait().ok();
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    let done = show["steps"].as_array().unwrap().iter().find(|e| e["kind"] == "manual.done").unwrap().clone();
    assert_eq!(done["detail"], "approved by an operator");
}

#[test]
fn r21_a_manual_step_times_out_on_the_wall_clock() {
    let work = Workdir::contoso().plan(&with_check(r#"#{ timeout: "1s" }"#));
    let run = work.run(&PLANNED).fails(1);
    assert!(run.stderr.contains("was not approved within 1s") || run.stdout.contains("was not approved within 1s"));
}

#[test]
fn approve_manual_rehearses_a_run_with_the_dry_runs_timeline_and_says_so() {
    let work = Workdir::contoso().plan(&with_check(r#"#{ timeout: "2h", estimate: "5m" }"#));
    let dry = work.run(&["dry-run", "plan.rhai", "--kind", "planned", "--format", "json"]).ok().json();
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes", "--approve-manual"]).ok();
    let id = work.last_run().unwrap();
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["rto_ms"], dry["rto_ms"], "the rehearsal takes the dry run's time");
    let done = show["steps"].as_array().unwrap().iter().find(|e| e["kind"] == "manual.done").unwrap().clone();
    assert_eq!(done["detail"], "approved automatically (--approve-manual)");
}

#[test]
fn r32_a_planned_run_stuck_on_a_source_that_will_not_shut_down_goes_on_as_unplanned() {
    let stuck = "\n[[faults]]\nkind = \"shutdown-failure\"\nvm = \"web02\"\n";
    let work = Workdir::contoso().site_edit(|s| s + stuck).plan(PLAN);
    work.run(&PLANNED).fails(1);
    let id = work.last_run().unwrap();
    let other = work.run(&["resume", &id, "--kind", "test", "--yes"]).fails(2);
    assert!(other.stderr.contains("the only change of kind"), "{}", other.stderr);
    // No cancel, no reprotect: the run goes on, without a final sync for what is left.
    let resumed = work.run(&["resume", &id, "--kind", "unplanned", "--yes"]).ok();
    assert!(resumed.stderr.contains("resumed as a unplanned failover"), "{}", resumed.stderr);
    let live = format!("{}{}", resumed.stdout, resumed.stderr);
    assert!(live.contains("OPEN-ENDED"), "the live output says the loss is open-ended:\n{live}");
    let show = work.run(&["show", &id]).ok().stdout;
    assert!(show.contains("OPEN-ENDED") && show.contains("still running"), "{show}");
    let json = work.run(&["show", &id, "--format", "json"]).ok().json();
    let web02 = json["groups"][2]["vms"].as_array().unwrap().iter().find(|v| v["name"] == "web02").unwrap().clone();
    assert_eq!(web02["data_loss_open_ended"], true, "{web02}");
    let sql01 = work.run(&["status", "sql01", "--format", "json"]).ok().json();
    assert!(sql01["vms"][0]["state"].as_str().unwrap().starts_with("failed over (planned"), "done VMs stay planned");
}

#[test]
fn r32_r37_a_failback_whose_recovery_site_vm_will_not_shut_down_goes_on_as_unplanned() {
    let work = Workdir::contoso().site_edit(|s| s).plan(PLAN);
    work.run(&PLANNED).ok();
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    work.run(&["advance", "1d"]).ok();
    // The recovery site's web02 hangs on shutdown: the planned failback stops there.
    let site = std::fs::read_to_string(&work.site).unwrap();
    std::fs::write(&work.site, site + "\n[[faults]]\nkind = \"shutdown-failure\"\nvm = \"web02\"\n").unwrap();
    work.run(&["failback", "plan.rhai", "--yes"]).fails(1);
    let id = work.last_run().unwrap();

    let resumed = work.run(&["resume", &id, "--kind", "unplanned", "--yes"]).ok();
    assert!(resumed.stderr.contains("resumed as a failback"), "{}", resumed.stderr);
    let live = format!("{}{}", resumed.stdout, resumed.stderr);
    assert!(live.contains("OPEN-ENDED"), "web02 may still run at the recovery site:\n{live}");
    // Home, committed and replicating towards the recovery site again (R37), web02 too.
    let status = work.run(&["status", "--format", "json"]).ok().json();
    for vm in status["vms"].as_array().unwrap().iter().filter(|vm| vm["vm"] != "file01") {
        assert_eq!(vm["active_site"], "primary", "{vm}");
    }
    let runs = work.run(&["runs", "--format", "json"]).ok().json();
    let failback = runs.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap().clone();
    assert_eq!(failback["status"], "succeeded", "{failback}");
}
