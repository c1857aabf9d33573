//! Plan files become the plan IR: groups in order with their members, steps, hooks and
//! policies, each with the position it was written at; mistakes in the calls that build
//! it are noted in the plan at their call, all of them, and the script goes on.

use std::time::Duration;

use super::{Plans, inventory};
use crate::plan::{AddressUse, FailurePolicy, Mistake, OnFailure, Plan, Selector, Step, UsedVms};
use crate::script::{ScriptErrorKind, ScriptOptions, load_plan};

const FULL_PLAN: &str = r#"import "dns" as dns;

let plan = recovery_plan("contoso", #{ source: "primary", target: "secondary", rto: "30m", test_network: "test-bubble" });
plan.pre(|ctx| log("starting"));
plan.manual("Tell the service desk", #{ estimate: "2m" });
let db = plan.group("database", replication_group("sql-cluster"));
db.retry(2, "30s").post(|ctx| wait_port(ctx.vm("sql01").ip, 1433, "5m"));
plan.manual("Confirm the SQL listener is online", #{ timeout: "30m", estimate: "5m" });
plan.group("app", vms_tagged("tier", "app")).on_failure("continue");
plan.group("web", ["web01", vms_tagged("tier", "web")])
    .post_each(|vm, ctx| dns::point(vm.name + ".contoso.test", vm.ip))
    .manual("Check the site").optional(["web01"]);
plan.on("vm.failed", |ev| log(`VM ${ev.vm} failed: ${ev.error}`));
plan.on_failure("stop"); plan.retry(1, "10s");
plan.post(|ctx| log("done"));
plan
"#;

fn manual(step: &Step) -> Option<(&str, Duration, Duration, usize)> {
    match step {
        Step::Manual(m) => Some((m.text.as_str(), m.timeout, m.estimate, m.at.line)),
        Step::Action(_) => None,
    }
}

fn action_line(step: &Step) -> Option<(usize, usize, String)> {
    match step {
        Step::Action(a) => Some((a.at().line, a.at().column, a.label())),
        Step::Manual(_) => None,
    }
}

fn full_plan() -> Plan {
    Plans::new().load(FULL_PLAN).unwrap_or_else(|e| panic!("{e}"))
}

/// The mistakes of a plan that loads: (line, column, message).
fn mistakes(text: &str) -> Vec<(usize, usize, String)> {
    let plan = Plans::new().load(text).unwrap_or_else(|e| panic!("{e}"));
    plan.written.mistakes.iter().map(|Mistake { at, message, .. }| (at.line, at.column, message.clone())).collect()
}

/// The one mistake of a plan that loads.
fn mistake(text: &str) -> (usize, usize, String) {
    let mut all = mistakes(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

#[test]
fn the_plan_has_its_name_sites_rto_and_test_network() {
    let plan = full_plan();
    assert_eq!((plan.name.as_str(), plan.source.as_str(), plan.target.as_str()), ("contoso", "primary", "secondary"));
    assert_eq!(plan.rto, Some(Duration::from_secs(1800)));
    assert_eq!(plan.test_network.as_deref(), Some("test-bubble"));
    assert_eq!((plan.at.line, plan.at.column), (3, 12));
    assert!(plan.at.file.ends_with("plan.rhai"));
}

#[test]
fn r20_groups_keep_their_order_members_and_positions() {
    let plan = full_plan();
    let groups: Vec<(&str, usize, usize)> =
        plan.groups.iter().map(|g| (g.name.as_str(), g.at.line, g.at.column)).collect();
    assert_eq!(groups, [("database", 6, 15), ("app", 9, 6), ("web", 10, 6)]);
    let members: Vec<Vec<Selector>> =
        plan.groups.iter().map(|g| g.members.iter().map(|m| m.selector.clone()).collect()).collect();
    assert_eq!(
        members,
        [
            vec![Selector::ReplicationGroup("sql-cluster".into())],
            vec![Selector::Tag { key: "tier".into(), value: "app".into() }],
            vec![Selector::Vm("web01".into()), Selector::Tag { key: "tier".into(), value: "web".into() }],
        ]
    );
    // Each member where its VM's name or selector is written.
    let at: Vec<Vec<(usize, usize)>> =
        plan.groups.iter().map(|g| g.members.iter().map(|m| (m.at.line, m.at.column)).collect()).collect();
    assert_eq!(at, [vec![(6, 33)], vec![(9, 19)], vec![(10, 20), (10, 29)]]);
    assert_eq!(plan.groups[2].optional, ["web01"]);
}

#[test]
fn r21_actions_and_manual_steps_go_where_they_were_written() {
    let plan = full_plan();
    // Before any group, a plan's manual step pauses before the first group.
    assert_eq!(action_line(&plan.pre[0]), Some((4, 6, "pre action of plan contoso".into())));
    assert_eq!(
        manual(&plan.pre[1]),
        Some(("Tell the service desk", Duration::from_secs(3600), Duration::from_secs(120), 5))
    );
    // After a group, it pauses after that group's VMs and post actions added so far.
    let database = &plan.groups[0];
    assert_eq!(action_line(&database.post[0]), Some((7, 20, "post action of group database".into())));
    assert_eq!(
        manual(&database.post[1]),
        Some(("Confirm the SQL listener is online", Duration::from_secs(1800), Duration::from_secs(300), 8))
    );
    let web = &plan.groups[2];
    assert_eq!(manual(&web.post[0]), Some(("Check the site", Duration::from_secs(3600), Duration::ZERO, 12)));
    assert_eq!(web.post_each.len(), 1);
    assert_eq!((web.post_each[0].at().line, web.post_each[0].label()), (11, "post_each action of group web".into()));
    assert_eq!(action_line(&plan.post[0]).map(|a| a.0), Some(15));
    assert_eq!(plan.hooks.len(), 1);
    assert_eq!((plan.hooks[0].event.as_str(), plan.hooks[0].action.at().line), ("vm.failed", 13));
}

#[test]
fn group_policies_take_what_they_do_not_set_from_the_plan() {
    let plan = full_plan();
    let plan_policy = FailurePolicy { retries: 1, backoff: Duration::from_secs(10), on_failure: OnFailure::Stop };
    assert_eq!(plan.policy, plan_policy);
    assert_eq!(
        plan.groups[0].policy,
        Some(FailurePolicy { retries: 2, backoff: Duration::from_secs(30), on_failure: OnFailure::Stop })
    );
    // The plan's retry is set after the group's on_failure, and still applies to it.
    assert_eq!(plan.groups[1].policy, Some(FailurePolicy { on_failure: OnFailure::Continue, ..plan_policy }));
    assert_eq!(plan.groups[2].policy, None);
    assert_eq!(plan.policy_of(&plan.groups[2]), plan_policy);
}

#[test]
fn a_plan_without_policies_has_the_default_one() {
    let plan = Plans::new().load("let p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np").unwrap();
    assert_eq!(plan.policy, FailurePolicy::default());
    assert_eq!((plan.rto, plan.test_network), (None, None));
}

#[test]
fn a_syntax_error_points_at_its_line_and_column() {
    let err = Plans::new()
        .load("let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\nlet x = 1 +;\n")
        .err()
        .expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Syntax);
    assert_eq!((err.at.line, err.at.column), (2, 12), "{err}");
    assert!(err.to_string().starts_with(&format!("{}:2:12: ", err.at.file)), "{err}");
}

#[test]
fn an_unknown_option_of_recovery_plan_is_a_mistake_at_its_line() {
    let (line, _, message) = mistake(
        "// the plan\nlet plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\", rpo: \"5m\" });\nplan\n",
    );
    assert_eq!(line, 2);
    assert_eq!(message, "recovery_plan: unknown option \"rpo\" (the options are: source, target, rto, test_network)");
}

#[test]
fn source_and_target_are_required() {
    let err = Plans::new().load("recovery_plan(\"p\", #{ source: \"a\" })").err().expect("the plan must not load");
    assert!(err.message.contains("recovery_plan: option target is required"), "{err}");
    // Whatever else is wrong with the options.
    let err =
        Plans::new().load("recovery_plan(\"p\", #{ sorce: \"a\", target: 1 })").err().expect("the plan must not load");
    assert_eq!(err.message, "recovery_plan: option source is required");
    let err = Plans::new().load("recovery_plan(\"p\", #{ rpo: 1, source: 2 })").err().expect("the plan must not load");
    assert_eq!(err.message, "recovery_plan: option source must be a string, not i64");
}

#[test]
fn a_bad_duration_is_a_mistake_at_its_call() {
    let text = "let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\nplan.group(\"g\", [\"sql01\"])\n    .retry(2, \"30 seconds\");\nplan\n";
    let (line, column, message) = mistake(text);
    assert_eq!((line, column), (3, 6));
    assert!(message.contains("retry: bad duration \"30 seconds\""), "{message}");
    let (line, _, message) = mistake(
        "let p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np.manual(\"x\", #{ timeout: \"soon\" });\np",
    );
    assert_eq!(line, 2);
    assert!(message.contains("manual timeout: bad duration \"soon\""), "{message}");
}

#[test]
fn more_than_100_retries_is_a_mistake_at_the_call() {
    let text = "let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\nplan.group(\"g\", [\"sql01\"])\n    .retry(101, \"1s\");\nplan\n";
    let (line, column, message) = mistake(text);
    assert_eq!((line, column), (3, 6));
    assert_eq!(message, "retry: the number of retries must be 0 to 100, not 101");
    assert_eq!(mistakes(&text.replace("101", "100")), []);
}

#[test]
fn every_mistake_is_noted_and_the_script_goes_on_without_what_it_asked_for() {
    let text = r#"let plan = recovery_plan("p", #{ source: "a", target: "b", rto: "half an hour", rpo: "5m" });
plan.group("g", ["sql01", 42, "sql02"]).retry(1, "1x").on_failure("maybe").optional([7]);
plan.manual("m", #{ timout: "1h" });
plan.pre(|a, b| 1);
plan.group("h", ["app01"]).post_each(|vm, ctx, more| 1);
plan.on("", |ev| 1);
plan
"#;
    let plan = Plans::new().load(text).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<(usize, &str)> = plan.written.mistakes.iter().map(|m| (m.at.line, m.subject.as_str())).collect();
    assert_eq!(
        lines,
        [
            (1, "recovery_plan"),
            (1, "recovery_plan"),
            (2, "g"),
            (2, "retry"),
            (2, "on_failure"),
            (2, "optional"),
            (3, "manual"),
            (4, "pre"),
            (5, "post_each"),
            (6, "on")
        ]
    );
    // What the bad calls asked for is left out; the rest is there.
    assert_eq!(plan.rto, None);
    assert_eq!(plan.groups[0].members.len(), 2);
    assert_eq!(plan.groups[0].policy, None);
    assert!(plan.pre.is_empty() && plan.hooks.is_empty() && plan.groups[1].post_each.is_empty());
}

#[test]
fn a_script_that_does_not_end_with_its_plan_is_not_a_plan() {
    let err = Plans::new()
        .load("let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\n")
        .err()
        .expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::NotAPlan);
    assert!(err.message.contains("the script must end with the plan value, e.g. `plan`"), "{err}");
    // Rhai's unit, `()`, is named as what it is, not shown.
    assert!(err.message.contains("the script's value is nothing (no value), not a plan"), "{err}");
    let err = Plans::new().load("42").err().expect("the plan must not load");
    assert!(err.message.contains("the script's value is i64"), "{err}");
}

#[test]
fn a_missing_plan_file_is_an_io_error() {
    let err = load_plan(std::path::Path::new("/nonexistent/plan.rhai"), inventory(), &ScriptOptions::default())
        .err()
        .expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Io);
    assert!(err.to_string().starts_with("/nonexistent/plan.rhai: cannot read the plan"), "{err}");
}

#[test]
fn members_must_be_vm_names_or_selectors() {
    let (line, column, message) = mistake(
        "let p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np.group(\"g\", [\"sql01\", 42]);\np",
    );
    assert_eq!((line, column), (2, 24), "at the member");
    assert!(message.contains("a member is a VM name (a string) or a selector"), "{message}");
}

#[test]
fn a_closure_with_more_parameters_than_offered_is_refused() {
    let (line, column, message) =
        mistake("let p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np.pre(|a, b| 1);\np");
    assert_eq!((line, column), (2, 3));
    assert!(message.contains("the closure is called with (ctx) but takes 2 parameters"), "{message}");
}

#[test]
fn on_failure_is_stop_or_continue() {
    let (_, _, message) =
        mistake("let p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np.on_failure(\"ignore\");\np");
    assert_eq!(message, "on_failure: expected \"stop\" or \"continue\", not \"ignore\"");
}

#[test]
fn scripts_read_the_inventory_to_compute_groups() {
    let text = r#"
let plan = recovery_plan("p", #{ source: "primary", target: "secondary" });
let names = vms_tagged_names("tier", "db");
let sql = vm_info("sql01");
if sql.target_ip != "10.2.1.10" || sql.dns[0] != "sql01.contoso.test" || sql.tags.tier != "db" || sql.os != "windows" {
    throw `unexpected ${sql}`;
}
plan.group("db", names);
plan
"#;
    let plan = Plans::new().load(text).unwrap_or_else(|e| panic!("{e}"));
    let members: Vec<_> = plan.groups[0].members.iter().map(|m| m.selector.clone()).collect();
    assert_eq!(members, [Selector::Vm("sql01".into()), Selector::Vm("sql02".into())]);
    let err = Plans::new().load("vm_info(\"nope\")").err().expect("the plan must not load");
    assert!(err.message.contains("vm_info: the site file has no VM named \"nope\""), "{err}");
}

#[test]
fn import_dns_works_from_a_plan_in_any_folder() {
    let plans = Plans::new();
    let folder = plans.0.path().join("deep/inside/somewhere");
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("failover.rhai");
    std::fs::write(
        &path,
        "import \"dns\" as dns;\nlet p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np.group(\"web\", [\"web01\"]).post_each(|vm| dns::point_vm(vm));\np\n",
    )
    .unwrap();
    let plan = load_plan(&path, inventory(), &ScriptOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.groups[0].post_each.len(), 1);
}

#[test]
fn a_plan_imports_a_helper_module_from_its_own_folder() {
    let plans = Plans::new();
    plans.write("helpers.rhai", "/// The web tier's VMs.\nfn web_tier() { [\"web01\"] }\n");
    let plan = plans
        .load("import \"helpers\" as h;\nlet p = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\np.group(\"web\", h::web_tier());\np\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.groups[0].members[0].selector, Selector::Vm("web01".into()));
}

#[test]
fn an_error_in_a_helper_module_points_into_that_module() {
    let plans = Plans::new();
    plans.write("helpers.rhai", "fn web_tier() {\n    throw \"no web tier\";\n}\n");
    let err = plans.load("import \"helpers\" as h;\nh::web_tier()\n").err().expect("the plan must not load");
    assert!(err.at.file.ends_with("helpers.rhai"), "{err}");
    assert_eq!(err.at.line, 2, "{err}");
    assert_eq!(err.message, "no web tier");
    plans.write("broken.rhai", "fn x( {\n");
    let err = plans.load("import \"broken\" as b;\n").err().expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Syntax);
    assert!(err.at.file.ends_with("broken.rhai"), "{err}");
}

#[test]
fn an_import_cycle_is_refused() {
    let plans = Plans::new();
    plans.write("a.rhai", "import \"b\" as b;\n");
    plans.write("b.rhai", "import \"a\" as a;\n");
    let err = plans.load("import \"a\" as a;\n").err().expect("the plan must not load");
    assert!(err.message.contains("cannot import \"a\": it imports itself (an import cycle)"), "{err}");
    assert!(err.at.file.ends_with("b.rhai"), "{err}");
}

#[test]
fn an_unknown_module_names_the_stdlib_and_the_file_it_looked_for() {
    let err = Plans::new().load("import \"dnss\" as dns;\n").err().expect("the plan must not load");
    assert!(err.message.contains("no module \"dnss\": it is not in the stdlib (dns) and"), "{err}");
    assert!(err.message.contains("dnss.rhai does not exist"), "{err}");
}

#[test]
fn definitions_cover_the_host_api_and_the_stdlib() {
    let defs = crate::script::definitions();
    assert!(defs.starts_with("// drplan"), "a header comes first");
    for expected in [
        "fn recovery_plan(name: String, options: map) -> Plan;",
        "fn group(self: Plan, name: String, members: ?) -> Group;",
        "fn post_each(self: Group, action: Fn) -> Group;",
        "fn get kind(ctx: Ctx) -> String;",
        "fn dns_point(name: String, ip: String) -> ();",
        "module dns;",
        "/// Points the A record `name` at `ip` (\"10.2.1.10\").\nfn point(name: ?, ip: ?) -> ?;",
        "fn point_vm(vm: ?) -> ?;",
        "fn dns_cname(name: String, target: String) -> ();",
        "fn verify_cname(name: ?, target: ?) -> ?;",
    ] {
        assert!(defs.contains(expected), "missing {expected:?} in:\n{defs}");
    }
}

#[test]
fn a_closure_that_captures_the_plan_is_explained_where_it_uses_it() {
    let err = Plans::new()
        .load("let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\nplan.group(\"g\", [\"sql01\"]);\nplan.post(|ctx| log(plan.name));\nplan\n")
        .err()
        .expect("the plan must not load");
    assert_eq!((err.at.line, err.at.column), (3, 21), "{err}");
    assert!(
        err.message.starts_with("the closure given to post(...) captures `plan`, which the call itself is using"),
        "{err}"
    );
    assert!(err.message.contains("read what it needs from its `ctx` (ctx.plan is the plan's name"), "{err}");
    assert!(!err.message.contains("Data race"), "{err}");
}

#[test]
fn what_actions_write_as_literals_is_read_for_the_checks() {
    let text = r#"import "dns" as d;
let plan = recovery_plan("p", #{ source: "primary", target: "secondary" });
plan.group("db", ["sql01"]).retry(2, "1m").post(|ctx| wait_port(ctx.vm("sql01").ip, 1433, "5m"));
plan.group("web", vms_tagged("tier", "web")).post_each(|vm, ctx| { d::point_vm(vm); wait("1000d"); log(vm.ip); });
plan.pre(|ctx| { d::point("www.contoso.test", "10.0.0.1"); dns_cname("lb.contoso.test", "x"); wait(ctx.plan); });
plan.retry(1, "10s");
plan
"#;
    let plan = Plans::new().load(text).unwrap_or_else(|e| panic!("{e}"));
    let written = &plan.written;
    let mut waits: Vec<(&str, &str, usize, usize)> =
        written.waits.iter().map(|w| (w.call.as_str(), w.duration.as_str(), w.at.line, w.at.column)).collect();
    waits.sort();
    assert_eq!(waits, [("wait", "1000d", 4, 90), ("wait_port", "5m", 3, 91)]);
    let mut names: Vec<(&str, &str, usize)> =
        written.dns_names.iter().map(|n| (n.call.as_str(), n.name.as_str(), n.at.line)).collect();
    names.sort();
    assert_eq!(names, [("d::point", "www.contoso.test", 5), ("dns_cname", "lb.contoso.test", 5)]);
    let mut uses: Vec<(UsedVms, &str, usize, bool)> = written
        .address_uses
        .iter()
        .map(|AddressUse { vms, what, at, updates_dns }| (vms.clone(), what.as_str(), at.line, *updates_dns))
        .collect();
    uses.sort_by_key(|u| (u.2, u.1.to_string()));
    assert_eq!(
        uses,
        [
            (UsedVms::Named("sql01".into()), "ctx.vm(\"sql01\").ip", 3, false),
            (UsedVms::EachOfGroup(1), "d::point_vm(vm)", 4, true),
            (UsedVms::EachOfGroup(1), "vm.ip", 4, false),
        ]
    );
    let retries: Vec<(Option<usize>, usize)> = written.retries.iter().map(|(g, at)| (*g, at.line)).collect();
    assert_eq!(retries, [(Some(0), 3), (None, 6)]);
    assert_eq!(written.dns, crate::plan::DnsSetting::Missing, "no drplan.toml");
}
