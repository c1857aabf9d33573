//! Robustness through the binary: a damaged journal is reported, never taken for an
//! empty one; no parseable input panics; files are read within limits; approvals are
//! refused unless a live run waits for one; output into a closed pipe is no failure;
//! the commands that look work on a read-only state directory and change no byte of it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::util::Workdir;

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

/// The drill of the folder's plan, as the tests below run it.
const DRILL: [&str; 4] = ["failover", "plan.rhai", "--kind", "test"];

fn journal(work: &Workdir) -> PathBuf {
    work.state().join("journal.db")
}

/// A drill of the folder's plan that succeeds; its run id.
fn drill(work: &Workdir) -> String {
    work.run(&DRILL).ok();
    work.last_run().expect("a run")
}

/// A drill of the folder's plan killed while its manual step waits, as a crash would
/// kill it; its run id.
fn killed_at_manual_step(work: &Workdir) -> String {
    let child = work.drplan(DRILL).spawn();
    let id = work.wait_for_event("manual.waiting");
    child.kill();
    id
}

/// How many approvals the journal keeps.
fn approvals(work: &Workdir) -> i64 {
    let conn = rusqlite::Connection::open(journal(work)).unwrap();
    conn.query_row("SELECT count(*) FROM approvals", [], |r| r.get(0)).unwrap()
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
    // Another VM: web01's test failover is not cleaned up yet.
    let work = Workdir::contoso().plan(ONE_VM).file("other.rhai", &ONE_VM.replace("web01", "web02"));
    let id = drill(&work);
    std::fs::write(journal(&work), b"").unwrap();
    for args in [&["runs"][..], &["show", &id], &["failover", "other.rhai", "--kind", "test"], &["approve", &id]] {
        let run = work.run(args).fails(1);
        assert!(run.stderr.contains("journal.db: it is empty (0 bytes), and"), "{args:?}: {}", run.stderr);
        damage_of_run(&run.stderr, &id);
        assert!(!run.stdout.contains("no runs yet"), "{}", run.stdout);
    }
    assert_eq!(std::fs::metadata(journal(&work)).unwrap().len(), 0, "the damaged journal is left as it was");
}

#[test]
fn a_deleted_journal_is_reported_as_damage() {
    let work = Workdir::contoso().plan(ONE_VM);
    let id = drill(&work);
    std::fs::remove_file(journal(&work)).unwrap();
    let run = work.run(&["runs"]).fails(1);
    assert!(run.stderr.contains("journal.db: it does not exist, and"), "{}", run.stderr);
    damage_of_run(&run.stderr, &id);
    work.run(&DRILL).fails(1);
    assert!(!journal(&work).exists(), "no new journal is started in its place");
}

