//! Where a site's files are: on this machine, or on the site's host reached over ssh.
//!
//! A site whose libvirt URI is `qemu+ssh://[user@]host[:port]/...` runs on another
//! machine, and so do its files: the recovery points kept there, the staging folder its
//! backups are written to, its VMs' own disks. drplan reaches them the way libvirt
//! reaches the site's daemon, with the same ssh command, user, port and key (the URI's
//! `command`, `keyfile` and `no_verify` parameters), so no second way in is configured.
//! Any other URI (`qemu:///system`, `qemu+unix://`) is this machine.
//!
//! Each operation is one bounded process (`tools`); a copy between two hosts streams
//! through drplan, paced to the throttle's bandwidth (R15).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::tools::{ToolError, run_program};

/// A machine holding a site's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// The machine drplan runs on.
    Local,
    Ssh(SshHost),
}

/// A host reached over ssh, as a `qemu+ssh` URI names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshHost {
    host: String,
    user: Option<String>,
    port: Option<u16>,
    /// The ssh program (the URI's `command`, else `ssh`).
    command: String,
    keyfile: Option<String>,
    /// The URI's `no_verify=1`: the host's key is not checked.
    no_verify: bool,
    /// Where the connection shared by successive commands has its socket (ssh's
    /// ControlPath); `None`: each command connects anew.
    control: Option<PathBuf>,
}

/// How long a shared connection outlives its last command.
const CONTROL_PERSIST: &str = "30";

/// No copy may stall longer: a chunk that neither reads nor writes for this long fails it.
const STALL: Duration = Duration::from_secs(120);
const CHUNK: usize = 1 << 20;

fn io_failed(what: String) -> impl Fn(std::io::Error) -> ToolError {
    move |e| ToolError::Failed { command: what.clone(), stderr: e.to_string() }
}

