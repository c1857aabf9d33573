//! Issue 12 §5: every command block of README.md runs as written, in order, on a fresh
//! copy of the project, and succeeds. The README is the user's door; this keeps it open.
//!
//! How the blocks are read, which is how a reader would run them:
//! - the ```` ```sh ```` blocks, in order, on one copy of the project's `plans/` folder
//!   (without any state), each block starting at the copy's root;
//! - `drplan ARGS`, and `cargo run [-q] -- ARGS`, run the binary (`alias drplan=…` is how
//!   the README gets it); `cd DIR`; `rm -rf .drplan`; `> FILE` sends stdout to a file;
//! - `RUN` stands for the latest run's id, as `drplan runs` prints it;
//! - a command that waits on a manual step gets it approved from another process, as the
//!   README says a person does: `drplan approve RUN`;
//! - `scripts/test.sh` and `cargo bench` are the test suite and the benchmarks: not run
//!   here. Any other line fails the test, so the README cannot gain a command this test
//!   does not run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../../README.md");
const BINARY: &str = env!("CARGO_BIN_EXE_drplan");
/// How long one command may take, approvals included, before the test fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The lines of each ```sh block of `markdown`, with their line numbers.
fn shell_blocks(markdown: &str) -> Vec<Vec<(usize, String)>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<(usize, String)>> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), line) => block.push((index + 1, line.to_string())),
            (None, _) => {}
        }
    }
    blocks
}

/// What a README line asks for.
#[derive(Debug, PartialEq)]
enum Step {
    Drplan {
        args: Vec<String>,
        to_file: Option<String>,
    },
    Cd(String),
    RemoveState,
    /// The test suite or the benchmarks, which this test is part of or does not time.
    NotHere,
    Nothing,
}

fn step(line: &str) -> Result<Step, String> {
    let words = shlex::split(line).ok_or("unbalanced quotes")?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // `NAME=value cargo bench`: the environment of a command this test does not run.
    let is_assignment = |w: &&str| {
        w.split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    };
    let assignments = words.iter().take_while(|w| is_assignment(w)).count();
    let (env, words) = words.split_at(assignments);
    if !env.is_empty() && !matches!(words, ["cargo", "bench", ..]) {
        return Err("an environment for a command is not supported here".into());
    }
    Ok(match words {
        [] => Step::Nothing,
        ["alias", alias] if alias.starts_with("drplan=") => Step::Nothing,
        ["scripts/test.sh", ..] | ["cargo", "bench", ..] => Step::NotHere,
        ["cd", dir] => Step::Cd(dir.to_string()),
        ["rm", "-rf", ".drplan"] => Step::RemoveState,
        ["drplan", args @ ..] | ["cargo", "run", "--", args @ ..] | ["cargo", "run", "-q", "--", args @ ..] => {
            match args {
                [args @ .., ">", file] => Step::Drplan { args: owned(args), to_file: Some(file.to_string()) },
                args => Step::Drplan { args: owned(args), to_file: None },
            }
        }
        _ => return Err("not a command this test knows how to run".into()),
    })
}

fn owned(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A fresh copy of the project, as far as the README's commands reach: `plans/`,
/// without the state a developer's own runs left there.
fn fresh_copy(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    copy_dir(&from, &to.join("plans"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".drplan" || name == "run.svg" || name == "drplan.d.rhai" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn drplan(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command.args(args).current_dir(dir).env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

fn latest_run(dir: &Path) -> Option<String> {
    let out = drplan(dir, &["runs", "--format", "json"]).output().ok()?;
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    runs.as_array()?.last()?["id"].as_str().map(String::from)
}

/// Runs one README command to its end, approving manual steps as they come; its stdout.
fn run(dir: &Path, args: &[String], at: usize) -> String {
    let latest = latest_run(dir);
    let args: Vec<&str> = args
        .iter()
        .map(|arg| if arg == "RUN" { latest.as_deref().expect("RUN, but no run yet") } else { arg.as_str() })
        .collect();
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut child =
        drplan(dir, &args).stdout(out_file.reopen().unwrap()).stderr(err_file.reopen().unwrap()).spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < COMMAND_LIMIT, "README.md:{at}: drplan {args:?} did not finish in time");
        // A person approves the manual step a run waits on; when none waits, approve is
        // refused and changes nothing.
        if let Some(id) = latest_run(dir).filter(|id| Some(id) != latest.as_ref()) {
            let _ = drplan(dir, &["approve", &id]).output();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(out_file.path()).unwrap();
    let stderr = std::fs::read_to_string(err_file.path()).unwrap();
    assert!(status.success(), "README.md:{at}: drplan {args:?} failed ({status}):\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "README.md:{at}: {stderr}");
    stdout
}

#[test]
fn every_command_block_of_the_readme_runs_as_written_in_order() {
    let blocks = shell_blocks(README);
    assert!(blocks.len() >= 5, "the README's blocks: {blocks:?}");
    let root = tempfile::tempdir().unwrap();
    fresh_copy(root.path());
    let mut ran = 0;
    for block in &blocks {
        let mut dir: PathBuf = root.path().to_path_buf();
        for (at, line) in block {
            match step(line).unwrap_or_else(|e| panic!("README.md:{at}: {line:?}: {e}")) {
                Step::Drplan { args, to_file } => {
                    let stdout = run(&dir, &args, *at);
                    println!("README.md:{at}: ok: drplan {}", args.join(" "));
                    if let Some(file) = to_file {
                        std::fs::write(dir.join(file), stdout).unwrap();
                    }
                    ran += 1;
                }
                Step::Cd(to) => {
                    dir = dir.join(to);
                    assert!(dir.is_dir(), "README.md:{at}: no directory {}", dir.display());
                }
                Step::RemoveState => {
                    assert!(dir.starts_with(root.path()));
                    let _ = std::fs::remove_dir_all(dir.join(".drplan"));
                }
                Step::NotHere | Step::Nothing => {}
            }
        }
    }
    // What the blocks did is visible: the drill's notes, and the cycle's last run.
    let contoso = root.path().join("plans/contoso");
    assert!(root.path().join("drplan.d.rhai").is_file(), "drplan defs > drplan.d.rhai, from the root");
    assert!(contoso.join("run.svg").is_file(), "drplan show RUN --svg run.svg");
    let status = drplan(&contoso, &["status", "sql01", "--format", "json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["vms"][0]["active_site"], "primary", "failed back home at the end: {status:#}");
    assert!(ran >= 25, "only {ran} commands ran");
}

#[test]
fn the_readme_reader_knows_its_commands_and_refuses_others() {
    let drplan = |words: &[&str]| Step::Drplan { args: owned(words), to_file: None };
    assert_eq!(step("drplan status --wide   # a comment").unwrap(), drplan(&["status", "--wide"]));
    assert_eq!(
        step("cargo run -q -- defs > d.rhai").unwrap(),
        Step::Drplan { args: owned(&["defs"]), to_file: Some("d.rhai".into()) }
    );
    assert_eq!(
        step("drplan cleanup drill.rhai --notes \"Q3 drill: all green\"").unwrap(),
        drplan(&["cleanup", "drill.rhai", "--notes", "Q3 drill: all green"])
    );
    assert_eq!(step("# only a comment").unwrap(), Step::Nothing);
    assert!(step("curl http://example.org | sh").is_err());
    assert!(step("rm -rf /").is_err());
    assert_eq!(step("DRPLAN_BENCH_BIG=1 cargo bench --bench scale").unwrap(), Step::NotHere);
    assert!(step("RUST_LOG=debug drplan status").is_err());
}
