//! The inventory: everything a site file describes about a datacenter pair, validated
//! and ready to look up. Plans are checked against it; the simulated fabric runs it.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::network::NetworkMapping;
use super::policy::{ReplicationPolicy, Throttle};
use super::protection::{Phase, ProtectionState, Side};
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
    /// False: operations complete at once in real time, while modelled time still
    /// advances by their modelled durations (benchmarks, fast drills); `speed` is unused.
    pub pace: bool,
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
    /// A rehearsal of real sites ([`Inventory::rehearsal`]): the state the real VM was
    /// found in, in whatever phase (failed over, committed, replicating back...), which
    /// the simulation starts it in instead of enabling protection at `since`. A site file
    /// never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<ProtectionState>,
}

impl InitialProtection {
    /// A real VM's protection as found now; `None` when it has none (unprotected, or
    /// never protected).
    pub fn found(state: &ProtectionState, now: Timestamp) -> Option<InitialProtection> {
        if state.phase == Phase::Unprotected {
            return None;
        }
        Some(InitialProtection {
            policy: state.policy.clone()?,
            since: now,
            excluded_disks: state.excluded_disks.clone(),
            found: Some(state.clone()),
        })
    }
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

/// The lists below are the inventory; lookups by VM name and by tag go through indexes
/// built from them on first use, since plans and the simulation look VMs up one by one
/// and a site may hold 100,000 of them. Names and order must therefore not change once it is in use
/// (nothing changes them: the site file builds an inventory once). Sites, policies and
/// sizes are few, written by hand, and are looked up by a scan.
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
    #[serde(skip)]
    pub(super) index: Index,
}

/// Positions in the inventory's lists by VM name and by tag, derived from the lists
/// alone: it takes no part in comparing, printing or serializing an inventory. Each part
/// is built when first needed, so a command that never selects by tag never pays for it.
#[derive(Clone, Default)]
pub(super) struct Index {
    by_vm: OnceLock<ByVm>,
    /// Tag key → tag value → the VMs so tagged, in inventory order.
    by_tag: OnceLock<HashMap<String, HashMap<String, Vec<usize>>>>,
}

#[derive(Clone)]
struct ByVm {
    vms: HashMap<String, usize>,
    /// The replication group each VM is in: the first that lists it.
    groups: HashMap<String, usize>,
    /// Each VM's faults, in file order.
    faults: HashMap<String, Vec<usize>>,
    /// By position in `vms`: the VMs sharing its host's replication bandwidth (see
    /// [`Inventory::host_share`]), computed once: the simulation asks for every copy.
    host_shares: Vec<u32>,
}

impl PartialEq for Index {
    fn eq(&self, _: &Index) -> bool {
        true
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl ByVm {
    fn of(inventory: &Inventory) -> ByVm {
        let mut by_vm =
            ByVm { vms: HashMap::new(), groups: HashMap::new(), faults: HashMap::new(), host_shares: Vec::new() };
        let mut protected_on_host: HashMap<(&str, &str), u32> = HashMap::new();
        for (vm, protection) in inventory.vms.iter().zip(&inventory.initial_protection) {
            if protection.is_some() {
                *protected_on_host.entry((&vm.site, &vm.host)).or_default() += 1;
            }
        }
        by_vm.host_shares = inventory
            .vms
            .iter()
            .zip(&inventory.initial_protection)
            .map(|(vm, protection)| {
                let protected = protected_on_host.get(&(vm.site.as_str(), vm.host.as_str())).copied().unwrap_or(0);
                protected + u32::from(protection.is_none())
            })
            .collect();
        for (i, vm) in inventory.vms.iter().enumerate() {
            by_vm.vms.entry(vm.name.clone()).or_insert(i);
        }
        for (i, group) in inventory.replication_groups.iter().enumerate() {
            for vm in &group.vms {
                by_vm.groups.entry(vm.clone()).or_insert(i);
            }
        }
        for (i, fault) in inventory.faults.iter().enumerate() {
            by_vm.faults.entry(fault.vm().to_string()).or_default().push(i);
        }
        by_vm
    }
}

fn by_tag(vms: &[Vm]) -> HashMap<String, HashMap<String, Vec<usize>>> {
    let mut by_tag: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
    for (i, vm) in vms.iter().enumerate() {
        for (key, value) in &vm.tags {
            let values = match by_tag.get_mut(key) {
                Some(values) => values,
                None => by_tag.entry(key.clone()).or_default(),
            };
            match values.get_mut(value) {
                Some(tagged) => tagged.push(i),
                None => {
                    values.insert(value.clone(), vec![i]);
                }
            }
        }
    }
    by_tag
}

impl Inventory {
    fn by_vm(&self) -> &ByVm {
        self.index.by_vm.get_or_init(|| ByVm::of(self))
    }

    /// R15 (seed 002: a Hyper-V host's replication traffic passes through its throttle):
    /// how many VMs share the throttled bandwidth of `vm`'s host: those the site file
    /// protects there, and `vm` itself if it is not one of them.
    pub fn host_share(&self, vm: &Vm) -> u32 {
        match self.position(&vm.name) {
            Some(i) => self.by_vm().host_shares[i],
            // Not one of the site file's VMs: it shares with those the file protects there.
            None => {
                let protecting = self.vms.iter().zip(&self.initial_protection);
                let protected = protecting.filter(|(v, p)| p.is_some() && v.site == vm.site && v.host == vm.host);
                protected.count() as u32 + 1
            }
        }
    }

    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.position(name).map(|i| &self.vms[i])
    }

    /// Where a VM is in `vms` (the site file's order).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_vm().vms.get(name).copied()
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

    /// The VMs tagged `key = value`, in inventory order.
    pub fn tagged<'a>(&'a self, key: &str, value: &str) -> impl Iterator<Item = &'a Vm> + 'a {
        let by_tag = self.index.by_tag.get_or_init(|| by_tag(&self.vms));
        let positions = by_tag.get(key).and_then(|values| values.get(value)).map_or(&[][..], Vec::as_slice);
        positions.iter().map(|&i| &self.vms[i])
    }

