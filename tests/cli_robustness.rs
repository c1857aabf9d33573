//! Robustness through the binary: no parseable input panics.

mod common;

use std::path::PathBuf;

use common::{CONTOSO_SITE, Run, Workdir};

/// One VM, no manual step: a run that ends by itself.
const ONE_VM: &str = "let plan = recovery_plan(\"one\", #{ source: \"primary\", target: \"secondary\" });\n\
                      plan.group(\"web\", [\"web01\"]);\nplan\n";

/// A working folder with the contoso site (plus `site_extra`) and `plan.rhai`.
struct Lab {
    work: Workdir,
    plan: PathBuf,
}

impl Lab {
    fn new(plan: &str, site_extra: &str) -> Lab {
        let work = Workdir::with_site(&(std::fs::read_to_string(CONTOSO_SITE).unwrap() + site_extra));
        let path = work.path().join("plan.rhai");
        std::fs::write(&path, plan).unwrap();
        Lab { work, plan: path }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.work.run(args)
    }

    fn plan(&self) -> &str {
        self.plan.to_str().unwrap()
    }
}

// ---- No panic on any parseable input ----

#[test]
fn advancing_the_clock_past_the_longest_duration_is_a_usage_error_naming_the_limit() {
    let work = Workdir::contoso();
    let run = work.run(&["advance", "1000000000d"]).fails(2);
    assert!(run.stderr.contains("longer than 3650d (10 years)"), "{}", run.stderr);
    work.run(&["advance", "3650d"]).ok();
}

#[test]
fn an_action_waiting_past_the_longest_duration_fails_the_run_with_a_clear_error() {
    let plan = ONE_VM.replace("[\"web01\"]);", "[\"web01\"]).post(|ctx| wait(\"1000000000d\"));");
    let lab = Lab::new(&plan, "");
    for args in [&["dry-run", lab.plan()][..], &["failover", lab.plan(), "--kind", "test"]] {
        let run = lab.run(args).fails(1);
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(output.contains("wait: bad duration \"1000000000d\": longer than 3650d (10 years)"), "{output}");
    }
}

#[test]
fn more_than_100_retries_is_a_script_error_at_the_call() {
    let plan = ONE_VM.replace("[\"web01\"]);", "[\"web01\"]).retry(101, \"1s\");");
    let lab = Lab::new(&plan, "");
    let run = lab.run(&["check", lab.plan()]).fails(1);
    assert!(run.stderr.contains("plan.rhai:2:"), "{}", run.stderr);
    assert!(run.stderr.contains("retry: the number of retries must be 0 to 100, not 101"), "{}", run.stderr);
}

#[test]
fn the_longest_backoff_doubled_a_hundred_times_is_waited_without_overflow() {
    let plan = ONE_VM.replace("[\"web01\"]);", "[\"web01\"]).retry(100, \"1000d\");");
    let lab = Lab::new(&plan, "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"web01\"\n");
    let run = lab.run(&["dry-run", lab.plan()]).fails(1);
    assert!(run.stdout.contains("vm.failed"), "{}", run.stdout);
}
