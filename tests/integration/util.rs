//! Shared helpers for the integration tests: run the real `drplan` binary against a
//! temporary state directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

pub const CONTOSO_SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plans/contoso/site.toml");

/// A temporary state directory and a site file, as an operator's working folder.
pub struct Workdir {
    pub dir: TempDir,
    pub site: PathBuf,
}

impl Workdir {
    pub fn contoso() -> Workdir {
        Workdir { dir: tempfile::tempdir().unwrap(), site: PathBuf::from(CONTOSO_SITE) }
    }

    /// A working folder whose site file has `text`.
    pub fn with_site(text: &str) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site.toml");
        std::fs::write(&site, text).unwrap();
        Workdir { dir, site }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = Command::cargo_bin("drplan")
            .unwrap()
            .arg("--state")
            .arg(self.state())
            .arg("--site")
            .arg(&self.site)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        Run::from(output)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        let run = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        };
        assert!(!run.stderr.contains("panicked"), "drplan panicked:\n{}", run.stderr);
        run
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success; stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout);
        self
    }

    pub fn fails(self, code: i32) -> Run {
        assert_eq!(self.code, code, "expected exit {code}; stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}
