//! The document as written. Values that an error may point at are `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(super) type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SiteFileDoc {
    pub(super) simulation: Option<SimulationDoc>,
    pub(super) throttle: Option<ThrottleDoc>,
    #[serde(default)]
    pub(super) sites: Vec<SiteDoc>,
    #[serde(default)]
    pub(super) pairings: Vec<PairDoc>,
    #[serde(default)]
    pub(super) network_mappings: Vec<PairDoc>,
    #[serde(default)]
    pub(super) storage_mappings: Vec<PairDoc>,
    #[serde(default)]
    pub(super) policies: Vec<PolicyDoc>,
    #[serde(default)]
    pub(super) sizes: Vec<SizeDoc>,
    #[serde(default)]
    pub(super) replication_groups: Vec<GroupDoc>,
    #[serde(default)]
    pub(super) vms: Vec<VmDoc>,
    #[serde(default)]
    pub(super) faults: Vec<FaultDoc>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SimulationDoc {
    pub(super) start: Option<Text>,
    pub(super) speed: Option<Spanned<i64>>,
    pub(super) pace: Option<bool>,
    pub(super) shutdown_timeout: Option<Text>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ThrottleDoc {
    pub(super) work_hours: Option<Text>,
    pub(super) work_kbps: Option<Spanned<u64>>,
    pub(super) off_hours_kbps: Option<Spanned<u64>>,
    pub(super) threads: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SiteDoc {
    pub(super) name: Text,
    pub(super) kind: Text,
    pub(super) platform: Option<Text>,
    #[serde(default)]
    pub(super) hosts: Vec<Text>,
    #[serde(default)]
    pub(super) networks: Vec<NetworkDoc>,
    pub(super) libvirt: Option<Spanned<LibvirtDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LibvirtDoc {
    pub(super) uri: Text,
    pub(super) storage: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkDoc {
    pub(super) name: Text,
    #[serde(default)]
    pub(super) isolated: bool,
    #[serde(default)]
    pub(super) subnets: Vec<SubnetDoc>,
    pub(super) libvirt_network: Option<Text>,
    pub(super) bridge: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubnetDoc {
    pub(super) name: Text,
    pub(super) cidr: Text,
    #[serde(default)]
    pub(super) reserved: Vec<Text>,
}

/// A pairing or a mapping: both are `source = ...`, `target = ...`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PairDoc {
    pub(super) source: Text,
    pub(super) target: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyDoc {
    pub(super) name: Text,
    pub(super) copy_frequency: Option<Text>,
    pub(super) retention: Text,
    pub(super) app_consistent: Option<Text>,
    pub(super) initial_replication: Option<Text>,
    pub(super) initial_replication_delay: Option<Text>,
    pub(super) export_path: Option<Text>,
    pub(super) import_path: Option<Text>,
    pub(super) offline_transfer: Option<Text>,
    pub(super) compression: Option<bool>,
    pub(super) encryption: Option<bool>,
    pub(super) target_storage: Option<Text>,
    pub(super) rpo_threshold: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SizeDoc {
    pub(super) name: Text,
    pub(super) max_nics: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupDoc {
    pub(super) name: Text,
    #[serde(default)]
    pub(super) vms: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VmDoc {
    pub(super) name: Text,
    pub(super) site: Text,
    pub(super) host: Text,
    pub(super) os: Text,
    pub(super) size: Option<Text>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) dns: Vec<String>,
    pub(super) boot_time: Option<Text>,
    pub(super) shutdown_time: Option<Text>,
    pub(super) change_rate_kbps: Option<u64>,
    pub(super) storage: Option<String>,
    pub(super) replica_name: Option<String>,
    pub(super) disks: Option<Spanned<Vec<DiskDoc>>>,
    #[serde(default)]
    pub(super) nics: Vec<NicDoc>,
    pub(super) protection: Option<ProtectionDoc>,
    /// TCP ports the VM serves.
    #[serde(default)]
    pub(super) services: Vec<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiskDoc {
    pub(super) name: String,
    pub(super) size_gb: u64,
    #[serde(default)]
    pub(super) os: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NicDoc {
    pub(super) network: Text,
    pub(super) subnet: Text,
    pub(super) ip: Option<Text>,
    pub(super) target_ip: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProtectionDoc {
    pub(super) policy: Text,
    pub(super) since: Option<Text>,
    pub(super) exclude: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaultDoc {
    pub(super) kind: Text,
    pub(super) vm: Text,
    pub(super) at: Option<Text>,
}
