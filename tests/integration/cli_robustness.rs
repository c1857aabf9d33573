//! Robustness through the binary: a damaged journal is reported, never taken for an
//! empty one; no parseable input panics; files are read within limits; approvals are
//! refused unless a live run waits for one; output into a closed pipe is no failure;
//! the commands that look work on a read-only state directory and change no byte of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::util::{CONTOSO_SITE, Run, Workdir};

/// One VM, no manual step: a run that ends by itself.
const ONE_VM: &str = "let plan = recovery_plan(\"one\", #{ source: \"primary\", target: \"secondary\" });\n\
                      plan.group(\"web\", [\"web01\"]);\nplan\n";

/// One VM, then a manual step that waits `timeout`.
fn with_manual(timeout: &str) -> String {
    format!(
        "let plan = recovery_plan(\"one\", #{{ source: \"primary\", target: \"secondary\" }});\n\
         plan.group(\"web\", [\"web01\"]);\n\
         plan.manual(\"Check the web tier\", #{{ timeout: \"{timeout}\" }});\nplan\n"
    )
}

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

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drplan"));
        command.arg("--state").arg(self.work.state()).arg("--site").arg(&self.work.site).env_remove("RUST_LOG");
        command
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn journal(&self) -> PathBuf {
        self.work.state().join("journal.db")
    }

    /// A test failover of the plan that succeeds; its run id.
    fn drill(&self) -> String {
        self.run(&["failover", self.plan(), "--kind", "test"]).ok();
        self.last_run().expect("a run")
    }

    fn last_run(&self) -> Option<String> {
        let runs = self.run(&["runs", "--format", "json"]);
        if runs.code != 0 {
            return None;
        }
        runs.json().as_array().and_then(|a| a.last()).map(|r| r["id"].as_str().unwrap().to_string())
    }

    /// Waits until the last run's journal shows a manual step waiting; its run id.
    fn wait_for_manual_step(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(id) = self.last_run() {
                let show = self.run(&["show", &id, "--format", "json"]);
                if show.code == 0
                    && show.json()["steps"].as_array().unwrap().iter().any(|e| e["kind"] == "manual.waiting")
                {
                    return id;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no manual step waiting within 30 s");
    }

    fn approvals(&self) -> i64 {
        let conn = rusqlite::Connection::open(self.journal()).unwrap();
        conn.query_row("SELECT count(*) FROM approvals", [], |r| r.get(0)).unwrap()
    }
}

fn damage_of_run(stderr: &str, id: &str) {
    let expected = format!("the simulation (sim.db) shows calls of run {id} that journal.db does not have");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("it is damaged or was replaced"), "{stderr}");
    assert!(stderr.contains("drplan leaves it as it is"), "{stderr}");
}

// ---- The journal's damage is reported (a journal is never repaired) ----

#[test]
fn an_emptied_journal_is_reported_as_damage_never_as_no_runs() {
    let lab = Lab::new(ONE_VM, "");
    let id = lab.drill();
    std::fs::write(lab.journal(), b"").unwrap();
    // Another VM: web01's test failover is not cleaned up yet.
    let other = lab.work.path().join("other.rhai");
    std::fs::write(&other, ONE_VM.replace("web01", "web02")).unwrap();
    let other = other.to_str().unwrap();
    for args in [&["runs"][..], &["show", &id], &["failover", other, "--kind", "test"], &["approve", &id]] {
        let run = lab.run(args).fails(1);
        assert!(run.stderr.contains("journal.db: it is empty (0 bytes), and"), "{args:?}: {}", run.stderr);
        damage_of_run(&run.stderr, &id);
        assert!(!run.stdout.contains("no runs yet"), "{}", run.stdout);
    }
    assert_eq!(std::fs::metadata(lab.journal()).unwrap().len(), 0, "the damaged journal is left as it was");
}