fn quote(word: &str) -> String {
    shlex::try_quote(word).map(|q| q.into_owned()).unwrap_or_else(|_| format!("'{}'", word.replace('\0', "")))
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Host {
    /// The host of a libvirt URI's files: the URI's own host for `+ssh` transports, this
    /// machine for the others. A URI that does not parse is this machine's (libvirt
    /// refuses it first).
    pub fn of_uri(uri: &str) -> Host {
        let Ok(parsed) = url::Url::parse(uri) else { return Host::Local };
        let ssh = parsed.scheme().split_once('+').is_some_and(|(_, transport)| transport == "ssh");
        let Some(host) = parsed.host_str().filter(|h| ssh && !h.is_empty()) else { return Host::Local };
        let param = |name: &str| parsed.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        Host::Ssh(SshHost {
            host: host.to_string(),
            user: Some(parsed.username().to_string()).filter(|u| !u.is_empty()),
            port: parsed.port(),
            command: param("command").unwrap_or_else(|| "ssh".into()),
            keyfile: param("keyfile"),
            no_verify: param("no_verify").is_some_and(|v| v == "1"),
            control: None,
        })
    }

    /// Commands to an ssh host share one connection, its socket in `dir` (a private
    /// folder: the state directory's), instead of each paying for a handshake: a copy
    /// cycle runs a dozen of them. Kept off when `dir` cannot take the socket (read-only,
    /// or a path longer than a unix socket's).
    pub fn sharing_connections_in(self, dir: &Path) -> Host {
        let Host::Ssh(mut ssh) = self else { return self };
        // ssh's %C: 40 hex digits; a unix socket's path holds 107 bytes.
        let usable = dir.as_os_str().len() + 50 < 107 && {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(dir).is_ok()
                && std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_ok()
        };
        ssh.control = usable.then(|| dir.join("ssh-%C"));
        Host::Ssh(ssh)
    }

    /// How messages name the host.
    pub fn describe(&self) -> String {
        match self {
            Host::Local => "this machine".into(),
            Host::Ssh(ssh) => {
                let user = ssh.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                let port = ssh.port.map(|p| format!(":{p}")).unwrap_or_default();
                format!("{user}{}{port}", ssh.host)
            }
        }
    }

    /// A command line run on the host: the program itself here, through ssh there.
    fn command(&self, program: &str, args: &[&str]) -> (String, Vec<String>) {
        match self {
            Host::Local => (program.into(), args.iter().map(|a| a.to_string()).collect()),
            Host::Ssh(ssh) => {
                let mut line = quote(program);
                for arg in args {
                    line.push(' ');
                    line.push_str(&quote(arg));
                }
                (ssh.command.clone(), ssh.args(&line))
            }
        }
    }

    /// Runs `program` on the host: its stdout.
    pub async fn run(&self, program: &str, package: &str, args: &[&str]) -> Result<Vec<u8>, ToolError> {
        let (program_here, args_here) = self.command(program, args);
        let args_here: Vec<&str> = args_here.iter().map(String::as_str).collect();
        let package = if matches!(self, Host::Ssh(_)) { "openssh-client" } else { package };
        run_program(&program_here, package, &args_here).await
    }

    /// qemu-img on the host.
    pub async fn qemu_img(&self, args: &[&str]) -> Result<String, ToolError> {
        let out = self.run("qemu-img", "qemu-utils", args).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    pub async fn create_dir(&self, dir: &Path) -> Result<(), ToolError> {
        match self {
            Host::Local => std::fs::create_dir_all(dir).map_err(io_failed(format!("mkdir -p {}", dir.display()))),
            Host::Ssh(_) => self.run("mkdir", "coreutils", &["-p", "--", &path_str(dir)]).await.map(drop),
        }
    }

    /// Removes a file; one that is not there is fine.
    pub async fn remove(&self, file: &Path) -> Result<(), ToolError> {
        match self {
            Host::Local => match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_failed(format!("rm {}", file.display()))(e))
                }
                _ => Ok(()),
            },
            Host::Ssh(_) => self.run("rm", "coreutils", &["-f", "--", &path_str(file)]).await.map(drop),
        }
    }

    /// Renames a file within the host (atomic on one file system).
    pub async fn rename(&self, from: &Path, to: &Path) -> Result<(), ToolError> {
        match self {
            Host::Local => {
                std::fs::rename(from, to).map_err(io_failed(format!("rename {} {}", from.display(), to.display())))
            }
            Host::Ssh(_) => self.run("mv", "coreutils", &["-f", "--", &path_str(from), &path_str(to)]).await.map(drop),
        }
    }

    /// Whether a file is there; `Err`: the host could not say.
    pub async fn exists(&self, path: &Path) -> Result<bool, ToolError> {
        match self {
            Host::Local => Ok(path.exists()),
            Host::Ssh(_) => {
                let script = "if [ -e \"$1\" ]; then echo yes; else echo no; fi";
                let out = self.run("sh", "dash", &["-c", script, "sh", &path_str(path)]).await?;
                Ok(out.starts_with(b"yes"))
            }
        }
    }

    /// The names of the files in `dir`; none when it cannot be read.
    pub async fn list(&self, dir: &Path) -> Vec<String> {
        match self {
            Host::Local => std::fs::read_dir(dir)
                .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default(),
            Host::Ssh(_) => match self.run("ls", "coreutils", &["-1A", "--", &path_str(dir)]).await {
                Ok(out) => String::from_utf8_lossy(&out).lines().filter(|l| !l.is_empty()).map(String::from).collect(),
                Err(_) => Vec::new(),
            },
        }
    }

    /// The bytes a file occupies on disk (its allocated blocks), `None` if it is not there.
    pub async fn allocated(&self, file: &Path) -> Option<u64> {
        match self {
            Host::Local => {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(file).ok().map(|m| m.blocks() * 512)
            }
            Host::Ssh(_) => {
                let out = self.run("stat", "coreutils", &["-c", "%b %B", "--", &path_str(file)]).await.ok()?;
                let text = String::from_utf8_lossy(&out);
                let mut words = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                Some(words.next()?? * words.next()??)
            }
        }
    }

    /// A file's length in bytes, `None` if it is not there.
    pub async fn len(&self, file: &Path) -> Option<u64> {
        match self {
            Host::Local => std::fs::metadata(file).ok().map(|m| m.len()),
            Host::Ssh(_) => {
                let out = self.run("stat", "coreutils", &["-c", "%s", "--", &path_str(file)]).await.ok()?;
                String::from_utf8_lossy(&out).trim().parse().ok()
            }
        }
    }

    /// The first `len` bytes of a file (fewer when it is shorter), `None` if it cannot
    /// be read.
    pub async fn read_head(&self, file: &Path, len: usize) -> Option<Vec<u8>> {
        match self {
            Host::Local => {
                use std::io::Read;
                let mut head = Vec::with_capacity(len);
                std::fs::File::open(file).ok()?.take(len as u64).read_to_end(&mut head).ok()?;
                Some(head)
            }
            Host::Ssh(_) => self.run("head", "coreutils", &["-c", &len.to_string(), "--", &path_str(file)]).await.ok(),
        }
    }

    /// Copies `from` on this host to `to` on `target`, at most `bytes_per_second` (R15:
    /// the throttle), through a file beside `to` renamed into place once complete: `to`
    /// is never half written. `progress` hears the bytes copied so far. The bytes copied.
    pub async fn copy_to(
        &self,
        from: &Path,
        target: &Host,
        to: &Path,
        bytes_per_second: Option<u64>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, ToolError> {
        let partial = PathBuf::from(format!("{}.part", to.display()));
        let what = format!("copy {}:{} to {}:{}", self.describe(), from.display(), target.describe(), to.display());
        let copied = async {
            let mut source = Source::open(self, from).await?;
            let mut sink = Sink::open(target, &partial).await?;
            let paced = pace(&mut source.reader, &mut sink.writer, bytes_per_second, progress, &what).await;
            let flushed = sink.writer.shutdown().await.map_err(io_failed(what.clone()));
            drop(sink.writer);
            drop(source.reader);
            // An end's process that failed says why better than the broken pipe it left;
            // the writing end first: a reader cut off by it fails too.
            finish(sink.child, &what).await?;
            finish(source.child, &what).await?;
            flushed?;
            paced
        }
        .await;
        match copied {
            Ok(copied) => {
                target.rename(&partial, to).await?;
                Ok(copied)
            }
            Err(e) => {
                let _ = target.remove(&partial).await;
                Err(e)
            }
        }
    }
}

