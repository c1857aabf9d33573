//! The inventory: everything a site file describes about a datacenter pair, validated
//! and ready to look up. Plans are checked against it; the simulated fabric runs it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::network::NetworkMapping;
use super::policy::{ReplicationPolicy, Throttle};
use super::protection::Side;
use super::recovery::Timestamp;
use super::site::{Pairing, Site, SiteKind};
use super::vm::{StorageMapping, TargetSize, Vm};

/// How the simulated datacenter's clock runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    /// Modelled time when the state directory is first created.
    pub start: Timestamp,
    /// Modelled milliseconds per real millisecond while operations run.
    pub speed: u32,
}

/// VMs that fail over to a common recovery point (R12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationGroup {
    pub name: String,
    pub vms: Vec<String>,
}

/// The protection a VM already has when the simulation starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialProtection {
    pub policy: String,
    /// When protection was enabled; initial replication runs from then (R4).
    pub since: Timestamp,
    pub excluded_disks: Vec<String>,
}

/// Failures injected into the simulated fabric, to rehearse what goes wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The replica does not boot when failed over.
    BootFailure { vm: String },
    /// Shutting the VM down fails at once.
    ShutdownFailure { vm: String },
    /// Shutting the VM down hangs until the shutdown timeout.
    ShutdownHang { vm: String },
    /// Replication stops making recovery points at `at`.
    ReplicationStall { vm: String, at: Timestamp },
}

impl Fault {
    pub fn vm(&self) -> &str {
        match self {
            Fault::BootFailure { vm }
            | Fault::ShutdownFailure { vm }
            | Fault::ShutdownHang { vm }
            | Fault::ReplicationStall { vm, .. } => vm,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub simulation: Simulation,
    pub sites: Vec<Site>,
    pub pairings: Vec<Pairing>,
    pub network_mappings: Vec<NetworkMapping>,
    pub storage_mappings: Vec<StorageMapping>,
    pub policies: Vec<ReplicationPolicy>,
    pub sizes: Vec<TargetSize>,
    pub throttle: Throttle,
    /// How long a hung shutdown is waited for before it counts as failed.
    pub shutdown_timeout: Duration,
    pub replication_groups: Vec<ReplicationGroup>,
    pub vms: Vec<Vm>,
    /// Indexed like `vms`: the protection each VM starts with.
    pub initial_protection: Vec<Option<InitialProtection>>,
    pub faults: Vec<Fault>,
}

impl Inventory {
    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn size(&self, name: &str) -> Option<&TargetSize> {
        self.sizes.iter().find(|s| s.name == name)
    }

    /// A policy by name; `failback` is always there (R37).
    pub fn policy(&self, name: &str) -> Option<ReplicationPolicy> {
        if name == super::policy::FAILBACK_POLICY_NAME {
            return Some(ReplicationPolicy::failback());
        }
        self.policies.iter().find(|p| p.name == name).cloned()
    }

    /// The site a VM is protected to: the other end of its site's pairing.
    pub fn recovery_site_of(&self, vm: &Vm) -> Option<&Site> {
        self.pairings.iter().find(|p| p.source == vm.site).and_then(|p| self.site(&p.target))
    }

    /// The site on `side` of a VM's pairing.
    pub fn site_on(&self, vm: &Vm, side: Side) -> Option<&Site> {
        match side {
            Side::Original => self.site(&vm.site),
            Side::Recovery => self.recovery_site_of(vm),
        }
    }

    pub fn group_of(&self, vm: &str) -> Option<&ReplicationGroup> {
        self.replication_groups.iter().find(|g| g.vms.iter().any(|v| v == vm))
    }

    pub fn faults_of<'a>(&'a self, vm: &'a str) -> impl Iterator<Item = &'a Fault> + 'a {
        self.faults.iter().filter(move |f| f.vm() == vm)
    }

    /// True when the VM's recovery site is another datacenter rather than a cloud.
    pub fn recovers_to_secondary_site(&self, vm: &Vm) -> bool {
        self.recovery_site_of(vm).is_some_and(|s| s.kind == SiteKind::OnPrem)
    }
}
