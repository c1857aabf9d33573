//! What the real-VM tests that drive the real `drplan` binary share: a site file of the
//! harness's sites a and b with the VMs under test, a plan per set of VMs, `drplan` run
//! (or started) inside the sites' network namespace, and reading the guests back over
//! HTTP and from libvirt's logs.
//!
//! ```text
//! let sites = RealSites::start(&["a", "b"]);
//! let app = sites.define_guest("a", "app01", "52:54:00:77:01:20", &sites.network("a"));
//! let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")])).plan(PLAN);
//! drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
//! assert_eq!(resumed(&sites, "10.77.2.50"), last + 1);
//! ```

use std::fs;
use std::time::Duration;

use super::{GuestHandle, RealSites, assert_contiguous, read_latest, read_sequence};
use crate::util::{Run, Running, Workdir};

pub use super::site::{AppVm, PLAN, plan_of, site_file};

/// `drplan ARGS` inside the sites' network namespace, where the guests are reachable.
pub fn drplan(work: &Workdir, sites: &RealSites, args: &[&str]) -> Run {
    let netns = format!("--net=/proc/{}/ns/net", sites.netns_pid());
    work.drplan(args).wrapped(["nsenter", netns.as_str()]).run()
}

/// `drplan ARGS` started inside the namespace. nsenter execs drplan: the child's pid is
/// drplan's, so `Running::kill` kills drplan itself.
pub fn spawn(work: &Workdir, sites: &RealSites, args: &[&str]) -> Running {
    let netns = format!("--net=/proc/{}/ns/net", sites.netns_pid());
    work.drplan(args).wrapped(["nsenter", netns.as_str()]).spawn()
}

/// The last sequence number the guest at `ip` wrote (`/counter`).
pub fn counter(sites: &RealSites, ip: &str) -> u64 {
    let text = sites.http_get(ip, "counter").unwrap_or_else(|| panic!("no counter at {ip}\n{}", sites.consoles()));
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("seq="))
        .and_then(|n| n.parse().ok())
        .or_else(|| text.trim().parse().ok())
        .unwrap_or_else(|| panic!("counter at {ip}: {text:?}"))
}

/// The first sequence number the guest at `ip` wrote since it booted (`/resumed`): one
/// more than the last record of the disk it booted from.
pub fn resumed(sites: &RealSites, ip: &str) -> u64 {
    let text =
        sites.http_get(ip, "resumed").unwrap_or_else(|| panic!("no guest answers at {ip}\n{}", sites.consoles()));
    text.trim().parse().unwrap_or_else(|_| panic!("resumed at {ip}: {text:?}"))
}

/// An isolated libvirt network at site b for drills (R30): no forwarding, DHCP only.
const BUBBLE: &str = "<network><name>bubble</name><bridge name='virbr-bub' stp='off' delay='0'/><dns enable='no'/>\
<ip address='10.77.9.1' netmask='255.255.255.0'><dhcp><range start='10.77.9.100' end='10.77.9.199'/></dhcp></ip></network>";

/// Defines and starts `bubble`, the site file's test network at b (R30), inside the
/// sites' network namespace like every network of theirs.
pub fn start_bubble(sites: &RealSites) {
    let bubble = sites.dir("b").join("bubble.xml");
    fs::write(&bubble, BUBBLE).unwrap();
    sites.virsh("b", &["net-define", &bubble.to_string_lossy()]);
    sites.virsh("b", &["net-start", "bubble"]);
}

/// A guest defined and started at site a, counting: its handle.
pub fn running_guest(sites: &RealSites, name: &str, mac: &str) -> GuestHandle {
    let guest = sites.define_guest("a", name, mac, &sites.network("a"));
    sites.start_guest(&guest);
    guest
}

/// How many times libvirt at `site` started QEMU for `domain`: the "starting up" headers
/// of its QEMU log (`ROOT/SITE/log/qemu/DOMAIN.log`), one per start.
pub fn qemu_starts(sites: &RealSites, site: &str, domain: &str) -> usize {
    let log = sites.dir(site).parent().unwrap().join("log/qemu").join(format!("{domain}.log"));
    fs::read_to_string(log).unwrap_or_default().matches("starting up").count()
}

/// The last record a guest's disk (or a point's image) holds for the guest: the one in
/// sector 0, after which a guest booted from it resumes; its records are checked to run
/// 0, 1, 2, … up to it. The writer writes record N+1 in sector N+2, then in sector 0: a
/// disk stopped (or copied) in between holds N+1 in its sector but not in sector 0, and
/// the guest writes N+1 again.
pub fn committed(disk: &std::path::Path) -> u64 {
    let latest = read_latest(disk).unwrap_or_else(|| panic!("{} holds no record", disk.display())).seq;
    let last = assert_contiguous(&read_sequence(disk));
    assert!(
        last == latest || last == latest + 1,
        "{}: sector 0 says {latest}, the records end at {last}",
        disk.display()
    );
    latest
}

/// The folder of `vm`'s recovery points at b, and the image of its point `seq`'s disk vda.
pub fn point_file(sites: &RealSites, vm: &str, seq: u64) -> std::path::PathBuf {
    sites.dir("b").join("replicas").join(vm).join(format!("point-{seq:08}-vda.qcow2"))
}

/// Polls `done` every 20 ms for at most `within`: whether it became true.
pub fn poll(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}
