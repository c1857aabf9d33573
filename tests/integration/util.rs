//! The builder the integration tests drive the real `drplan` binary with, in the spirit of
//! just's `Test::new().justfile(…).stderr(…).failure()`:
//!
//! ```text
//! let work = Workdir::contoso().site_edit(|site| site + FAULT).plan(PLAN);
//! work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).fails(1);
//! let id = work.last_run().unwrap();
//! let child = work.drplan(["resume", &id, "--yes"]).env("KEY", "value").spawn();
//! let run = child.wait().ok();
//! ```
//!
//! A `Workdir` is an operator's working folder in a temporary directory: the state
//! directory `state/`, a site file, plans and whatever else a test writes there. Every
//! command runs in it (so `plan.rhai` names the folder's plan) with `--state` and `--site`.
//! `Workdir::drplan` makes one command (`Drplan`, with its own environment or site file if
//! need be, its stdout sent elsewhere, or run through a wrapper such as `unshare`), run to
//! its end (`run`, `fails`) or in the background (`spawn`: a `Running`, waited for at most
//! `WAIT` and killed if dropped). `Workdir::last_run` and `wait_for_event` find the run a
//! command started. A `Run` holds the exit code and what was printed; `ok` and `fails`
//! check the code and show both streams when it is wrong, and any run whose stderr says
//! "panicked" fails the test.
//!
//! `Workdir::contoso`, `with_site`, `run`, `state`, `path` and the `site` field, `Run` (its
//! fields `code`, `stdout`, `stderr`; `ok`, `fails`, `json`) and `CONTOSO_SITE` keep the
//! names the former `tests/common` helper gave them, so that a test file written against
//! it becomes a module here by replacing `mod common; use common::…` with
//! `use crate::util::…` (and a `mod` line in `main.rs`). `run` is `drplan(args).run()`.
//! One thing differs: commands run in the folder, no longer in the crate's root.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The example plan folder: a site, plans, `drplan.toml` and a hook script.
pub const CONTOSO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plans/contoso");
pub const CONTOSO_SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plans/contoso/site.toml");

/// A `drplan.toml` whose real runs record their DNS changes without sending them: what a
/// plan that changes DNS needs in a folder with no DNS servers (without `[dns]`, such a
/// run is refused, or its DNS steps fail).
pub const RECORD_DNS: &str = "[dns]\nmode = \"record\"\n";

/// How long `Running::wait` waits for a background run before failing the test.
const WAIT: Duration = Duration::from_secs(120);

/// How long `Workdir::wait_for_event` waits for a run to reach an event.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// A temporary state directory and a site file, as an operator's working folder.
pub struct Workdir {
    dir: TempDir,
    /// The site file every command gets as `--site`.
    pub site: PathBuf,
    /// Environment every command gets.
    env: Vec<(OsString, OsString)>,
}

