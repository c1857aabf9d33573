//! The addresses in use on each network of each site: those of VMs running there, of
//! replicas and of test replicas (R9). Kept as the records change rather than gathered
//! from every record at each placement, which made a failover of n VMs cost n².

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::record::{Changed, Records, VmRecord};
use crate::model::{Inventory, Side, Subnet, Vm};

/// A network of a site, by its place in the inventory: the site's, then the network's
/// within it. Holdings are counted per network many times a second in a large run;
/// positions cost neither an allocation nor a hash, and a site has a few networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NetworkId {
    site: usize,
    network: usize,
}

/// The network `network` of site `site`, if the inventory has it.
fn network_id(inventory: &Inventory, site: &str, network: &str) -> Option<NetworkId> {
    let s = inventory.sites.iter().position(|s| s.name == site)?;
    let n = inventory.sites[s].networks.iter().position(|n| n.name == network)?;
    Some(NetworkId { site: s, network: n })
}

/// One address held on a site's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holding {
    network: NetworkId,
    ip: Ipv4Addr,
}

/// The addresses a VM's record holds: its own NICs' while it is active on its own site,
/// and those of its replica and test replica, wherever they are.
fn holdings<'a>(inventory: &'a Inventory, vm: &'a Vm, record: &'a VmRecord) -> impl Iterator<Item = Holding> + 'a {
    let own =
        vm.nics.iter().filter(move |_| record.protection.active == Side::Original).filter_map(move |nic| {
            Some(Holding { network: network_id(inventory, &vm.site, &nic.network)?, ip: nic.ip? })
        });
    let replicas = [&record.replica, &record.test_replica].into_iter().flatten().flat_map(move |replica| {
        replica.nics.iter().filter_map(move |nic| {
            Some(Holding { network: network_id(inventory, &replica.site, nic.network.as_deref()?)?, ip: nic.ip? })
        })
    });
    own.chain(replicas)
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
    /// By site, then network, in the inventory's order.
    networks: Vec<Vec<NetworkAddresses>>,
    /// Held for replicas a preflight has placed but not made, until it ends.
    reserved: Vec<Holding>,
    /// What each VM's record held when last read, by the VM's place in the inventory, to
    /// give back when it changes.
    by_vm: Vec<Vec<Holding>>,
}

impl AddressBook {
    /// The addresses every record holds.
    pub(super) fn of(inventory: &Inventory, records: &Records) -> AddressBook {
        let networks = inventory
            .sites
            .iter()
            .map(|site| site.networks.iter().map(|_| NetworkAddresses::default()).collect())
            .collect();
        let mut book = AddressBook { networks, reserved: Vec::new(), by_vm: vec![Vec::new(); inventory.vms.len()] };
        for (index, vm) in inventory.vms.iter().enumerate() {
            book.refresh(inventory, index, vm, records.get(&vm.name));
        }
        book
    }

    /// Catches up with the records that changed; `None` when it must be read afresh.
    pub(super) fn catch_up(mut self, inventory: &Inventory, records: &Records, changed: Changed) -> Option<Self> {
        let Changed::Some(names) = changed else { return None };
        for name in names {
            if let Some(index) = inventory.position(&name) {
                self.refresh(inventory, index, &inventory.vms[index], records.get(&name));
            }
        }
        Some(self)
    }

    /// Gives back what the VM at `index` held and takes what its record holds now,
    /// unless that is the same: most changes of a record are not of its addresses, and
    /// telling so allocates nothing.
    fn refresh(&mut self, inventory: &Inventory, index: usize, vm: &Vm, record: Option<&VmRecord>) {
        let same = match record {
            Some(record) => holdings(inventory, vm, record).eq(self.by_vm[index].iter().copied()),
            None => self.by_vm[index].is_empty(),
        };
        if same {
            return;
        }
        let held: Vec<Holding> = record.map(|record| holdings(inventory, vm, record).collect()).unwrap_or_default();
        for old in std::mem::take(&mut self.by_vm[index]) {
            self.release(old);
        }
        for holding in &held {
            *self.network_mut(holding.network).held.entry(holding.ip).or_default() += 1;
        }
        self.by_vm[index] = held;
    }

    /// Holds the addresses of a replica placed but not made: a preflight places each VM
    /// of a plan seeing the addresses the earlier ones will take.
    pub(super) fn reserve(&mut self, inventory: &Inventory, replica: &crate::fabric::Replica) {
        for nic in &replica.nics {
            if let (Some(name), Some(ip)) = (&nic.network, nic.ip)
                && let Some(network) = network_id(inventory, &replica.site, name)
            {
                let holding = Holding { network, ip };
                *self.network_mut(network).held.entry(ip).or_default() += 1;
                self.reserved.push(holding);
            }
        }
    }

    /// Whether a preflight's reservations are held: then the book holds more than records.
    #[cfg(test)]
    pub(super) fn is_reserving(&self) -> bool {
        !self.reserved.is_empty()
    }

    /// Gives back every address `reserve` held.
    pub(super) fn release_reserved(&mut self) {
        for holding in std::mem::take(&mut self.reserved) {
            self.release(holding);
        }
    }

    fn release(&mut self, holding: Holding) {
        let network = self.network_mut(holding.network);
        let Some(count) = network.held.get_mut(&holding.ip) else { return };
        *count -= 1;
        if *count == 0 {
            network.held.remove(&holding.ip);
            for from in network.free_from.values_mut() {
                *from = (*from).min(holding.ip);
            }
        }
    }

    fn network_mut(&mut self, id: NetworkId) -> &mut NetworkAddresses {
        &mut self.networks[id.site][id.network]
    }

    fn network(&self, inventory: &Inventory, site: &str, network: &str) -> Option<&NetworkAddresses> {
        network_id(inventory, site, network).map(|id| &self.networks[id.site][id.network])
    }

    /// Whether `ip` is held on `network` of `site`.
    pub(super) fn holds(&self, inventory: &Inventory, site: &str, network: &str, ip: Ipv4Addr) -> bool {
        self.network(inventory, site, network).is_some_and(|n| n.held.contains_key(&ip))
    }

    /// An address of `subnet` below which every assignable one is held or reserved: where
    /// a search for the lowest free address may start.
    pub(super) fn free_from(&mut self, inventory: &Inventory, site: &str, network: &str, subnet: &Subnet) -> Ipv4Addr {
        let first = subnet.cidr.assignable().next().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let Some(id) = network_id(inventory, site, network) else { return first };
        let addresses = self.network_mut(id);
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
    pub(super) fn held(
        &self,
        inventory: &Inventory,
        site: &str,
        network: &str,
    ) -> std::collections::BTreeSet<Ipv4Addr> {
        self.network(inventory, site, network).map(|n| n.held.keys().copied().collect()).unwrap_or_default()
    }
}
