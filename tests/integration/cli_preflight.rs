//! Check everything before anything destructive (DESIGN.md, "Preflight, then act"):
//! every refusal any VM of a plan would meet is found for the whole plan before the
//! first VM is touched, and a refused run changes nothing and leaves no run behind.

use crate::util::{Run, Workdir};

/// A VM outside the plans, replicated with no static target address: once failed over,
/// its replica holds the lowest free address of the web subnet, 10.2.3.2 (.1 is the gateway).
const WEB09: &str = r#"
[[vms]]
name = "web09"
site = "primary"
host = "hv-p01"
os = "linux"
boot_time = "45s"
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.29" }]
protection = { policy = "silver", since = "-2d" }
"#;

const WEB09_PLAN: &str = r#"
let plan = recovery_plan("web09", #{ source: "primary", target: "secondary" });
plan.group("all", ["web09"]);
plan
"#;

/// Every VM of the contoso plans as `status` reports it, to compare before and after.
fn statuses(work: &Workdir) -> serde_json::Value {
    let status = work.run(&["status", "--format", "json"]).ok().json();
    status["vms"].clone()
}

fn runs(work: &Workdir) -> usize {
    work.run(&["runs", "--format", "json"]).ok().json().as_array().unwrap().len()
}

fn refused(run: &Run, phrases: &[&str]) {
    for phrase in phrases {
        assert!(run.stderr.contains(phrase), "missing {phrase:?} in:\n{}", run.stderr);
    }
}

#[test]
fn r9_an_address_taken_at_failover_time_refuses_the_plan_before_any_vm_is_touched() {
    // web03 asks for the address web09's replica will hold.
    let work = Workdir::contoso_plans()
        .site_edit(|site| site.replace("target_ip = \"10.2.3.23\"", "target_ip = \"10.2.3.2\"") + WEB09)
        .file("web09.rhai", WEB09_PLAN);
    work.run(&["failover", "web09.rhai", "--kind", "planned", "--yes"]).ok();
    let before = statuses(&work);
    let run = work.run(&["failover", "failover.rhai", "--kind", "planned", "--yes", "--approve-manual"]).fails(1);
    refused(&run, &["web03", "10.2.3.2", "(R9)", "group 3 of 3, \"web\"", "nothing was changed"]);
    assert_eq!(statuses(&work), before, "every VM as it was: replicating, powered on, points intact");
    assert_eq!(runs(&work), 1, "no run left behind");
    // The dry run finds it too, before it predicts anything.
    let dry = work.run(&["dry-run", "failover.rhai", "--kind", "planned"]).fails(1);
    refused(&dry, &["web03", "10.2.3.2"]);
}

#[test]
fn r33_r2_a_custom_point_outside_retention_is_refused_for_every_vm_before_anything_runs() {
    let work = Workdir::contoso_plans();
    let before = statuses(&work);
    let old = "2025-12-01T00:00:00Z";
    let args = ["failover", "failover.rhai", "--kind", "unplanned", "--point", old, "--yes", "--approve-manual"];
    let run = work.run(&args).fails(1);
    for vm in ["sql01", "sql02", "app01", "app02", "app03", "web01", "web02", "web03"] {
        refused(&run, &[&format!("error: {vm}: no recovery point matches {old}")]);
    }
    refused(&run, &["outside the retention window (R2)"]);
    assert_eq!(statuses(&work), before);
    assert_eq!(runs(&work), 0, "no run left behind");
    let dry = work.run(&["dry-run", "failover.rhai", "--kind", "unplanned", "--point", old]).fails(1);
    refused(&dry, &["sql01: no recovery point matches"]);
    let check = work.run(&["check", "failover.rhai", "--point", old]).fails(1);
    refused(&check, &["web03: no recovery point matches"]);
    work.run(&["check", "failover.rhai", "--point", "latest-processed"]).ok();
}

#[test]
fn r31_a_planned_failover_refuses_a_point_instead_of_ignoring_it() {
    let work = Workdir::contoso_plans();
    for command in ["failover", "dry-run"] {
        let run = work.run(&[command, "failover.rhai", "--kind", "planned", "--point", "latest-processed", "--yes"]);
        let run = run.fails(2);
        refused(&run, &["planned failover always uses the final sync", "(R31)"]);
    }
    assert_eq!(runs(&work), 0);
}

#[test]
fn r33_latest_app_consistent_where_a_policy_has_none_names_the_vm_and_its_group() {
    // The web tier's policy, silver, takes no app-consistent points.
    let work = Workdir::contoso_plans();
    let args = ["failover", "failover.rhai", "--kind", "unplanned", "--point", "latest-app-consistent", "--yes"];
    let run = work.run(&args).fails(1);
    refused(
        &run,
        &[
            "error: web01: no recovery point matches latest-app-consistent",
            "(group 3 of 3, \"web\": VM 1 of 3)",
            "web03",
        ],
    );
    assert!(!run.stderr.contains("sql01:"), "the gold tiers have app-consistent points:\n{}", run.stderr);
}

#[test]
fn r34_change_point_checks_every_vm_first_and_changes_all_or_nothing() {
    let work = Workdir::contoso_plans();
    let args = ["failover", "failover.rhai", "--kind", "unplanned", "--yes", "--approve-manual"];
    work.run(&args).ok();
    let before = statuses(&work);
    let run = work.run(&["change-point", "failover.rhai", "--point", "latest-app-consistent", "--yes"]).fails(1);
    refused(&run, &["web01: no recovery point matches latest-app-consistent", "nothing was changed"]);
    assert_eq!(statuses(&work), before, "sql01 and the app tier kept their points too");
}

#[test]
fn r12_commit_asks_before_making_a_split_replication_group_final() {
    let work = Workdir::contoso_plans().file(
        "sql01.rhai",
        "let plan = recovery_plan(\"one\", #{ source: \"primary\", target: \"secondary\" });\nplan.group(\"db\", [\"sql01\"]);\nplan",
    );
    let args = ["failover", "failover.rhai", "--kind", "unplanned", "--yes", "--approve-manual"];
    work.run(&args).ok();
    // One member moved to an older point on its own.
    let earlier = "2026-01-05T06:00:00Z";
    work.run(&["change-point", "sql01.rhai", "--point", earlier, "--yes"]).ok();
    let refused_commit = work.run(&["commit", "failover.rhai"]).fails(1);
    refused(&refused_commit, &["replication group \"sql-cluster\"", "different recovery points", "R12"]);
    let sql02 = work.run(&["status", "sql02", "--format", "json"]).ok().json();
    assert!(sql02["vms"][0]["state"].as_str().unwrap().contains("not committed"), "nothing committed");
    let commit = work.run(&["commit", "failover.rhai", "--yes"]).ok();
    refused(&commit, &["different recovery points"]);
}

#[test]
fn preflight_of_the_example_plan_is_a_ready_checklist_of_every_vm_and_changes_nothing() {
    let work = Workdir::contoso_plans();
    let before = statuses(&work);
    let human = work.run(&["preflight", "failover.rhai", "--wide"]).ok().stdout;
    assert!(human.contains("OK      vm    sql01"), "{human}");
    assert!(human.contains("lands on secondary/hv-s01 (storage dr-gold) with 10.2.1.10 on prod-dr"), "{human}");
    assert!(human.contains("Ready: 10 checks, 0 warnings, no problem."), "{human}");
    let json = work.run(&["preflight", "drill.rhai", "--kind", "test", "--format", "json"]).ok().json();
    assert_eq!(json["ready"], true);
    let vms: Vec<&str> = json["vms"].as_array().unwrap().iter().map(|l| l["subject"].as_str().unwrap()).collect();
    assert_eq!(vms, ["sql01", "sql02", "app01", "app02", "app03", "web01", "web02", "web03"]);
    assert!(json["vms"][0]["message"].as_str().unwrap().contains("on test-bubble"), "{json:#}");
    assert_eq!(statuses(&work), before, "read-only");
    assert_eq!(runs(&work), 0, "a preflight starts no run");
}

#[test]
fn r33_r2_preflight_names_every_vm_whose_point_is_gone_and_exits_1() {
    let work = Workdir::contoso_plans();
    let point = ["preflight", "failover.rhai", "--kind", "unplanned", "--point", "2025-01-01T00:00:00Z"];
    let run = work.run(&point).fails(1);
    assert!(run.stdout.contains("NOT READY: 8 problems of 10 checks"), "{}", run.stdout);
    assert!(run.stdout.contains("outside the"), "{}", run.stdout);
    assert!(run.stderr.contains("the preflight found 8 problems"), "{}", run.stderr);
    // A planned failover takes no point (R31): bad usage, exit 2.
    work.run(&["preflight", "failover.rhai", "--kind", "planned", "--point", "latest"]).fails(2);
}

#[test]
fn r31_after_a_failover_the_preflight_of_another_says_each_vm_is_already_failed_over() {
    let work = Workdir::contoso_plans();
    work.run(&["failover", "failover.rhai", "--kind", "planned", "--yes", "--approve-manual"]).ok();
    let json = work.run(&["preflight", "failover.rhai", "--format", "json"]).fails(1).json();
    assert_eq!(json["ready"], false);
    for line in json["vms"].as_array().unwrap() {
        assert_eq!(line["status"], "problem", "{line}");
    }
}

#[test]
fn preflight_lists_the_plans_errors_and_warnings_as_lines() {
    let plan = "let plan = recovery_plan(\"p\", #{ source: \"primary\", target: \"secondary\" });\n\
                plan.group(\"db\", [\"sql01\", \"sql99\"]);\nplan\n";
    let work = Workdir::contoso().file("p.rhai", plan);
    let json = work.run(&["preflight", "p.rhai", "--format", "json"]).fails(1).json();
    let checks = json["plan_checks"].as_array().unwrap();
    let line = |subject: &str| checks.iter().find(|c| c["subject"] == subject).expect(subject).clone();
    assert_eq!(line("sql99")["status"], "problem", "{json:#}");
    assert!(line("sql99")["message"].as_str().unwrap().starts_with("p.rhai:2:28: unknown VM sql99"), "{json:#}");
    // R12: leaving sql02 out of its replication group's failover is worth reading, not fatal.
    assert_eq!(line("sql-cluster")["status"], "warning", "{json:#}");
    assert!(line("sql-cluster")["message"].as_str().unwrap().contains("(R12, docs/rules.md)"), "{json:#}");
}