#[test]
fn a_deleted_journal_is_reported_as_damage() {
    let lab = Lab::new(ONE_VM, "");
    let id = lab.drill();
    std::fs::remove_file(lab.journal()).unwrap();
    let run = lab.run(&["runs"]).fails(1);
    assert!(run.stderr.contains("journal.db: it does not exist, and"), "{}", run.stderr);
    damage_of_run(&run.stderr, &id);
    lab.run(&["failover", lab.plan(), "--kind", "test"]).fails(1);
    assert!(!lab.journal().exists(), "no new journal is started in its place");
}

#[test]
fn a_truncated_journal_is_reported_as_damage_naming_the_file() {
    let lab = Lab::new(ONE_VM, "");
    let id = lab.drill();
    let len = std::fs::metadata(lab.journal()).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(lab.journal()).unwrap().set_len(len / 2).unwrap();
    for args in [&["runs"][..], &["show", &id]] {
        let run = lab.run(args).fails(1);
        assert!(run.stderr.contains("journal.db: the file is damaged"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(std::fs::metadata(lab.journal()).unwrap().len(), len / 2);
}

#[test]
fn a_journal_whose_write_ahead_log_was_deleted_is_reported_as_damage() {
    let lab = Lab::new(&with_manual("2h"), "");
    let mut child = lab.spawn(&["failover", lab.plan(), "--kind", "test"]);
    let id = lab.wait_for_manual_step();
    // Killed while it waits: its run and events are in the journal's write-ahead log.
    child.kill().unwrap();
    child.wait().unwrap();
    let wal = lab.work.state().join("journal.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the run is in the write-ahead log");
    std::fs::remove_file(&wal).unwrap();
    let _ = std::fs::remove_file(lab.work.state().join("journal.db-shm"));
    for args in [&["runs"][..], &["show", &id], &["resume", &id]] {
        let run = lab.run(args).fails(1);
        damage_of_run(&run.stderr, &id);
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
    let run = Run::new(
        "drplan --site /dev/zero status".into(),
        Command::new(env!("CARGO_BIN_EXE_drplan"))
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
    std::fs::write(&lab.plan, ONE_VM.to_string() + comment.repeat(50 * 1024).as_str()).unwrap();
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

// ---- Approvals, unknown runs, closed pipes ----

#[test]
fn r21_approving_a_run_that_failed_is_refused_and_stores_nothing() {
    // The manual step times out (1 modelled minute): the run fails with the step unanswered.
    let lab = Lab::new(&with_manual("1m"), "");
    let failed = lab.run(&["failover", lab.plan(), "--kind", "test"]).fails(1);
    assert!(failed.stdout.contains("was not approved within 1m"), "{}", failed.stdout);
    let id = lab.last_run().unwrap();
    let run = lab.run(&["approve", &id]).fails(1);
    assert!(run.stderr.contains(&format!("run {id} is failed")), "{}", run.stderr);
    assert_eq!(lab.approvals(), 0, "nothing kept for a later resume");
}

#[test]
fn r21_approving_an_interrupted_run_is_refused_and_stores_nothing() {
    let lab = Lab::new(&with_manual("2h"), "");
    let mut child = lab.spawn(&["failover", lab.plan(), "--kind", "test"]);
    let id = lab.wait_for_manual_step();
    child.kill().unwrap();
    child.wait().unwrap();
    let run = lab.run(&["approve", &id]).fails(1);
    assert!(run.stderr.contains(&format!("run {id} was interrupted")), "{}", run.stderr);
    assert_eq!(lab.approvals(), 0, "nothing kept for a later resume");
}

#[test]
fn an_unknown_run_is_a_failure_not_bad_usage() {
    let lab = Lab::new(ONE_VM, "");
    lab.drill();
    for command in ["show", "approve", "resume"] {
        let run = lab.run(&[command, "20990101-000000-0000"]).fails(1);
        assert!(run.stderr.contains("no run \"20990101-000000-0000\""), "{command}: {}", run.stderr);
    }
}

#[test]
fn output_into_a_pipe_nobody_reads_is_no_failure() {
    let lab = Lab::new(ONE_VM, "");
    let id = lab.drill();
    for args in [&["show", &id][..], &["status"], &["runs"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = lab.command().args(args).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        let run = Run::new("drplan".into(), output).ok();
        assert_eq!(run.stderr, "", "{args:?}");
    }
}

// ---- Looking at a read-only state directory ----

/// Every file of `dir`: its bytes and when it was last changed.
fn files_of(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                (std::fs::read(entry.path()).unwrap(), meta.modified().unwrap()),
            )
        })
        .collect()
}

/// How this machine can make a directory read-only for a child process.
enum ReadOnly {
    /// Permission bits, which stop a process that is not root.
    Permissions,
    /// A read-only bind mount in a mount namespace of the child's own (root).
    BindMount,
    /// Neither: only the unchanged bytes show that nothing was written.
    Unenforced,
}

fn read_only_means() -> ReadOnly {
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !root {
        return ReadOnly::Permissions;
    }
    let probe = tempfile::tempdir().unwrap();
    let mounted = Command::new("unshare")
        .args(["--mount", "sh", "-c", "mount --bind -o ro \"$0\" \"$0\" && ! touch \"$0/x\" 2>/dev/null"])
        .arg(probe.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted { ReadOnly::BindMount } else { ReadOnly::Unenforced }
}

#[test]
fn looking_at_a_read_only_state_directory_works_and_changes_no_byte() {
    let lab = Lab::new(ONE_VM, "");
    let id = lab.drill();
    let state = lab.work.state();
    let before = files_of(&state);
    assert!(before.contains_key("journal.db") && before.contains_key("sim.db"), "{:?}", before.keys());
    let means = read_only_means();
    let set_writable = |writable: bool| {
        for path in std::iter::once(state.clone()).chain(before.keys().map(|name| state.join(name))) {
            let mut permissions = std::fs::metadata(&path).unwrap().permissions();
            permissions.set_readonly(!writable);
            std::fs::set_permissions(&path, permissions).unwrap();
        }
    };
    if let ReadOnly::Permissions = means {
        set_writable(false);
    }
    if let ReadOnly::Unenforced = means {
        eprintln!("note: cannot make the state directory read-only here; checking only that no byte changes");
    }
    let looks: [&[&str]; 6] = [
        &["status"],
        &["status", "web01", "--format", "json"],
        &["runs"],
        &["show", &id],
        &["points", "web01"],
        &["jobs"],
    ];
    let mut outputs = Vec::new();
    for args in looks {
        let mut command = match means {
            ReadOnly::BindMount => {
                let mut command = Command::new("unshare");
                command
                    .args(["--mount", "sh", "-c", "mount --bind -o ro \"$0\" \"$0\" && exec \"$@\""])
                    .arg(&state)
                    .arg(env!("CARGO_BIN_EXE_drplan"))
                    .arg("--state")
                    .arg(&state)
                    .arg("--site")
                    .arg(&lab.work.site)
                    .env_remove("RUST_LOG");
                command
            }
            _ => lab.command(),
        };
        let output = command.args(args).stdin(Stdio::null()).output().unwrap();
        outputs.push((args, Run::new("drplan".into(), output)));
    }
    if let ReadOnly::Permissions = means {
        set_writable(true);
    }
    for (args, run) in outputs {
        let run = run.ok();
        assert!(!run.stdout.is_empty(), "{args:?}");
    }
    // (Where the directory stays writable, SQLite may add its empty shared-memory index
    // beside a database it reads: the files that were there are what must not change.)
    let after = files_of(&state);
    for (name, (bytes, modified)) in &before {
        let (now, changed) = after.get(name).unwrap_or_else(|| panic!("{name} was removed"));
        assert!(now == bytes, "{name} changed");
        assert_eq!(changed, modified, "{name} was written");
    }
}
