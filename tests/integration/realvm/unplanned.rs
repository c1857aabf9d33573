//! An unplanned failover of real guests after their site went down (R32), on the point
//! chosen (R33), through the real binary: what it loses is read from the guests' own
//! sequence numbers and held against the loss the run reports.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::cli::{
    AppVm, assert_reported_loss, committed, drplan, plan_of, point_file, resumed, running_guest, site_file, vm_span,
};
use super::{RealSites, read_records};
use crate::util::Workdir;

/// What a point holds: the record its replica resumes after.
fn held(sites: &RealSites, vm: &str, seq: u64) -> u64 {
    committed(&point_file(sites, vm, seq))
}

#[test]
fn r32_r33_an_unplanned_failover_loses_exactly_the_window_it_reports() {
    let sites = RealSites::start(&["a", "b"]);
    let app01 = running_guest(&sites, "app01", "52:54:00:77:01:21");
    let app02 = running_guest(&sites, "app02", "52:54:00:77:01:22");
    sites.wait_counter(&app01.ip, 5, Duration::from_secs(90));
    sites.wait_counter(&app02.ip, 5, Duration::from_secs(90));
    let vms = [AppVm::new("app01", &app01.ip, "10.77.2.50"), AppVm::new("app02", &app02.ip, "10.77.2.51")];
    let work = Workdir::with_site(&site_file(&sites, &vms))
        .plan(&plan_of(&["app01"]))
        .file("app02.rhai", &plan_of(&["app02"]));

    // Two points each, a full copy then an incremental one, two seconds apart or more.
    work.run(&["protect", "app01", "app02", "--policy", "gold", "--yes"]).ok();
    let first = work.run(&["replicate", "--once"]).ok();
    assert_eq!(first.stderr.matches("point 1: full copy").count(), 2, "{}", first.stderr);
    std::thread::sleep(Duration::from_secs(2));
    let copied_at = Utc::now();
    let second = work.run(&["replicate", "--once"]).ok();
    assert_eq!(second.stderr.matches("point 2: incremental copy").count(), 2, "{}", second.stderr);

    // app02 writes nothing after its points; app01 writes on for three seconds, then its
    // plug is pulled (the disaster) and it fails over at once (R32) to its latest point,
    // with the shutdown attempt (its source is off: nothing to do).
    sites.destroy_guest(&app02);
    std::thread::sleep(Duration::from_secs(3));
    let pulling = Utc::now();
    sites.destroy_guest(&app01);
    let pulled = Utc::now();
    let run = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "unplanned", "--yes"]).ok();
    let resumed_at = resumed(&sites, "10.77.2.50");
    let app01_point = held(&sites, "app01", 2);
    assert_eq!(resumed_at, app01_point + 1, "the replica resumes right after its point's last record\n{}", run.stdout);
    assert_eq!(sites.http_get("10.77.2.50", "site").unwrap().trim(), "b");
    let source = read_records(&app01.disk);
    let loss = assert_reported_loss(&work, &run, "app01", &source, resumed_at, pulling);
    let (reported, point, asked) = (loss.reported, loss.point, loss.asked);
    let interval = (pulled - copied_at).to_std().unwrap();
    let tolerance = Duration::from_millis(1500);
    let context = format!("{}, plug pulled ..{pulled}, copy interval {interval:?}", loss.context);
    assert!(reported <= interval + (asked - pulled).to_std().unwrap() + tolerance, "{context}");
    assert!(point >= copied_at && point <= pulling, "the point is the last copy's instant: {context}");
    eprintln!("unplanned: {context}");

    // R33: app02 fails over to its first point, named by the time `drplan points` shows.
    let points = work.run(&["points", "app02"]).ok().stdout;
    let first_time = points.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    let run =
        drplan(&work, &sites, &["failover", "app02.rhai", "--kind", "unplanned", "--point", &first_time, "--yes"]);
    let run = run.ok();
    let resumed_at = resumed(&sites, "10.77.2.51");
    let (app02_first, app02_latest) = (held(&sites, "app02", 1), held(&sites, "app02", 2));
    assert_eq!(resumed_at, app02_first + 1, "--point {first_time} lands on the first point\n{points}\n{}", run.stdout);
    assert!(app02_first < app02_latest, "the first point holds fewer records: {app02_first} vs {app02_latest}");
    let show = work.run(&["show", &work.last_run().unwrap(), "--format", "json"]).ok().json();
    let span = vm_span(&show, "app02");
    let point: DateTime<Utc> = span["point"].as_str().unwrap().parse().unwrap();
    assert_eq!(point.to_rfc3339_opts(SecondsFormat::Secs, true), first_time, "{span}");
    let status = work.run(&["status", "--format", "json"]).ok().json();
    for vm in status["vms"].as_array().unwrap() {
        assert_eq!(vm["active_site"], "b", "{vm}");
    }
}
