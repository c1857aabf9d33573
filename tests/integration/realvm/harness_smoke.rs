//! The real-VM harness itself, end to end: what the libvirt fabric's tests rely on.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{
    GuestHandle, RealSites, alive, assert_contiguous, missing, processes_in_netns, read_latest, read_records,
    read_sequence, require,
};

/// What the machine's own network namespace looks like: links, addresses, forwarding.
fn host_network() -> String {
    let ip = |args: &[&str]| {
        let output = Command::new("ip").args(args).output().expect("run ip");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    format!(
        "{}{}ip_forward={}",
        ip(&["-br", "link"]),
        ip(&["-br", "addr"]),
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default()
    )
}

/// Whether `guest` has its tap in the namespace and its reserved address leased.
fn attached(sites: &RealSites, guest: &GuestHandle) -> bool {
    let links = sites.netns_command("ip").args(["-br", "link"]).output().expect("ip in the namespace");
    let leases = sites.virsh(&guest.site, &["net-dhcp-leases", &guest.network]);
    String::from_utf8_lossy(&links.stdout).contains(&guest.tap)
        && leases.lines().any(|l| l.contains(&guest.mac) && l.contains(&format!("{}/24", guest.ip)))
}

#[test]
fn a_guest_counts_on_its_disk_at_site_a_and_its_copy_continues_at_site_b_all_inside_the_namespace() {
    let host_before = host_network();
    let started = Instant::now();
    let sites = RealSites::start(&["a", "b"]);
    let sites_up = started.elapsed();
    assert!(sites.uri("a").ends_with("/a/run/libvirt-sock"), "{}", sites.uri("a"));
    assert_eq!(sites.virsh("a", &["net-list", "--name"]).trim(), "net-a");
    assert_eq!(sites.virsh("b", &["net-list", "--name"]).trim(), "net-b");
    let bridges = sites.netns_command("ip").args(["-br", "addr"]).output().expect("ip in the namespace");
    let bridges = String::from_utf8_lossy(&bridges.stdout);
    assert!(bridges.contains("virbr-a") && bridges.contains("10.77.1.1/24"), "{bridges}");
    assert!(bridges.contains("virbr-b") && bridges.contains("10.77.2.1/24"), "{bridges}");
    assert_eq!(host_network(), host_before, "the host's network namespace changed");
    let holder = fs::read_link(format!("/proc/{}/ns/net", sites.netns_pid())).expect("the holder's namespace");
    assert_eq!(holder.to_string_lossy(), sites.netns_id());

    // A guest at site a: its reserved address, a growing counter, the agent, ACPI shutdown.
    let source = sites.define_guest("a", "src", "52:54:00:77:01:10", &sites.network("a"));
    assert_eq!(source.ip, "10.77.1.10");
    assert!(sites.console(&source).is_empty());
    let started = Instant::now();
    sites.start_guest(&source);
    let first = sites.wait_counter(&source.ip, 0, Duration::from_secs(60));
    let boot = started.elapsed();
    let counted = sites.wait_counter(&source.ip, first + 10, Duration::from_secs(30));
    assert_eq!(sites.http_get(&source.ip, "site").as_deref().map(str::trim), Some("a"));
    assert_eq!(sites.http_get(&source.ip, "resumed").as_deref().map(str::trim), Some("0"));
    assert!(attached(&sites, &source), "{source:?} has no tap or no lease");
    assert!(sites.try_virsh("b", &["domstate", &source.name]).is_err(), "site b knows site a's guest");
    let ping = sites.virsh("a", &["qemu-agent-command", &source.name, r#"{"execute":"guest-ping"}"#]);
    assert_eq!(ping.trim(), r#"{"return":{}}"#);
    let shutdown = sites.shutdown_guest(&source);
    let last = assert_contiguous(&read_sequence(&source.disk));
    assert!(last >= counted, "the disk ends at {last}, the guest had counted {counted}");
    assert_eq!(read_latest(&source.disk).map(|r| r.seq), Some(last));

    // Its disk copied to site b (as replication would) continues the sequence there.
    let copy = sites.dir("b").join("src-copy.qcow2");
    fs::copy(&source.disk, &copy).expect("copy the disk");
    let replica = sites.define_guest_on("b", "src-r", "52:54:00:77:02:10", "net-b", &copy);
    assert_eq!(replica.ip, "10.77.2.10");
    let started = Instant::now();
    sites.start_guest(&replica);
    let resumed = sites.wait_counter(&replica.ip, last + 1, Duration::from_secs(60));
    let replica_boot = started.elapsed();
    assert_eq!(sites.http_get(&replica.ip, "site").as_deref().map(str::trim), Some("b"));
    assert_eq!(sites.http_get(&replica.ip, "resumed").as_deref().map(str::trim), Some(&*(last + 1).to_string()));
    sites.destroy_guest(&replica);
    assert_eq!(sites.domstate(&replica), "shut off");
    let records = read_records(&copy);
    let end = assert_contiguous(&records.iter().map(|r| r.seq).collect::<Vec<_>>());
    assert!(end >= resumed);
    assert!(records[..=last as usize].iter().all(|r| r.site == "a"));
    assert!(records[last as usize + 1..].iter().all(|r| r.site == "b"));

    // Teardown leaves nothing behind.
    let processes = sites.processes();
    let netns = sites.netns_id();
    assert!(processes.iter().any(|(what, _)| what.starts_with("dnsmasq")), "{processes:?}");
    let started = Instant::now();
    drop(sites);
    let teardown = started.elapsed();
    let left: Vec<_> = processes.iter().filter(|(_, pid)| alive(*pid)).collect();
    assert!(left.is_empty(), "still running after the drop: {left:?}");
    assert!(processes_in_netns(&netns).is_empty(), "the namespace still has {:?}", processes_in_netns(&netns));
    assert_eq!(host_network(), host_before, "the host's network namespace changed");
    eprintln!(
        "realvm timings: sites up {sites_up:.2?}, boot to counter {boot:.2?}, shutdown {shutdown:.2?}, \
         replica boot to counter {replica_boot:.2?}, teardown {teardown:.2?}; {} records at a, {} at b",
        last + 1,
        end - last
    );
}

#[test]
#[should_panic(expected = "missing: program `qemu-ga`. run scripts/install-realvm.sh as root")]
fn a_machine_without_a_needed_program_fails_the_tests_with_what_to_install() {
    // What `RealSites::start` does there: fail, never skip.
    require(&missing(true, |program| program != "qemu-ga"));
}

#[test]
#[should_panic(expected = "missing: root (run the real-VM tests as root: they make namespaces and run libvirtd)")]
fn a_user_other_than_root_fails_the_tests_with_what_to_do() {
    require(&missing(false, |_| true));
}
