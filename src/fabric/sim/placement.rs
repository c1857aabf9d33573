//! Where a replica lands: its host, its storage (R11), how many NICs it gets (R8), the
//! network and subnet each joins (R10) and the address each gets (R9).

use std::net::Ipv4Addr;

use super::addresses::AddressBook;
use super::{SimFabric, SimState};
use crate::fabric::{FabricError, FabricResult, Replica, ReplicaNic};
use crate::model::network::{assign_address_with, mapped_network};
use crate::model::vm::{DEFAULT_STORAGE, replica_nic_count, target_storage};
use crate::model::{Addressing, Side, Site, Vm};

/// Where a replica is going: the site, and for a test failover the network chosen.
pub struct Destination<'a> {
    pub side: Side,
    pub test: bool,
    pub test_network: Option<&'a str>,
}

impl SimFabric {
    /// The addresses in use now, caught up with the records changed since last asked.
    pub(super) fn address_book<'s>(&self, state: &'s mut SimState) -> &'s mut AddressBook {
        let changed = state.vms.take_changed();
        let book = state.addresses.take().and_then(|book| book.catch_up(&self.inventory, &state.vms, changed));
        let book = state.addresses.insert(book.unwrap_or_else(|| AddressBook::of(&self.inventory, &state.vms)));
        #[cfg(test)]
        self.check_address_book(book, &state.vms);
        book
    }

    /// The machine `vm` fails over to. Back on its original site (failback, R38) that is
    /// the original VM with its own addresses.
    pub(super) fn place(&self, state: &mut SimState, vm: &Vm, to: Destination<'_>) -> FabricResult<Replica> {
        let site = self
            .inventory
            .site_on(vm, to.side)
            .ok_or_else(|| FabricError::NotPaired { vm: vm.name.clone(), site: vm.site.clone() })?;
        if to.side == Side::Original && !to.test {
            let nics = vm
                .nics
                .iter()
                .map(|n| ReplicaNic {
                    network: Some(n.network.clone()),
                    subnet: Some(n.subnet.clone()),
                    ip: n.ip,
                    addressing: Some(if n.ip.is_some() { Addressing::Static } else { Addressing::Dhcp }),
                })
                .collect();
            let storage = vm.storage.clone().unwrap_or_else(|| DEFAULT_STORAGE.into());
            return Ok(Replica {
                name: vm.name.clone(),
                site: site.name.clone(),
                host: vm.host.clone(),
                storage,
                nics,
            });
        }
        let network = match (to.test, to.test_network) {
            (true, name) => name.and_then(|n| site.network(n)),
            // R8: all of a replica's NICs attach to one target network, the first NIC's.
            (false, _) => vm
                .nics
                .first()
                .and_then(|nic| mapped_network(&self.inventory.network_mappings, &vm.site, &nic.network, &site.name))
                .and_then(|n| site.network(n)),
        };
        let size = vm.size.as_deref().and_then(|s| self.inventory.size(s));
        let count = replica_nic_count(vm.nics.len(), size);
        let book = self.address_book(state);
        // The addresses this replica's earlier NICs got: not in the book until it is kept.
        let mut assigned: Vec<Ipv4Addr> = Vec::with_capacity(count);
        let mut nics = Vec::with_capacity(count);
        for nic in &vm.nics[..count] {
            let Some((network, subnet)) = network.and_then(|n| Some((n, n.subnet_for(&nic.subnet)?))) else {
                // R10: unmapped means not connected to any network.
                nics.push(ReplicaNic { network: None, subnet: None, ip: None, addressing: None });
                continue;
            };
            // A test replica keeps its target IP only where it fits the test subnet (R9).
            let requested = if to.test { nic.target_ip.filter(|ip| subnet.cidr.contains(*ip)) } else { nic.target_ip };
            let free_from = book.free_from(&self.inventory, &site.name, &network.name, subnet);
            let in_use = |ip| book.holds(&self.inventory, &site.name, &network.name, ip) || assigned.contains(&ip);
            let (ip, addressing) = assign_address_with(subnet, requested, in_use, free_from)
                .map_err(|e| FabricError::address(&vm.name, e))?;
            assigned.push(ip);
            nics.push(ReplicaNic {
                network: Some(network.name.clone()),
                subnet: Some(subnet.name.clone()),
                ip: Some(ip),
                addressing: Some(addressing),
            });
        }
        Ok(Replica {
            name: vm.replica_name().into(),
            site: site.name.clone(),
            host: self.host_for(vm, site),
            storage: target_storage(&self.inventory.storage_mappings, vm.storage.as_deref()).into(),
            nics,
        })
    }

    /// Gives the VMs a rehearsal found running on their recovery site (failed over,
    /// replicating back...) their replica there, and those with a drill under way its test
    /// replica: the machines a failover here would have made, so that their addresses are
    /// held as the real ones are. One the model cannot place is left without: a replica
    /// only decides addresses, and the real one exists whatever the model says.
    pub(super) fn place_found_replicas(&self, vms: &[&Vm]) {
        let mut state = self.lock();
        for vm in vms {
            let found = state.record(&vm.name).protection.clone();
            if found.active == Side::Recovery {
                let serving = Destination { side: Side::Recovery, test: false, test_network: None };
                let replica = self.place(&mut state, vm, serving).ok();
                state.record(&vm.name).replica = replica;
            }
            if let Some(test) = &found.test {
                let drill =
                    Destination { side: found.active.other(), test: true, test_network: test.network.as_deref() };
                let test_replica = self.place(&mut state, vm, drill).ok();
                state.record(&vm.name).test_replica = test_replica;
            }
        }
    }

    /// Takes a placement the run's preflight decided, checking that its addresses are
    /// still free: R9 judges availability at failover time.
    pub(super) fn claim(&self, state: &mut SimState, vm: &Vm, planned: &Replica) -> FabricResult<Replica> {
        let book = self.address_book(state);
        for nic in &planned.nics {
            if let (Some(network), Some(ip)) = (&nic.network, nic.ip)
                && book.holds(&self.inventory, &planned.site, network, ip)
            {
                return Err(FabricError::Address {
                    vm: vm.name.clone(),
                    message: format!(
                        "address {ip} on {}/{network} was taken since the run's preflight (R9)",
                        planned.site
                    ),
                });
            }
        }
        Ok(planned.clone())
    }

    /// Spreads replicas over the target's hosts, the same way every time.
    fn host_for(&self, vm: &Vm, site: &Site) -> String {
        let index = self.inventory.position(&vm.name).unwrap_or(0);
        site.hosts.get(index % site.hosts.len().max(1)).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
impl SimFabric {
    /// Holds the book, kept up as records change, to one read afresh from every record,
    /// network by network, at each placement the unit tests make.
    fn check_address_book(&self, book: &AddressBook, records: &super::record::Records) {
        if book.is_reserving() {
            return;
        }
        let afresh = AddressBook::of(&self.inventory, records);
        for site in &self.inventory.sites {
            for network in &site.networks {
                let (kept, read) = (
                    book.held(&self.inventory, &site.name, &network.name),
                    afresh.held(&self.inventory, &site.name, &network.name),
                );
                assert_eq!(kept, read, "{}/{}", site.name, network.name);
            }
        }
    }
}
