//! A libvirt domain's definition: what drplan reads from it (disks, NICs, memory) instead
//! of having them retyped in the site file, and the replica's definition made from it
//! for the target site (R7 name, R10 networks, R11 storage), everything else kept as
//! the source has it.

use std::collections::HashMap;
use std::path::PathBuf;

use roxmltree::{Document, Node};

use crate::model::network::Attachment;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainXmlError {
    #[error("libvirt returned a domain definition drplan cannot read: {0}")]
    Parse(String),
    #[error("domain {domain:?}: {message}")]
    Unsupported { domain: String, message: String },
}

/// A disk of a domain, as replication sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainDisk {
    /// The guest's device name, e.g. `vda`: what backups and checkpoints name a disk by.
    pub target: String,
    pub file: PathBuf,
    /// The image format, e.g. `qcow2`.
    pub format: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DomainNic {
    pub mac: String,
    /// `None` for a NIC of another type (user networking, direct...).
    pub source: Option<Attachment>,
}

/// What drplan knows of a domain from its definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainInfo {
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub disks: Vec<DomainDisk>,
    pub nics: Vec<DomainNic>,
    /// Whether the guest has a qemu-guest-agent channel (R3: app-consistent points).
    pub agent_channel: bool,
}

fn child<'a>(node: Node<'a, 'a>, name: &str) -> Option<Node<'a, 'a>> {
    node.children().find(|c| c.has_tag_name(name))
}

fn devices<'a>(root: Node<'a, 'a>) -> impl Iterator<Item = Node<'a, 'a>> {
    child(root, "devices").into_iter().flat_map(|d| d.children().filter(Node::is_element))
}

/// The disks a domain's image files back: `device='disk'` of type `file`. CD-ROMs and
/// other devices are not replicated.
fn is_replicated_disk(node: &Node) -> bool {
    node.has_tag_name("disk") && node.attribute("device").unwrap_or("disk") == "disk"
}

fn memory_mib(root: Node) -> u64 {
    let Some(memory) = child(root, "memory") else { return 0 };
    let value: u64 = memory.text().unwrap_or("0").trim().parse().unwrap_or(0);
    match memory.attribute("unit").unwrap_or("KiB") {
        "b" | "bytes" => value / (1024 * 1024),
        "KiB" | "k" => value / 1024,
        "MiB" | "M" => value,
        "GiB" | "G" => value * 1024,
        _ => value / 1024,
    }
}

pub fn parse_domain(xml: &str) -> Result<DomainInfo, DomainXmlError> {
    let doc = Document::parse(xml).map_err(|e| DomainXmlError::Parse(e.to_string()))?;
    let root = doc.root_element();
    let name = child(root, "name").and_then(|n| n.text()).unwrap_or_default().to_string();
    let unsupported = |message: String| DomainXmlError::Unsupported { domain: name.clone(), message };
    let mut disks = Vec::new();
    for disk in devices(root).filter(is_replicated_disk) {
        let target = child(disk, "target").and_then(|t| t.attribute("dev")).unwrap_or_default().to_string();
        let file = child(disk, "source").and_then(|s| s.attribute("file"));
        let Some(file) = file.filter(|_| disk.attribute("type") == Some("file")) else {
            return Err(unsupported(format!(
                "disk {target} is not an image file (type {:?}); drplan replicates file-backed disks",
                disk.attribute("type").unwrap_or("?")
            )));
        };
        let format = child(disk, "driver").and_then(|d| d.attribute("type")).unwrap_or("raw").to_string();
        disks.push(DomainDisk { target, file: PathBuf::from(file), format });
    }
    let nics = devices(root)
        .filter(|n| n.has_tag_name("interface"))
        .map(|nic| {
            let mac = child(nic, "mac").and_then(|m| m.attribute("address")).unwrap_or_default().to_string();
            let source = child(nic, "source").and_then(|s| match nic.attribute("type") {
                Some("network") => s.attribute("network").map(|n| Attachment::LibvirtNetwork(n.into())),
                Some("bridge") => s.attribute("bridge").map(|b| Attachment::Bridge(b.into())),
                _ => None,
            });
            DomainNic { mac, source }
        })
        .collect();
    let agent_channel = devices(root).any(|d| {
        d.has_tag_name("channel")
            && child(d, "target").and_then(|t| t.attribute("name")) == Some("org.qemu.guest_agent.0")
    });
    let vcpus = child(root, "vcpu").and_then(|v| v.text()).and_then(|t| t.trim().parse().ok()).unwrap_or(1);
    Ok(DomainInfo { memory_mib: memory_mib(root), vcpus, disks, nics, agent_channel, name })
}

