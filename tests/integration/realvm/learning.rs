//! Dry runs that learn: a dry run of a real site models the durations the site measured
//! in its past runs and drills (boot to the first answering port, shutdown, final copy),
//! says so, and after one drill predicts the next one's RTO within 20%.

use std::time::Duration;

use super::cli::{AppVm, PLAN, drplan, running_guest, site_file, start_bubble};
use crate::util::Workdir;

#[test]
fn a_dry_run_after_one_drill_models_what_it_measured_and_predicts_the_next_drills_rto_within_20_percent() {
    // Alone on the CPUs: what is measured is drplan and the guest, not the other tests.
    let sites = super::RealSites::start_with(&["a", "b"], super::Cpus::Alone);
    start_bubble(&sites);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:61");
    sites.wait_counter(&app.ip, 3, Duration::from_secs(90));
    // `services`: what the model finds answering, as the guest's port 80 does. The target
    // IP fits the test network's subnet, as in a test network that mirrors production's
    // addresses: a drill keeps it (R9), through a DHCP reservation.
    let site = site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.9.50")])
        .replace("os = \"linux\"", "os = \"linux\"\nservices = [80]");
    let work = Workdir::with_site(&site).plan(PLAN);
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();
    let dry_run = || drplan(&work, &sites, &["dry-run", "plan.rhai", "--kind", "test", "--format", "json"]).ok().json();

    let estimated = dry_run();
    let said = estimated["durations"].as_str().unwrap_or_default().to_string();
    assert!(said.contains("the site file's estimates (no run or drill has measured"), "{estimated}");

    let drill = || {
        drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "test", "--yes"]).ok();
        assert_eq!(sites.http_get("10.77.9.50", "site").as_deref().map(str::trim), Some("b"), "R9 in the bubble");
        let show = work.run(&["show", &work.last_run().unwrap(), "--format", "json"]).ok().json();
        drplan(&work, &sites, &["cleanup", "plan.rhai", "--yes"]).ok();
        Duration::from_millis(show["rto_ms"].as_u64().unwrap())
    };
    let first = drill();
    let learned = dry_run();
    let said = learned["durations"].as_str().unwrap_or_default().to_string();
    assert!(said.contains("measured in this site's past runs and drills for app01 (processing "), "{said}");
    assert!(said.contains(", boot ") && said.contains("estimates for the rest"), "a drill shuts nothing down: {said}");
    let human = drplan(&work, &sites, &["dry-run", "plan.rhai", "--kind", "test"]).ok().stdout;
    assert!(human.contains("Durations: measured in this site's past runs and drills for app01"), "{human}");
    let predicted = Duration::from_millis(learned["rto_ms"].as_u64().unwrap());
    let second = drill();

    let error = (predicted.as_secs_f64() - second.as_secs_f64()).abs() / second.as_secs_f64();
    let figures = format!(
        "estimated {:?}; first drill {first:?}, predicted after it {predicted:?}, next drill {second:?}: \
         {:.0}% off ({said})",
        Duration::from_millis(estimated["rto_ms"].as_u64().unwrap()),
        error * 100.0
    );
    eprintln!("learning: {figures}");
    assert!(error <= 0.2, "the prediction must be within 20% of the real drill: {figures}");
}
