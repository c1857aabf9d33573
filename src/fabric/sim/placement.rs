//! Where a replica lands: its host, its storage (R11), how many NICs it gets (R8), the
//! network and subnet each joins (R10) and the address each gets (R9).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{SimFabric, SimState};
use crate::fabric::{FabricError, FabricResult, Replica, ReplicaNic};
use crate::model::network::{assign_address, mapped_network};
use crate::model::vm::{DEFAULT_STORAGE, replica_nic_count, target_storage};
use crate::model::{Addressing, Side, Site, Vm};

/// Where a replica is going: the site, and for a test failover the network chosen.
pub struct Destination<'a> {
    pub side: Side,
    pub test: bool,
    pub test_network: Option<&'a str>,
}

impl SimFabric {
    /// The addresses held in `network` on `site` now: by VMs running there, by replicas,
    /// and by test replicas.
    fn addresses_in_use(&self, state: &SimState, site: &str, network: &str) -> BTreeSet<Ipv4Addr> {
        let mut in_use = BTreeSet::new();
        for vm in &self.inventory.vms {
            let Some(record) = state.vms.get(&vm.name) else { continue };
            if vm.site == site && record.protection.active == Side::Original {
                in_use.extend(vm.nics.iter().filter(|n| n.network == network).filter_map(|n| n.ip));
            }
            for replica in [&record.replica, &record.test_replica].into_iter().flatten() {
                if replica.site == site {
                    let held = replica.nics.iter().filter(|n| n.network.as_deref() == Some(network));
                    in_use.extend(held.filter_map(|n| n.ip));
                }
            }
        }
        in_use
    }

    /// The machine `vm` fails over to. Back on its original site (failback, R38) that is
    /// the original VM with its own addresses.
    pub(super) fn place(&self, state: &SimState, vm: &Vm, to: Destination<'_>) -> FabricResult<Replica> {
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
        let mut in_use = network.map(|n| self.addresses_in_use(state, &site.name, &n.name)).unwrap_or_default();
        let mut nics = Vec::with_capacity(count);
        for nic in &vm.nics[..count] {
            let Some((network, subnet)) = network.and_then(|n| Some((n, n.subnet_for(&nic.subnet)?))) else {
                // R10: unmapped means not connected to any network.
                nics.push(ReplicaNic { network: None, subnet: None, ip: None, addressing: None });
                continue;
            };
            // A test replica keeps its target IP only where it fits the test subnet (R9).
            let requested = if to.test { nic.target_ip.filter(|ip| subnet.cidr.contains(*ip)) } else { nic.target_ip };
            let (ip, addressing) =
                assign_address(subnet, requested, &in_use).map_err(|e| FabricError::address(&vm.name, e))?;
            in_use.insert(ip);
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

    /// Spreads replicas over the target's hosts, the same way every time.
    fn host_for(&self, vm: &Vm, site: &Site) -> String {
        let index = self.inventory.position(&vm.name).unwrap_or(0);
        site.hosts.get(index % site.hosts.len().max(1)).cloned().unwrap_or_default()
    }
}