/// How the replica differs from its source.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSpec {
    /// R7: the replica's domain name.
    pub name: String,
    /// By disk target (`vda`): the image the replica boots from. Disks not named here
    /// (R6: excluded from replication) are left out of the replica.
    pub disks: HashMap<String, PathBuf>,
    /// By NIC, in order: where it plugs in at the target (R10); `None` leaves it
    /// unplugged (link down), as a NIC without a mapped network must be.
    pub nics: Vec<Option<Attachment>>,
    /// Prefix of the replica's tap device names: two libvirt daemons on one host race
    /// for `vnetN`, so every replica NIC gets an explicit name (at most 15 characters).
    pub tap_prefix: String,
    /// Replaces `site=...` on a direct-boot kernel command line, so a guest can tell which
    /// site it runs at; `None` keeps the command line.
    pub cmdline_site: Option<String>,
}

/// One change to the source text: the byte range it replaces, and with what.
struct Edit {
    range: std::ops::Range<usize>,
    text: String,
}

/// A value for XML text or a quoted attribute.
pub(super) fn xml_escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('\'', "&apos;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The replica's definition: the source's with its identity removed (uuid, runtime ids,
/// tap names, image chains), its name, disks and NICs replaced as `spec` says. Edits
/// are made on the text, so everything drplan does not know about stays as written.
pub fn replica_xml(source: &str, spec: &ReplicaSpec) -> Result<String, DomainXmlError> {
    let doc = Document::parse(source).map_err(|e| DomainXmlError::Parse(e.to_string()))?;
    let root = doc.root_element();
    let mut edits = Vec::new();
    let mut remove = |node: Node| edits.push(Edit { range: node.range(), text: String::new() });
    for name in ["uuid", "seclabel"] {
        root.children().filter(|c| c.has_tag_name(name)).for_each(&mut remove);
    }
    if let Some(name) = child(root, "name") {
        edits.push(Edit { range: name.range(), text: format!("<name>{}</name>", xml_escape(&spec.name)) });
    }
    if let (Some(site), Some(cmdline)) = (&spec.cmdline_site, child(root, "os").and_then(|os| child(os, "cmdline"))) {
        let old = cmdline.text().unwrap_or_default();
        let mut words: Vec<String> =
            old.split_whitespace().filter(|w| !w.starts_with("site=")).map(String::from).collect();
        words.push(format!("site={site}"));
        edits.push(Edit {
            range: cmdline.range(),
            text: format!("<cmdline>{}</cmdline>", xml_escape(&words.join(" "))),
        });
    }
    let mut nic_index = 0;
    for device in devices(root) {
        if is_replicated_disk(&device) {
            let target = child(device, "target").and_then(|t| t.attribute("dev")).unwrap_or_default();
            match spec.disks.get(target) {
                None => edits.push(Edit { range: device.range(), text: String::new() }),
                Some(image) => edits.push(Edit { range: device.range(), text: disk_xml(device, target, image) }),
            }
        } else if (device.has_tag_name("serial") || device.has_tag_name("console"))
            && device.attribute("type") == Some("file")
            && let Some(source) = child(device, "source")
            && let Some(path) = source.attribute("path")
        {
            // Its own log file: the source may still be writing to the original.
            let own = std::path::Path::new(path).with_file_name(format!("{}.console.log", spec.name));
            let text = format!("<source path='{}'/>", xml_escape(&own.to_string_lossy()));
            edits.push(Edit { range: source.range(), text });
        } else if device.has_tag_name("interface") {
            let plug = spec.nics.get(nic_index).cloned().flatten();
            let tap = format!("{}{nic_index}", spec.tap_prefix);
            edits.push(Edit { range: device.range(), text: interface_xml(device, plug.as_ref(), &tap) });
            nic_index += 1;
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.range.start));
    let mut xml = source.to_string();
    for edit in edits {
        xml.replace_range(edit.range, &edit.text);
    }
    Ok(xml)
}

/// A replica disk: a qcow2 image file (the overlay on its recovery point), on the same
/// bus and target as the source's.
fn disk_xml(source: Node, target: &str, image: &std::path::Path) -> String {
    let bus = child(source, "target").and_then(|t| t.attribute("bus")).unwrap_or("virtio");
    format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='{}' bus='{}'/></disk>",
        xml_escape(&image.to_string_lossy()),
        xml_escape(target),
        xml_escape(bus)
    )
}

