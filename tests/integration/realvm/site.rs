//! The site file and plan of the real-VM tests and of the libvirt bench (which includes
//! this file by path): the harness's sites a and b as libvirt sites, the VMs under test.

use super::RealSites;

/// One VM of the site file: its libvirt domain at site a and the addresses its NIC has
/// at a (the harness's reservation) and at b (R9: the replica's reservation).
pub struct AppVm<'a> {
    pub name: &'a str,
    pub source_ip: &'a str,
    pub target_ip: &'a str,
}

impl<'a> AppVm<'a> {
    pub fn new(name: &'a str, source_ip: &'a str, target_ip: &'a str) -> AppVm<'a> {
        AppVm { name, source_ip, target_ip }
    }
}

/// A site file of the harness's sites a and b (network `prod` is `net-a`, mapped to
/// `prod-dr`, `net-b`; `bubble` at b for drills), policy `gold` (copies every 30 s), and
/// `vms`. The points go to `storage(b)/VM/`.
pub fn site_file(sites: &RealSites, vms: &[AppVm]) -> String {
    let mut text = format!(
        r#"
[[sites]]
name = "a"
kind = "onprem"
hosts = ["kvm-a"]
libvirt = {{ uri = "{uri_a}", storage = "{storage_a}" }}
  [[sites.networks]]
  name = "prod"
  libvirt_network = "net-a"
    [[sites.networks.subnets]]
    name = "lan"
    cidr = "10.77.1.0/24"

[[sites]]
name = "b"
kind = "onprem"
hosts = ["kvm-b"]
libvirt = {{ uri = "{uri_b}", storage = "{storage_b}" }}
  [[sites.networks]]
  name = "prod-dr"
  libvirt_network = "net-b"
    [[sites.networks.subnets]]
    name = "lan"
    cidr = "10.77.2.0/24"
  [[sites.networks]]
  name = "bubble"
  libvirt_network = "bubble"
  isolated = true
    [[sites.networks.subnets]]
    name = "lan"
    cidr = "10.77.9.0/24"

[[pairings]]
source = "a"
target = "b"

[[network_mappings]]
source = "a/prod"
target = "b/prod-dr"

[[policies]]
name = "gold"
copy_frequency = "30s"
retention = "1h"
"#,
        uri_a = sites.site_uri("a"),
        uri_b = sites.site_uri("b"),
        storage_a = sites.storage("a").display(),
        storage_b = sites.storage("b").display(),
    );
    for vm in vms {
        text += &format!(
            r#"
[[vms]]
name = "{name}"
site = "a"
host = "kvm-a"
os = "linux"
  [[vms.nics]]
  network = "prod"
  subnet = "lan"
  ip = "{source_ip}"
  target_ip = "{target_ip}"
"#,
            name = vm.name,
            source_ip = vm.source_ip,
            target_ip = vm.target_ip
        );
    }
    text
}

/// The plan of app01: one group, each VM's port 80 waited for after its failover.
pub const PLAN: &str = r#"
let plan = recovery_plan("app", #{ source: "a", target: "b", rto: "10m", test_network: "bubble" });
plan.group("app", ["app01"]).post_each(|vm, ctx| wait_port(vm.ip, 80, "90s"));
plan
"#;

/// `PLAN` for the VMs `vms` instead of app01.
pub fn plan_of(vms: &[&str]) -> String {
    let names: Vec<String> = vms.iter().map(|vm| format!("{vm:?}")).collect();
    PLAN.replace(r#"["app01"]"#, &format!("[{}]", names.join(", ")))
}
