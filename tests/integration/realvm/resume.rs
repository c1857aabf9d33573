//! A planned failover of a real guest whose drplan is killed (SIGKILL, as a crash would)
//! at a given moment, then resumed (R35; DESIGN: a run killed at any point resumes where
//! it stopped and never does a finished step twice): the VM ends failed over once, its
//! replica defined and started once, its sequence continuing the source's with nothing
//! lost (R31).

use std::time::{Duration, Instant};

use super::cli::{AppVm, PLAN, committed, drplan, poll, qemu_starts, resumed, running_guest, site_file, spawn};
use super::{GuestHandle, RealSites};
use crate::util::Workdir;

/// The longest wait for a moment to kill at: a planned failover here takes ~15 s.
const MOMENT_WAIT: Duration = Duration::from_secs(60);

/// When the failover's drplan is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// The guest was told to shut down (by its agent or the power button): drplan waits
    /// for the source to be off.
    SourceShuttingDown,
    /// The source runs paused for the final copy (R31), its backup maybe not begun.
    FinalCopy,
    /// The final copy's backup has begun (its checkpoint exists): its job may still run,
    /// or be done with its point not yet recorded, or recorded.
    FinalCopyBegun,
    /// The replica domain is defined at b (maybe started).
    ReplicaDefined,
    /// The replica runs; the run waits for its port 80 (the plan's post_each step).
    ReplicaRunning,
}

impl Moment {
    fn reached(self, sites: &RealSites, app: &GuestHandle) -> bool {
        match self {
            Moment::SourceShuttingDown => {
                let console = sites.console(app);
                console.contains("GUEST SHUTDOWN") || console.contains("POWER BUTTON")
            }
            Moment::FinalCopy => sites.try_virsh("a", &["domstate", "app01"]).is_ok_and(|s| s.trim() == "paused"),
            Moment::FinalCopyBegun => {
                sites.try_virsh("a", &["checkpoint-list", "app01", "--name"]).is_ok_and(|l| l.contains("drplan-2"))
            }
            Moment::ReplicaDefined => {
                sites.try_virsh("b", &["list", "--all", "--name"]).is_ok_and(|l| l.lines().any(|d| d.trim() == "app01"))
            }
            Moment::ReplicaRunning => sites.try_virsh("b", &["domstate", "app01"]).is_ok_and(|s| s.trim() == "running"),
        }
    }
}

/// Protects a counting guest, copies it once, starts a planned failover, kills drplan at
/// `moment`, resumes the run, and checks the VM failed over exactly once.
fn killed_and_resumed(moment: Moment) {
    let began = Instant::now();
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:30");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")])).plan(PLAN);
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();

    let failover = spawn(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]);
    let reached = poll(MOMENT_WAIT, || moment.reached(&sites, &app));
    failover.kill();
    assert!(reached, "the failover never reached {moment:?} within {MOMENT_WAIT:?}\n{}", sites.consoles());
    let killed = began.elapsed();
    let id = work.last_run().expect("the killed run is recorded");
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "interrupted", "{show}");

    let resume = drplan(&work, &sites, &["resume", &id, "--yes"]).ok();
    let context = format!("killed at {moment:?}\n{}\n{}", resume.stdout, resume.stderr);

    // Failed over once: one replica domain at b, running, started once, at its R9 address.
    let domains = sites.virsh("b", &["list", "--all", "--name"]);
    let domains: Vec<&str> = domains.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(domains, ["app01"], "{context}");
    assert_eq!(sites.virsh("b", &["domstate", "app01"]).trim(), "running", "{context}");
    assert_eq!(qemu_starts(&sites, "b", "app01"), 1, "the replica is started once\n{context}");
    assert_eq!(sites.http_get("10.77.2.50", "site").as_deref().map(str::trim), Some("b"), "{context}");

    // Nothing lost (R31): the replica resumes right after the source's last record.
    assert_eq!(sites.domstate(&app), "shut off", "{context}");
    let source_last = committed(&app.disk);
    assert_eq!(resumed(&sites, "10.77.2.50"), source_last + 1, "{context}\n{}", sites.consoles());

    // The run, the VM's state and the points agree.
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "succeeded", "{show}");
    let status = work.run(&["status", "--format", "json"]).ok().json();
    let vm = &status["vms"][0];
    assert_eq!(vm["active_site"], "b", "{vm}");
    assert!(vm["state"].as_str().unwrap().contains("failed over"), "{vm}");
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    eprintln!(
        "killed at {moment:?} after {:.1} s; the test took {:.1} s\n{}",
        killed.as_secs_f64(),
        began.elapsed().as_secs_f64(),
        resume.stdout
    );
}

#[test]
fn r35_a_planned_failover_killed_while_its_source_shuts_down_resumes_and_fails_over_once() {
    killed_and_resumed(Moment::SourceShuttingDown);
}

#[test]
fn r35_a_planned_failover_killed_during_its_final_copy_resumes_and_fails_over_once() {
    killed_and_resumed(Moment::FinalCopy);
}

#[test]
fn r35_a_planned_failover_killed_once_its_final_backup_began_resumes_and_fails_over_once() {
    killed_and_resumed(Moment::FinalCopyBegun);
}

#[test]
fn r35_a_planned_failover_killed_once_its_replica_is_defined_resumes_and_fails_over_once() {
    killed_and_resumed(Moment::ReplicaDefined);
}

#[test]
fn r35_a_planned_failover_killed_while_its_replica_boots_resumes_and_fails_over_once() {
    killed_and_resumed(Moment::ReplicaRunning);
}

/// R4, R15: `drplan replicate` killed while its incremental copy runs (its backup begun)
/// leaves no half point, and the next cycle copies again: the service recovers by itself.
#[test]
fn r15_a_replication_cycle_killed_midway_leaves_no_half_point_and_the_next_cycle_copies() {
    let began = Instant::now();
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:31");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")])).plan(PLAN);
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();

    let cycle = work.drplan(["replicate", "--once"]).spawn();
    let begun = poll(MOMENT_WAIT, || {
        sites.try_virsh("a", &["checkpoint-list", "app01", "--name"]).is_ok_and(|l| l.contains("drplan-2"))
    });
    cycle.kill();
    assert!(begun, "the second copy never began within {MOMENT_WAIT:?}");
    let points_left = work.run(&["points", "app01"]).ok().stdout;

    let next = work.run(&["replicate", "--once"]).ok();
    assert!(next.stderr.contains("incremental copy"), "after a kill with {points_left}:\n{}", next.stderr);
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(!status.contains("failed"), "{status}");
    let points = work.run(&["points", "app01"]).ok().stdout;
    let count: u64 = points.split_whitespace().next().unwrap().parse().unwrap();
    assert!((2..=3).contains(&count), "{points}");
    let latest = committed(&super::cli::point_file(&sites, "app01", count));
    assert!(latest >= 5, "the latest point holds the guest's records: {latest}");
    eprintln!("replication cycle killed and copied again; the test took {:.1} s", began.elapsed().as_secs_f64());
}
