//! The recovery cycle at plan level through the binary: drill and cleanup (R30), commit
//! (R34), reprotect (R36), failback (R37, R38), and the refusals that say what to do.

use crate::util::{Run, Workdir};

const PLAN: &str = r#"
let plan = recovery_plan("cycle", #{ source: "primary", target: "secondary", test_network: "test-bubble" });
plan.group("web", vms_tagged("tier", "web"));
plan
"#;

fn refused(run: Run, phrase: &str) {
    let run = run.fails(1);
    assert!(run.stderr.contains(phrase), "expected {phrase:?} in:\n{}", run.stderr);
    assert!(run.stderr.contains("Next:"), "a refusal says what to do instead:\n{}", run.stderr);
}

#[test]
fn r30_a_drill_is_cleaned_up_with_notes_and_refuses_a_second_drill_before() {
    let work = Workdir::contoso().plan(PLAN);
    work.run(&["failover", "plan.rhai", "--kind", "test"]).ok();
    refused(work.run(&["failover", "plan.rhai", "--kind", "test"]), "a test failover is not cleaned up yet");
    let cleanup = work.run(&["cleanup", "plan.rhai", "--notes", "drill ok: web tier answered"]).ok();
    assert!(
        cleanup.stdout.contains("web01: test replica deleted; notes: drill ok: web tier answered"),
        "{}",
        cleanup.stdout
    );
    refused(work.run(&["cleanup", "plan.rhai"]), "no test failover to clean up");
    // The notes are kept with the drill's run.
    let id = work.last_run().unwrap();
    let show = work.run(&["show", &id]).ok();
    assert!(show.stdout.contains("Notes: drill ok: web tier answered"), "{}", show.stdout);
    let json = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(json["notes"], serde_json::json!(["drill ok: web tier answered"]));
    work.run(&["failover", "plan.rhai", "--kind", "test"]).ok();
}

#[test]
fn r34_r36_r37_the_cycle_refuses_steps_out_of_order_and_runs_them_in_order() {
    let work = Workdir::contoso().plan(PLAN);
    refused(work.run(&["commit", "plan.rhai", "--yes"]), "cannot commit web01: it is protected");
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    refused(work.run(&["cleanup", "plan.rhai"]), "no test failover to clean up");
    refused(work.run(&["failback", "plan.rhai", "--yes"]), "cannot failback web01");
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    refused(work.run(&["failback", "plan.rhai", "--yes"]), "Next: reprotect");
    let reprotect = work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    assert!(reprotect.stdout.contains("secondary -> primary under policy failback"), "{}", reprotect.stdout);
    work.run(&["advance", "1h"]).ok();
    let back = work.run(&["failback", "plan.rhai", "--yes"]).ok();
    assert!(back.stdout.contains("primary -> secondary under policy silver"), "reprotected forward: {}", back.stdout);
    let status = work.run(&["status", "web01", "--format", "json"]).ok().json();
    assert_eq!(status["vms"][0]["active_site"], "primary");
}

#[test]
fn r37_a_failbacks_reports_say_failback_from_the_recovery_site_home() {
    let work = Workdir::contoso().plan(PLAN);
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    work.run(&["advance", "1h"]).ok();
    work.run(&["failback", "plan.rhai", "--yes"]).ok();
    let id = work.last_run().unwrap();
    let human = work.run(&["show", &id]).ok().stdout;
    let title = "Run of plan \"cycle\": failback from secondary to primary, recovery point latest\n";
    assert!(human.starts_with(title), "{human}");
    let json = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!((json["failback"].as_bool(), json["source"].as_str()), (Some(true), Some("primary")), "{json}");
    let svg = work.path().join("failback.svg");
    work.run(&["show", &id, "--svg", svg.to_str().unwrap()]).ok();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("cycle: failback secondary \u{2192} primary"), "{svg}");
    let runs = work.run(&["runs", "--format", "json"]).ok().json();
    assert_eq!(runs.as_array().unwrap().last().unwrap()["kind"], "failback", "{runs}");
}

