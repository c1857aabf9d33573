//! Virtual machines as the fabric protects them: disks (R6), NICs and their addresses,
//! the replica's name (R7) and NIC count (R8), target sizes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::recovery::Timestamp;
use super::site::SiteKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Windows,
    Linux,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub size_gb: u64,
    /// The disk the OS boots from; a VM has exactly one.
    pub os_disk: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub network: String,
    pub subnet: String,
    /// The source VM's address, the one DNS points at before failover.
    pub ip: Option<Ipv4Addr>,
    /// R9: the static address the replica should get on the target.
    pub target_ip: Option<Ipv4Addr>,
}

/// A size a replica can take on the target, e.g. a cloud VM size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSize {
    pub name: String,
    pub max_nics: u32,
}

/// What a real site measured in a VM's past failovers (runs and drills), for dry runs
/// to model instead of the site file's estimates. Each is the latest
/// measurement; `None`: never measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasuredDurations {
    /// The source's clean shutdown (planned failovers).
    #[serde(default)]
    pub shutdown: Option<Duration>,
    /// The final copy after the shutdown (R31).
    #[serde(default)]
    pub final_sync: Option<Duration>,
    /// From the recovery point's choice to the replica's start being asked (its
    /// overlays made, its domain defined).
    #[serde(default)]
    pub processing: Option<Duration>,
    /// From the replica's start being asked to its first answer on a port (to running,
    /// when no port was waited for).
    #[serde(default)]
    pub boot: Option<Duration>,
    /// A commit (R34): a failback's run ends with one.
    #[serde(default)]
    pub commit: Option<Duration>,
    /// When the latest of them was measured.
    #[serde(default)]
    pub at: Option<Timestamp>,
}

impl MeasuredDurations {
    pub fn is_empty(&self) -> bool {
        [self.shutdown, self.final_sync, self.processing, self.boot, self.commit].iter().all(Option::is_none)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    pub name: String,
    /// The site the VM runs on when nothing has failed over.
    pub site: String,
    pub host: String,
    pub os: Os,
    /// The target size of the replica (R8); `None` places no NIC limit.
    pub size: Option<String>,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub tags: BTreeMap<String, String>,
    /// DNS names that point at this VM (R50).
    pub dns: Vec<String>,
    /// How long the VM takes from power-on to running.
    pub boot_time: Duration,
    /// How long a clean shutdown takes.
    pub shutdown_time: Duration,
    /// Bytes changed per second, what delta replication carries.
    pub change_rate_bytes_per_sec: u64,
    /// What a real site measured of this VM's failovers, for a dry run of that site to
    /// model (its boot and shutdown times are then the measured ones too); `None`: the
    /// simulation's own model (final copy from the change rate and the throttle, the
    /// processing R33 describes).
    #[serde(default)]
    pub measured: Option<MeasuredDurations>,
    /// The source storage classification (R11).
    pub storage: Option<String>,
    /// The replica's name when it differs from the VM's (R7).
    pub replica_name: Option<String>,
    /// The TCP ports the VM serves once it runs: what `wait_port` finds answering.
    pub services: Vec<u16>,
}

impl Vm {
    pub fn replica_name(&self) -> &str {
        self.replica_name.as_deref().unwrap_or(&self.name)
    }

