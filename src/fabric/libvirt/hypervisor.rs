//! One libvirt site's hypervisor, through virsh: domain life cycle, checkpoints and push
//! backups, DHCP reservations and address discovery, the guest agent. Everything here
//! is a plain operation with bounded waits; the rules (when to do what) live in the
//! fabric.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::domain::{DomainInfo, DomainState, parse_domain, xml_escape};
use super::host::Host;
use super::tools::{ToolError, Virsh};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HypervisorError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Xml(#[from] super::domain::DomainXmlError),
    #[error("domain {domain:?} does not exist at {uri}")]
    NoDomain { domain: String, uri: String },
    #[error("domain {domain:?} is not running {seconds} s after its start began ({state})")]
    NotRunning { domain: String, state: String, seconds: u64 },
    #[error("domain {domain:?} did not shut down within {seconds} s")]
    ShutdownTimedOut { domain: String, seconds: u64 },
    #[error("the backup of {domain:?} failed: {detail}")]
    BackupFailed { domain: String, detail: String },
    #[error("the backup of {domain:?} did not finish within {seconds} s")]
    BackupTimedOut { domain: String, seconds: u64 },
}

pub type HvResult<T> = Result<T, HypervisorError>;

impl HypervisorError {
    /// Whether libvirt refused an incremental backup because the checkpoint it starts
    /// from lost its bitmap (the guest's QEMU died without saving it): only a full copy
    /// can follow.
    pub fn is_broken_checkpoint(&self) -> bool {
        matches!(self, HypervisorError::Tool(e) if e.stderr().contains("checkpoint inconsistent"))
    }
}

/// How often a wait asks libvirt again.
const POLL: Duration = Duration::from_millis(50);

/// The image a backup writes for one disk.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupTarget {
    pub disk: String,
    pub file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hypervisor {
    virsh: Virsh,
    /// The machine the site's files are on.
    host: Host,
}

fn is_no_domain(error: &ToolError) -> bool {
    let stderr = error.stderr();
    stderr.contains("Domain not found") || stderr.contains("failed to get domain")
}

impl Hypervisor {
    /// The site at `uri`; `state_dir` holds what its ssh host's shared connection needs.
    pub fn new(uri: &str, state_dir: &Path) -> Hypervisor {
        let host = Host::of_uri(uri).sharing_connections_in(&state_dir.join("ssh"));
        Hypervisor { virsh: Virsh::new(uri), host }
    }

