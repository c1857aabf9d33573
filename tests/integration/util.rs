//! The builder the integration tests drive the real `drplan` binary with, in the spirit of
//! just's `Test::new().justfile(…).stderr(…).failure()`:
//!
//! ```text
//! let work = Workdir::contoso().site_edit(|site| site + FAULT).plan(PLAN);
//! work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).fails(1);
//! let id = work.last_run().unwrap();
//! work.drplan(["show", &id]).site_file(&other.site).fails(1);
//! ```
//!
//! A `Workdir` is an operator's working folder in a temporary directory: the state
//! directory `state/`, a site file, plans and whatever else a test writes there. Every
//! command runs in it (so `plan.rhai` names the folder's plan) with `--state` and `--site`.
//! `Workdir::drplan` makes one command (`Drplan`, with its own site file if need be), run
//! to its end (`run`, `fails`). A `Run` holds the exit code and what was printed; `ok` and `fails` check the code and show both streams when it is wrong, and
//! any run whose stderr says "panicked" fails the test.
//!
//! `Workdir::contoso`, `with_site`, `run`, `state`, `path` and the `site` field, `Run` (its
//! fields `code`, `stdout`, `stderr`; `ok`, `fails`, `json`) and `CONTOSO_SITE` keep the
//! names the former `tests/common` helper gave them, so that a test file written against
//! it becomes a module here by replacing `mod common; use common::…` with
//! `use crate::util::…` (and a `mod` line in `main.rs`). `run` is `drplan(args).run()`.
//! One thing differs: commands run in the folder, no longer in the crate's root.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The example plan folder: a site, plans, `drplan.toml` and a hook script.
pub const CONTOSO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plans/contoso");
pub const CONTOSO_SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plans/contoso/site.toml");

/// A temporary state directory and a site file, as an operator's working folder.
pub struct Workdir {
    dir: TempDir,
    /// The site file every command gets as `--site`.
    pub site: PathBuf,
}

impl Workdir {
    /// An empty folder. Its site file is `site.toml` in it, for the test to write.
    pub fn empty() -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site.toml");
        Workdir { dir, site }
    }

    /// A folder whose commands read the contoso example's site file where it is.
    pub fn contoso() -> Workdir {
        Workdir { site: PathBuf::from(CONTOSO_SITE), ..Workdir::empty() }
    }

    /// A folder whose site file has `text`.
    pub fn with_site(text: &str) -> Workdir {
        Workdir::empty().file("site.toml", text)
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
            site: Some(self.site.clone()),
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
}

/// One `drplan` command in a `Workdir`.
pub struct Drplan<'a> {
    work: &'a Workdir,
    args: Vec<OsString>,
    site: Option<PathBuf>,
}

impl Drplan<'_> {
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

    /// Runs to the end, whatever the exit code.
    pub fn run(self) -> Run {
        let output = self.command().output().unwrap_or_else(|e| panic!("cannot run drplan: {e}"));
        Run::new(self.describe(), output)
    }

    /// Runs to the end and checks that it exited with `code`.
    pub fn fails(self, code: i32) -> Run {
        self.run().fails(code)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drplan"));
        command.current_dir(self.work.path()).arg("--state").arg(self.work.state());
        if let Some(site) = &self.site {
            command.arg("--site").arg(site);
        }
        command.args(&self.args).env_remove("RUST_LOG").stdin(Stdio::null());
        command
    }

    /// `drplan ARGS`, for messages.
    fn describe(&self) -> String {
        self.args.iter().fold("drplan".to_string(), |line, arg| format!("{line} {}", arg.to_string_lossy()))
    }
}

/// How a `drplan` command ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    command: String,
}

/// For the tests that start `drplan` by hand.
impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run::new("drplan".to_string(), output)
    }
}

impl Run {
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
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
