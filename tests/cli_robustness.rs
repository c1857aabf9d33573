//! Robustness through the binary: no parseable input panics; files are read within
//! limits.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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

// ---- Files are read within limits ----

#[test]
fn an_endless_site_file_is_refused_at_its_limit() {
    let work = Workdir::with_site("");
    let started = Instant::now();
    let run = Run::from(
        Command::new(assert_cmd::cargo::cargo_bin("drplan"))
            .arg("--state")
            .arg(work.state())
            .args(["--site", "/dev/zero", "status"])
            .output()
            .unwrap(),
    )
    .fails(1);
    assert!(
        run.stderr.contains("cannot read /dev/zero: it is larger than 256 MiB, the limit for a site file"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn a_50_mb_plan_script_is_refused_naming_the_file_and_the_limit() {
    let lab = Lab::new(ONE_VM, "");
    let comment = format!("// {}\n", "x".repeat(1021));
    std::fs::write(&lab.plan, ONE_VM.to_string() + &comment.repeat(50 * 1024)).unwrap();
    let run = lab.run(&["check", lab.plan()]).fails(1);
    assert!(run.stderr.contains("plan.rhai"), "{}", run.stderr);
    assert!(run.stderr.contains("it is larger than 4 MiB, the limit for a plan script"), "{}", run.stderr);
}

#[test]
fn an_oversized_drplan_toml_is_refused_naming_the_file_and_the_limit() {
    let lab = Lab::new(ONE_VM, "");
    std::fs::write(lab.work.path().join("drplan.toml"), format!("# {}\n", "x".repeat(2 * 1024 * 1024))).unwrap();
    let run = lab.run(&["check", lab.plan()]).fails(1);
    assert!(run.stderr.contains("drplan.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("larger than 1 MiB, the limit for a plan folder's drplan.toml"), "{}", run.stderr);
}