    /// The disks replication copies: all but the excluded ones (R6).
    pub fn replicated_bytes(&self, excluded: &[String]) -> u64 {
        self.disks.iter().filter(|d| !excluded.contains(&d.name)).map(|d| d.size_gb * 1024 * 1024 * 1024).sum()
    }
}

/// R6: a VM has exactly one OS disk; disk names are unique.
pub fn check_disks(disks: &[Disk]) -> Result<(), DiskError> {
    let os_disks: Vec<&str> = disks.iter().filter(|d| d.os_disk).map(|d| d.name.as_str()).collect();
    match os_disks.len() {
        0 => return Err(DiskError::NoOsDisk),
        1 => {}
        _ => return Err(DiskError::SeveralOsDisks(os_disks.join(", "))),
    }
    for (i, disk) in disks.iter().enumerate() {
        if disks[..i].iter().any(|d| d.name == disk.name) {
            return Err(DiskError::DuplicateName(disk.name.clone()));
        }
    }
    Ok(())
}

/// R6: data disks may be excluded from replication; the OS disk never.
pub fn check_exclusions(disks: &[Disk], excluded: &[String]) -> Result<(), DiskError> {
    for name in excluded {
        match disks.iter().find(|d| &d.name == name) {
            None => return Err(DiskError::UnknownDisk(name.clone())),
            Some(d) if d.os_disk => return Err(DiskError::OsDiskExcluded(name.clone())),
            Some(_) => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiskError {
    #[error("a VM needs exactly one OS disk (os = true); this one has none")]
    NoOsDisk,
    #[error("a VM needs exactly one OS disk (os = true); this one has several: {0}")]
    SeveralOsDisks(String),
    #[error("two disks are named {0:?}")]
    DuplicateName(String),
    #[error("no disk is named {0:?}")]
    UnknownDisk(String),
    #[error("disk {0:?} is the OS disk, which is always replicated; only data disks can be excluded")]
    OsDiskExcluded(String),
}

/// R7: the replica's name must satisfy the target's naming rules. For a cloud target:
/// 1-15 characters for Windows, 1-64 for Linux; letters, digits and hyphens; no
/// leading or trailing hyphen. An on-premises target takes any 1-64 character name.
pub fn check_replica_name(name: &str, os: Os, target: SiteKind) -> Result<(), String> {
    let max = match (target, os) {
        (SiteKind::Cloud, Os::Windows) => 15,
        _ => 64,
    };
    let len = name.chars().count();
    if len == 0 || len > max {
        return Err(format!("replica name {name:?} has {len} characters; the target allows 1 to {max} for this OS"));
    }
    if target == SiteKind::Cloud {
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!(
                "replica name {name:?} contains {bad:?}; the cloud target allows letters, digits and hyphens"
            ));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(format!("replica name {name:?} must not start or end with a hyphen"));
        }
    }
    Ok(())
}

/// R8: the replica gets min(source NICs, what its target size allows).
pub fn replica_nic_count(source_nics: usize, size: Option<&TargetSize>) -> usize {
    match size {
        Some(size) => source_nics.min(size.max_nics as usize),
        None => source_nics,
    }
}

/// R11: a source storage classification mapped to a target one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageMapping {
    pub source: String,
    pub target: String,
}

/// Where a replica's disks land when its classification is not mapped (R11).
pub const DEFAULT_STORAGE: &str = "host default location";

/// R11: the target storage for a source classification; unmapped data lands in the
/// target host's default location.
pub fn target_storage<'a>(mappings: &'a [StorageMapping], source: Option<&str>) -> &'a str {
    source.and_then(|s| mappings.iter().find(|m| m.source == s)).map(|m| m.target.as_str()).unwrap_or(DEFAULT_STORAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, os: bool) -> Disk {
        Disk { name: name.into(), size_gb: 10, os_disk: os }
    }

    #[test]
    fn r6_exactly_one_os_disk() {
        assert!(check_disks(&[disk("os", true), disk("data", false)]).is_ok());
        assert_eq!(check_disks(&[disk("data", false)]), Err(DiskError::NoOsDisk));
        assert!(matches!(check_disks(&[disk("a", true), disk("b", true)]), Err(DiskError::SeveralOsDisks(_))));
        assert!(matches!(check_disks(&[disk("a", true), disk("a", false)]), Err(DiskError::DuplicateName(_))));
    }

    #[test]
    fn r6_data_disks_may_be_excluded_but_never_the_os_disk() {
        let disks = [disk("os", true), disk("data", false)];
        assert!(check_exclusions(&disks, &["data".into()]).is_ok());
        assert_eq!(check_exclusions(&disks, &["os".into()]), Err(DiskError::OsDiskExcluded("os".into())));
        assert_eq!(check_exclusions(&disks, &["tmp".into()]), Err(DiskError::UnknownDisk("tmp".into())));
    }

    #[test]
    fn r7_cloud_windows_names_are_at_most_15_characters() {
        assert!(check_replica_name("sql01", Os::Windows, SiteKind::Cloud).is_ok());
        assert!(check_replica_name("a-very-long-sql-name", Os::Windows, SiteKind::Cloud).is_err());
        assert!(check_replica_name("a-very-long-sql-name", Os::Linux, SiteKind::Cloud).is_ok());
        assert!(check_replica_name(&"x".repeat(65), Os::Linux, SiteKind::Cloud).is_err());
        assert!(check_replica_name("", Os::Linux, SiteKind::OnPrem).is_err());
    }

    #[test]
    fn r7_cloud_names_use_letters_digits_and_inner_hyphens() {
        assert!(check_replica_name("web_01", Os::Linux, SiteKind::Cloud).unwrap_err().contains("'_'"));
        assert!(check_replica_name("-web01", Os::Linux, SiteKind::Cloud).unwrap_err().contains("hyphen"));
        assert!(check_replica_name("web01-", Os::Linux, SiteKind::Cloud).is_err());
        assert!(check_replica_name("web_01", Os::Linux, SiteKind::OnPrem).is_ok(), "on-premises targets are lenient");
    }

    #[test]
    fn r8_replica_nic_count_is_capped_by_target_size() {
        let small = TargetSize { name: "A1".into(), max_nics: 1 };
        let large = TargetSize { name: "A4".into(), max_nics: 4 };
        assert_eq!(replica_nic_count(3, Some(&small)), 1);
        assert_eq!(replica_nic_count(3, Some(&large)), 3);
        assert_eq!(replica_nic_count(3, None), 3);
    }

    #[test]
    fn r11_storage_mapping_or_host_default() {
        let maps = vec![StorageMapping { source: "gold".into(), target: "dr-gold".into() }];
        assert_eq!(target_storage(&maps, Some("gold")), "dr-gold");
        assert_eq!(target_storage(&maps, Some("silver")), DEFAULT_STORAGE);
        assert_eq!(target_storage(&maps, None), DEFAULT_STORAGE);
    }
}
