//! Sites (an on-premises datacenter or a cloud region), their hosts and networks, and
//! the protection pairings between them (R13).

use serde::{Deserialize, Serialize};

use super::network::Network;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// A datacenter run by a VM manager.
    #[serde(rename = "onprem")]
    OnPrem,
    /// A public cloud region.
    Cloud,
}

/// What the VMs of a site run on; planned failover to the cloud is not offered for
/// VMware and physical sources (R31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    #[default]
    HyperV,
    Vmware,
    Physical,
    /// KVM/QEMU under libvirt: a site with a `libvirt` connection.
    Kvm,
}

/// How drplan reaches a libvirt site: real VMs, not simulated ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibvirtConnection {
    /// Any libvirt URI: `qemu:///system`, `qemu+ssh://host/system`, a unix socket.
    pub uri: String,
    /// Where replicas and recovery points of the VMs protected *to* this site live, on
    /// this site's host (over ssh for a `qemu+ssh` URI); backups on their way from this
    /// site to another host wait in its `.outgoing/` folder.
    pub storage: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub kind: SiteKind,
    pub platform: Platform,
    pub hosts: Vec<String>,
    pub networks: Vec<Network>,
    /// Set for a site of real libvirt VMs; `None` for a simulated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt: Option<LibvirtConnection>,
}

impl Site {
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// A protection pairing: VMs of `source` replicate to `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    pub source: String,
    pub target: String,
}

/// R13: a site can be in only one protection pairing, as source or as target.
/// Returns the name of the first site found in two pairings (or paired with itself).
pub fn check_pairings(pairings: &[Pairing]) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    for pairing in pairings {
        if pairing.source == pairing.target {
            return Err(format!("site {:?} cannot be paired with itself", pairing.source));
        }
        for site in [&pairing.source, &pairing.target] {
            if seen.contains(&site.as_str()) {
                return Err(format!(
                    "site {site:?} is already in a protection pairing; a site can be in only one, as source or target"
                ));
            }
            seen.push(site);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(source: &str, target: &str) -> Pairing {
        Pairing { source: source.into(), target: target.into() }
    }

    #[test]
    fn r13_a_site_is_in_one_pairing_only() {
        assert!(check_pairings(&[pair("a", "b"), pair("c", "d")]).is_ok());
        assert!(check_pairings(&[pair("a", "b"), pair("a", "c")]).unwrap_err().contains("\"a\""));
        assert!(check_pairings(&[pair("a", "b"), pair("c", "b")]).is_err(), "b is a target twice");
        assert!(check_pairings(&[pair("a", "b"), pair("b", "c")]).is_err(), "b is target and source");
        assert!(check_pairings(&[pair("a", "a")]).unwrap_err().contains("itself"));
    }
}
