//! Global hooks: the hook scripts a plan folder's `drplan.toml` lists are loaded with
//! every plan of the folder, their hooks after the plan's own; every mistake in the
//! config or a hook script is an error at its file:line:column.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FakeServices, Plans, action_ctx};
use crate::plan::{DnsSetting, EventView, Plan};
use crate::script::{ScriptError, ScriptErrorKind};

const PLAN: &str = "let plan = recovery_plan(\"contoso\", #{ source: \"primary\", target: \"secondary\" });
plan.on(\"vm.failed\", |ev| log(`VM ${ev.vm} failed`));
plan
";

const CONFIG: &str = "# applies to every plan of the folder
[hooks]
scripts = [\"hooks/notify.rhai\", \"hooks/audit.rhai\"]
";

const NOTIFY: &str = "// notify
on(\"vm.failed\", |ev| log(`ALERT: ${ev.vm} failed: ${ev.error}`));
on(\"run.succeeded\", |ev, ctx| log(`${ctx.plan}: recovered`));
";

const AUDIT: &str = "import \"dns\" as dns;
import \"naming\" as naming;

fn audit(ev, ctx) { log(`audit: ${ev.kind} in ${ctx.plan}`) }

on(\"*\", Fn(\"audit\"));
on(\"group.succeeded\", |ev, ctx| dns::point(naming::fqdn(\"www\"), ctx.vm(\"web01\").ip));
42
";

const NAMING: &str = "fn fqdn(name) { `${name}.contoso.test` }\n";

impl Plans {
    /// Writes a file of the plan folder, creating its folders.
    fn put(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A plan folder with `drplan.toml` and its two hook scripts.
fn folder() -> Plans {
    let plans = Plans::new();
    plans.put("drplan.toml", CONFIG);
    plans.put("hooks/notify.rhai", NOTIFY);
    plans.put("hooks/audit.rhai", AUDIT);
    plans.put("naming.rhai", NAMING);
    plans
}

fn loaded(plans: &Plans) -> Plan {
    plans.load(PLAN).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(plans: &Plans) -> ScriptError {
    plans.load(PLAN).err().expect("the plan must not load")
}

/// Checks that `err` is at `file`:`line`:`column` (file relative to the folder) and says `phrase`.
fn assert_at(err: &ScriptError, plans: &Plans, file: &str, (line, column): (usize, usize), phrase: &str) {
    let expected = format!("{}:{line}:{column}: ", plans.0.path().join(file).display());
    assert!(err.to_string().starts_with(&expected), "expected {expected}... in: {err}");
    assert!(err.message.contains(phrase), "expected {phrase:?} in: {err}");
}

fn event(kind: &str) -> EventView {
    EventView {
        kind: kind.into(),
        group: Some("web".into()),
        vm: Some("web02".into()),
        error: Some("boot failed".into()),
    }
}

#[test]
fn the_plans_hooks_come_first_then_each_scripts_in_the_order_listed() {
    let plans = folder();
    let plan = loaded(&plans);
    let hooks: Vec<(&str, String)> = plan.hooks.iter().map(|h| (h.event.as_str(), h.action.at().to_string())).collect();
    let at =
        |file: &str, line: usize, column: usize| format!("{}:{line}:{column}", plans.0.path().join(file).display());
    assert_eq!(
        hooks,
        [
            ("vm.failed", at("plan.rhai", 2, 6)),
            ("vm.failed", at("hooks/notify.rhai", 2, 1)),
            ("run.succeeded", at("hooks/notify.rhai", 3, 1)),
            ("*", at("hooks/audit.rhai", 6, 1)),
            ("group.succeeded", at("hooks/audit.rhai", 7, 1)),
        ]
    );
    assert_eq!(plan.hooks[1].action.label(), "global hook on vm.failed");
    assert_eq!(plan.hooks[0].action.label(), "hook on vm.failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn global_hooks_run_like_the_plans_own() {
    let plan = loaded(&folder());
    let services = Arc::new(FakeServices::default());
    for (hook, kind) in plan.hooks[1..].iter().zip(["vm.failed", "run.succeeded", "vm.failed", "group.succeeded"]) {
        hook.action.run(action_ctx(services.clone(), None, Some(event(kind)))).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        services.calls(),
        [
            "log ALERT: web02 failed: boot failed",
            "log contoso: recovered",
            "log audit: vm.failed in contoso",
            // The stdlib and the plan folder's modules, imported by the hook script.
            "dns_point www.contoso.test 10.2.3.21",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_global_hook_fails_at_its_line_in_the_hook_file() {
    let plans = folder();
    plans.put("hooks/notify.rhai", "on(\"run.failed\", |ev, ctx| {\n    throw `${ctx.plan}: paging failed`;\n});\n");
    let plan = loaded(&plans);
    let err = plan.hooks[1]
        .action
        .run(action_ctx(Arc::new(FakeServices::default()), None, Some(event("run.failed"))))
        .await
        .unwrap_err();
    assert_eq!(err.message, "contoso: paging failed");
    assert_eq!(err.at.unwrap().to_string(), format!("{}:2:5", plans.0.path().join("hooks/notify.rhai").display()));
}

#[test]
fn without_a_config_a_plan_has_only_its_own_hooks() {
    let plans = Plans::new();
    plans.put("hooks/notify.rhai", NOTIFY);
    assert_eq!(loaded(&plans).hooks.len(), 1);
}

#[test]
fn a_config_without_hooks_adds_none() {
    let plans = Plans::new();
    plans.put("drplan.toml", "# nothing yet\n");
    assert_eq!(loaded(&plans).hooks.len(), 1);
}

#[test]
fn a_config_syntax_error_is_reported_in_drplan_toml() {
    let plans = folder();
    plans.put("drplan.toml", "[hooks]\nscripts = [\"hooks/notify.rhai\" \"hooks/audit.rhai\"]\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Config);
    assert!(err.to_string().starts_with(&format!("{}:2:", plans.0.path().join("drplan.toml").display())), "{err}");
    assert!(err.message.contains("expected"), "{err}");
}

#[test]
fn an_unknown_key_of_the_config_is_refused_where_it_is_written() {
    let plans = folder();
    plans.put("drplan.toml", "[hooks]\nscripts = []\non_failure = \"stop\"\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Config);
    assert_at(&err, &plans, "drplan.toml", (3, 1), "unknown field `on_failure`, expected `scripts`");
}

#[test]
fn a_missing_hook_script_is_reported_at_its_line_of_the_config() {
    let plans = folder();
    plans.put("drplan.toml", "[hooks]\nscripts = [\n    \"hooks/notify.rhai\",\n    \"hooks/pager.rhai\",\n]\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Config);
    assert_at(&err, &plans, "drplan.toml", (4, 5), "hooks.scripts[1]: the hook script ");
    let missing = plans.0.path().join("hooks/pager.rhai");
    assert!(err.message.ends_with(&format!("{} does not exist", missing.display())), "{err}");
}

#[test]
fn a_hook_script_syntax_error_is_reported_in_the_hook_script() {
    let plans = folder();
    plans.put("hooks/audit.rhai", "// audit\non(\"*\", |ev| log(ev.kind);\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Syntax);
    assert!(err.to_string().starts_with(&format!("{}:2:", plans.0.path().join("hooks/audit.rhai").display())), "{err}");
}

#[test]
fn a_hook_script_runtime_error_is_reported_at_its_line() {
    let plans = folder();
    plans.put("hooks/audit.rhai", "// audit\non(\"\", |ev| log(ev.kind));\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert_at(&err, &plans, "hooks/audit.rhai", (2, 1), "on: the event is empty");
}

#[test]
fn a_path_leaving_the_folder_is_refused_in_the_config() {
    let plans = folder();
    plans.put("drplan.toml", "[hooks]\nscripts = [\"../shared/notify.rhai\"]\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Config);
    assert_at(&err, &plans, "drplan.toml", (2, 12), "\"../shared/notify.rhai\" leaves the plan's folder");
    plans.put("drplan.toml", "[hooks]\nscripts = [\"/etc/notify.rhai\"]\n");
    assert_at(&refused(&plans), &plans, "drplan.toml", (2, 12), "is an absolute path");
}

#[cfg(unix)]
#[test]
fn a_link_leading_out_of_the_folder_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("notify.rhai"), NOTIFY).unwrap();
    let plans = folder();
    std::os::unix::fs::symlink(outside.path().join("notify.rhai"), plans.0.path().join("hooks/linked.rhai")).unwrap();
    plans.put("drplan.toml", "[hooks]\nscripts = [\"hooks/linked.rhai\"]\n");
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Config);
    assert_at(&err, &plans, "drplan.toml", (2, 12), "resolves outside the plan's folder");
}

#[test]
fn a_hook_script_cannot_build_a_plan() {
    let plans = folder();
    plans.put(
        "hooks/audit.rhai",
        "// audit\nlet p = recovery_plan(\"other\", #{ source: \"primary\", target: \"secondary\" });\np\n",
    );
    let err = refused(&plans);
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert_at(&err, &plans, "hooks/audit.rhai", (2, 9), "cannot be called in a hook script");
}

#[test]
fn a_plan_cannot_register_global_hooks() {
    let plans = Plans::new();
    let err = plans.load("let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\non(\"vm.failed\", |ev| log(ev.vm));\nplan\n").err().unwrap();
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert_at(&err, &plans, "plan.rhai", (2, 1), "in a plan, write plan.on(event, action)");
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_are_not_registered_from_inside_an_action() {
    let plans = folder();
    plans.put("hooks/audit.rhai", "on(\"*\", |ev| on(\"vm.failed\", |ev| log(ev.vm)));\n");
    let plan = loaded(&plans);
    let err = plan.hooks[3]
        .action
        .run(action_ctx(Arc::new(FakeServices::default()), None, Some(event("vm.failed"))))
        .await
        .unwrap_err();
    assert!(err.message.contains("not inside an action"), "{}", err.message);
}

#[test]
fn a_broken_plan_is_reported_before_the_config_is_read() {
    let plans = folder();
    plans.put("drplan.toml", "[hooks\n");
    let err = plans.load("let plan = 1;\nplan\n").err().unwrap();
    assert_eq!(err.kind, ScriptErrorKind::NotAPlan);
    assert!(Path::new(err.at.file.as_ref()).ends_with("plan.rhai"), "{err}");
}

#[test]
fn r50_the_zones_of_the_folders_dns_servers_and_what_hook_scripts_write_go_to_the_checks() {
    let plans = folder();
    assert_eq!(loaded(&plans).written.dns, DnsSetting::Missing, "no [dns]");
    plans.put(
        "drplan.toml",
        &format!("{CONFIG}\n[dns]\n[[dns.servers]]\nzone = \"Contoso.Test.\"\naddress = \"127.0.0.1:53\"\n"),
    );
    let status = "on(\"run.failed\", |ev| { dns::point(\"status.example.org\", \"10.0.0.9\"); wait(\"2d\"); });\n";
    plans.put("hooks/notify.rhai", &format!("import \"dns\" as dns;\n{NOTIFY}{status}"));
    let written = loaded(&plans).written;
    assert_eq!(written.dns, DnsSetting::Served(vec!["contoso.test".to_string()]));
    // In the hook script, where they are written.
    let names: Vec<(&str, usize)> = written.dns_names.iter().map(|n| (n.name.as_str(), n.at.line)).collect();
    assert_eq!(names, [("status.example.org", 5)]);
    assert!(written.dns_names[0].at.file.ends_with("hooks/notify.rhai"), "{}", written.dns_names[0].at);
    assert_eq!(written.waits.iter().map(|w| (w.duration.as_str(), w.at.line)).collect::<Vec<_>>(), [("2d", 5)]);
}
