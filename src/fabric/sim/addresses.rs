//! The addresses in use on each network of each site: those of VMs running there, of
//! replicas and of test replicas (R9). Kept as the records change rather than gathered
//! from every record at each placement, which made a failover of n VMs cost n².

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::record::{Changed, Records, VmRecord};
use crate::model::{Inventory, Side, Subnet, Vm};

/// One address held on a site's network.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holding {
    site: String,
    network: String,
    ip: Ipv4Addr,
}

/// The addresses a VM's record holds: its own NICs' while it is active on its own site,
/// and those of its replica and test replica, wherever they are.
fn holdings(vm: &Vm, record: &VmRecord) -> Vec<Holding> {
    let mut held = Vec::new();
    if record.protection.active == Side::Original {
        for nic in &vm.nics {
            if let Some(ip) = nic.ip {
                held.push(Holding { site: vm.site.clone(), network: nic.network.clone(), ip });
            }
        }
    }
    for replica in [&record.replica, &record.test_replica].into_iter().flatten() {
        for nic in &replica.nics {
            if let (Some(network), Some(ip)) = (&nic.network, nic.ip) {
                held.push(Holding { site: replica.site.clone(), network: network.clone(), ip });
            }
        }
    }
    held
}

#[derive(Default)]
struct NetworkAddresses {
    /// How many holders each address has: subnets of one network may overlap, so a
    /// release frees an address only when its last holder lets go.
    held: HashMap<Ipv4Addr, u32>,
    /// By subnet name: every assignable address below this one is held or reserved, so
    /// looking for the lowest free address starts here. DHCP hands addresses out from the
    /// bottom, and without this each lease would step over all the earlier ones.
    free_from: HashMap<String, Ipv4Addr>,
}

pub(super) struct AddressBook {
    /// By site, then network.
    sites: HashMap<String, HashMap<String, NetworkAddresses>>,
    /// What each VM's record held when last read, to give back when it changes.
    by_vm: HashMap<String, Vec<Holding>>,
}

impl AddressBook {
    /// The addresses every record holds.
    pub(super) fn of(inventory: &Inventory, records: &Records) -> AddressBook {
        let mut book = AddressBook { sites: HashMap::new(), by_vm: HashMap::new() };
        for vm in &inventory.vms {
            book.refresh(&vm.name, Some(vm), records.get(&vm.name));
        }
        book
    }

    /// Catches up with the records that changed; `None` when it must be read afresh.
    pub(super) fn catch_up(mut self, inventory: &Inventory, records: &Records, changed: Changed) -> Option<Self> {
        let Changed::Some(names) = changed else { return None };
        for name in names {
            self.refresh(&name, inventory.vm(&name), records.get(&name));
        }
        Some(self)
    }

    /// Gives back what `name` held and takes what its record holds now. A record of a VM
    /// the inventory does not know holds nothing.
    fn refresh(&mut self, name: &str, vm: Option<&Vm>, record: Option<&VmRecord>) {
        for old in self.by_vm.remove(name).unwrap_or_default() {
            self.release(&old);
        }
        let held = match (vm, record) {
            (Some(vm), Some(record)) => holdings(vm, record),
            _ => return,
        };
        for holding in &held {
            let network = self.network_mut(&holding.site, &holding.network);
            *network.held.entry(holding.ip).or_default() += 1;
        }
        if !held.is_empty() {
            self.by_vm.insert(name.to_string(), held);
        }
    }

    fn release(&mut self, holding: &Holding) {
        let network = self.network_mut(&holding.site, &holding.network);
        let Some(count) = network.held.get_mut(&holding.ip) else { return };
        *count -= 1;
        if *count == 0 {
            network.held.remove(&holding.ip);
            for from in network.free_from.values_mut() {
                *from = (*from).min(holding.ip);
            }
        }
    }

    fn network_mut(&mut self, site: &str, network: &str) -> &mut NetworkAddresses {
        // Names are copied only the first time they are seen.
        if !self.sites.contains_key(site) {
            self.sites.insert(site.to_string(), HashMap::new());
        }
        let networks = self.sites.get_mut(site).expect("inserted above");
        if !networks.contains_key(network) {
            networks.insert(network.to_string(), NetworkAddresses::default());
        }
        networks.get_mut(network).expect("inserted above")
    }

    /// Whether `ip` is held on `network` of `site`.
    pub(super) fn holds(&self, site: &str, network: &str, ip: Ipv4Addr) -> bool {
        self.sites.get(site).and_then(|n| n.get(network)).is_some_and(|n| n.held.contains_key(&ip))
    }

    /// An address of `subnet` below which every assignable one is held or reserved: where
    /// a search for the lowest free address may start.
    pub(super) fn free_from(&mut self, site: &str, network: &str, subnet: &Subnet) -> Ipv4Addr {
        let first = subnet.cidr.assignable().next().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let addresses = self.network_mut(site, network);
        let mut from = addresses.free_from.get(&subnet.name).copied().unwrap_or(first).max(first);
        while subnet.cidr.contains(from) && (addresses.held.contains_key(&from) || subnet.reserved.contains(&from)) {
            from = Ipv4Addr::from(u32::from(from).saturating_add(1));
        }
        match addresses.free_from.get_mut(&subnet.name) {
            Some(known) => *known = from,
            None => {
                addresses.free_from.insert(subnet.name.clone(), from);
            }
        }
        from
    }

    /// Every address held on `network` of `site`, for checking a kept book against one read afresh.
    #[cfg(test)]
    pub(super) fn held(&self, site: &str, network: &str) -> std::collections::BTreeSet<Ipv4Addr> {
        self.sites.get(site).and_then(|n| n.get(network)).map(|n| n.held.keys().copied().collect()).unwrap_or_default()
    }
}