/// A replica NIC: the source's MAC and model, plugged into the mapped network or bridge
/// (the MAC is what a DHCP reservation at the target gives R9's address to), or
/// unplugged when nothing is mapped.
fn interface_xml(source: Node, plug: Option<&Attachment>, tap: &str) -> String {
    let mac = child(source, "mac").and_then(|m| m.attribute("address"));
    let model = child(source, "model").and_then(|m| m.attribute("type")).unwrap_or("virtio");
    let (kind, source_xml, link) = match plug {
        Some(Attachment::LibvirtNetwork(n)) => ("network", format!("<source network='{}'/>", xml_escape(n)), ""),
        Some(Attachment::Bridge(b)) => ("bridge", format!("<source bridge='{}'/>", xml_escape(b)), ""),
        // An unmapped NIC stays defined but with its link down, attached to nothing that
        // exists at the target: libvirt needs a source, so an isolated user-mode NIC.
        None => ("user", String::new(), "<link state='down'/>"),
    };
    let mac_xml = mac.map(|m| format!("<mac address='{}'/>", xml_escape(m))).unwrap_or_default();
    let tap_xml = if plug.is_some() { format!("<target dev='{}'/>", xml_escape(tap)) } else { String::new() };
    format!(
        "<interface type='{kind}'>{mac_xml}{source_xml}{tap_xml}<model type='{}'/><rom enabled='no'/>{link}</interface>",
        xml_escape(model)
    )
}

/// A domain's state as `virsh domstate` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Running,
    Paused,
    ShutOff,
    /// Shutting down, crashed, suspended to disk...: not running, not yet off.
    Other,
}

impl DomainState {
    pub fn parse(text: &str) -> DomainState {
        match text.trim() {
            "running" => DomainState::Running,
            "paused" => DomainState::Paused,
            "shut off" => DomainState::ShutOff,
            _ => DomainState::Other,
        }
    }
}

/// The MAC of each NIC of a domain definition, in NIC order (empty where it has none).
pub fn nic_macs(definition: &str) -> Vec<String> {
    parse_domain(definition).map(|info| info.nics.into_iter().map(|nic| nic.mac).collect()).unwrap_or_default()
}

