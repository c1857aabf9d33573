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