    pub fn group_of(&self, vm: &str) -> Option<&ReplicationGroup> {
        self.by_vm().groups.get(vm).map(|&i| &self.replication_groups[i])
    }

    pub fn faults_of<'a>(&'a self, vm: &'a str) -> impl Iterator<Item = &'a Fault> + 'a {
        let positions = self.by_vm().faults.get(vm).map_or(&[][..], Vec::as_slice);
        positions.iter().map(|&i| &self.faults[i])
    }

    /// The simulation a dry run of real sites runs on (DESIGN.md): this inventory as it
    /// stands now, each VM in the protection state the real one was `found` in, whatever
    /// its phase, a VM whose disks come from its hypervisor given one OS disk of `disk_gb`
    /// for the model's copy times, and what the site `measured` instead of the site
    /// file's estimates.
    pub fn rehearsal(
        &self,
        now: Timestamp,
        found: &BTreeMap<String, ProtectionState>,
        disk_gb: u64,
        measured: &BTreeMap<String, super::vm::MeasuredDurations>,
    ) -> Inventory {
        let mut rehearsal = self.clone();
        rehearsal.index = Index::default();
        rehearsal.simulation = Simulation { start: now, speed: self.simulation.speed, pace: false };
        for (vm, initial) in rehearsal.vms.iter_mut().zip(rehearsal.initial_protection.iter_mut()) {
            if vm.disks.is_empty() {
                vm.disks = vec![super::vm::Disk { name: "vda".into(), size_gb: disk_gb, os_disk: true }];
            }
            *initial = found.get(&vm.name).and_then(|state| InitialProtection::found(state, now));
            // What the real site took last time beats the site file's estimate.
            if let Some(measured) = measured.get(&vm.name) {
                vm.boot_time = measured.boot.unwrap_or(vm.boot_time);
                vm.shutdown_time = measured.shutdown.unwrap_or(vm.shutdown_time);
                vm.measured = Some(measured.clone());
            }
        }
        rehearsal
    }

    /// True when the VM's recovery site is another datacenter rather than a cloud.
    pub fn recovers_to_secondary_site(&self, vm: &Vm) -> bool {
        self.recovery_site_of(vm).is_some_and(|s| s.kind == SiteKind::OnPrem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTOSO: &str = include_str!("../../plans/contoso/site.toml");
    const FAULTS: &str = r#"
[[faults]]
kind = "shutdown-hang"
vm = "web02"

[[faults]]
kind = "boot-failure"
vm = "sql01"

[[faults]]
kind = "boot-failure"
vm = "web02"
"#;

    fn contoso() -> Inventory {
        super::super::parse_site(&format!("{CONTOSO}{FAULTS}"), "site.toml".as_ref()).unwrap()
    }

    fn names<'a>(vms: impl Iterator<Item = &'a Vm>) -> Vec<&'a str> {
        vms.map(|vm| vm.name.as_str()).collect()
    }

    #[test]
    fn lookups_by_name_and_tag_agree_with_the_lists() {
        let inventory = contoso();
        for (i, vm) in inventory.vms.iter().enumerate() {
            assert_eq!(inventory.position(&vm.name), Some(i));
            assert_eq!(inventory.vm(&vm.name), Some(vm));
        }
        assert_eq!(inventory.vm("nope"), None);
        assert_eq!(names(inventory.tagged("tier", "web")), ["web01", "web02", "web03"]);
        assert_eq!(names(inventory.tagged("app", "contoso")), names(inventory.vms.iter()), "inventory order");
        assert_eq!(inventory.tagged("tier", "nope").count() + inventory.tagged("nope", "web").count(), 0);
        assert_eq!(inventory.group_of("sql02").map(|g| g.name.as_str()), Some("sql-cluster"));
        assert_eq!(inventory.group_of("web01"), None);
        let faults: Vec<&Fault> = inventory.faults_of("web02").collect();
        assert_eq!(faults, [&inventory.faults[0], &inventory.faults[2]], "file order");
        assert_eq!(inventory.faults_of("app01").count(), 0);
    }

    #[test]
    fn an_inventory_read_back_looks_up_like_the_one_written() {
        let inventory = contoso();
        let json = serde_json::to_string(&inventory).unwrap();
        let read: Inventory = serde_json::from_str(&json).unwrap();
        assert_eq!(read, inventory);
        assert_eq!(read.vm("app02"), inventory.vm("app02"));
        assert_eq!(names(read.tagged("tier", "db")), ["sql01", "sql02"]);
        assert_eq!(read.faults_of("sql01").count(), 1);
    }
}
