//! The sandbox: every limit stops a runaway script with a clear error at its line, and
//! a script reaches nothing outside the host API.

use std::time::{Duration, Instant};

use super::{Plans, inventory};
use crate::script::{ScriptErrorKind, ScriptOptions, load_plan};

const PRELUDE: &str = "let plan = recovery_plan(\"p\", #{ source: \"primary\", target: \"secondary\" });\n";

#[test]
fn an_infinite_loop_is_stopped_by_the_wall_clock_deadline() {
    // No operations limit: a release build runs the default 50 million operations of
    // `loop {}` in less than 200 ms, and that limit would stop the loop first.
    let options = ScriptOptions { deadline: Duration::from_millis(200), max_operations: u64::MAX };
    let started = Instant::now();
    let err = Plans::new().load_with("let x = 1;\nloop {}\n", &options).err().expect("the plan must not load");
    assert!(started.elapsed() < Duration::from_secs(1), "stopped after {:?}", started.elapsed());
    assert_eq!(err.kind, ScriptErrorKind::Limit);
    assert!(err.message.contains("ran for more than 0.2s"), "{err}");
    assert!(err.message.contains("(limit: wall-clock deadline)"), "{err}");
    assert_eq!(err.at.line, 2, "{err}");
    assert!(err.to_string().contains("plan.rhai:2:"), "{err}");
}

#[test]
fn a_busy_script_is_stopped_at_the_operations_limit() {
    let options = ScriptOptions { max_operations: 10_000, ..ScriptOptions::default() };
    let err =
        Plans::new().load_with("let n = 0;\nwhile true { n += 1; }\n", &options).err().expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Limit);
    assert!(err.message.contains("too many operations (limit 10000)"), "{err}");
    assert_eq!(err.at.line, 2, "{err}");
}

#[test]
fn runaway_recursion_is_stopped_at_64_call_levels() {
    let err = Plans::new().load("fn f(x) { f(x + 1) }\nf(0)\n").err().expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Limit);
    assert!(err.message.contains("call stack too deep: recursion deeper than 64 levels"), "{err}");
    assert_eq!(err.at.line, 2, "{err}");
}

#[test]
fn recursion_through_closures_maps_and_deep_expressions_is_stopped_without_crashing() {
    // Each shape uses more native stack per call level than plain recursion does.
    for script in [
        "fn f(x) { 1 + (2 * (3 + (4 * (5 + (6 * (7 + (8 * (9 + [#{a: [f(x + 1)]}][0].a[0])))))))) }\nf(0)",
        "fn f(x) { let m = #{ g: |y| f(y) }; m.g.call(x + 1) }\nf(0)",
        "fn f(x) { [1].map(|v| f(x + v)) }\nf(0)",
        "fn f(x) { `${`${`${f(x + 1)}`}`}` }\nf(0)",
    ] {
        let err = Plans::new().load(script).err().expect("the plan must not load");
        assert!(err.message.contains("call stack too deep"), "{script}: {err}");
    }
}

#[test]
fn a_string_doubled_forever_hits_the_string_size_limit() {
    let err = Plans::new().load("let s = \"x\";\nloop { s += s; }\n").err().expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Limit);
    assert!(err.message.contains("string too long (limit 1 MiB)"), "{err}");
    assert_eq!(err.at.line, 2, "{err}");
}

#[test]
fn eval_is_refused() {
    let err = Plans::new().load("let x = eval(\"1\");\n").err().expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Syntax);
    assert!(err.message.contains("`eval` is not available"), "{err}");
    assert_eq!((err.at.line, err.at.column), (1, 9), "{err}");
}

#[test]
fn importing_an_absolute_path_is_refused() {
    let err = Plans::new().load("import \"/etc/passwd\" as p;\n").err().expect("the plan must not load");
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert!(err.message.contains("cannot import \"/etc/passwd\""), "{err}");
    assert!(err.message.contains("only modules of the plan's folder"), "{err}");
    assert_eq!(err.at.line, 1);
}

#[test]
fn importing_outside_the_plan_folder_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("x.rhai"), "fn f() { 1 }").unwrap();
    std::fs::create_dir(root.path().join("plans")).unwrap();
    let plan = root.path().join("plans/plan.rhai");
    std::fs::write(&plan, "import \"../x\" as x;\n").unwrap();
    let err = load_plan(&plan, inventory(), &ScriptOptions::default()).err().expect("the plan must not load");
    assert!(err.message.contains("cannot import \"../x\": the path leaves the plan's folder"), "{err}");
    assert_eq!((err.at.line, err.at.column), (1, 8), "{err}");
}

#[test]
fn a_symbolic_link_out_of_the_plan_folder_is_refused() {
    let plans = Plans::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.rhai"), "fn f() { 1 }").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.rhai"), plans.0.path().join("link.rhai")).unwrap();
    let err = plans.load("import \"link\" as l;\n").err().expect("the plan must not load");
    assert!(err.message.contains("resolves outside the plan's folder"), "{err}");
}

#[test]
fn there_is_no_function_to_open_files_sockets_or_processes() {
    for call in ["open_file(\"x\")", "read_file(\"/etc/passwd\")", "connect(\"10.0.0.1\", 22)", "system(\"ls\")"] {
        let err = Plans::new().load(&format!("{PRELUDE}{call};\nplan\n")).err().expect("the plan must not load");
        assert_eq!(err.kind, ScriptErrorKind::Runtime, "{call}: {err}");
        assert!(err.message.contains("Function not found"), "{call}: {err}");
        assert_eq!(err.at.line, 2, "{call}: {err}");
    }
}

#[test]
fn sleep_is_refused_in_favour_of_wait() {
    let err = Plans::new().load("sleep(100);\n").err().expect("the plan must not load");
    assert!(err.message.contains("sleep() is not available in plans: use wait(\"5s\")"), "{err}");
}

#[test]
fn host_calls_that_act_are_refused_while_the_plan_is_built() {
    let err = Plans::new()
        .load(&format!("{PRELUDE}dns_point(\"www\", \"10.0.0.1\");\nplan\n"))
        .err()
        .expect("the plan must not load");
    assert!(err.message.contains("dns_point() can only be called inside an action"), "{err}");
    assert_eq!(err.at.line, 2);
}