impl SshHost {
    /// ssh's arguments to run `line` (a shell command line) on the host, never asking
    /// anything (a failover cannot wait for a password prompt).
    fn args(&self, line: &str) -> Vec<String> {
        let mut args: Vec<String> = vec!["-T".into(), "-o".into(), "BatchMode=yes".into()];
        if let Some(port) = self.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        if let Some(user) = &self.user {
            args.extend(["-l".into(), user.clone()]);
        }
        if let Some(keyfile) = &self.keyfile {
            args.extend(["-i".into(), keyfile.clone()]);
        }
        if self.no_verify {
            args.extend(["-o".into(), "StrictHostKeyChecking=no".into()]);
        }
        if let Some(control) = &self.control {
            let path = format!("ControlPath={}", control.display());
            let persist = format!("ControlPersist={CONTROL_PERSIST}");
            args.extend(["-o".into(), "ControlMaster=auto".into(), "-o".into(), path, "-o".into(), persist]);
        }
        args.extend(["--".into(), self.host.clone(), line.into()]);
        args
    }
}

/// The reading end of a copy: a local file, or a `cat` on the host through ssh.
struct Source {
    child: Option<Child>,
    reader: Box<dyn AsyncRead + Unpin + Send>,
}

/// The writing end of a copy.
struct Sink {
    child: Option<Child>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
}

