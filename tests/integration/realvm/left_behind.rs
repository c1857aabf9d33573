//! An unplanned failover home while the recovery site does not answer (R32, R37): the VM
//! comes home, the replica it could not remove there is recorded and shown, and it is
//! removed as soon as that site answers, so it never runs beside the VM at home.

use std::time::Duration;

use super::RealSites;
use super::cli::{AppVm, drplan, plan_of, running_guest, site_file};
use crate::util::Workdir;

#[test]
fn r32_r37_a_replica_an_unplanned_failover_home_could_not_remove_goes_when_its_site_answers() {
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app05", "52:54:00:77:01:65");
    let target = "10.77.2.85";
    sites.wait_counter(&app.ip, 3, Duration::from_secs(120));
    let work =
        Workdir::with_site(&site_file(&sites, &[AppVm::new("app05", &app.ip, target)])).plan(&plan_of(&["app05"]));
    work.run(&["protect", "app05", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();
    drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();
    let replica = sites.virsh("b", &["list", "--name"]);
    assert!(replica.contains("app05"), "the VM runs at b: {replica}");

    // Site b goes dark: the failback cannot shut the VM down there, so it goes on as an
    // unplanned failover home (R32), on the latest point copied back.
    sites.cut_off("b");
    drplan(&work, &sites, &["failback", "plan.rhai", "--yes"]).fails(1);
    let id = work.last_run().expect("the failback is recorded");
    let home = drplan(&work, &sites, &["resume", &id, "--kind", "unplanned", "--yes"]).ok();
    assert!(home.stdout.contains("on a/"), "{}", home.stdout);
    assert!(home.stdout.contains("OPEN-ENDED"), "the replica at b may still take writes: {}", home.stdout);
    assert_eq!(sites.http_get(&app.ip, "site").as_deref().map(str::trim), Some("a"), "{}", home.stdout);
    let status = work.run(&["status"]).ok().stdout;
    assert!(status.contains("was left at site b"), "status says what was left behind: {status}");
    assert!(status.contains("removed as soon as that site answers"), "{status}");
    let joined = |l: &&str| l.contains("failed to connect to the hypervisor | error: Failed to connect socket");
    assert!(status.lines().any(|l| joined(&l)), "virsh's two-line error stays on the VM's row: {status}");

    // b answers again, its replica still running; the next copy towards b removes it
    // before anything else, so it never runs beside the VM at home.
    sites.reconnect("b");
    assert!(sites.virsh("b", &["list", "--name"]).contains("app05"), "it runs on until drplan acts");
    work.run(&["replicate", "--once"]).ok();
    let left = sites.virsh("b", &["list", "--all", "--name"]);
    assert!(!left.contains("app05"), "the replica left at b is gone: {left}");
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(!status.contains("was left at site"), "{status}");
    assert!(status.contains("a -> b"), "replicating towards b again: {status}");
    assert_eq!(sites.domstate(&app), "running", "the VM at home runs on");
}
