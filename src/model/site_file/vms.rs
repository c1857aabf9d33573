//! Target sizes, then the VMs: their site, host, disks (R6), NICs and addresses, and
//! their protection when the file starts them protected.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use toml::Spanned;

use super::checker::{Checker, HOST, NETWORK, Names, POLICY, SITE, SIZE, SUBNET, SiteNames, VM};
use super::doc::{NicDoc, SiteFileDoc, SizeDoc, VmDoc};
use super::values::{list_pairings, one_of, parse_ipv4, site_time};
use crate::model::duration::parse_duration;
use crate::model::inventory::InitialProtection;
use crate::model::network::Ipv4Net;
use crate::model::recovery::Timestamp;
use crate::model::site::Pairing;
use crate::model::vm::{Disk, Nic, Os, TargetSize, Vm, check_disks, check_exclusions};

const DEFAULT_BOOT_TIME: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_TIME: Duration = Duration::from_secs(30);
const DEFAULT_CHANGE_RATE_KBPS: u64 = 256;

impl Checker<'_> {
    pub(super) fn sizes(&mut self, docs: &[SizeDoc]) -> Vec<TargetSize> {
        self.unique(docs, SIZE, "", |s| format!("sizes.{:?}.name", s.name.get_ref()));
        docs.iter()
            .map(|doc| {
                let max_nics = *doc.max_nics.get_ref();
                if max_nics == 0 {
                    let message = "max_nics must be at least 1: a replica has at least one NIC slot";
                    self.error(doc.max_nics.span(), format!("sizes.{:?}.max_nics", doc.name.get_ref()), message);
                }
                TargetSize { name: doc.name.get_ref().clone(), max_nics }
            })
            .collect()
    }

    pub(super) fn vms(
        &mut self,
        doc: &SiteFileDoc,
        names: &Names,
        pairings: &[Pairing],
        start: Timestamp,
    ) -> (Vec<Vm>, Vec<Option<InitialProtection>>) {
        self.unique(&doc.vms, VM, "", |vm| format!("vms.{:?}.name", vm.name.get_ref()));
        // Source addresses already held, per site and subnet: two NICs cannot share one.
        let mut addresses = HashMap::new();
        doc.vms.iter().map(|vm| self.vm(names, vm, pairings, start, &mut addresses)).unzip()
    }

    pub(super) fn vm<'d>(
        &mut self,
        names: &Names<'d>,
        vm: &'d VmDoc,
        pairings: &[Pairing],
        start: Timestamp,
        addresses: &mut HashMap<(&'d str, &'d str, Ipv4Addr), usize>,
    ) -> (Vm, Option<InitialProtection>) {
        let name = vm.name.get_ref();
        let at = |field: &'static str| move || format!("vms.{name:?}.{field}");
        let site = self.lookup(&names.sites, &vm.site, at("site"), SITE, "").map(|site| names.site(site));
        if let Some(site) = site {
            let scope = || format!(" on site {:?}", site.site.name.get_ref());
            self.lookup(&site.hosts, &vm.host, at("host"), HOST, scope);
        }
        let oses = [("windows", Os::Windows), ("linux", Os::Linux)];
        let os = self.parse(&vm.os, at("os"), |s| one_of(s, "OS", &oses)).unwrap_or(Os::Linux);
        if let Some(size) = &vm.size {
            self.lookup(&names.sizes, size, at("size"), SIZE, "");
        }
        let boot_time = self.parse_or(vm.boot_time.as_ref(), at("boot_time"), DEFAULT_BOOT_TIME, parse_duration);
        let shutdown_time =
            self.parse_or(vm.shutdown_time.as_ref(), at("shutdown_time"), DEFAULT_SHUTDOWN_TIME, parse_duration);

        // R6: exactly one OS disk, unique names.
        let disks: Vec<Disk> = vm
            .disks
            .as_ref()
            .map_or(&[][..], |d| d.get_ref().as_slice())
            .iter()
            .map(|d| Disk { name: d.name.clone(), size_gb: d.size_gb, os_disk: d.os })
            .collect();
        let at_libvirt_site = site.is_some_and(|s| s.site.libvirt.is_some());
        if at_libvirt_site {
            // Read from the domain's definition when the fabric opens.
            if let Some(written) = &vm.disks {
                let message =
                    "a VM at a libvirt site has the disks of its libvirt domain (of the same name): remove `disks`";
                self.error(written.span(), at("disks"), message);
            }
        } else if let Err(e) = check_disks(&disks) {
            let span = vm.disks.as_ref().map_or(vm.name.span(), Spanned::span);
            self.error(span, at("disks"), e.to_string());
        }

        let mut nics = Vec::new();
        for (i, nic) in vm.nics.iter().enumerate() {
            nics.push(self.nic(site, nic, name, i, addresses));
        }

        let protection = vm.protection.as_ref().map(|p| {
            let field = |f: &'static str| move || format!("vms.{name:?}.protection.{f}");
            let policy = self.lookup(&names.policies, &p.policy, field("policy"), POLICY, "");
            let target = site.and_then(|SiteNames { site, .. }| {
                let pairing = pairings.iter().find(|pairing| &pairing.source == site.name.get_ref())?;
                names.sites.get(&pairing.target)
            });
            // Seed 000: encryption at rest "is used when replicating Hyper-V VMs to Azure;
            // it is not used when replicating to a secondary site": refused, not ignored.
            if let (Some(policy), Some(target)) = (policy, target)
                && policy.encryption == Some(true)
                && target.kind.get_ref() != "cloud"
            {
                let message = format!(
                    "policy {:?} sets encryption = true, which applies to replication to a cloud only; VM {name:?} replicates to site {:?}, a datacenter, where it would not be used: set encryption = false, or protect it with another policy",
                    policy.name.get_ref(),
                    target.name.get_ref()
                );
                self.error(p.policy.span(), field("policy"), message);
            }
            if let Some(SiteNames { site, .. }) = site
                && !pairings.iter().any(|pairing| &pairing.source == site.name.get_ref())
            {
                let message = format!(
                    "VM {name:?} runs on site {:?}, which is not the source of any pairing, so it cannot be protected (pairings: {})",
                    site.name.get_ref(),
                    list_pairings(pairings)
                );
                self.error(p.policy.span(), field("policy"), message);
            }
            let excluded = p.exclude.as_ref().map_or_else(Vec::new, |e| e.get_ref().clone());
            if let (Some(exclude), Err(e)) = (&p.exclude, check_exclusions(&disks, &excluded)) {
                self.error(exclude.span(), field("exclude"), format!("{e} (R6)"));
            }
            InitialProtection {
                policy: p.policy.get_ref().clone(),
                since: self.parse_or(p.since.as_ref(), field("since"), start, |s| site_time(s, start)),
                excluded_disks: excluded,
                found: None,
            }
        });

        let vm = Vm {
            name: name.clone(),
            site: vm.site.get_ref().clone(),
            host: vm.host.get_ref().clone(),
            os,
            size: vm.size.as_ref().map(|s| s.get_ref().clone()),
            disks,
            nics,
            tags: vm.tags.clone(),
            dns: vm.dns.clone(),
            boot_time,
            shutdown_time,
            change_rate_bytes_per_sec: vm.change_rate_kbps.unwrap_or(DEFAULT_CHANGE_RATE_KBPS) * 1024 / 8,
            measured: None,
            storage: vm.storage.clone(),
            replica_name: vm.replica_name.clone(),
            services: vm.services.clone(),
        };
        (vm, protection)
    }

    /// A NIC's network and subnet exist on the VM's site and its address is in the subnet,
    /// not reserved and not another NIC's.
    pub(super) fn nic<'d>(
        &mut self,
        site: Option<&SiteNames<'d>>,
        nic: &NicDoc,
        vm: &str,
        index: usize,
        addresses: &mut HashMap<(&'d str, &'d str, Ipv4Addr), usize>,
    ) -> Nic {
        let at = |field: &'static str| move || format!("vms.{vm:?}.nics[{index}].{field}");
        let ip = nic.ip.as_ref().and_then(|ip| self.parse(ip, at("ip"), parse_ipv4));
        let target_ip = nic.target_ip.as_ref().and_then(|ip| self.parse(ip, at("target_ip"), parse_ipv4));
        let network = site.and_then(|on_site| {
            let scope = || format!(" on site {:?}", on_site.site.name.get_ref());
            self.lookup(&on_site.networks, &nic.network, at("network"), NETWORK, scope)
        });
        let subnet = site.zip(network).and_then(|(on_site, network)| {
            let scope = || format!(" in network {:?}", network.name.get_ref());
            let subnets = &on_site.subnets[network.name.get_ref().as_str()];
            self.lookup(subnets, &nic.subnet, at("subnet"), SUBNET, scope)
        });
        if let (Some(SiteNames { site, .. }), Some(subnet), Some(ip), Some(value)) = (site, subnet, ip, &nic.ip) {
            let field = at("ip");
            // A bad CIDR was reported at the subnet.
            if let Ok(cidr) = subnet.cidr.get_ref().parse::<Ipv4Net>()
                && !cidr.contains(ip)
            {
                let message =
                    format!("ip {ip} is outside subnet {:?} ({cidr}); use an address inside it", subnet.name.get_ref());
                self.error(value.span(), field, message);
            }
            if subnet.reserved.iter().any(|r| r.get_ref().parse() == Ok(ip)) {
                let message = format!(
                    "ip {ip} is reserved in subnet {:?} for a machine drplan does not manage",
                    subnet.name.get_ref()
                );
                self.error(value.span(), field, message);
            }
            let key = (site.name.get_ref().as_str(), subnet.name.get_ref().as_str(), ip);
            self.once(addresses, key, value.span(), field, |line| {
                format!("ip {ip} is already used on line {line}; VM {vm:?} needs an address of its own")
            });
        }
        Nic { network: nic.network.get_ref().clone(), subnet: nic.subnet.get_ref().clone(), ip, target_ip }
    }
}
