//! The programs the libvirt fabric drives: `virsh`, libvirt's own client, for the
//! hypervisor (domains, networks, checkpoints, backups, the guest agent), and on a
//! site's host (`host`) `qemu-img` and the shell's file commands. Every command the fabric
//! runs is run here, with its stderr kept for the error and its duration traced (the two
//! ends of a copy between hosts, which stream, are `host`'s).
//!
//! Why virsh and not the `virt` crate: the crate's safe API lacks backups, checkpoints,
//! block jobs and fsfreeze (raw FFI only), it pins an old `libc`, it is LGPL and Rust
//! links it statically, and it makes libvirt's headers a build dependency for everyone,
//! users of the simulation included. virsh speaks every libvirt URI (`qemu+ssh://`
//! too), costs ~25 ms a call next to operations of seconds, and its commands are the
//! ones an operator would type to check what drplan did.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// A program the fabric needs failed, or could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("{program} is not installed (run scripts/install-realvm.sh, or apt-get install {package}): {message}")]
    Missing { program: String, package: String, message: String },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("`{command}` did not finish within {seconds} s")]
    TimedOut { command: String, seconds: u64 },
}

impl ToolError {
    /// The program's own words, for matching a known failure ("Domain not found").
    pub fn stderr(&self) -> &str {
        match self {
            ToolError::Failed { stderr, .. } => stderr,
            ToolError::Missing { message, .. } => message,
            ToolError::TimedOut { .. } => "",
        }
    }
}

/// No single virsh or qemu-img call may take longer: a hung connection must not hang a
/// failover. Long work (a backup job, a shutdown) is polled in short calls instead.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

async fn run(program: &str, package: &str, args: &[&str]) -> Result<String, ToolError> {
    Ok(String::from_utf8_lossy(&run_program(program, package, args).await?).into_owned())
}

/// Runs `program` (from `package`, named when it is missing): its stdout.
pub async fn run_program(program: &str, package: &str, args: &[&str]) -> Result<Vec<u8>, ToolError> {
    let command_line = || format!("{program} {}", args.join(" "));
    let started = Instant::now();
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(CALL_TIMEOUT, command.output()).await {
        Err(_) => return Err(ToolError::TimedOut { command: command_line(), seconds: CALL_TIMEOUT.as_secs() }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ToolError::Missing {
                program: program.into(),
                package: package.into(),
                message: e.to_string(),
            });
        }
        Ok(Err(e)) => return Err(ToolError::Failed { command: command_line(), stderr: e.to_string() }),
        Ok(Ok(output)) => output,
    };
    tracing::debug!(command = %command_line(), ms = started.elapsed().as_millis() as u64, ok = output.status.success());
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let stderr = if stderr.is_empty() { format!("exit status {}", output.status) } else { stderr };
        return Err(ToolError::Failed { command: command_line(), stderr });
    }
    Ok(output.stdout)
}

/// virsh on one libvirt connection: one site.
#[derive(Debug, Clone, PartialEq)]
pub struct Virsh {
    uri: String,
}

impl Virsh {
    pub fn new(uri: impl Into<String>) -> Virsh {
        Virsh { uri: uri.into() }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub async fn run(&self, args: &[&str]) -> Result<String, ToolError> {
        let mut all = vec!["--quiet", "-c", &self.uri];
        all.extend_from_slice(args);
        run("virsh", "libvirt-clients", &all).await
    }

    /// Runs a command whose last arguments are XML documents, each written to a temporary
    /// file first (virsh reads them from files).
    pub async fn run_with_xml(&self, args: &[&str], documents: &[&str]) -> Result<String, ToolError> {
        let files = documents.iter().map(|xml| TempXml::new(xml)).collect::<Result<Vec<_>, _>>()?;
        let paths: Vec<String> = files.iter().map(|f| f.path().to_string_lossy().into_owned()).collect();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(paths.iter().map(String::as_str));
        self.run(&all).await
    }
}

/// An XML document in a temporary file, removed when dropped.
pub struct TempXml {
    path: std::path::PathBuf,
}

impl TempXml {
    pub fn new(contents: &str) -> Result<TempXml, ToolError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("drplan-{}-{}.xml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents)
            .map_err(|e| ToolError::Failed { command: format!("write {}", path.display()), stderr: e.to_string() })?;
        Ok(TempXml { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempXml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
