//! R12 on real VMs: the members of a replication group get common recovery points, and
//! an unplanned failover of the group lands every member on the same one.

use std::time::Duration;

use super::RealSites;
use super::cli::{AppVm, counter, drplan, plan_of, resumed, site_file};
use crate::util::Workdir;

const GROUP: &str = r#"
[[replication_groups]]
name = "db"
vms = ["db01", "db02"]
"#;

/// The points `drplan points VM` lists, as their time stamps.
fn point_times(work: &Workdir, vm: &str) -> Vec<String> {
    let listed = work.run(&["points", vm]).ok().stdout;
    listed.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with("20")).map(String::from)).collect()
}

#[test]
fn r12_a_replication_groups_members_share_points_and_fail_over_to_the_same_one() {
    let sites = RealSites::start(&["a", "b"]);
    let db01 = sites.define_guest("a", "db01", "52:54:00:77:01:40", &sites.network("a"));
    let db02 = sites.define_guest("a", "db02", "52:54:00:77:01:41", &sites.network("a"));
    sites.start_guest(&db01);
    sites.start_guest(&db02);
    sites.wait_counter(&db01.ip, 3, Duration::from_secs(120));
    sites.wait_counter(&db02.ip, 3, Duration::from_secs(120));
    let vms = [AppVm::new("db01", &db01.ip, "10.77.2.60"), AppVm::new("db02", &db02.ip, "10.77.2.61")];
    let work = Workdir::with_site(&(site_file(&sites, &vms) + GROUP)).plan(&plan_of(&["db01", "db02"]));
    work.run(&["protect", "db01", "db02", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();
    // Both guests write more before the second point (a loaded machine slows them down).
    for guest in [&db01, &db02] {
        let now = counter(&sites, &guest.ip);
        sites.wait_counter(&guest.ip, now + 5, Duration::from_secs(60));
    }
    work.run(&["replicate", "--once"]).ok();

    let (times01, times02) = (point_times(&work, "db01"), point_times(&work, "db02"));
    assert_eq!(times01.len(), 2, "{times01:?}");
    assert_eq!(times01, times02, "R12: the group's members share their points");

    sites.destroy_guest(&db01);
    sites.destroy_guest(&db02);
    let run = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "unplanned", "--yes"]).ok();
    let landed: Vec<&str> = run.stdout.lines().filter(|l| l.contains("vm.succeeded")).collect();
    assert_eq!(landed.len(), 2, "{}", run.stdout);
    let point = |line: &str| line.split("point ").nth(1).and_then(|p| p.split(';').next()).map(String::from);
    assert_eq!(point(landed[0]), point(landed[1]), "one point for the whole group:\n{}", run.stdout);
    assert_eq!(point(landed[0]).as_deref(), times01.last().map(String::as_str), "the latest point");

    // R34: before commit, the whole group moves to the earlier point: each replica boots
    // again from it, so each resumes where that point left its disk.
    let resumed_latest = resumed(&sites, "10.77.2.60");
    let moved = drplan(&work, &sites, &["change-point", "plan.rhai", "--point", &times01[0], "--yes"]).ok();
    assert!(
        moved.stdout.contains(&times01[0]) || moved.stderr.contains(&times01[0]),
        "{}{}",
        moved.stdout,
        moved.stderr
    );
    sites.wait_counter("10.77.2.60", 0, Duration::from_secs(120));
    sites.wait_counter("10.77.2.61", 0, Duration::from_secs(120));
    let resumed_first = resumed(&sites, "10.77.2.60");
    assert!(resumed_first < resumed_latest, "the earlier point holds less: {resumed_first} vs {resumed_latest}");
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    let points = work.run(&["points", "db01"]).ok().stdout;
    assert!(!points.contains(&times01[1]), "R34: commit deletes the points: {points}");
}
