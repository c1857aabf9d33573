//! The libvirt fabric through the real binary, on real guests: protect, replicate, a drill
//! and a planned failover, proven from the guest's own sequence numbers (R4, R30, R31).

use std::time::{Duration, Instant};

use super::RealSites;
use super::cli::{AppVm, PLAN, committed, counter, drplan, site_file, start_bubble};
use crate::util::Workdir;

#[test]
fn r4_r30_r31_a_real_vm_replicates_is_drilled_and_fails_over_planned_with_nothing_lost() {
    let sites = RealSites::start(&["a", "b"]);
    start_bubble(&sites);
    let app = sites.define_guest("a", "app01", "52:54:00:77:01:20", &sites.network("a"));
    sites.start_guest(&app);
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")])).plan(PLAN);

    // R4: protection, then the initial full copy by the replication service; then a delta.
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(status.contains("initial replication"), "{status}");
    let first = work.run(&["replicate", "--once"]).ok();
    assert!(first.stderr.contains("point 1: full copy"), "{}", first.stderr);
    std::thread::sleep(Duration::from_secs(1));
    let second = work.run(&["replicate", "--once"]).ok();
    assert!(second.stderr.contains("point 2: incremental copy"), "{}", second.stderr);
    let points = work.run(&["points", "app01"]).ok().stdout;
    assert_eq!(points.lines().filter(|l| l.contains("crash")).count(), 2, "{points}");

    // R30: a drill boots the latest point in the bubble; production keeps writing.
    let before_drill = counter(&sites, &app.ip);
    let drill = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "test", "--yes"]);
    let drill = drill.ok();
    let test_domains = sites.virsh("b", &["list", "--name"]);
    assert!(test_domains.contains("app01-test"), "{test_domains}\n{}", drill.stdout);
    assert!(counter(&sites, &app.ip) > before_drill, "production stopped during the drill");
    let leases = sites.virsh("b", &["net-dhcp-leases", "bubble"]);
    assert!(leases.contains("52:54:00:77:01:20"), "the drill's replica is in the bubble: {leases}");
    let drill_ip = leases.split_whitespace().find(|w| w.starts_with("10.77.9.")).unwrap().split('/').next().unwrap();
    let resumed: u64 = sites.http_get(drill_ip, "resumed").unwrap().trim().parse().unwrap();
    assert!(resumed <= before_drill + 1, "the drill's replica holds data up to its point: {resumed} vs {before_drill}");
    drplan(&work, &sites, &["cleanup", "plan.rhai", "--yes"]).ok();
    assert!(!sites.virsh("b", &["list", "--all", "--name"]).contains("app01-test"));

    // R31: planned failover: shutdown, final copy, the replica at b continues the sequence.
    let started = Instant::now();
    let planned = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    let took = started.elapsed();
    assert_eq!(sites.domstate(&app).trim(), "shut off");
    let source_last = committed(&app.disk);
    let resumed: u64 =
        sites.http_get("10.77.2.50", "resumed").expect("the replica answers at its R9 address").trim().parse().unwrap();
    assert_eq!(resumed, source_last + 1, "planned failover loses nothing (R31)\n{}", planned.stdout);
    let site = sites.http_get("10.77.2.50", "site").unwrap();
    assert_eq!(site.trim(), "b");
    eprintln!("planned failover through the CLI: {:.1} s\n{}\n{}", took.as_secs_f64(), drill.stdout, planned.stdout);
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(status.contains("committed"), "{status}");
}