/// `sh -c SCRIPT sh FILE` on the host, its stdout (`read`) or its stdin piped.
fn spawn(host: &Host, script: &str, file: &Path, read: bool) -> Result<Child, ToolError> {
    let (program, args) = host.command("sh", &["-c", script, "sh", &path_str(file)]);
    let mut command = Command::new(&program);
    command.args(&args).stderr(Stdio::piped()).kill_on_drop(true);
    if read {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
    } else {
        command.stdin(Stdio::piped()).stdout(Stdio::null());
    }
    command.spawn().map_err(|e| ToolError::Failed { command: program, stderr: e.to_string() })
}

/// Waits for an end's process (bounded): its failure, with what it said.
async fn finish(child: Option<Child>, what: &str) -> Result<(), ToolError> {
    let Some(child) = child else { return Ok(()) };
    let output = tokio::time::timeout(STALL, child.wait_with_output())
        .await
        .map_err(|_| ToolError::TimedOut { command: what.into(), seconds: STALL.as_secs() })?
        .map_err(io_failed(what.into()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(ToolError::Failed { command: what.into(), stderr: format!("{stderr} ({})", output.status) })
}

impl Source {
    async fn open(host: &Host, file: &Path) -> Result<Source, ToolError> {
        match host {
            Host::Local => {
                let opened =
                    tokio::fs::File::open(file).await.map_err(io_failed(format!("open {}", file.display())))?;
                Ok(Source { child: None, reader: Box::new(opened) })
            }
            Host::Ssh(_) => {
                let mut child = spawn(host, "exec cat -- \"$1\"", file, true)?;
                let stdout = child.stdout.take().expect("piped stdout");
                Ok(Source { child: Some(child), reader: Box::new(stdout) })
            }
        }
    }
}

impl Sink {
    async fn open(host: &Host, file: &Path) -> Result<Sink, ToolError> {
        match host {
            Host::Local => {
                let created =
                    tokio::fs::File::create(file).await.map_err(io_failed(format!("create {}", file.display())))?;
                Ok(Sink { child: None, writer: Box::new(created) })
            }
            Host::Ssh(_) => {
                let mut child = spawn(host, "exec cat > \"$1\"", file, false)?;
                let stdin = child.stdin.take().expect("piped stdin");
                Ok(Sink { child: Some(child), writer: Box::new(stdin) })
            }
        }
    }
}

/// Copies `reader` into `writer`, never faster than `bytes_per_second`: after each chunk
/// it waits until the bytes so far are due.
async fn pace(
    reader: &mut (impl AsyncRead + Unpin),
    writer: &mut (impl AsyncWrite + Unpin),
    bytes_per_second: Option<u64>,
    progress: &mut (dyn FnMut(u64) + Send),
    what: &str,
) -> Result<u64, ToolError> {
    let stalled = || ToolError::TimedOut { command: what.into(), seconds: STALL.as_secs() };
    // Small chunks under a low rate keep the pace even.
    let chunk = bytes_per_second.map_or(CHUNK, |rate| (rate as usize / 8).clamp(4096, CHUNK));
    let mut buffer = vec![0u8; chunk];
    let started = Instant::now();
    let mut copied: u64 = 0;
    loop {
        let read = tokio::time::timeout(STALL, reader.read(&mut buffer))
            .await
            .map_err(|_| stalled())?
            .map_err(io_failed(what.into()))?;
        if read == 0 {
            return Ok(copied);
        }
        tokio::time::timeout(STALL, writer.write_all(&buffer[..read]))
            .await
            .map_err(|_| stalled())?
            .map_err(io_failed(what.into()))?;
        copied += read as u64;
        progress(copied);
        if let Some(rate) = bytes_per_second.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(copied as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssh_uri_names_the_host_of_its_files() {
        let host = Host::of_uri("qemu+ssh://root@kvm-b.example:2222/system?keyfile=/etc/drplan/id&no_verify=1");
        let Host::Ssh(ssh) = &host else { panic!("{host:?}") };
        assert_eq!(host.describe(), "root@kvm-b.example:2222");
        assert_eq!(
            ssh.args("qemu-img info '/srv/a b.qcow2'"),
            [
                "-T",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "-l",
                "root",
                "-i",
                "/etc/drplan/id",
                "-o",
                "StrictHostKeyChecking=no",
                "--",
                "kvm-b.example",
                "qemu-img info '/srv/a b.qcow2'"
            ]
        );
        let plain = Host::of_uri("qemu+ssh://kvm-b/system");
        assert_eq!(plain.describe(), "kvm-b");
        let wrapped = Host::of_uri("qemu+ssh://kvm-b/system?command=/opt/ssh-wrapper");
        assert_eq!(wrapped.command("true", &[]).0, "/opt/ssh-wrapper");
    }

    #[test]
    fn commands_to_an_ssh_host_share_a_connection_when_the_state_dir_can_hold_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Host::of_uri("qemu+ssh://kvm-b/system").sharing_connections_in(&dir.path().join("ssh"));
        let args = shared.command("true", &[]).1;
        let control = format!("ControlPath={}/ssh/ssh-%C", dir.path().display());
        assert!(args.contains(&control) && args.contains(&"ControlMaster=auto".to_string()), "{args:?}");
        let long = dir.path().join("x".repeat(80));
        let alone = Host::of_uri("qemu+ssh://kvm-b/system").sharing_connections_in(&long);
        assert!(!alone.command("true", &[]).1.iter().any(|a| a.starts_with("ControlPath")));
        assert_eq!(Host::Local.sharing_connections_in(dir.path()), Host::Local);
    }

    #[test]
    fn other_uris_are_this_machine() {
        for uri in ["qemu:///system", "qemu+unix:///system?socket=/run/x/libvirt-sock", "qemu+tcp://kvm-b/system", "%%"]
        {
            assert_eq!(Host::of_uri(uri), Host::Local, "{uri}");
        }
    }

    #[test]
    fn a_remote_command_line_quotes_every_word() {
        let host = Host::of_uri("qemu+ssh://kvm-b/system");
        let (program, args) = host.command("qemu-img", &["create", "/srv/it's here.qcow2"]);
        assert_eq!(program, "ssh");
        assert_eq!(args.last().unwrap(), r#"qemu-img create "/srv/it's here.qcow2""#);
    }

    #[tokio::test]
    async fn r15_a_copy_is_paced_to_the_throttle_and_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from.qcow2");
        let to = dir.path().join("to.qcow2");
        let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&from, &data).unwrap();
        let started = Instant::now();
        // 256 KiB at 1 MiB/s: a quarter of a second at least.
        let mut heard = Vec::new();
        let copied =
            Host::Local.copy_to(&from, &Host::Local, &to, Some(1 << 20), &mut |n| heard.push(n)).await.unwrap();
        let took = started.elapsed();
        assert_eq!(copied, data.len() as u64);
        assert!(heard.len() > 1 && heard.is_sorted() && heard.last() == Some(&copied), "progress: {heard:?}");
        assert_eq!(Host::Local.len(&to).await, Some(copied));
        assert_eq!(std::fs::read(&to).unwrap(), data);
        assert!(took >= Duration::from_millis(240), "the throttle was not kept: {took:?}");
        assert!(!dir.path().join("to.qcow2.part").exists(), "the partial file was renamed into place");
    }

    #[tokio::test]
    async fn a_failed_copy_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("to.qcow2");
        let failed = Host::Local.copy_to(&dir.path().join("missing"), &Host::Local, &to, None, &mut |_| {}).await;
        assert!(failed.is_err());
        assert!(!to.exists() && !dir.path().join("to.qcow2.part").exists());
    }
}
