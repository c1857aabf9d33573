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

use chrono::{DateTime, Utc};

use super::{GuestHandle, RealSites, Record, assert_contiguous, read_latest, read_sequence};
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

/// The images of `vm`'s recovery points for disk vda at `site` (where its chain goes:
/// b forward, a on the way back), oldest first.
pub fn points_at(sites: &RealSites, site: &str, vm: &str) -> Vec<std::path::PathBuf> {
    point_images(&sites.dir(site).join("replicas").join(vm)).into_iter().map(|(_, path)| path).collect()
}

/// The point images for disk vda in a chain's `folder` (`point-SEQ-vda.qcow2`), oldest
/// first, as (seq, path).
pub fn point_images(folder: &std::path::Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut found: Vec<(u64, std::path::PathBuf)> = fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(|e| {
            let path = e.ok()?.path();
            let seq = path.file_name()?.to_str()?.strip_prefix("point-")?.strip_suffix("-vda.qcow2")?.parse().ok()?;
            Some((seq, path))
        })
        .collect();
    found.sort();
    found
}

/// A duration as drplan's reports write it (`HumanDuration`): "8.249s".
pub fn show_secs(d: Duration) -> String {
    format!("{}s", d.as_millis() as f64 / 1000.0)
}

/// The VM's span in `drplan show RUN --format json`.
pub fn vm_span(show: &serde_json::Value, vm: &str) -> serde_json::Value {
    let groups = show["groups"].as_array().unwrap();
    let found = groups.iter().flat_map(|g| g["vms"].as_array().unwrap()).find(|v| v["name"] == vm);
    found.unwrap_or_else(|| panic!("no {vm} in {show}")).clone()
}

/// What the last run reported of a VM's unplanned failover (R32).
pub struct ReportedLoss {
    pub reported: Duration,
    /// The point it landed on.
    pub point: DateTime<Utc>,
    /// When the run asked for the VM's failover.
    pub asked: DateTime<Utc>,
    /// Everything, for messages.
    pub context: String,
}

/// R32: the data loss the last run (`run`) reports for `vm`, held against what its guest's
/// own records show: `source` (its source disk read after the disaster) holds records
/// up to its last, the replica resumed at `resumed`, and the plug was pulled at
/// `pulling`. The loss reported runs from the point's instant to the failover's start:
/// the records lost, and the moments from the disaster to the failover. Records carry
/// whole seconds of the guest's clock: 1.5 s of tolerance.
pub fn assert_reported_loss(
    work: &Workdir,
    run: &Run,
    vm: &str,
    source: &[Record],
    resumed: u64,
    pulling: DateTime<Utc>,
) -> ReportedLoss {
    let source_last = assert_contiguous(&source.iter().map(|r| r.seq).collect::<Vec<_>>());
    assert!(source_last >= resumed, "the guest wrote after its point: records {resumed}..={source_last} are lost");
    let lost = source_last + 1 - resumed;
    let show = work.run(&["show", &work.last_run().unwrap(), "--format", "json"]).ok().json();
    let span = vm_span(&show, vm);
    let reported =
        Duration::from_millis(span["data_loss_ms"].as_u64().unwrap_or_else(|| panic!("no data loss: {span}")));
    assert!(run.stdout.contains(&format!("data loss {}", show_secs(reported))), "{}", run.stdout);
    let point: DateTime<Utc> = span["point"].as_str().unwrap().parse().unwrap();
    let attempt = show["steps"].as_array().unwrap().iter().find(|e| e["kind"] == "vm.attempt" && e["vm"] == vm);
    let attempt = attempt.unwrap_or_else(|| panic!("no vm.attempt of {vm} in {show}"));
    let asked: DateTime<Utc> = attempt["at"].as_str().unwrap().parse().unwrap();
    let lost_span = Duration::from_secs(source[source_last as usize].time - source[resumed as usize].time);
    let to_ask = (asked - pulling).to_std().unwrap();
    let tolerance = Duration::from_millis(1500);
    let context = format!(
        "{vm}: {lost} records lost over {lost_span:?}, {reported:?} reported, point {point}, plug pulled at {pulling}, \
         failover asked {asked}\n{}",
        run.stdout
    );
    assert!(lost_span <= reported + tolerance, "{context}");
    assert!(reported <= lost_span + to_ask + tolerance, "{context}");
    eprintln!("unplanned: {context}");
    ReportedLoss { reported, point, asked, context }
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