    pub fn uri(&self) -> &str {
        self.virsh.uri()
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    fn no_domain(&self, domain: &str) -> impl Fn(ToolError) -> HypervisorError {
        let (domain, uri) = (domain.to_string(), self.uri().to_string());
        move |e| {
            if is_no_domain(&e) {
                HypervisorError::NoDomain { domain: domain.clone(), uri: uri.clone() }
            } else {
                HypervisorError::Tool(e)
            }
        }
    }

    /// Whether libvirt answers at all: what a preflight asks first.
    pub async fn version(&self) -> HvResult<String> {
        Ok(self.virsh.run(&["version", "--daemon"]).await?.trim().to_string())
    }

    /// The domain's persistent definition (not the running one, which has runtime ids).
    pub async fn domain_xml(&self, domain: &str) -> HvResult<String> {
        self.virsh.run(&["dumpxml", "--inactive", domain]).await.map_err(self.no_domain(domain))
    }

    pub async fn domain_info(&self, domain: &str) -> HvResult<DomainInfo> {
        Ok(parse_domain(&self.domain_xml(domain).await?)?)
    }

    /// `None` when no such domain is defined.
    pub async fn state(&self, domain: &str) -> HvResult<Option<DomainState>> {
        match self.virsh.run(&["domstate", domain]).await {
            Ok(text) => Ok(Some(DomainState::parse(&text))),
            Err(e) if is_no_domain(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn define(&self, xml: &str) -> HvResult<()> {
        self.virsh.run_with_xml(&["define"], &[xml]).await?;
        Ok(())
    }

    /// Starts a defined domain; `paused` starts QEMU with the guest's CPUs stopped.
    pub async fn start(&self, domain: &str, paused: bool) -> HvResult<()> {
        let mut args = vec!["start", domain];
        if paused {
            args.push("--paused");
        }
        self.virsh.run(&args).await.map_err(self.no_domain(domain))?;
        Ok(())
    }

    /// Lets the CPUs of a domain started paused run.
    pub async fn resume(&self, domain: &str) -> HvResult<()> {
        self.virsh.run(&["resume", domain]).await.map_err(self.no_domain(domain))?;
        Ok(())
    }

    /// A clean shutdown (ACPI power button, or the guest agent), waited for up to
    /// `timeout`. A domain already off is fine.
    pub async fn shutdown(&self, domain: &str, timeout: Duration) -> HvResult<()> {
        match self.state(domain).await? {
            None => return Err(HypervisorError::NoDomain { domain: domain.into(), uri: self.uri().into() }),
            Some(DomainState::ShutOff) => return Ok(()),
            Some(_) => {}
        }
        if let Err(e) = self.virsh.run(&["shutdown", domain]).await {
            // It went off meanwhile (a shutdown asked before, by a process since killed):
            // what was asked is done.
            if !matches!(self.state(domain).await?, Some(DomainState::ShutOff) | None) {
                return Err(self.no_domain(domain)(e));
            }
        }
        self.wait_off(domain, timeout).await
    }

    pub async fn wait_off(&self, domain: &str, timeout: Duration) -> HvResult<()> {
        let started = Instant::now();
        loop {
            if matches!(self.state(domain).await?, Some(DomainState::ShutOff) | None) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(HypervisorError::ShutdownTimedOut { domain: domain.into(), seconds: timeout.as_secs() });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Pulls the plug. A domain already off is fine.
    pub async fn destroy(&self, domain: &str) -> HvResult<()> {
        match self.state(domain).await? {
            None | Some(DomainState::ShutOff) => Ok(()),
            Some(_) => match self.virsh.run(&["destroy", domain]).await {
                Ok(_) => Ok(()),
                Err(e) if e.stderr().contains("domain is not running") => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Stops (if running) and forgets a domain; its image files stay. A domain that does
    /// not exist is fine: removing is idempotent.
    pub async fn remove(&self, domain: &str) -> HvResult<()> {
        if self.state(domain).await?.is_none() {
            return Ok(());
        }
        self.destroy(domain).await?;
        let args = ["undefine", domain, "--checkpoints-metadata", "--snapshots-metadata", "--managed-save"];
        match self.virsh.run(&args).await {
            Err(e) if !is_no_domain(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The checkpoints libvirt keeps for a domain, by name.
    pub async fn checkpoints(&self, domain: &str) -> HvResult<Vec<String>> {
        let text = self.virsh.run(&["checkpoint-list", domain, "--name"]).await.map_err(self.no_domain(domain))?;
        Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
    }

    /// A checkpoint `name` of `disks` now: a persistent dirty bitmap in each, from which a
    /// later backup copies only what changed. An existing one of that name is kept.
    pub async fn create_checkpoint(&self, domain: &str, name: &str, disks: &[String]) -> HvResult<()> {
        if self.checkpoints(domain).await?.iter().any(|c| c == name) {
            return Ok(());
        }
        let disks: String =
            disks.iter().map(|d| format!("<disk name='{}' checkpoint='bitmap'/>", xml_escape(d))).collect();
        let xml =
            format!("<domaincheckpoint><name>{}</name><disks>{disks}</disks></domaincheckpoint>", xml_escape(name));
        self.virsh.run_with_xml(&["checkpoint-create", domain], &[&xml]).await.map_err(self.no_domain(domain))?;
        Ok(())
    }

    /// Forgets a checkpoint that is discarded, whatever its bitmap: deleted where libvirt
    /// can (merging its bitmap), else only from libvirt's metadata: a domain shut off, or
    /// a bitmap that died with its QEMU. A bitmap left in an image is unused (QEMU drops a
    /// broken one at its next start).
    pub async fn forget_checkpoint(&self, domain: &str, checkpoint: &str) -> HvResult<()> {
        if self.delete_checkpoint(domain, checkpoint).await.is_ok() {
            return Ok(());
        }
        self.virsh
            .run(&["checkpoint-delete", domain, checkpoint, "--metadata"])
            .await
            .map_err(self.no_domain(domain))?;
        Ok(())
    }

    /// Deletes a checkpoint, merging its bitmap into its parent's; one that does not
    /// exist is fine.
    pub async fn delete_checkpoint(&self, domain: &str, checkpoint: &str) -> HvResult<()> {
        match self.virsh.run(&["checkpoint-delete", domain, checkpoint]).await {
            // "Domain checkpoint not found: no domain checkpoint with matching name"; not
            // "bitmap … not found", which is a broken one.
            Err(e) if e.stderr().contains("no domain checkpoint") => Ok(()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    /// Begins a push backup of `targets` (all of the domain's replicated disks) into new
    /// image files, with a new checkpoint `checkpoint` marking its instant; incremental
    /// since checkpoint `since` when given (only the clusters changed since are written),
    /// full otherwise. The point's instant is when the job began: QEMU copies each
    /// cluster before a later guest write lands on it. [`Hypervisor::wait_for_job`] waits
    /// for the copy to finish.
    pub async fn begin_backup(
        &self,
        domain: &str,
        targets: &[BackupTarget],
        since: Option<&str>,
        checkpoint: &str,
    ) -> HvResult<()> {
        let incremental = since.map(|c| format!("<incremental>{}</incremental>", xml_escape(c))).unwrap_or_default();
        let disks: String = targets
            .iter()
            .map(|t| {
                format!(
                    "<disk name='{}' backup='yes' type='file'><target file='{}'/><driver type='qcow2'/></disk>",
                    xml_escape(&t.disk),
                    xml_escape(&t.file.to_string_lossy())
                )
            })
            .collect();
        let backup_xml = format!("<domainbackup mode='push'>{incremental}<disks>{disks}</disks></domainbackup>");
        let disks: String = targets.iter().map(|t| format!("<disk name='{}'/>", xml_escape(&t.disk))).collect();
        let checkpoint_xml = format!(
            "<domaincheckpoint><name>{}</name><disks>{disks}</disks></domaincheckpoint>",
            xml_escape(checkpoint)
        );
        self.virsh
            .run_with_xml(&["backup-begin", domain], &[&backup_xml, &checkpoint_xml])
            .await
            .map_err(self.no_domain(domain))?;
        Ok(())
    }

    /// Aborts the domain's job (a backup), if it has one, and waits (bounded) for it to
    /// end.
    pub async fn abort_job(&self, domain: &str) {
        if let Err(e) = self.virsh.run(&["domjobabort", domain]).await
            && !e.stderr().contains("no job is active")
        {
            tracing::warn!(domain, error = %e, "aborting the domain's job failed");
        }
        let _ = self.wait_for_job(domain, Duration::from_secs(60), |_, _| {}).await;
    }

    /// Waits for the domain's job (a backup) to end, within `timeout` (then aborts it).
    /// `progress` hears the bytes it processed of its total, as libvirt tells them.
    pub async fn wait_for_job(
        &self,
        domain: &str,
        timeout: Duration,
        mut progress: impl FnMut(u64, u64),
    ) -> HvResult<()> {
        let started = Instant::now();
        loop {
            let info = self.virsh.run(&["domjobinfo", domain]).await.map_err(self.no_domain(domain))?;
            if !info.contains("Unbounded") && !info.contains("Bounded") {
                break;
            }
            if let Some((done, total)) = job_progress(&info) {
                progress(done, total);
            }
            if started.elapsed() >= timeout {
                let _ = self.virsh.run(&["domjobabort", domain]).await;
                return Err(HypervisorError::BackupTimedOut { domain: domain.into(), seconds: timeout.as_secs() });
            }
            tokio::time::sleep(POLL).await;
        }
        let done = self.virsh.run(&["domjobinfo", domain, "--completed"]).await.map_err(self.no_domain(domain))?;
        if job_line(&done, "Job type") == Some("Completed") {
            return Ok(());
        }
        let detail = job_line(&done, "Error message").or(job_line(&done, "Job type")).unwrap_or("unknown").to_string();
        Err(HypervisorError::BackupFailed { domain: domain.into(), detail })
    }

    /// R3: freezes the guest's file systems through its agent; `false` when the guest
    /// has no agent answering (the point is then crash-consistent).
    pub async fn freeze(&self, domain: &str) -> bool {
        self.virsh.run(&["domfsfreeze", domain]).await.is_ok()
    }

    pub async fn thaw(&self, domain: &str) {
        if let Err(e) = self.virsh.run(&["domfsthaw", domain]).await {
            tracing::warn!(domain, error = %e, "thawing the guest's file systems failed");
        }
    }

    /// The IPv4 addresses of a running domain by MAC: from the DHCP leases of libvirt's
    /// networks, else from the guest agent.
    pub async fn addresses(&self, domain: &str) -> HvResult<Vec<(String, Ipv4Addr)>> {
        for source in ["lease", "agent"] {
            if let Ok(text) = self.virsh.run(&["domifaddr", domain, "--source", source]).await {
                let found = parse_domifaddr(&text);
                if !found.is_empty() {
                    return Ok(found);
                }
            }
        }
        Ok(Vec::new())
    }

    /// R9: a DHCP reservation on a libvirt network: the NIC with `mac` gets `ip`. An older
    /// reservation for the same MAC is replaced.
    pub async fn reserve_address(&self, network: &str, mac: &str, name: &str, ip: Ipv4Addr) -> HvResult<()> {
        let host = format!("<host mac='{}' name='{}' ip='{ip}'/>", xml_escape(mac), xml_escape(name));
        let by_mac = format!("<host mac='{}'/>", xml_escape(mac));
        let _ = self.virsh.run(&["net-update", network, "delete", "ip-dhcp-host", &by_mac, "--live", "--config"]).await;
        self.virsh.run(&["net-update", network, "add", "ip-dhcp-host", &host, "--live", "--config"]).await?;
        Ok(())
    }

    pub async fn network_exists(&self, network: &str) -> HvResult<bool> {
        match self.virsh.run(&["net-info", network]).await {
            Ok(_) => Ok(true),
            Err(e) if e.stderr().contains("Network not found") || e.stderr().contains("failed to get network") => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn job_line<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix(':').map(str::trim))
}

/// A running job's bytes processed and total (`Data processed:   1.500 MiB`).
fn job_progress(text: &str) -> Option<(u64, u64)> {
    let bytes = |key: &str| {
        let mut words = job_line(text, key)?.split_whitespace();
        let number: f64 = words.next()?.parse().ok()?;
        let unit = match words.next().unwrap_or("B") {
            "B" | "bytes" => 1u64,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return None,
        };
        Some((number * unit as f64) as u64)
    };
    Some((bytes("Data processed")?, bytes("Data total")?)).filter(|(_, total)| *total > 0)
}

/// `virsh domifaddr` output: a header, a rule, then `vnet0  52:54:00:..  ipv4  10.0.0.5/24`.
fn parse_domifaddr(text: &str) -> Vec<(String, Ipv4Addr)> {
    let mut found = Vec::new();
    let mut mac = String::new();
    for line in text.lines().skip(2) {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Continuation lines (another address of the same NIC) start with "-".
        let (m, rest) = match words.as_slice() {
            [_, m, rest @ ..] if m.contains(':') => (m.to_string(), rest),
            ["-", "-", rest @ ..] => (mac.clone(), rest),
            _ => continue,
        };
        mac = m;
        if let ["ipv4", address, ..] = rest
            && let Some(ip) = address.split('/').next().and_then(|a| a.parse().ok())
            && ip != Ipv4Addr::LOCALHOST
        {
            found.push((mac.clone(), ip));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_domifaddr() {
        let text = " Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 lo         00:00:00:00:00:00    ipv4         127.0.0.1/8
 eth0       52:54:00:00:01:20    ipv4         10.77.1.20/24
 -          -                    ipv6         fe80::5054:ff:fe00:120/64
";
        assert_eq!(parse_domifaddr(text), vec![("52:54:00:00:01:20".to_string(), Ipv4Addr::new(10, 77, 1, 20))]);
    }

    #[test]
    fn a_finished_jobs_outcome_is_read() {
        let done = "Job type:         Completed\nOperation:        Backup\nTime elapsed:     85 ms\n";
        assert_eq!(job_line(done, "Job type"), Some("Completed"));
        let failed = "Job type:         Failed\nOperation:        Backup\nError message:    No space left on device\n";
        assert_eq!(job_line(failed, "Error message"), Some("No space left on device"));
    }

    #[test]
    fn r36_a_running_backups_progress_is_read() {
        let running = "Job type:         Unbounded\nOperation:        Backup\nTime elapsed:     512          ms\n\
                       Data processed:   1.500 MiB\nData remaining:   62.500 MiB\nData total:       64.000 MiB\n";
        assert_eq!(job_progress(running), Some((3 << 19, 64 << 20)));
        assert_eq!(job_progress("Job type:         Unbounded\nOperation:        Backup\n"), None);
    }
}
