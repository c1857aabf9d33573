//! Fidelity to the seeds, through the binary: settings the site file accepts have an
//! effect the simulation models, or are refused; what the service does not offer is
//! refused with the reason.

use crate::util::Workdir;

const WEB: &str = "let plan = recovery_plan(\"web\", #{ source: \"primary\", target: \"secondary\" });\n\
                   plan.group(\"web\", vms_tagged(\"tier\", \"web\"));\nplan\n";

#[test]
fn encryption_at_rest_is_refused_for_replication_to_a_datacenter() {
    // Seed 000: encryption "is not used when replicating to a secondary site".
    let work = Workdir::contoso()
        .site_edit(|site| site.replacen("rpo_threshold = \"30m\"", "rpo_threshold = \"30m\"\nencryption = true", 1))
        .plan(WEB);
    let run = work.run(&["check", "plan.rhai"]).fails(1);
    assert!(
        run.stderr.contains("sets encryption = true, which applies to replication to a cloud only"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("vms.\"sql01\".protection.policy"), "{}", run.stderr);
}

#[test]
fn r15_a_policy_that_compresses_copies_faster() {
    let report01 = |work: &Workdir| {
        work.run(&["protect", "report01", "--policy", "silver", "--yes"]).ok();
        let status = work.run(&["status", "report01"]).ok();
        let until = status.stdout.split("until ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        until.parse::<chrono::DateTime<chrono::Utc>>().unwrap()
    };
    let plain = report01(&Workdir::contoso());
    let compressed =
        report01(&Workdir::contoso().site_edit(|site| {
            site.replacen("rpo_threshold = \"1h\"", "rpo_threshold = \"1h\"\ncompression = true", 1)
        }));
    let start: chrono::DateTime<chrono::Utc> = "2026-01-05T08:00:00Z".parse().unwrap();
    let (plain, compressed) = ((plain - start).num_seconds(), (compressed - start).num_seconds());
    // Half the bytes; not quite half the time, as the work-hours bandwidth is half the rest.
    assert!(compressed * 4 < plain * 3, "compressed {compressed} s against {plain} s");
}

#[test]
fn r37_failback_to_a_physical_server_is_refused_with_the_reason() {
    // Seed 003: failback needs VMware; "you cannot fail back to a physical machine".
    let work = Workdir::contoso()
        .site_edit(|site| site.replacen("platform = \"hyper-v\"", "platform = \"physical\"", 1))
        .plan(WEB);
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    work.run(&["advance", "1d"]).ok();
    let run = work.run(&["failback", "plan.rhai", "--yes"]).fails(1);
    assert!(run.stderr.contains("failback to a physical server is not offered"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(work.run(&["runs", "--format", "json"]).ok().json().as_array().unwrap().len(), 1, "no failback run");
}

#[test]
fn r22_a_single_vm_fails_over_from_the_command_line_with_its_own_steps_only() {
    let work = Workdir::contoso_plans();
    let run = work.run(&["failover", "failover.rhai", "--kind", "planned", "--vm", "web02", "--yes"]).ok();
    assert!(run.stdout.contains("succeeded"), "{}", run.stdout);
    let status = work.run(&["status", "--format", "json"]).ok().json();
    for vm in status["vms"].as_array().unwrap() {
        let active = if vm["vm"] == "web02" { "secondary" } else { "primary" };
        assert_eq!(vm["active_site"], active, "{vm}");
    }
    let id = work.last_run().unwrap();
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    let kinds: Vec<&str> = show["steps"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(!kinds.contains(&"manual.waiting"), "the plan's manual step is about whole groups: {kinds:?}");
    let calls: Vec<&str> = show["steps"].as_array().unwrap().iter().filter_map(|e| e["step"].as_str()).collect();
    assert!(calls.iter().any(|c| c.starts_with("dns.point web02")), "web02's own DNS step runs: {calls:?}");
    // A VM the plan does not have is bad usage.
    let run = work.run(&["failover", "failover.rhai", "--kind", "planned", "--vm", "web09", "--yes"]).fails(2);
    assert!(run.stderr.contains("web09 is not in plan"), "{}", run.stderr);
}

#[test]
fn r32_an_unplanned_failover_can_be_told_not_to_try_shutting_the_source_down() {
    let work = Workdir::contoso_plans();
    let args = ["failover", "failover.rhai", "--kind", "unplanned", "--vm", "app01", "--no-shutdown", "--yes"];
    work.run(&args).ok();
    let show = work.run(&["show", &work.last_run().unwrap(), "--wide"]).ok().stdout;
    assert!(show.contains("no shutdown was tried") && show.contains("OPEN-ENDED"), "{show}");
    let jobs = work.run(&["jobs", "--format", "json"]).ok().json();
    assert!(!jobs.as_array().unwrap().iter().any(|j| j["operation"] == "shutdown"), "{jobs}");
    let planned = work.run(&["failover", "failover.rhai", "--kind", "planned", "--no-shutdown", "--yes"]).fails(2);
    assert!(planned.stderr.contains("--no-shutdown goes with --kind unplanned"), "{}", planned.stderr);
}

#[test]
fn r30_a_drill_runs_in_the_isolated_network_chosen_when_it_is_run() {
    let second = "\n  [[sites.networks]]\n  name = \"bubble-2\"\n  isolated = true\n\n    [[sites.networks.subnets]]\n    name = \"web\"\n    cidr = \"192.168.203.0/24\"\n";
    // The new network goes last into the secondary site's networks.
    let work = Workdir::contoso_plans().site_edit(|site| {
        let at = site.find("# ------------------------------------------------------------ pairing").unwrap();
        format!("{}{second}\n{}", &site[..at], &site[at..])
    });
    let args = ["failover", "drill.rhai", "--kind", "test", "--vm", "web01", "--test-network", "bubble-2"];
    work.run(&args).ok();
    let show = work.run(&["show", &work.last_run().unwrap(), "--wide"]).ok().stdout;
    assert!(show.contains("192.168.203."), "the replica is in bubble-2: {show}");
    let unknown = ["failover", "drill.rhai", "--kind", "test", "--vm", "web02", "--test-network", "nowhere"];
    let run = work.run(&unknown).fails(1);
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);
}

#[test]
fn r37_actions_know_which_way_the_run_goes() {
    // The example's hook says where a run went: on the way home, a failback from the
    // recovery site, not a "failover".
    let work = Workdir::contoso_plans();
    work.run(&["failover", "failover.rhai", "--kind", "planned", "--yes", "--approve-manual"]).ok();
    work.run(&["commit", "failover.rhai", "--yes"]).ok();
    work.run(&["reprotect", "failover.rhai", "--yes"]).ok();
    work.run(&["advance", "1d"]).ok();
    work.run(&["failback", "failover.rhai", "--yes", "--approve-manual"]).ok();
    let show = work.run(&["show", &work.last_run().unwrap(), "--wide"]).ok().stdout;
    assert!(show.contains("planned failback of contoso-crm from secondary to primary starting"), "{show}");
    assert!(show.contains("NOTIFY: planned failback of contoso-crm (secondary to primary) succeeded"), "{show}");
}
