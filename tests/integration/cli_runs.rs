//! Real runs through the binary: `failover` changes the simulated datacenter, a manual
//! step is approved from a second process, `cancel` stops a live run (R35), `resume`
//! continues a failed run without redoing finished steps.

use crate::util::{RECORD_DNS, Workdir};

/// The three contoso tiers without manual steps, DNS for the web tier.
const PLAN: &str = r#"
import "dns" as dns;
let plan = recovery_plan("tiers", #{ source: "primary", target: "secondary", rto: "30m" });
plan.group("database", replication_group("sql-cluster"));
plan.group("app", vms_tagged("tier", "app"));
plan.group("web", vms_tagged("tier", "web")).post_each(|vm, ctx| dns::point_vm(vm));
plan
"#;

/// A planned failover of the folder's plan, as every run here starts.
const PLANNED: [&str; 5] = ["failover", "plan.rhai", "--kind", "planned", "--yes"];

fn status_of(work: &Workdir, vm: &str) -> serde_json::Value {
    let status = work.run(&["status", vm, "--format", "json"]).ok().json();
    status["vms"][0].clone()
}

#[test]
fn r31_a_planned_failover_through_the_binary_moves_every_vm_to_the_recovery_site() {
    let work = Workdir::contoso().plan(PLAN).file("drplan.toml", RECORD_DNS);
    let run = work.run(&PLANNED).ok();
    assert!(run.stdout.contains("succeeded: RTO"), "{}", run.stdout);
    for vm in ["sql01", "sql02", "app01", "app02", "app03", "web01", "web02", "web03"] {
        let status = status_of(&work, vm);
        assert_eq!(status["active_site"], "secondary", "{vm}");
        assert!(status["state"].as_str().unwrap().starts_with("failed over (planned"), "{vm}: {status}");
    }
    assert_eq!(status_of(&work, "report01")["active_site"], "primary", "not in the plan");
    let id = work.last_run().unwrap();
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "succeeded");
    assert_eq!(show["groups"].as_array().unwrap().len(), 3);
    let svg = work.path().join("run.svg");
    work.run(&["show", &id, "--svg", svg.to_str().unwrap()]).ok();
    assert!(std::fs::read_to_string(svg).unwrap().starts_with("<svg"));
}

#[test]
fn a_real_failover_asks_for_confirmation_without_yes() {
    let work = Workdir::contoso().plan(PLAN).file("drplan.toml", RECORD_DNS);
    let run = work.run(&["failover", "plan.rhai", "--kind", "unplanned"]).fails(1);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert_eq!(status_of(&work, "sql01")["state"], "protected", "nothing happened");
}

#[test]
fn r21_a_manual_step_is_approved_from_a_second_process() {
    let plan = PLAN.replace(
        "plan.group(\"app\"",
        "plan.manual(\"Confirm the SQL listener\", #{ timeout: \"2h\" });\nplan.group(\"app\"",
    );
    let work = Workdir::contoso().plan(&plan).file("drplan.toml", RECORD_DNS);
    let child = work.drplan(PLANNED).spawn();
    let id = work.wait_for_event("manual.waiting");
    assert_eq!(status_of(&work, "app01")["state"], "protected", "the plan is paused before the app tier");
    let approved = work.run(&["approve", &id]).ok();
    assert!(approved.stdout.contains("approved: Confirm the SQL listener"), "{}", approved.stdout);
    let run = child.wait().ok();
    assert!(run.stdout.contains("succeeded"), "{}", run.stdout);
    assert_eq!(status_of(&work, "app01")["active_site"], "secondary");
    work.run(&["approve", &id]).fails(1);
}

#[test]
fn r35_cancel_stops_a_live_run_and_leaves_the_cut_off_vm_needing_reprotect() {
    // web01's shutdown hangs for 5 modelled minutes: 30 s of real time at speed 10.
    let slow =
        |s: String| s.replace("speed = 600", "speed = 10") + "\n[[faults]]\nkind = \"shutdown-hang\"\nvm = \"web01\"\n";
    let plan = "let plan = recovery_plan(\"one\", #{ source: \"primary\", target: \"secondary\" });\nplan.group(\"web\", [\"web01\"]);\nplan\n";
    let work = Workdir::contoso().site_edit(slow).plan(plan);
    let child = work.drplan(PLANNED).spawn();
    let id = work.wait_for_vm_event("vm.attempt", "web01");
    let cancelled = work.run(&["cancel", &id, "--force"]).ok();
    assert!(cancelled.stdout.contains("cancelled"), "{}", cancelled.stdout);
    let run = child.wait().fails(1);
    assert!(run.stderr.contains("cancelled"), "{}", run.stderr);
    let status = status_of(&work, "web01");
    assert!(status["state"].as_str().unwrap().contains("need of reprotect"), "{status}");
    assert_eq!(status["allowed"], serde_json::json!(["unplanned-failover", "reprotect", "unprotect"]));
    let runs = work.run(&["runs"]).ok();
    assert!(runs.stdout.contains("cancelled"), "{}", runs.stdout);
    work.run(&["cancel", &id]).fails(2);
}

#[test]
fn a_failed_run_resumes_after_the_cause_is_fixed_without_redoing_finished_steps() {
    let fault = "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"app02\"\n";
    let work = Workdir::contoso().site_edit(|s| s + fault).plan(PLAN).file("drplan.toml", RECORD_DNS);
    let run = work.run(&PLANNED).fails(1);
    assert!(run.stderr.contains("drplan resume"), "{}", run.stderr);
    assert_eq!(status_of(&work, "sql01")["active_site"], "secondary");
    assert_eq!(status_of(&work, "web01")["active_site"], "primary", "the plan stopped at the app tier");
    let id = work.last_run().unwrap();

    // The operator fixes the replica that did not boot.
    let site = std::fs::read_to_string(&work.site).unwrap().replace(fault, "");
    std::fs::write(&work.site, site).unwrap();
    let resumed = work.run(&["resume", &id, "--yes"]).ok();
    assert!(resumed.stdout.contains("succeeded"), "{}", resumed.stdout);
    assert_eq!(status_of(&work, "web03")["active_site"], "secondary");

    let jobs = work.run(&["jobs", "--format", "json"]).ok().json();
    let failovers_of = |vm: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .filter(|j| j["vm"] == vm && j["operation"] == "planned failover" && j["status"] == "succeeded")
            .count()
    };
    for vm in ["sql01", "sql02", "app01", "app02", "app03", "web01"] {
        assert_eq!(failovers_of(vm), 1, "{vm} failed over exactly once");
    }
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    let kinds: Vec<&str> = show["steps"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"run.resumed"));
    assert_eq!(kinds.last(), Some(&"run.succeeded"));
    work.run(&["resume", &id, "--yes"]).fails(2);
}

#[test]
fn resume_refuses_a_plan_that_changed() {
    let work = Workdir::contoso()
        .site_edit(|s| s + "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"sql01\"\n")
        .plan(PLAN)
        .file("drplan.toml", RECORD_DNS);
    work.run(&["failover", "plan.rhai", "--kind", "unplanned", "--yes"]).fails(1);
    let id = work.last_run().unwrap();
    std::fs::write(work.path().join("plan.rhai"), PLAN.replace("\"tiers\"", "\"renamed\"")).unwrap();
    let run = work.run(&["resume", &id, "--yes"]).fails(2);
    assert!(run.stderr.contains("changed since run"), "{}", run.stderr);
}
