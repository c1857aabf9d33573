//! App-consistent points on real guests (R3): the guest agent freezes the guest while a
//! point begins, and the test guest's "application" (its sequence writer) quiesces on the
//! freeze; such points are marked app-consistent, and `latest-app-consistent` (R33) fails
//! over to one.

use std::time::Duration;

use super::cli::{AppVm, PLAN, committed, drplan, point_file, resumed, running_guest, site_file};
use super::read_sequence;
use crate::util::Workdir;

/// The "freeze N" lines of the guest's freeze log: the next record the writer was about to
/// write when it paused, one per freeze.
fn freezes(log: &str) -> Vec<u64> {
    log.lines().filter_map(|l| l.strip_prefix("freeze ")?.trim().parse().ok()).collect()
}

#[test]
fn r3_r33_a_point_begun_with_the_guest_frozen_is_app_consistent_and_latest_app_consistent_fails_over_to_it() {
    let sites = super::RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:41");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    // R3: an app-consistent point every hour (less than the retention, as the site file requires).
    let site = site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")])
        .replace("retention = \"1h\"", "retention = \"2h\"\napp_consistent = \"1h\"");
    let work = Workdir::with_site(&site).plan(PLAN);
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();

    // The first point is due app-consistent; the next one, within the hour, is crash-consistent.
    let first = work.run(&["replicate", "--once"]).ok();
    assert!(first.stderr.contains("point 1: full copy, app-consistent"), "{}", first.stderr);
    let log = sites.http_get(&app.ip, "freezes").unwrap_or_default();
    let frozen_at = freezes(&log);
    assert_eq!(frozen_at.len(), 1, "the guest was frozen once, for point 1: {log:?}");
    assert!(log.trim_end().ends_with("thaw"), "and thawed at once: {log:?}");
    sites.wait_counter(&app.ip, frozen_at[0] + 10, Duration::from_secs(30));
    let second = work.run(&["replicate", "--once"]).ok();
    assert!(second.stderr.contains("point 2: incremental copy, crash-consistent"), "{}", second.stderr);
    assert_eq!(freezes(&sites.http_get(&app.ip, "freezes").unwrap_or_default()).len(), 1, "no freeze for point 2");

    // Point 1 holds exactly the records the writer had finished when it quiesced: its last
    // record complete in its sector and in sector 0, nothing half written.
    let point1 = point_file(&sites, "app01", 1);
    let held = committed(&point1);
    assert_eq!(held + 1, frozen_at[0], "the point holds every record before the pause and none after");
    assert_eq!(read_sequence(&point1).last().copied(), Some(held), "no record half written in point 1");
    assert!(committed(&point_file(&sites, "app01", 2)) > held, "point 2 was taken later");
    let points = work.run(&["points", "app01"]).ok().stdout;
    let kinds: Vec<&str> = points.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(kinds, ["app-consistent", "crash-consistent"], "{points}");

    // R33: the site goes down; the failover to the latest app-consistent point boots the
    // replica from point 1, although point 2 is later.
    sites.destroy_guest(&app);
    let run = drplan(
        &work,
        &sites,
        &["failover", "plan.rhai", "--kind", "unplanned", "--point", "latest-app-consistent", "--yes"],
    )
    .ok();
    assert_eq!(resumed(&sites, "10.77.2.50"), held + 1, "the replica resumes after point 1\n{}", run.stdout);
}
