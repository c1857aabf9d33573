//! VM networks, subnets and their address ranges, and the network rules of a failover:
//! which target network and subnet a replica joins (R10) and which address it gets (R9).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 range in CIDR notation, e.g. `10.1.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    base: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.base)
    }

    /// The addresses a VM may hold: all but the network and broadcast addresses and the
    /// first host address, which is the gateway by convention.
    pub fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.assignable_from(self.base)
    }

    /// The assignable addresses from `from` on.
    pub fn assignable_from(&self, from: Ipv4Addr) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.base);
        let size = 1u64 << (32 - self.prefix);
        let (first, last) = if size <= 4 { (1, size.saturating_sub(2)) } else { (2, size - 2) };
        let first = first.max(u64::from(u32::from(from).saturating_sub(base)));
        (first..=last).map(move |offset| Ipv4Addr::from(base + offset as u32))
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) =
            text.split_once('/').ok_or_else(|| format!("bad CIDR {text:?}: expected e.g. 10.1.0.0/24"))?;
        let base: Ipv4Addr = addr.parse().map_err(|_| format!("bad CIDR {text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("bad CIDR {text:?}: the prefix must be 8 to 30"))?;
        let net = Ipv4Net { base, prefix };
        if u32::from(base) & net.mask() != u32::from(base) {
            return Err(format!("bad CIDR {text:?}: host bits are set in the network address"));
        }
        Ok(net)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(net: Ipv4Net) -> String {
        net.to_string()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub name: String,
    pub cidr: Ipv4Net,
    /// Addresses held by machines drplan does not manage; never handed to a replica.
    #[serde(default)]
    pub reserved: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// An isolated network meant for test failovers (R30).
    #[serde(default)]
    pub isolated: bool,
    pub subnets: Vec<Subnet>,
    /// At a libvirt site: what a NIC on this network plugs into (R10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// What a NIC plugs into at a libvirt site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attachment {
    /// A libvirt network (`virsh net-list`), e.g. one with DHCP reservations.
    LibvirtNetwork(String),
    /// A host bridge.
    Bridge(String),
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attachment::LibvirtNetwork(name) => write!(f, "libvirt network {name:?}"),
            Attachment::Bridge(name) => write!(f, "bridge {name:?}"),
        }
    }
}

impl Network {
    pub fn subnet(&self, name: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.name == name)
    }

    /// R10: the replica joins the target subnet named like its source subnet, or the
    /// target network's first subnet when none matches. `None` for a network with no
    /// subnets (the site file refuses those).
    pub fn subnet_for(&self, source_subnet: &str) -> Option<&Subnet> {
        self.subnet(source_subnet).or(self.subnets.first())
    }
}

/// A source VM network mapped to a target one (R10). Several sources may share a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkMapping {
    pub source_site: String,
    pub source_network: String,
    pub target_site: String,
    pub target_network: String,
}

/// R10: the target network a source network maps to, if any. `None` means the
/// replica will not be connected to any network after failover.
pub fn mapped_network<'a>(
    mappings: &'a [NetworkMapping],
    source_site: &str,
    source_network: &str,
    target_site: &str,
) -> Option<&'a str> {
    mappings
        .iter()
        .find(|m| m.source_site == source_site && m.source_network == source_network && m.target_site == target_site)
        .map(|m| m.target_network.as_str())
}

/// How a replica's NIC got its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// The static target IP from the VM's settings.
    Static,
    /// The first free address of the subnet, as a DHCP server would hand it out.
    Dhcp,
}

/// R9: the address a replica NIC gets in `subnet`. A requested static address must lie in
/// the subnet and be free, or the VM's failover fails; with none, the lowest free address.
pub fn assign_address(
    subnet: &Subnet,
    requested: Option<Ipv4Addr>,
    in_use: &BTreeSet<Ipv4Addr>,
) -> Result<(Ipv4Addr, Addressing), AddressError> {
    assign_address_with(subnet, requested, |ip| in_use.contains(&ip), subnet.cidr.base)
}

