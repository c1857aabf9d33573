//! The dry run does what the run does: what a step finds answering, what it draws.

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
