//! Sites, their hosts, networks and subnets, the pairings between sites (R13) and the
//! network and storage mappings along them (R10, R11).

use std::collections::HashMap;

use toml::Spanned;

use super::checker::{Checker, HOST, NETWORK, Names, SITE, SUBNET};
use super::doc::{LibvirtDoc, NetworkDoc, PairDoc, SiteDoc, SiteFileDoc, SubnetDoc, Text};
use super::values::{list_pairings, one_of, parse_ipv4};
use crate::model::network::{Attachment, Ipv4Net, Network, NetworkMapping, Subnet};
use crate::model::site::{LibvirtConnection, Pairing, Platform, Site, SiteKind, check_pairings};
use crate::model::vm::StorageMapping;

impl Checker<'_> {
    pub(super) fn sites(&mut self, docs: &[SiteDoc]) -> Vec<Site> {
        self.unique(docs, SITE, "", |site| format!("sites.{:?}.name", site.name.get_ref()));
        docs.iter().map(|doc| self.site(doc)).collect()
    }

    pub(super) fn site(&mut self, doc: &SiteDoc) -> Site {
        let name = doc.name.get_ref();
        let at = format!("sites.{name:?}");
        let kinds = [("onprem", SiteKind::OnPrem), ("cloud", SiteKind::Cloud)];
        let kind =
            self.parse(&doc.kind, format!("{at}.kind"), |s| one_of(s, "site kind", &kinds)).unwrap_or(SiteKind::OnPrem);
        let platforms = [
            ("hyper-v", Platform::HyperV),
            ("vmware", Platform::Vmware),
            ("physical", Platform::Physical),
            ("kvm", Platform::Kvm),
        ];
        let default_platform = if doc.libvirt.is_some() { Platform::Kvm } else { Platform::default() };
        let platform = self.parse_or(doc.platform.as_ref(), format!("{at}.platform"), default_platform, |s| {
            one_of(s, "platform", &platforms)
        });
        let libvirt = doc.libvirt.as_ref().map(|l| self.libvirt(l, &at, platform));
        if doc.hosts.is_empty() {
            let message = format!("site {name:?} needs at least one host, e.g. hosts = [\"hv-01\"]");
            self.error(doc.name.span(), format!("{at}.hosts"), message);
        }
        let on_site = format!(" on site {name:?}");
        self.unique(&doc.hosts, HOST, &on_site, |_| format!("{at}.hosts"));
        self.unique(&doc.networks, NETWORK, &on_site, |n| format!("{at}.networks.{:?}.name", n.name.get_ref()));
        Site {
            name: name.clone(),
            kind,
            platform,
            hosts: doc.hosts.iter().map(|h| h.get_ref().clone()).collect(),
            networks: doc.networks.iter().map(|network| self.network(network, &at, doc.libvirt.is_some())).collect(),
            libvirt,
        }
    }

    /// A libvirt site: its connection, and where replicas live.
    fn libvirt(&mut self, doc: &Spanned<LibvirtDoc>, site_at: &str, platform: Platform) -> LibvirtConnection {
        let at = format!("{site_at}.libvirt");
        let libvirt = doc.get_ref();
        if platform != Platform::Kvm {
            let message = "a libvirt site runs KVM/QEMU VMs: remove `platform`, or set platform = \"kvm\"";
            self.error(doc.span(), format!("{site_at}.platform"), message);
        }
        if libvirt.uri.get_ref().trim().is_empty() {
            let message = "uri is empty; give a libvirt URI, e.g. \"qemu:///system\" or \"qemu+ssh://kvm-a/system\"";
            self.error(libvirt.uri.span(), format!("{at}.uri"), message);
        }
        let storage = std::path::PathBuf::from(libvirt.storage.get_ref());
        if !storage.is_absolute() {
            let message = format!(
                "storage must be an absolute folder (where replicas and recovery points live), not {:?}",
                libvirt.storage.get_ref()
            );
            self.error(libvirt.storage.span(), format!("{at}.storage"), message);
        }
        LibvirtConnection { uri: libvirt.uri.get_ref().clone(), storage }
    }

    pub(super) fn network(&mut self, doc: &NetworkDoc, site_at: &str, at_libvirt_site: bool) -> Network {
        let name = doc.name.get_ref();
        let at = format!("{site_at}.networks.{name:?}");
        let attachment = self.attachment(doc, &at, at_libvirt_site);
        if doc.subnets.is_empty() {
            let message = format!(
                "network {name:?} needs at least one subnet ([[sites.networks.subnets]] with a name and a cidr)"
            );
            self.error(doc.name.span(), format!("{at}.subnets"), message);
        }
        self.unique(&doc.subnets, SUBNET, &format!(" in network {name:?}"), |s| {
            format!("{at}.subnets.{:?}.name", s.name.get_ref())
        });
        Network {
            name: name.clone(),
            isolated: doc.isolated,
            subnets: doc.subnets.iter().filter_map(|subnet| self.subnet(subnet, &at)).collect(),
            attachment,
        }
    }

    /// R10 at a libvirt site: the libvirt network or bridge a NIC on this network plugs into.
    fn attachment(&mut self, doc: &NetworkDoc, at: &str, at_libvirt_site: bool) -> Option<Attachment> {
        let name = doc.name.get_ref();
        match (&doc.libvirt_network, &doc.bridge) {
            (Some(network), Some(bridge)) => {
                let message = format!(
                    "network {name:?} names both libvirt_network {:?} and bridge {:?}; a NIC plugs into one",
                    network.get_ref(),
                    bridge.get_ref()
                );
                self.error(bridge.span(), format!("{at}.bridge"), message);
                None
            }
            (Some(value), None) | (None, Some(value)) if !at_libvirt_site => {
                let field = if doc.bridge.is_some() { "bridge" } else { "libvirt_network" };
                let message = format!("{field} applies to a libvirt site; this site has no [sites.libvirt] table");
                self.error(value.span(), format!("{at}.{field}"), message);
                None
            }
            (Some(network), None) => Some(Attachment::LibvirtNetwork(network.get_ref().clone())),
            (None, Some(bridge)) => Some(Attachment::Bridge(bridge.get_ref().clone())),
            (None, None) if at_libvirt_site => {
                let message = format!(
                    "network {name:?} is at a libvirt site: say what its NICs plug into, with libvirt_network = \"NAME\" (virsh net-list) or bridge = \"NAME\""
                );
                self.error(doc.name.span(), format!("{at}.libvirt_network"), message);
                None
            }
            (None, None) => None,
        }
    }

    /// `None` when the CIDR is wrong (reported); the inventory is refused anyway.
    pub(super) fn subnet(&mut self, doc: &SubnetDoc, network_at: &str) -> Option<Subnet> {
        let name = doc.name.get_ref();
        let at = format!("{network_at}.subnets.{name:?}");
        let cidr = self.parse(&doc.cidr, format!("{at}.cidr"), str::parse::<Ipv4Net>);
        let mut reserved = Vec::new();
        for (i, value) in doc.reserved.iter().enumerate() {
            let field = format!("{at}.reserved[{i}]");
            let Some(ip) = self.parse(value, field.clone(), parse_ipv4) else { continue };
            if let Some(cidr) = cidr
                && !cidr.contains(ip)
            {
                self.error(value.span(), field, format!("reserved address {ip} is outside subnet {name:?} ({cidr})"));
            }
            reserved.push(ip);
        }
        Some(Subnet { name: name.clone(), cidr: cidr?, reserved })
    }

    /// R13: sites exist and each is in one pairing at most.
    pub(super) fn pairings(&mut self, doc: &SiteFileDoc, names: &Names) -> Vec<Pairing> {
        let mut accepted: Vec<Pairing> = Vec::new();
        for (i, pair) in doc.pairings.iter().enumerate() {
            let at = format!("pairings[{i}]");
            let source = self.lookup(&names.sites, &pair.source, format!("{at}.source"), SITE, "");
            let target = self.lookup(&names.sites, &pair.target, format!("{at}.target"), SITE, "");
            if source.is_none() || target.is_none() {
                continue;
            }
            let pairing = Pairing { source: pair.source.get_ref().clone(), target: pair.target.get_ref().clone() };
            let is_libvirt = |name: &Text| names.sites.get(name.get_ref()).is_some_and(|site| site.libvirt.is_some());
            if is_libvirt(&pair.source) != is_libvirt(&pair.target) {
                let message = "a pairing joins two libvirt sites or two simulated ones: drplan cannot replicate between a real site and a simulated one";
                self.error(pair.target.span(), format!("{at}.target"), message);
                continue;
            }
            // Checked against the pairings kept so far, so that each extra pairing is
            // reported where it is written, at the site that is already taken.
            let mut candidate = accepted.clone();
            candidate.push(pairing.clone());
            match check_pairings(&candidate) {
                Ok(()) => accepted.push(pairing),
                Err(message) => {
                    let taken = accepted.iter().any(|p| p.source == pairing.source || p.target == pairing.source);
                    let (value, end) = if taken { (&pair.source, "source") } else { (&pair.target, "target") };
                    self.error(value.span(), format!("{at}.{end}"), format!("{message} (R13)"));
                }
            }
        }
        accepted
    }

    /// R10: both ends exist, along a pairing; one mapping per source network and target site.
    pub(super) fn network_mappings(
        &mut self,
        doc: &SiteFileDoc,
        names: &Names,
        pairings: &[Pairing],
    ) -> Vec<NetworkMapping> {
        let mut mappings = Vec::new();
        let mut seen = HashMap::new();
        for (i, pair) in doc.network_mappings.iter().enumerate() {
            let at = format!("network_mappings[{i}]");
            let source = self.site_network(names, &pair.source, format!("{at}.source"));
            let target = self.site_network(names, &pair.target, format!("{at}.target"));
            let (Some((source_site, source_network)), Some((target_site, target_network))) = (source, target) else {
                continue;
            };
            if !pairings.iter().any(|p| p.source == source_site && p.target == target_site) {
                let message = format!(
                    "site {source_site:?} is not paired to replicate to site {target_site:?}, so its networks cannot be mapped there (pairings: {})",
                    list_pairings(pairings)
                );
                self.error(pair.target.span(), format!("{at}.target"), message);
            }
            let key = (source_site.to_string(), source_network.to_string(), target_site.to_string());
            self.once(&mut seen, key, pair.source.span(), format!("{at}.source"), |line| {
                format!("network {:?} is already mapped to site {target_site:?} on line {line}; map each source network once", pair.source.get_ref())
            });
            mappings.push(NetworkMapping {
                source_site: source_site.into(),
                source_network: source_network.into(),
                target_site: target_site.into(),
                target_network: target_network.into(),
            });
        }
        mappings
    }

    /// A `"site/network"` reference whose site and network exist.
    pub(super) fn site_network<'d>(
        &mut self,
        names: &Names<'d>,
        value: &Text,
        field: String,
    ) -> Option<(&'d str, &'d str)> {
        let Some((site, network)) = value.get_ref().split_once('/') else {
            let message = format!("{:?} is not a \"site/network\" reference, e.g. \"primary/prod\"", value.get_ref());
            self.error(value.span(), field, message);
            return None;
        };
        let site = self.lookup(&names.sites, &Spanned::new(value.span(), site.to_string()), field.clone(), SITE, "")?;
        let scope = format!(" on site {:?}", site.name.get_ref());
        let on_site = &names.site(site).networks;
        let network =
            self.lookup(on_site, &Spanned::new(value.span(), network.to_string()), field, NETWORK, scope.as_str())?;
        Some((site.name.get_ref(), network.name.get_ref()))
    }

    /// R11: storage classifications are free names; each source is mapped once.
    pub(super) fn storage_mappings(&mut self, docs: &[PairDoc]) -> Vec<StorageMapping> {
        let mut seen = HashMap::new();
        for (i, pair) in docs.iter().enumerate() {
            self.once(
                &mut seen,
                pair.source.get_ref(),
                pair.source.span(),
                format!("storage_mappings[{i}].source"),
                |line| {
                    format!(
                        "storage {:?} is already mapped on line {line}; map each classification once",
                        pair.source.get_ref()
                    )
                },
            );
        }
        docs.iter()
            .map(|pair| StorageMapping { source: pair.source.get_ref().clone(), target: pair.target.get_ref().clone() })
            .collect()
    }
}
