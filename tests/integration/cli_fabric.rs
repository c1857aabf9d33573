//! The simulated datacenter through the real binary: status, protect, unprotect,
//! points, jobs, advance; confirmations, usage errors and the state directory's lock.

use crate::util::Workdir;

fn vm<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["vms"].as_array().unwrap().iter().find(|v| v["vm"] == name).unwrap()
}

#[test]
fn status_of_the_example_site() {
    let work = Workdir::contoso();
    let run = work.run(&["status"]).ok();
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn status_fits_120_columns_and_wide_shows_every_column() {
    let work = Workdir::contoso();
    let fitted = work.run(&["status"]).ok().stdout;
    for line in fitted.lines() {
        assert!(line.chars().count() <= 120, "{line:?} is wider than 120 columns");
    }
    assert!(!fitted.contains("LATEST APP-CONSISTENT  POINTS"), "{fitted}");
    assert!(fitted.contains("--wide shows every column"), "{fitted}");
    let wide = work.run(&["status", "--wide"]).ok().stdout;
    assert!(wide.contains("LATEST APP-CONSISTENT  POINTS"), "{wide}");
    assert!(wide.contains("test failover, planned failover, unplanned failover, unprotect"), "{wide}");
    assert!(!wide.contains("hidden"), "{wide}");
}

#[test]
fn r4_protect_starts_initial_replication_that_completes_as_time_passes() {
    let work = Workdir::contoso();
    let run = work.run(&["protect", "report01", "--policy", "silver", "--yes"]).ok();
    assert!(run.stdout.contains("report01: protection enabled"), "{}", run.stdout);
    let status = work.run(&["status", "report01", "--format", "json"]).ok().json();
    assert_eq!(vm(&status, "report01")["health"]["health"], "initial-replication");
    // 130 GB at a third of hv-p03's bandwidth: it replicates app03 and web03 too (R15).
    work.run(&["advance", "1d"]).ok();
    let status = work.run(&["status", "report01", "--format", "json"]).ok().json();
    assert_eq!(vm(&status, "report01")["state"], "protected");
    assert_eq!(vm(&status, "report01")["health"]["health"], "healthy");
    let points = work.run(&["points", "report01"]).ok();
    assert!(points.stdout.contains("crash-consistent"), "{}", points.stdout);
    let jobs = work.run(&["jobs"]).ok();
    assert!(jobs.stdout.contains("protect    report01  succeeded"), "{}", jobs.stdout);
}

#[test]
fn r5_r6_refusals_name_the_vm_and_leave_the_state_alone() {
    let work = Workdir::contoso();
    let run = work.run(&["protect", "report01", "--policy", "silver", "--exclude-disk", "os", "--yes"]).fails(1);
    assert!(run.stderr.contains("report01: disk \"os\" is the OS disk"), "{}", run.stderr);
    let run = work.run(&["protect", "sql01", "--policy", "gold", "--yes"]).fails(1);
    assert!(run.stderr.contains("cannot protect sql01: it is protected"), "{}", run.stderr);
    let status = work.run(&["status", "report01", "--format", "json"]).ok().json();
    assert_eq!(vm(&status, "report01")["state"], "unprotected");
}

#[test]
fn r14_unprotect_through_the_binary() {
    let work = Workdir::contoso();
    let run = work.run(&["unprotect", "web03", "--delete-replica", "--yes"]).ok();
    assert!(run.stdout.contains("web03: protection disabled; replica deleted"), "{}", run.stdout);
    let status = work.run(&["status", "web03", "--format", "json"]).ok().json();
    assert_eq!(vm(&status, "web03")["state"], "unprotected");
}

#[test]
fn changes_are_refused_without_a_terminal_or_yes() {
    let work = Workdir::contoso();
    let run = work.run(&["protect", "report01", "--policy", "silver"]).fails(1);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    let status = work.run(&["status", "report01", "--format", "json"]).ok().json();
    assert_eq!(vm(&status, "report01")["state"], "unprotected", "nothing changed");
}

#[test]
fn unknown_vm_and_policy_are_named() {
    let work = Workdir::contoso();
    let run = work.run(&["status", "sql99"]).fails(1);
    assert!(run.stderr.contains("unknown VM \"sql99\""), "{}", run.stderr);
    let run = work.run(&["protect", "report01", "--policy", "platinum", "--yes"]).fails(1);
    assert!(
        run.stderr.contains("unknown replication policy \"platinum\"; the site file defines: gold, silver"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_usage_exits_2() {
    let work = Workdir::contoso();
    work.run(&["frobnicate"]).fails(2);
    let run = work.run(&["advance", "5y"]).fails(2);
    assert!(run.stderr.contains("unknown unit"), "{}", run.stderr);
    work.run(&["protect", "report01"]).fails(2);
}

#[test]
fn a_second_command_on_the_same_state_gets_a_clear_in_use_error() {
    let work = Workdir::contoso();
    work.run(&["advance", "1m"]).ok();
    let held = drplan::store::StateDir::open(&work.state()).unwrap();
    let run = work.run(&["protect", "report01", "--policy", "silver", "--yes"]).fails(1);
    assert!(run.stderr.contains("is in use by another drplan command"), "{}", run.stderr);
    // Commands that only look see the last saved state meanwhile.
    let look = work.run(&["status", "report01"]).ok();
    assert!(look.stderr.contains("a drplan run is in progress"), "{}", look.stderr);
    assert!(look.stdout.contains("unprotected"), "{}", look.stdout);
    drop(held);
    work.run(&["protect", "report01", "--policy", "silver", "--yes"]).ok();
}

#[test]
fn a_missing_site_file_is_explained() {
    let run = Workdir::empty().drplan(["status"]).without_site().fails(1);
    assert!(run.stderr.contains("site.toml does not exist; pass --site FILE"), "{}", run.stderr);
}