#[test]
fn a_truncated_journal_is_reported_as_damage_naming_the_file() {
    let work = Workdir::contoso().plan(ONE_VM);
    let id = drill(&work);
    let len = std::fs::metadata(journal(&work)).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(journal(&work)).unwrap().set_len(len / 2).unwrap();
    for args in [&["runs"][..], &["show", &id]] {
        let run = work.run(args).fails(1);
        assert!(run.stderr.contains("journal.db: the file is damaged"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(std::fs::metadata(journal(&work)).unwrap().len(), len / 2);
}

#[test]
fn a_journal_whose_write_ahead_log_was_deleted_is_reported_as_damage() {
    let work = Workdir::contoso().plan(&with_manual("2h"));
    // Killed while it waits: its run and events are in the journal's write-ahead log.
    let id = killed_at_manual_step(&work);
    let wal = work.state().join("journal.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the run is in the write-ahead log");
    std::fs::remove_file(&wal).unwrap();
    let _ = std::fs::remove_file(work.state().join("journal.db-shm"));
    for args in [&["runs"][..], &["show", &id], &["resume", &id]] {
        let run = work.run(args).fails(1);
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
    let work = Workdir::contoso().plan(&plan);
    for args in [&["dry-run", "plan.rhai"][..], &DRILL] {
        let run = work.run(args).fails(1);
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(output.contains("wait: bad duration \"1000000000d\": longer than 3650d (10 years)"), "{output}");
    }
}

#[test]
fn more_than_100_retries_is_a_script_error_at_the_call() {
    let plan = ONE_VM.replace("[\"web01\"]);", "[\"web01\"]).retry(101, \"1s\");");
    let work = Workdir::contoso().plan(&plan);
    let run = work.run(&["check", "plan.rhai"]).fails(1);
    assert!(run.stderr.contains("plan.rhai:2:"), "{}", run.stderr);
    assert!(run.stderr.contains("retry: the number of retries must be 0 to 100, not 101"), "{}", run.stderr);
}

#[test]
fn the_longest_backoff_doubled_a_hundred_times_is_waited_without_overflow() {
    let plan = ONE_VM.replace("[\"web01\"]);", "[\"web01\"]).retry(100, \"1000d\");");
    let boot_failure = "\n[[faults]]\nkind = \"boot-failure\"\nvm = \"web01\"\n";
    let work = Workdir::contoso().site_edit(|site| site + boot_failure).plan(&plan);
    let run = work.run(&["dry-run", "plan.rhai"]).fails(1);
    assert!(run.stdout.contains("vm.failed"), "{}", run.stdout);
}

// ---- Files are read within limits ----

#[test]
fn an_endless_site_file_is_refused_at_its_limit() {
    let work = Workdir::empty();
    let started = Instant::now();
    let run = work.drplan(["status"]).site_file(Path::new("/dev/zero")).fails(1);
    assert!(
        run.stderr.contains("cannot read /dev/zero: it is larger than 256 MiB, the limit for a site file"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn a_50_mb_plan_script_is_refused_naming_the_file_and_the_limit() {
    let comment = format!("// {}\n", "x".repeat(1021));
    let work = Workdir::contoso().plan(&(ONE_VM.to_string() + comment.repeat(50 * 1024).as_str()));
    let run = work.run(&["check", "plan.rhai"]).fails(1);
    assert!(run.stderr.contains("plan.rhai"), "{}", run.stderr);
    assert!(run.stderr.contains("it is larger than 4 MiB, the limit for a plan script"), "{}", run.stderr);
}

#[test]
fn an_oversized_drplan_toml_is_refused_naming_the_file_and_the_limit() {
    let config = format!("# {}\n", "x".repeat(2 * 1024 * 1024));
    let work = Workdir::contoso().plan(ONE_VM).file("drplan.toml", &config);
    let run = work.run(&["check", "plan.rhai"]).fails(1);
    assert!(run.stderr.contains("drplan.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("larger than 1 MiB, the limit for a plan folder's drplan.toml"), "{}", run.stderr);
}

// ---- Approvals, unknown runs, closed pipes ----

#[test]
fn r21_approving_a_run_that_failed_is_refused_and_stores_nothing() {
    // The manual step times out (1 modelled minute): the run fails with the step unanswered.
    let work = Workdir::contoso().plan(&with_manual("1m"));
    let failed = work.run(&DRILL).fails(1);
    assert!(failed.stdout.contains("was not approved within 1m"), "{}", failed.stdout);
    let id = work.last_run().unwrap();
    let run = work.run(&["approve", &id]).fails(1);
    assert!(run.stderr.contains(&format!("run {id} is failed")), "{}", run.stderr);
    assert_eq!(approvals(&work), 0, "nothing kept for a later resume");
}

#[test]
fn r21_approving_an_interrupted_run_is_refused_and_stores_nothing() {
    let work = Workdir::contoso().plan(&with_manual("2h"));
    let id = killed_at_manual_step(&work);
    let run = work.run(&["approve", &id]).fails(1);
    assert!(run.stderr.contains(&format!("run {id} was interrupted")), "{}", run.stderr);
    assert_eq!(approvals(&work), 0, "nothing kept for a later resume");
}

#[test]
fn an_unknown_run_is_a_failure_not_bad_usage() {
    let work = Workdir::contoso().plan(ONE_VM);
    drill(&work);
    for command in ["show", "approve", "resume"] {
        let run = work.run(&[command, "20990101-000000-0000"]).fails(1);
        assert!(run.stderr.contains("no run \"20990101-000000-0000\""), "{command}: {}", run.stderr);
    }
}

#[test]
fn output_into_a_pipe_nobody_reads_is_no_failure() {
    let work = Workdir::contoso().plan(ONE_VM);
    let id = drill(&work);
    for args in [&["show", &id][..], &["status"], &["runs"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let run = work.drplan(args).stdout(writer).run().ok();
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

/// The shell command that mounts the directory `$0` read-only over itself.
const MOUNT_READ_ONLY: &str = "mount --bind -o ro \"$0\" \"$0\"";

fn read_only_means() -> ReadOnly {
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !root {
        return ReadOnly::Permissions;
    }
    let probe = tempfile::tempdir().unwrap();
    let mounted = Command::new("unshare")
        .args(["--mount", "sh", "-c", &format!("{MOUNT_READ_ONLY} && ! touch \"$0/x\" 2>/dev/null")])
        .arg(probe.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted { ReadOnly::BindMount } else { ReadOnly::Unenforced }
}

#[test]
fn looking_at_a_read_only_state_directory_works_and_changes_no_byte() {
    let work = Workdir::contoso().plan(ONE_VM);
    let id = drill(&work);
    let state = work.state();
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
        let command = work.drplan(args);
        let command = match means {
            // In a mount namespace of its own, where the state directory is read-only.
            ReadOnly::BindMount => command.wrapped([
                OsStr::new("unshare"),
                OsStr::new("--mount"),
                OsStr::new("sh"),
                OsStr::new("-c"),
                OsStr::new(&format!("{MOUNT_READ_ONLY} && exec \"$@\"")),
                state.as_os_str(),
            ]),
            _ => command,
        };
        outputs.push((args, command.run()));
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
