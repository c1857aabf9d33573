//! Sites on two hosts that share no storage: each site's files are on a file system only
//! its own libvirtd and sshd see, and drplan reaches both over ssh (`qemu+ssh://` URIs).
//! A backup is written at the source's host, sent to the target's through drplan at the
//! throttle's bandwidth (R15), and the replica boots there from it (R1, R4, R31); the way
//! back (R36-R38) crosses the other way.

use std::time::{Duration, Instant};

use super::RealSites;
use super::cli::{AppVm, PLAN, committed, counter, drplan, resumed, running_guest, site_file, spawn};
use super::way_back::{let_write, sites_in_turn};
use crate::util::Workdir;

/// R15: 1024 Kbps all day: 128 KiB/s, a few seconds per copy.
const THROTTLE: &str = "\n[throttle]\nwork_kbps = 1024\noff_hours_kbps = 1024\n";
const BYTES_PER_SECOND: f64 = 1024.0 * 1024.0 / 8.0;

/// The first cycle's "point N: … copy, …, S s, B bytes" of `out`: its seconds and bytes.
fn took_and_bytes(out: &str) -> (f64, u64) {
    let line = out.lines().find(|l| l.contains(": point ")).unwrap_or_else(|| panic!("no point in:\n{out}"));
    let words: Vec<&str> = line.split([',', ' ']).filter(|w| !w.is_empty()).collect();
    let seconds = words.iter().position(|w| *w == "s").and_then(|i| words[i - 1].parse().ok());
    let bytes = words.iter().position(|w| *w == "bytes").and_then(|i| words[i - 1].parse().ok());
    (seconds.unwrap_or_else(|| panic!("{line}")), bytes.unwrap_or_else(|| panic!("{line}")))
}

#[test]
fn r1_r15_r31_r36_r37_sites_on_hosts_without_shared_storage_replicate_over_ssh_at_the_throttle_and_go_over_and_back() {
    let sites = RealSites::start_apart(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:40");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let vms = [AppVm::new("app01", &app.ip, "10.77.2.60")];
    let work = Workdir::with_site(&(site_file(&sites, &vms) + THROTTLE)).plan(PLAN);
    let (storage_a, storage_b) = (sites.storage("a"), sites.storage("b"));

    // R4 then R1: the full copy, then an incremental one, both sent from a's host to b's.
    drplan(&work, &sites, &["protect", "app01", "--policy", "gold", "--yes"]).ok();
    let first = drplan(&work, &sites, &["replicate", "--once"]).ok();
    assert!(first.stderr.contains("point 1: full copy"), "{}", first.stderr);
    let (took, bytes) = took_and_bytes(&first.stderr);
    let due = bytes as f64 / BYTES_PER_SECOND;
    assert!(took >= 0.9 * due, "R15: {bytes} bytes at 128 KiB/s take {due:.2} s at least, not {took:.2} s");
    std::thread::sleep(Duration::from_secs(1));
    let second = drplan(&work, &sites, &["replicate", "--once"]).ok();
    assert!(second.stderr.contains("point 2: incremental copy"), "{}", second.stderr);

    // The points are on b's host alone; nothing is left on its way at a's.
    let chain = storage_b.join("app01");
    let at_b = sites.on_host("b", &format!("ls '{}'", chain.display()));
    for point in ["point-00000001-vda.qcow2", "point-00000002-vda.qcow2"] {
        assert!(at_b.contains(point), "{point} at b's host: {at_b}");
    }
    assert!(!chain.exists(), "b's storage is not shared: it is not seen outside b's host");
    let outgoing = storage_a.join(".outgoing").join("app01");
    let waiting = sites.on_host("a", &format!("ls -A '{}'", outgoing.display()));
    assert_eq!(waiting.trim(), "", "every backup written at a was sent and removed");
    let check =
        sites.on_host("b", &format!("qemu-img check -q '{}/point-00000002-vda.qcow2' && echo clean", chain.display()));
    assert_eq!(check.trim(), "clean");

    // R31: the final copy crosses too; the replica at b continues the sequence.
    let started = Instant::now();
    let planned = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    assert_eq!(sites.domstate(&app), "shut off");
    assert_eq!(resumed(&sites, "10.77.2.60"), committed(&app.disk) + 1, "nothing lost\n{}", planned.stdout);
    let over = started.elapsed();
    drplan(&work, &sites, &["commit", "plan.rhai", "--yes"]).ok();

    // R36: back from b's host to a's: the replica's changes only, sent from b, while
    // status follows the copy.
    drplan(&work, &sites, &["reprotect", "plan.rhai", "--yes"]).ok();
    let_write(&sites, "10.77.2.60", 5);
    let mut copying = spawn(&work, &sites, &["replicate", "--once"]);
    let mut seen = Vec::new();
    let watching = Instant::now();
    while copying.try_wait().is_none() && watching.elapsed() < Duration::from_secs(120) {
        let status = drplan(&work, &sites, &["status", "--format", "json"]).ok().json();
        let app01 =
            status["vms"].as_array().and_then(|vms| vms.iter().find(|v| v["vm"] == "app01" || v["name"] == "app01"));
        seen.extend(app01.and_then(|v| v["initial_progress"].as_u64()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let back = copying.wait().ok();
    assert!(seen.iter().any(|p| (1..100).contains(p)), "status showed the copy under way: {seen:?}");
    assert!(seen.is_sorted(), "and never going back: {seen:?}");
    let (_, bytes) = took_and_bytes(&back.stderr);
    assert!(bytes * 16 < 64 << 20, "a delta copy of {bytes} bytes\n{}", back.stderr);
    let outgoing = storage_b.join(".outgoing").join("app01");
    assert_eq!(sites.on_host("b", &format!("ls -A '{}'", outgoing.display())).trim(), "");

    // R37, R38: home onto a's own disk, written at a's host; nothing lost on the way.
    let before = counter(&sites, "10.77.2.60");
    let home = drplan(&work, &sites, &["failback", "plan.rhai", "--yes"]).ok();
    assert!(resumed(&sites, &app.ip) > before, "home resumes after what b wrote\n{}", home.stdout);
    assert_eq!(sites.http_get(&app.ip, "site").unwrap().trim(), "a");
    let_write(&sites, &app.ip, 3);
    sites.destroy_guest(&app);
    let turns: Vec<String> = sites_in_turn(&app.disk).into_iter().map(|(site, _)| site).collect();
    assert_eq!(turns, ["a", "b", "a"], "the own disk holds its whole life without a gap");
    eprintln!(
        "between hosts over ssh: planned failover {:.1} s\n{}{}{}{}",
        over.as_secs_f64(),
        first.stderr,
        second.stderr,
        back.stderr,
        home.stdout
    );
}