/// [`assign_address`] for a caller that keeps its own account of the addresses in use:
/// `in_use` says whether one is, and every assignable address below `free_from` is known
/// to be taken, so the lowest free one is looked for from there.
pub fn assign_address_with(
    subnet: &Subnet,
    requested: Option<Ipv4Addr>,
    in_use: impl Fn(Ipv4Addr) -> bool,
    free_from: Ipv4Addr,
) -> Result<(Ipv4Addr, Addressing), AddressError> {
    let taken = |ip: &Ipv4Addr| in_use(*ip) || subnet.reserved.contains(ip);
    match requested {
        Some(ip) if !subnet.cidr.contains(ip) => {
            Err(AddressError::OutsideSubnet { ip, subnet: subnet.name.clone(), cidr: subnet.cidr })
        }
        Some(ip) if taken(&ip) => Err(AddressError::InUse { ip, subnet: subnet.name.clone() }),
        Some(ip) => Ok((ip, Addressing::Static)),
        None => subnet
            .cidr
            .assignable_from(free_from)
            .find(|ip| !taken(ip))
            .map(|ip| (ip, Addressing::Dhcp))
            .ok_or_else(|| AddressError::Exhausted { subnet: subnet.name.clone(), cidr: subnet.cidr }),
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AddressError {
    #[error("static IP {ip} is outside target subnet {subnet} ({cidr})")]
    OutsideSubnet { ip: Ipv4Addr, subnet: String, cidr: Ipv4Net },
    #[error("static IP {ip} is not available in target subnet {subnet}: it is in use")]
    InUse { ip: Ipv4Addr, subnet: String },
    #[error("target subnet {subnet} ({cidr}) has no free address left")]
    Exhausted { subnet: String, cidr: Ipv4Net },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(name: &str, cidr: &str) -> Subnet {
        Subnet { name: name.into(), cidr: cidr.parse().unwrap(), reserved: vec![] }
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_rejects_host_bits_and_odd_prefixes() {
        assert!("10.1.0.0/24".parse::<Ipv4Net>().is_ok());
        assert!("10.1.0.5/24".parse::<Ipv4Net>().unwrap_err().contains("host bits"));
        assert!("10.1.0.0/31".parse::<Ipv4Net>().unwrap_err().contains("prefix"));
        assert!("10.1.0.0".parse::<Ipv4Net>().unwrap_err().contains("expected"));
    }

    #[test]
    fn r10_replica_joins_subnet_of_same_name_or_first_subnet() {
        let net = Network {
            name: "dr".into(),
            isolated: false,
            subnets: vec![subnet("web", "10.2.1.0/24"), subnet("db", "10.2.2.0/24")],
            attachment: None,
        };
        assert_eq!(net.subnet_for("db").unwrap().name, "db");
        assert_eq!(net.subnet_for("backup").unwrap().name, "web");
    }

    #[test]
    fn r10_unmapped_network_means_not_connected() {
        let mappings = vec![
            NetworkMapping {
                source_site: "a".into(),
                source_network: "prod".into(),
                target_site: "b".into(),
                target_network: "dr".into(),
            },
            NetworkMapping {
                source_site: "a".into(),
                source_network: "mgmt".into(),
                target_site: "b".into(),
                target_network: "dr".into(),
            },
        ];
        assert_eq!(mapped_network(&mappings, "a", "prod", "b"), Some("dr"));
        // Several sources may map to one target.
        assert_eq!(mapped_network(&mappings, "a", "mgmt", "b"), Some("dr"));
        assert_eq!(mapped_network(&mappings, "a", "backup", "b"), None);
        assert_eq!(mapped_network(&mappings, "a", "prod", "c"), None);
    }

    #[test]
    fn r9_static_ip_is_used_when_free_in_the_subnet() {
        let s = subnet("db", "10.2.2.0/24");
        let got = assign_address(&s, Some(ip("10.2.2.10")), &BTreeSet::new()).unwrap();
        assert_eq!(got, (ip("10.2.2.10"), Addressing::Static));
    }

    #[test]
    fn r9_static_ip_in_use_or_outside_fails_the_vm() {
        let mut s = subnet("db", "10.2.2.0/24");
        let in_use = BTreeSet::from([ip("10.2.2.10")]);
        assert!(matches!(assign_address(&s, Some(ip("10.2.2.10")), &in_use), Err(AddressError::InUse { .. })));
        s.reserved.push(ip("10.2.2.11"));
        assert!(matches!(assign_address(&s, Some(ip("10.2.2.11")), &BTreeSet::new()), Err(AddressError::InUse { .. })));
        assert!(matches!(
            assign_address(&s, Some(ip("10.9.9.9")), &BTreeSet::new()),
            Err(AddressError::OutsideSubnet { .. })
        ));
    }

    #[test]
    fn r9_without_static_ip_the_replica_gets_the_lowest_free_address() {
        let mut s = subnet("web", "10.2.1.0/24");
        s.reserved.push(ip("10.2.1.2"));
        let in_use = BTreeSet::from([ip("10.2.1.3")]);
        assert_eq!(assign_address(&s, None, &in_use).unwrap(), (ip("10.2.1.4"), Addressing::Dhcp));
        let tiny = subnet("tiny", "10.3.0.0/30");
        let full: BTreeSet<_> = tiny.cidr.assignable().collect();
        assert!(matches!(assign_address(&tiny, None, &full), Err(AddressError::Exhausted { .. })));
    }
}
