//! Real runs through the binary: `failover` changes the simulated datacenter, a manual
//! step is approved from a second process, `cancel` stops a live run (R35), `resume`
//! continues a failed run without redoing finished steps.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CONTOSO_SITE, Run, Workdir};

/// The three contoso tiers without manual steps, DNS for the web tier.
const PLAN: &str = r#"
import "dns" as dns;
let plan = recovery_plan("tiers", #{ source: "primary", target: "secondary", rto: "30m" });
plan.group("database", replication_group("sql-cluster"));
plan.group("app", vms_tagged("tier", "app"));
plan.group("web", vms_tagged("tier", "web")).post_each(|vm, ctx| dns::point_vm(vm));
plan
"#;

/// A folder with a plan and an edited contoso site beside it.
pub struct Lab {
    pub work: Workdir,
    pub plan: PathBuf,
}

pub fn lab(plan: &str, site_edit: impl Fn(String) -> String) -> Lab {
    let work = Workdir::with_site(&site_edit(std::fs::read_to_string(CONTOSO_SITE).unwrap()));
    let path = work.path().join("plan.rhai");
    std::fs::write(&path, plan).unwrap();
    Lab { work, plan: path }
}

impl Lab {
    fn run(&self, args: &[&str]) -> Run {
        self.work.run(args)
    }

    fn plan(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new(assert_cmd::cargo::cargo_bin("drplan"))
            .arg("--state")
            .arg(self.work.state())
            .arg("--site")
            .arg(&self.work.site)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn last_run(&self) -> Option<serde_json::Value> {
        let runs = self.run(&["runs", "--format", "json"]);
        if runs.code != 0 {
            return None;
        }
        runs.json().as_array().and_then(|a| a.last().cloned())
    }

    /// Waits until the last run's journal shows an event of `kind` (for `vm`, if given).
    fn wait_for(&self, kind: &str, vm: Option<&str>) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(run) = self.last_run() {
                let id = run["id"].as_str().unwrap().to_string();
                let show = self.run(&["show", &id, "--format", "json"]);
                if show.code == 0 {
                    let seen = show.json()["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["kind"] == kind && vm.is_none_or(|vm| e["vm"] == vm));
                    if seen {
                        return id;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {kind} event within 30 s");
    }

    fn status(&self, vm: &str) -> serde_json::Value {
        let status = self.run(&["status", vm, "--format", "json"]).ok().json();
        status["vms"][0].clone()
    }
}

fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

fn faults(site: String, extra: &str) -> String {
    site + extra
}

#[test]
fn r31_a_planned_failover_through_the_binary_moves_every_vm_to_the_recovery_site() {
    let lab = lab(PLAN, |s| s);
    let run = lab.run(&["failover", lab.plan(), "--kind", "planned", "--yes"]).ok();
    assert!(run.stdout.contains("succeeded: RTO"), "{}", run.stdout);
    for vm in ["sql01", "sql02", "app01", "app02", "app03", "web01", "web02", "web03"] {
        let status = lab.status(vm);
        assert_eq!(status["active_site"], "secondary", "{vm}");
        assert!(status["state"].as_str().unwrap().starts_with("failed over (planned"), "{vm}: {status}");
    }
    assert_eq!(lab.status("report01")["active_site"], "primary", "not in the plan");
    let id = lab.last_run().unwrap()["id"].as_str().unwrap().to_string();
    let show = lab.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "succeeded");
    assert_eq!(show["groups"].as_array().unwrap().len(), 3);
    let svg = lab.work.path().join("run.svg");
    lab.run(&["show", &id, "--svg", svg.to_str().unwrap()]).ok();
    assert!(std::fs::read_to_string(svg).unwrap().starts_with("<svg"));
}

#[test]
fn a_real_failover_asks_for_confirmation_without_yes() {
    let lab = lab(PLAN, |s| s);
    let run = lab.run(&["failover", lab.plan(), "--kind", "unplanned"]).fails(1);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert_eq!(lab.status("sql01")["state"], "protected", "nothing happened");
}

#[test]
fn r21_a_manual_step_is_approved_from_a_second_process() {
    let plan = PLAN.replace(
        "plan.group(\"app\"",
        "plan.manual(\"Confirm the SQL listener\", #{ timeout: \"2h\" });\nplan.group(\"app\"",
    );
    let lab = lab(&plan, |s| s);
    let child = lab.spawn(&["failover", lab.plan(), "--kind", "planned", "--yes"]);
    let id = lab.wait_for("manual.waiting", None);
    assert_eq!(lab.status("app01")["state"], "protected", "the plan is paused before the app tier");
    let approved = lab.run(&["approve", &id]).ok();
    assert!(approved.stdout.contains("approved: Confirm the SQL listener"), "{}", approved.stdout);
    let run = finish(child).ok();
    assert!(run.stdout.contains("succeeded"), "{}", run.stdout);
    assert_eq!(lab.status("app01")["active_site"], "secondary");
    lab.run(&["approve", &id]).fails(1);
}

#[test]
fn r35_cancel_stops_a_live_run_and_leaves_the_cut_off_vm_needing_reprotect() {
    // web01's shutdown hangs for 5 modelled minutes: 30 s of real time at speed 10.
    let slow = |s: String| {
        faults(s.replace("speed = 600", "speed = 10"), "\n[[faults]]\nkind = \"shutdown-hang\"\nvm = \"web01\"\n")
    };
    let plan = "let plan = recovery_plan(\"one\", #{ source: \"primary\", target: \"secondary\" });\nplan.group(\"web\", [\"web01\"]);\nplan\n";
    let lab = lab(plan, slow);
    let child = lab.spawn(&["failover", lab.plan(), "--kind", "planned", "--yes"]);
    let id = lab.wait_for("vm.attempt", Some("web01"));
    let cancelled = lab.run(&["cancel", &id, "--force"]).ok();
    assert!(cancelled.stdout.contains("cancelled"), "{}", cancelled.stdout);
    let run = finish(child).fails(1);
    assert!(run.stderr.contains("cancelled"), "{}", run.stderr);
    let status = lab.status("web01");
    assert!(status["state"].as_str().unwrap().contains("need of reprotect"), "{status}");
    assert_eq!(status["allowed"], serde_json::json!(["reprotect", "unprotect"]));
    let runs = lab.run(&["runs"]).ok();
    assert!(runs.stdout.contains("cancelled"), "{}", runs.stdout);
    lab.run(&["cancel", &id]).fails(2);
}

#[test]
fn a_failed_run_resumes_after_the_cause_is_fixed_without_redoing_finished_steps() {
    let fault = "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"app02\"\n";
    let lab = lab(PLAN, |s| faults(s, fault));
    let run = lab.run(&["failover", lab.plan(), "--kind", "planned", "--yes"]).fails(1);
    assert!(run.stderr.contains("drplan resume"), "{}", run.stderr);
    assert_eq!(lab.status("sql01")["active_site"], "secondary");
    assert_eq!(lab.status("web01")["active_site"], "primary", "the plan stopped at the app tier");
    let id = lab.last_run().unwrap()["id"].as_str().unwrap().to_string();

    // The operator fixes the replica that did not boot.
    let site = std::fs::read_to_string(&lab.work.site).unwrap().replace(fault, "");
    std::fs::write(&lab.work.site, site).unwrap();
    let resumed = lab.run(&["resume", &id, "--yes"]).ok();
    assert!(resumed.stdout.contains("succeeded"), "{}", resumed.stdout);
    assert_eq!(lab.status("web03")["active_site"], "secondary");

    let jobs = lab.run(&["jobs", "--format", "json"]).ok().json();
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
    let show = lab.run(&["show", &id, "--format", "json"]).ok().json();
    let kinds: Vec<&str> = show["steps"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"run.resumed"));
    assert_eq!(kinds.last(), Some(&"run.succeeded"));
    lab.run(&["resume", &id, "--yes"]).fails(2);
}

#[test]
fn resume_refuses_a_plan_that_changed() {
    let lab = lab(PLAN, |s| faults(s, "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"sql01\"\n"));
    lab.run(&["failover", lab.plan(), "--kind", "unplanned", "--yes"]).fails(1);
    let id = lab.last_run().unwrap()["id"].as_str().unwrap().to_string();
    std::fs::write(&lab.plan, PLAN.replace("\"tiers\"", "\"renamed\"")).unwrap();
    let run = lab.run(&["resume", &id, "--yes"]).fails(2);
    assert!(run.stderr.contains("changed since run"), "{}", run.stderr);
}