const WALK: &str = r#"
let plan = recovery_plan("walkthrough", #{ source: "primary", target: "secondary", test_network: "test-bubble" });
plan.group("reports", ["report01"]);
plan.group("web", vms_tagged("tier", "web"));
plan
"#;

#[test]
fn the_whole_cycle_protect_drill_cleanup_failover_commit_reprotect_failback() {
    let work = Workdir::contoso().file("walk.rhai", WALK);
    let plan = "walk.rhai";
    let status = |step: &str| {
        let run = work.run(&["status", plan]).ok();
        insta::assert_snapshot!(format!("cycle_{step}"), run.stdout);
    };
    status("0_start");
    work.run(&["protect", "report01", "--policy", "silver", "--yes"]).ok();
    // Its first copy shares hv-p03's bandwidth with app03's and web03's replication (R15).
    work.run(&["advance", "1d"]).ok();
    status("1_protected");
    work.run(&["failover", plan, "--kind", "test"]).ok();
    status("2_drill");
    work.run(&["cleanup", plan, "--notes", "quarterly drill: all green"]).ok();
    status("3_cleaned_up");
    work.run(&["failover", plan, "--kind", "planned", "--yes"]).ok();
    status("4_failed_over");
    work.run(&["commit", plan, "--yes"]).ok();
    status("5_committed");
    work.run(&["reprotect", plan, "--yes"]).ok();
    work.run(&["advance", "2h"]).ok();
    status("6_reprotected");
    work.run(&["failback", plan, "--yes"]).ok();
    work.run(&["advance", "8h"]).ok();
    status("7_failed_back_and_reprotected");
}

#[test]
fn r32_an_unplanned_failover_whose_source_shutdown_fails_reports_its_data_loss() {
    let work = Workdir::contoso()
        .site_edit(|site| site + "\n[[faults]]\nkind = \"shutdown-failure\"\nvm = \"web01\"\n")
        .plan(PLAN);
    work.run(&["advance", "3m"]).ok();
    work.run(&["failover", "plan.rhai", "--kind", "unplanned", "--point", "latest-processed", "--yes"]).ok();
    let id = work.last_run().unwrap();
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    let web01 = show["groups"][0]["vms"].as_array().unwrap().iter().find(|v| v["name"] == "web01").unwrap().clone();
    assert_eq!(web01["data_loss_ms"], 180_000, "the changes after the 08:00 point are lost: {web01}");
    assert_eq!(web01["point"], "2026-01-05T08:00:00Z");
    let human = work.run(&["show", &id]).ok();
    assert!(human.stdout.contains("data loss 3m"), "{}", human.stdout);
    let status = work.run(&["status", "web01", "--format", "json"]).ok().json();
    assert!(status["vms"][0]["state"].as_str().unwrap().starts_with("failed over (unplanned"));
}

#[test]
fn r22_a_plan_action_commits_and_reprotects_each_vm_through_the_fabric() {
    let plan = "let plan = recovery_plan(\"auto\", #{ source: \"primary\", target: \"secondary\" });\n\
                plan.group(\"web\", vms_tagged(\"tier\", \"web\"))\n    \
                .post_each(|vm, ctx| { commit_vm(vm.name); reprotect_vm(vm.name); });\n\
                plan.post(|ctx| commit_vm(\"app01\"));\nplan\n";
    let work = Workdir::contoso().file("auto.rhai", plan);
    let run = work.run(&["failover", "auto.rhai", "--kind", "planned", "--yes"]).fails(1);
    // The web VMs were committed and reprotected by the plan itself...
    let status = work.run(&["status", "web01", "--format", "json"]).ok().json();
    // (after a planned failover only the changes go back, R31: already done)
    assert_eq!(status["vms"][0]["state"], "protected on the recovery site", "{status}");
    assert_eq!(status["vms"][0]["direction"], serde_json::json!(["secondary", "primary"]));
    // ...and committing a VM that never failed over is refused with what to do instead.
    let id = work.last_run().unwrap();
    let show = work.run(&["show", &id, "--wide"]).ok();
    assert!(show.stdout.contains("cannot commit app01: it is protected"), "{}\n{}", show.stdout, run.stderr);
}
