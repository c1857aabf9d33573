//! Closures run as actions: on a blocking thread (a dry run's on the engine's thread),
//! with `ctx`, calling services through the host API; a failing script is an
//! `ActionError` at the failing line.

use std::sync::Arc;
use std::time::Duration;

use super::{FakeServices, Plans, action_ctx};
use crate::plan::{Action, EventView, Plan, Step};

const HEAD: &str =
    "import \"dns\" as dns;\nlet plan = recovery_plan(\"contoso\", #{ source: \"primary\", target: \"secondary\" });\n";

/// Loads `HEAD` + `body` + `plan`.
fn plan_with(body: &str) -> Plan {
    Plans::new().load(&format!("{HEAD}{body}\nplan\n")).unwrap_or_else(|e| panic!("{e}"))
}

fn first_post_each(plan: &Plan) -> Arc<dyn Action> {
    plan.groups[0].post_each[0].clone()
}

fn first_pre(plan: &Plan) -> Arc<dyn Action> {
    match &plan.pre[0] {
        Step::Action(action) => action.clone(),
        Step::Manual(_) => panic!("expected an action"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn r50_post_each_points_dns_at_the_vm_ip() {
    let plan = plan_with(
        "plan.group(\"web\", [\"web01\"]).post_each(|vm, ctx| dns::point(`${vm.name}.contoso.test`, vm.ip));",
    );
    let services = Arc::new(FakeServices::default());
    first_post_each(&plan).run(action_ctx(services.clone(), Some("web01"), None)).await.unwrap();
    assert_eq!(services.calls(), ["dns_point web01.contoso.test 10.2.3.21"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn r50_dns_point_vm_and_verify_vm_cover_every_name_of_the_vm() {
    let plan =
        plan_with("plan.group(\"web\", [\"web01\"]).post_each(|vm| { dns::point_vm(vm); dns::verify_vm(vm); });");
    let services = Arc::new(FakeServices::default());
    first_post_each(&plan).run(action_ctx(services.clone(), Some("web01"), None)).await.unwrap();
    assert_eq!(
        services.calls(),
        [
            "dns_point web01.contoso.test 10.2.3.21",
            "dns_point www.contoso.test 10.2.3.21",
            "dns_verify web01.contoso.test 10.2.3.21",
            "dns_verify www.contoso.test 10.2.3.21",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r50_post_each_flips_a_load_balancer_cname_and_verifies_it() {
    let plan = plan_with(
        "plan.group(\"web\", [\"web01\"]).post_each(|vm, ctx| {\n    dns::cname(\"www.contoso.test\", \"lb-dr.contoso.test\");\n    dns::verify_cname(\"www.contoso.test\", \"lb-dr.contoso.test\");\n});",
    );
    let services = Arc::new(FakeServices::default());
    first_post_each(&plan).run(action_ctx(services.clone(), Some("web01"), None)).await.unwrap();
    assert_eq!(
        services.calls(),
        ["dns_cname www.contoso.test lb-dr.contoso.test", "dns_verify_cname www.contoso.test lb-dr.contoso.test"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_cname_flip_fails_the_action_at_the_call() {
    let plan = plan_with("plan.pre(|ctx|\n    dns_cname(\"www.contoso.test\", \"lb-dr.contoso.test\"));");
    let services = Arc::new(FakeServices { refuse_dns: true, ..FakeServices::default() });
    let err = first_pre(&plan).run(action_ctx(services, None, None)).await.unwrap_err();
    assert_eq!(err.message, "dns_cname: the DNS server refused the update");
    assert_eq!(err.at.unwrap().line, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_that_throws_fails_at_the_line_that_threw() {
    let plan = plan_with("plan.pre(|ctx| {\n    log(\"checking\");\n    throw `${ctx.plan} is not ready`;\n});");
    let services = Arc::new(FakeServices::default());
    let err = first_pre(&plan).run(action_ctx(services.clone(), None, None)).await.unwrap_err();
    assert_eq!(err.message, "contoso is not ready");
    let at = err.at.expect("a position");
    assert!(at.file.ends_with("plan.rhai"), "{at}");
    assert_eq!((at.line, at.column), (5, 5));
    assert_eq!(services.calls(), ["log checking"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_hit_inside_an_action_points_at_the_action() {
    let plan = plan_with("fn deeper(n) { deeper(n + 1) }\nplan.pre(|ctx| deeper(0));");
    let services = Arc::new(FakeServices::default());
    let err = first_pre(&plan).run(action_ctx(services, None, None)).await.unwrap_err();
    assert!(err.message.contains("call stack too deep"), "{}", err.message);
    let at = err.at.expect("a position");
    assert!(at.file.ends_with("plan.rhai"), "{at}");
    assert_eq!((at.line, at.column), (4, 6));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_inside_the_stdlib_points_at_the_plan_line_that_called_it() {
    let plan =
        plan_with("plan.group(\"web\", [\"web02\"])\n    .post_each(|vm, ctx| {\n        dns::point_vm(vm);\n    });");
    let err = first_post_each(&plan)
        .run(action_ctx(Arc::new(FakeServices::default()), Some("web02"), None))
        .await
        .unwrap_err();
    assert!(err.message.starts_with("dns::point_vm: web02 has no address yet"), "{}", err.message);
    assert!(err.message.contains("(in point_vm(), at <stdlib>/dns.rhai:"), "{}", err.message);
    let at = err.at.unwrap();
    assert!(at.file.ends_with("plan.rhai"), "{at}");
    assert_eq!(at.line, 5, "{at}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_error_fails_the_action_at_the_call() {
    let plan = plan_with("plan.pre(|ctx|\n    dns_point(\"www.contoso.test\", ctx.vm(\"web01\").ip));");
    let services = Arc::new(FakeServices { refuse_dns: true, ..FakeServices::default() });
    let err = first_pre(&plan).run(action_ctx(services, None, None)).await.unwrap_err();
    assert_eq!(err.message, "dns_point: the DNS server refused the update");
    assert_eq!(err.at.unwrap().line, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_address_is_a_clear_error() {
    let plan = plan_with("plan.pre(|ctx| dns_point(\"www\", \"10.2.3\"));");
    let err = first_pre(&plan).run(action_ctx(Arc::new(FakeServices::default()), None, None)).await.unwrap_err();
    assert_eq!(err.message, "dns_point: \"10.2.3\" is not an IPv4 address (e.g. \"10.2.1.10\")");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctx_shows_the_run_the_group_and_the_vms() {
    let plan = plan_with(
        r#"plan.group("web", ["web01"]).pre(|ctx| {
    log(`${ctx.kind} ${ctx.dry_run} ${ctx.plan} ${ctx.group} ${ctx.run_id} ${ctx.vm} ${ctx.test_network} ${ctx.event}`);
    log(`${ctx.vm("web01").ip} ${ctx.vm("web01").dns} ${ctx.vms.web02.ip} ${ctx.vms.keys()}`);
    let status = replication_status("web01");
    log(`${status.health} ${status.latest_point} ${status.rpo_seconds} ${status.policy}`);
    wait("30s");
    wait_port(ctx.vm("web01").ip, 443, "2m");
    ctx.vm("db09")
});"#,
    );
    let services = Arc::new(FakeServices::default());
    let group_pre = match &plan.groups[0].pre[0] {
        Step::Action(a) => a.clone(),
        Step::Manual(_) => unreachable!(),
    };
    let err = group_pre.run(action_ctx(services.clone(), None, None)).await.unwrap_err();
    assert_eq!(
        services.calls(),
        [
            "log planned false contoso web run-7   ",
            "log 10.2.3.21 [\"web01.contoso.test\", \"www.contoso.test\"]  [\"web01\", \"web02\"]",
            "replication_status web01",
            "log healthy 2026-03-02T08:55:00Z 300 gold",
            "wait 30s",
            "wait_port 10.2.3.21:443 2m",
        ]
    );
    assert_eq!(err.message, "ctx.vm: \"db09\" is not a VM of this plan (its VMs: web01, web02)");
    assert_eq!(err.at.unwrap().line, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_receive_the_event() {
    let plan = plan_with(
        "plan.on(\"vm.*\", |ev| log(`VM ${ev.vm} ${ev.kind}: ${ev.error}`));\nplan.on(\"vm.failed\", |ev, ctx| log(ctx.plan));",
    );
    let services = Arc::new(FakeServices::default());
    let event = EventView {
        kind: "vm.failed".into(),
        group: Some("web".into()),
        vm: Some("web01".into()),
        error: Some("boot failed".into()),
    };
    for hook in &plan.hooks {
        hook.action.run(action_ctx(services.clone(), None, Some(event.clone()))).await.unwrap();
    }
    assert_eq!(services.calls(), ["log VM web01 vm.failed: boot failed", "log contoso"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn closures_keep_captured_variables_constants_and_plan_functions() {
    let plan = plan_with(
        "const PORT = 443;\nlet zone = \"contoso.test\";\nfn fqdn(name, zone) { `${name}.${zone}` }\nplan.pre(|ctx| log(`${fqdn(\"www\", zone)}:${PORT}`));",
    );
    let services = Arc::new(FakeServices::default());
    first_pre(&plan).run(action_ctx(services.clone(), None, None)).await.unwrap();
    assert_eq!(services.calls(), ["log www.contoso.test:443"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_call_helper_modules_of_the_plan_folder() {
    let plans = Plans::new();
    plans.write("notify.rhai", "import \"dns\" as d;\n/// Tells the desk.\nfn desk(text) { log(`desk: ${text}`); }\nfn web_dns(vm) { d::point(vm.name, vm.ip); }\n");
    let plan = plans
        .load(&format!("import \"notify\" as notify;\n{HEAD}plan.group(\"web\", [\"web01\"]).post_each(|vm, ctx| {{ notify::desk(vm.name); notify::web_dns(vm); }});\nplan\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let services = Arc::new(FakeServices::default());
    first_post_each(&plan).run(action_ctx(services.clone(), Some("web01"), None)).await.unwrap();
    assert_eq!(services.calls(), ["log desk: web01", "dns_point web01 10.2.3.21"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_running_action_cancels_the_wait_it_is_blocked_in() {
    let plan = plan_with("plan.pre(|ctx| wait(\"2d\"));");
    let services = Arc::new(FakeServices::default());
    let action = first_pre(&plan);
    let run = action.run(action_ctx(services.clone(), None, None));
    assert!(tokio::time::timeout(Duration::from_millis(100), run).await.is_err(), "the wait never ends");
    for _ in 0..200 {
        if services.calls().contains(&"wait dropped".to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the wait was not cancelled: {:?}", services.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_run_concurrently_off_the_async_workers() {
    let plan = plan_with(
        "plan.group(\"web\", [\"web01\"]).post_each(|vm| { let n = 0; while n < 2000 { n += 1; } log(vm.name); });",
    );
    let services = Arc::new(FakeServices::default());
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (action, ctx) = (first_post_each(&plan), action_ctx(services.clone(), Some("web01"), None));
        runs.spawn(async move { action.run(ctx).await });
    }
    while let Some(result) = runs.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(services.calls(), ["log web01"; 4]);
}

#[tokio::test]
async fn actions_run_on_a_current_thread_runtime_too() {
    let plan = plan_with("plan.pre(|ctx| { wait(\"5s\"); log(\"waited\"); });");
    let services = Arc::new(FakeServices::default());
    first_pre(&plan).run(action_ctx(services.clone(), None, None)).await.unwrap();
    assert_eq!(services.calls(), ["wait 5s", "log waited"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_helper_module_can_add_actions_to_the_plan() {
    let plans = Plans::new();
    plans.write("checks.rhai", "import \"dns\" as dns;\n\nfn add_checks(plan) {\n    plan.post(|ctx| dns::verify(\"www.contoso.test\", ctx.vm(\"web01\").ip));\n}\n");
    let plan = plans
        .load(&format!("import \"checks\" as checks;\n{HEAD}checks::add_checks(plan);\nplan\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let Step::Action(action) = &plan.post[0] else { panic!("expected an action") };
    assert!(action.at().file.ends_with("checks.rhai"), "{}", action.at());
    assert_eq!((action.at().line, action.at().column), (4, 10));
    let services = Arc::new(FakeServices::default());
    action.run(action_ctx(services.clone(), None, None)).await.unwrap();
    assert_eq!(services.calls(), ["dns_verify www.contoso.test 10.2.3.21"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn r22_actions_drive_the_recovery_cycle_one_vm_at_a_time() {
    let plan = plan_with(
        "plan.pre(|ctx| {\n    log(failover_vm(\"app01\", \"unplanned\", \"latest-processed\"));\n    reprotect_vm(\"app01\");\n});",
    );
    let services = Arc::new(FakeServices::default());
    first_pre(&plan).run(action_ctx(services.clone(), None, None)).await.unwrap();
    assert_eq!(
        services.calls(),
        [
            "operate app01 Failover { kind: Unplanned, point: LatestProcessed }",
            "log unplanned-failover done",
            "operate app01 Reprotect",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r34_a_refused_primitive_fails_the_action_with_what_to_do_instead() {
    let plan = plan_with("plan.pre(|ctx|\n    commit_vm(\"app01\"));");
    let services = Arc::new(FakeServices::default());
    let err = first_pre(&plan).run(action_ctx(services, None, None)).await.unwrap_err();
    assert_eq!(err.message, "commit_vm: cannot commit app01: it is protected. Next: test failover.");
    assert_eq!(err.at.unwrap().line, 4);
    let bad = plan_with("plan.pre(|ctx| failover_vm(\"app01\", \"sideways\"));");
    let err = first_pre(&bad).run(action_ctx(Arc::new(FakeServices::default()), None, None)).await.unwrap_err();
    assert!(err.message.contains("not test, planned or unplanned"), "{}", err.message);
}

/// The runtime a dry run's engine runs on (`drplan dry-run`): one thread.
fn dry_run_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_stack_size(crate::script::SCRIPT_STACK_SIZE)
        .build()
        .unwrap()
}

#[test]
fn a_dry_runs_action_runs_on_the_engines_thread_given_a_scripts_stack() {
    let plan = plan_with("plan.pre(|ctx| log(\"here\"));");
    let services = Arc::new(FakeServices { at_once: true, ..FakeServices::default() });
    let runtime = dry_run_runtime();
    let action = first_pre(&plan);
    let (action, services_now) = (&action, &services);
    let run = || async move {
        action.run(action_ctx(services_now.clone(), None, None)).await.unwrap();
        std::thread::current().id()
    };
    let engine = crate::script::on_script_stack(|| runtime.block_on(run()));
    // A test's thread has too little stack for a script: the action goes to a blocking thread.
    let shallow = runtime.block_on(run());
    let threads = services.log_threads.lock().unwrap().clone();
    assert_eq!(threads[0], engine);
    assert_ne!(threads[1], shallow);
}

#[test]
fn a_call_that_waits_on_the_engines_thread_fails_the_action_rather_than_hang_the_run() {
    // FakeServices::wait sleeps on the runtime's timer, which only the engine's thread,
    // busy with the script, could drive.
    let plan = plan_with("plan.pre(|ctx| {\n    wait(\"30s\");\n});");
    let services = Arc::new(FakeServices { at_once: true, ..FakeServices::default() });
    let runtime = dry_run_runtime();
    let action = first_pre(&plan);
    let err = crate::script::on_script_stack(|| {
        runtime.block_on(action.run(action_ctx(services.clone(), None, None))).unwrap_err()
    });
    assert_eq!(err.message, "wait: the call waited, but the run's services promised it would not (a bug in drplan)");
    assert_eq!(err.at.unwrap().line, 4);
}