impl Workdir {
    /// An empty folder. Its site file is `site.toml` in it, for the test to write.
    pub fn empty() -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site.toml");
        Workdir { dir, site, env: Vec::new() }
    }

    /// A folder whose commands read the contoso example's site file where it is.
    pub fn contoso() -> Workdir {
        Workdir { site: PathBuf::from(CONTOSO_SITE), ..Workdir::empty() }
    }

    /// A folder whose site file has `text`.
    pub fn with_site(text: &str) -> Workdir {
        Workdir::empty().file("site.toml", text)
    }

    /// A copy of the contoso example folder: site, plans, `drplan.toml` and hooks.
    pub fn contoso_plans() -> Workdir {
        let work = Workdir::empty();
        copy_folder(Path::new(CONTOSO), work.path());
        work
    }

    /// The site file rewritten by `edit`, as the folder's `site.toml`.
    pub fn site_edit(mut self, edit: impl FnOnce(String) -> String) -> Workdir {
        let text = read(&self.site);
        self.site = self.path().join("site.toml");
        self.file("site.toml", &edit(text))
    }

    /// `text` as the folder's `plan.rhai`.
    pub fn plan(self, text: &str) -> Workdir {
        self.file("plan.rhai", text)
    }

    /// `text` as the folder's file `name`.
    pub fn file(self, name: &str, text: &str) -> Workdir {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    /// An environment variable for every command in this folder.
    pub fn env(mut self, key: &str, value: &str) -> Workdir {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// `drplan ARGS` in this folder, to be run.
    pub fn drplan<I, S>(&self, args: I) -> Drplan<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Drplan {
            work: self,
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            site: Some(self.site.clone()),
            stdout: None,
            wrapper: Vec::new(),
        }
    }

    /// Runs `drplan ARGS` to its end, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Run {
        self.drplan(args).run()
    }

    /// The id of the last run, from `drplan runs --format json`; `None` before the first.
    pub fn last_run(&self) -> Option<String> {
        let runs = self.run(&["runs", "--format", "json"]);
        if runs.code != 0 {
            return None;
        }
        runs.json().as_array()?.last()?["id"].as_str().map(String::from)
    }

    /// Waits until the last run's journal shows an event of `kind`; that run's id.
    pub fn wait_for_event(&self, kind: &str) -> String {
        self.wait_for(kind, |event| event["kind"] == kind)
    }

    /// Waits until the last run's journal shows an event of `kind` for `vm`; that run's id.
    pub fn wait_for_vm_event(&self, kind: &str, vm: &str) -> String {
        self.wait_for(&format!("{kind} of {vm}"), |event| event["kind"] == kind && event["vm"] == vm)
    }

    /// Waits until the last run's journal shows an event that is `wanted`, named `what`
    /// in the message of a test that waits in vain.
    fn wait_for(&self, what: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> String {
        let deadline = Instant::now() + EVENT_WAIT;
        while Instant::now() < deadline {
            if let Some(id) = self.last_run() {
                let show = self.run(&["show", &id, "--format", "json"]);
                if show.code == 0 && show.json()["steps"].as_array().unwrap().iter().any(&wanted) {
                    return id;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {what} event within {EVENT_WAIT:?}");
    }
}

/// One `drplan` command in a `Workdir`.
pub struct Drplan<'a> {
    work: &'a Workdir,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    site: Option<PathBuf>,
    /// Where stdout goes instead of into the `Run`.
    stdout: Option<Stdio>,
    /// A program and its arguments that run `drplan` (the binary's path and arguments
    /// come after them), or nothing.
    wrapper: Vec<OsString>,
}

impl Drplan<'_> {
    /// An environment variable for this command (over the folder's).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--site PATH` instead of the folder's site file.
    pub fn site_file(mut self, path: &Path) -> Self {
        self.site = Some(path.to_path_buf());
        self
    }

    /// No `--site`: drplan looks for the site file itself.
    pub fn without_site(mut self) -> Self {
        self.site = None;
        self
    }

    /// Stdout goes to `stdout` (a file, a pipe) instead of into the `Run`, whose `stdout`
    /// is then empty.
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Self {
        self.stdout = Some(stdout.into());
        self
    }

    /// Runs `drplan` through `wrapper`, a program and its first arguments, such as
    /// `["unshare", "--mount", …]`: the binary's path and its arguments follow them.
    pub fn wrapped<I, S>(mut self, wrapper: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Runs to the end, whatever the exit code.
    pub fn run(mut self) -> Run {
        let mut command = self.command();
        if let Some(stdout) = self.stdout.take() {
            command.stdout(stdout);
        }
        let output = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.describe()));
        Run::new(self.describe(), output)
    }

    /// Runs to the end and checks that it exited with `code`.
    pub fn fails(self, code: i32) -> Run {
        self.run().fails(code)
    }

    /// Starts the command in the background.
    pub fn spawn(mut self) -> Running {
        let stdout = self.stdout.take().unwrap_or_else(Stdio::piped);
        let mut child = self
            .command()
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.describe()));
        // Read both pipes all along, so that a chatty run never blocks on a full one.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Running { child, command: self.describe(), output: Some((stdout, stderr)) }
    }

    fn command(&self) -> Command {
        let drplan = OsStr::new(env!("CARGO_BIN_EXE_drplan"));
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(drplan);
                command
            }
            None => Command::new(drplan),
        };
        command.current_dir(self.work.path()).arg("--state").arg(self.work.state());
        if let Some(site) = &self.site {
            command.arg("--site").arg(site);
        }
        command.args(&self.args).env_remove("RUST_LOG").stdin(Stdio::null());
        for (key, value) in self.work.env.iter().chain(&self.env) {
            command.env(key, value);
        }
        command
    }

    /// `drplan ARGS` (after the wrapper's program, if any), for messages.
    fn describe(&self) -> String {
        let start = match self.wrapper.first() {
            Some(program) => format!("{} … drplan", program.to_string_lossy()),
            None => "drplan".to_string(),
        };
        self.args.iter().fold(start, |line, arg| format!("{line} {}", arg.to_string_lossy()))
    }
}

/// A `drplan` started in the background; killed if dropped while it runs.
pub struct Running {
    child: Child,
    command: String,
    /// Stdout and stderr, each read to its end by a thread.
    output: Option<(Drain, Drain)>,
}

impl Running {
    /// How it ended, if it has.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.command))
    }

    /// Waits for it to end, at most `WAIT`, and returns what it printed.
    pub fn wait(mut self) -> Run {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                self.stop();
                let killed = self.try_wait().expect("a stopped child has a status");
                let run = self.output(killed);
                panic!("{} did not end within {WAIT:?}; stderr:\n{}\nstdout:\n{}", run.command, run.stderr, run.stdout);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.output(status)
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn output(&mut self, status: ExitStatus) -> Run {
        let (stdout, stderr) = self.output.take().expect("output is taken once");
        let output = Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
        Run::new(std::mem::take(&mut self.command), output)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a `drplan` command ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    command: String,
}

impl Run {
    /// How a command that ran ended; `command` names it in messages.
    fn new(command: String, output: Output) -> Run {
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into(),
            stderr: String::from_utf8_lossy(&output.stderr).into(),
            command,
        };
        assert!(!run.stderr.contains("panicked"), "`{}` panicked:\n{}", run.command, run.stderr);
        run
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected `{}` to succeed; stderr:\n{}\nstdout:\n{}",
            self.command, self.stderr, self.stdout
        );
        self
    }

    pub fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected `{}` to exit {code}; stderr:\n{}\nstdout:\n{}",
            self.command, self.stderr, self.stdout
        );
        self
    }

    /// Stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }

    /// The errors the check of `plan.rhai` printed, one line each with its place.
    pub fn plan_errors(&self) -> Vec<&str> {
        self.stderr.lines().filter(|line| line.starts_with("error: plan.rhai:")).collect()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Copies the files below `from` to `to`.
fn copy_folder(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A thread reading a pipe to its end.
type Drain = JoinHandle<Vec<u8>>;

/// Reads `pipe` to its end; no pipe (the stream went elsewhere) reads as nothing.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> Drain {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