/// The address libvirt saw (by lease or agent) for NIC `i`, whose MAC is `macs[i]`.
/// libvirt lists interfaces in its own order, so a NIC is matched by MAC; by position only
/// where its MAC is unknown.
pub fn seen_address(macs: &[String], i: usize, found: &[(String, std::net::Ipv4Addr)]) -> Option<std::net::Ipv4Addr> {
    match macs.get(i).filter(|mac| !mac.is_empty()) {
        Some(mac) => found.iter().find(|(seen, _)| seen.eq_ignore_ascii_case(mac)).map(|(_, ip)| *ip),
        None => found.get(i).map(|(_, ip)| *ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "<domain type='qemu' id='3'>
  <name>app01</name>
  <uuid>0c7b9d5e-1111-2222-3333-444455556666</uuid>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/boot/vmlinuz</kernel>
    <cmdline>console=ttyS0 site=a quiet</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/srv/a/app01.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/srv/a/app01-scratch.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:00:01:20'/>
      <source network='net-a'/>
      <target dev='vnet0'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:00:01:21'/>
      <source bridge='br-backup'/>
      <model type='e1000'/>
    </interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='/srv/a/app01.console.log'/><target port='0'/></serial>
  </devices>
  <seclabel type='dynamic' model='dac'/>
</domain>";

    #[test]
    fn r6_a_domains_disks_nics_and_memory_are_read_from_its_definition() {
        let info = parse_domain(SOURCE).unwrap();
        assert_eq!(info.name, "app01");
        assert_eq!(info.memory_mib, 256);
        assert_eq!(info.disks.len(), 2);
        assert_eq!(
            info.disks[0],
            DomainDisk { target: "vda".into(), file: "/srv/a/app01.qcow2".into(), format: "qcow2".into() }
        );
        assert_eq!(info.nics[0].source, Some(Attachment::LibvirtNetwork("net-a".into())));
        assert_eq!(info.nics[1].source, Some(Attachment::Bridge("br-backup".into())));
        assert_eq!(info.nics[1].mac, "52:54:00:00:01:21");
        assert!(info.agent_channel);
    }

    #[test]
    fn a_block_device_disk_is_refused_with_the_reason() {
        let xml = SOURCE.replace("<disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/srv/a/app01-scratch.qcow2'/>", "<disk type='block' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source dev='/dev/sdb'/>");
        let error = parse_domain(&xml).unwrap_err();
        assert!(error.to_string().contains("disk vdb is not an image file (type \"block\")"), "{error}");
    }

    fn spec() -> ReplicaSpec {
        ReplicaSpec {
            name: "app01-dr".into(),
            disks: HashMap::from([("vda".to_string(), PathBuf::from("/srv/b/app01/failover.qcow2"))]),
            nics: vec![Some(Attachment::LibvirtNetwork("net-b".into())), None],
            tap_prefix: "dr-app01-".into(),
            cmdline_site: Some("b".into()),
        }
    }

    #[test]
    fn r7_r10_r11_the_replica_is_the_source_renamed_on_mapped_networks_and_replica_storage() {
        let xml = replica_xml(SOURCE, &spec()).unwrap();
        let info = parse_domain(&xml).unwrap();
        assert_eq!(info.name, "app01-dr");
        assert_eq!(info.memory_mib, 256, "what drplan does not change is kept");
        assert_eq!(
            info.disks,
            vec![DomainDisk {
                target: "vda".into(),
                file: "/srv/b/app01/failover.qcow2".into(),
                format: "qcow2".into()
            }]
        );
        assert_eq!(
            info.nics[0],
            DomainNic { mac: "52:54:00:00:01:20".into(), source: Some(Attachment::LibvirtNetwork("net-b".into())) }
        );
        assert_eq!(info.nics[1].source, None, "an unmapped NIC is left unplugged");
        assert!(xml.contains("<link state='down'/>"));
        assert!(!xml.contains("<uuid>") && !xml.contains("seclabel") && !xml.contains("vnet0"), "{xml}");
        assert!(xml.contains("<target dev='dr-app01-0'/>"), "explicit tap names: {xml}");
        assert!(xml.contains("<cmdline>console=ttyS0 quiet site=b</cmdline>"), "{xml}");
        assert!(xml.contains("<kernel>/boot/vmlinuz</kernel>"));
        assert!(xml.contains("<source path='/srv/a/app01-dr.console.log'/>"), "its own console log: {xml}");
    }

    #[test]
    fn replica_names_are_escaped_in_the_definition() {
        let mut spec = spec();
        spec.name = "a<b>&'c".into();
        let xml = replica_xml(SOURCE, &spec).unwrap();
        assert_eq!(parse_domain(&xml).unwrap().name, "a<b>&'c");
    }

    #[test]
    fn domain_states_read_from_virsh() {
        assert_eq!(DomainState::parse("running\n"), DomainState::Running);
        assert_eq!(DomainState::parse("shut off"), DomainState::ShutOff);
        assert_eq!(DomainState::parse("in shutdown"), DomainState::Other);
    }
}
