//! Plans through the real binary: `check` and `dry-run` of the example plans (insta
//! snapshots), broken plans (exit 1, file:line:column), the sandbox's limits, `defs`.

use std::time::{Duration, Instant};

use crate::util::{CONTOSO, Workdir};

fn example(name: &str) -> String {
    format!("{CONTOSO}/{name}")
}

/// A folder with the contoso site and a plan of it with `body`, as `plan.rhai`.
fn contoso_plan(body: &str) -> Workdir {
    Workdir::contoso().plan(&format!(
        "let plan = recovery_plan(\"t\", #{{ source: \"primary\", target: \"secondary\", rto: \"1h\" }});\n{body}\nplan\n"
    ))
}

/// Checks that `check` fails with exit 1 naming plan.rhai:line:column and `phrase`.
fn fails_at(work: Workdir, line: usize, phrase: &str) {
    let run = work.run(&["check", "plan.rhai"]).fails(1);
    let located = format!("plan.rhai:{line}:");
    assert!(run.stderr.contains(&located), "expected {located} in:\n{}", run.stderr);
    assert!(run.stderr.contains(phrase), "expected {phrase:?} in:\n{}", run.stderr);
}

#[test]
fn the_example_plans_pass_check() {
    let work = Workdir::contoso();
    for plan in ["failover.rhai", "drill.rhai"] {
        let run = work.run(&["check", &example(plan)]).ok();
        assert!(run.stdout.contains("is sound"), "{}", run.stdout);
    }
}

#[test]
fn dry_run_of_the_failover_plan() {
    let work = Workdir::contoso();
    let human = work.run(&["dry-run", &example("failover.rhai"), "--kind", "planned"]).ok();
    insta::assert_snapshot!("failover_planned_human", human.stdout);
    let json = work.run(&["dry-run", &example("failover.rhai"), "--kind", "planned", "--format", "json"]).ok();
    insta::assert_snapshot!("failover_planned_json", json.stdout);
    let value = json.json();
    assert_eq!(value["status"], "succeeded");
    assert_eq!(value["rto_met"], true);
}

#[test]
fn dry_run_of_the_drill() {
    let work = Workdir::contoso();
    let human = work.run(&["dry-run", &example("drill.rhai"), "--kind", "test"]).ok();
    insta::assert_snapshot!("drill_test_human", human.stdout);
    let json = work.run(&["dry-run", &example("drill.rhai"), "--kind", "test", "--format", "json"]).ok();
    insta::assert_snapshot!("drill_test_json", json.stdout);
}

#[test]
fn two_dry_runs_print_the_same_bytes() {
    let work = Workdir::contoso();
    let args = ["dry-run", &example("failover.rhai"), "--kind", "unplanned", "--parallel", "2"];
    let first = work.run(&args).ok().stdout;
    for _ in 0..3 {
        assert_eq!(work.run(&args).ok().stdout, first);
    }
}

#[test]
fn a_dry_run_changes_nothing() {
    let work = Workdir::contoso();
    work.run(&["dry-run", &example("failover.rhai")]).ok();
    assert!(!work.state().exists(), "no state directory was created");
    work.run(&["protect", "report01", "--policy", "silver", "--yes"]).ok();
    let db = work.state().join("sim.db");
    let before = std::fs::read(&db).unwrap();
    let status = work.run(&["status", "--format", "json"]).ok().stdout;
    work.run(&["dry-run", &example("failover.rhai"), "--kind", "planned"]).ok();
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert_eq!(work.run(&["status", "--format", "json"]).ok().stdout, status);
}

#[test]
fn the_drill_refuses_to_run_as_a_real_failover() {
    let work = Workdir::contoso();
    // --wide: the message sits after the script's absolute path, so at a fixed width
    // where it wraps depends on where the checkout is.
    let run = work.run(&["dry-run", &example("drill.rhai"), "--kind", "planned", "--wide"]).fails(1);
    assert!(run.stdout.contains("for test failovers only"), "{}", run.stdout);
}

#[test]
fn a_syntax_error_is_located() {
    fails_at(contoso_plan("plan.group(\"db\", [\"sql01\"]\nlet x = ;"), 3, "");
}

#[test]
fn an_unknown_vm_is_located_and_named() {
    fails_at(contoso_plan("plan.group(\"db\", [\"sql99\"]);"), 2, "sql99");
}

#[test]
fn r20_an_unprotected_vm_cannot_be_in_the_plan() {
    fails_at(contoso_plan("plan.group(\"reports\", [\"report01\"]);"), 2, "report01");
}

#[test]
fn r20_a_vm_in_two_groups_is_reported_at_the_second() {
    fails_at(contoso_plan("plan.group(\"a\", [\"web01\"]);\nplan.group(\"b\", [\"web01\"]);"), 3, "web01");
}

#[test]
fn r9_two_vms_with_the_same_target_ip_conflict() {
    let clash = |site: String| site.replacen("target_ip = \"10.2.3.22\"", "target_ip = \"10.2.3.21\"", 1);
    let plan = "let plan = recovery_plan(\"t\", #{ source: \"primary\", target: \"secondary\" });\nplan.group(\"web\", [\"web01\"]);\nplan.group(\"web2\", [\"web02\"]);\nplan\n";
    fails_at(Workdir::contoso().site_edit(clash).plan(plan), 3, "10.2.3.21");
}

fn stopped_quickly(body: &str, phrase: &str) {
    let work = contoso_plan(body);
    let started = Instant::now();
    let run = work.run(&["check", "plan.rhai"]).fails(1);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(run.stderr.contains(phrase), "expected {phrase:?} in:\n{}", run.stderr);
    assert!(run.stderr.contains("plan.rhai:"), "{}", run.stderr);
}

#[test]
fn an_infinite_loop_is_stopped() {
    // By whichever limit comes first: the one-second deadline in a debug build; in a
    // release build, which runs `loop { }` faster, the 50 million operations.
    let dir = contoso_plan("loop { }");
    let started = Instant::now();
    let run = dir.run(&["check", "plan.rhai"]).fails(1);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let limits = ["was stopped (limit: wall-clock deadline)", "too many operations (limit 50000000)"];
    assert!(limits.iter().any(|limit| run.stderr.contains(limit)), "{}", run.stderr);
    assert!(run.stderr.contains("plan.rhai:2:"), "{}", run.stderr);
}

#[test]
fn runaway_recursion_is_stopped() {
    stopped_quickly("fn deeper(n) { deeper(n + 1) }\ndeeper(0);", "deep");
}

#[test]
fn a_huge_string_is_stopped() {
    stopped_quickly("let s = \"x\";\nloop { s += s; }", "string");
}

#[test]
fn a_script_cannot_reach_files_or_processes() {
    contoso_plan("import \"/etc/passwd\" as p;").run(&["check", "plan.rhai"]).fails(1);
    let run = contoso_plan("let f = open_file(\"/etc/passwd\");").run(&["check", "plan.rhai"]).fails(1);
    assert!(run.stderr.contains("open_file"), "{}", run.stderr);
}

#[test]
fn defs_describe_the_host_api() {
    let work = Workdir::contoso();
    let run = work.run(&["defs"]).ok();
    for name in ["recovery_plan", "post_each", "vms_tagged", "wait_port"] {
        assert!(run.stdout.contains(name), "{name} missing from defs");
    }
}
