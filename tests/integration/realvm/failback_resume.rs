//! A failback of a real guest whose drplan is killed (SIGKILL, as a crash would) midway,
//! then its resume killed at a later moment, then resumed again (R37, R38; DESIGN: a run
//! killed at any point resumes where it stopped and never does a finished step twice):
//! the run goes on as the failback it is, the VM's own domain is started once, its disk
//! holds the guest's whole sequence without a gap or a step back, and the run ends
//! committed and reprotected forward.

use std::time::{Duration, Instant};

use super::cli::{
    AppVm, PLAN, committed, counter, drplan, poll, qemu_starts, resumed, running_guest, site_file, spawn,
};
use super::way_back::{assert_home, let_write, sites_in_turn, status_of};
use super::{GuestHandle, RealSites};
use crate::util::{Run, Workdir};

/// The longest wait for a moment to kill at: a failback here takes ~20 s.
const MOMENT_WAIT: Duration = Duration::from_secs(60);

/// The replica's address at b (R9).
const TARGET: &str = "10.77.2.50";

/// When the failback's drplan is killed. The source is the replica `app01` at b, the
/// target the VM's own domain `app01` at a.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// The replica was told to shut down (by its agent or the power button): drplan
    /// waits for it to be off. It writes to the console file of the VM's own domain
    /// (`with_file_name` of the source's), which the failover made it open.
    ReplicaShuttingDown,
    /// The replica, shut down, runs paused for the final copy back (R31 on the way back).
    FinalCopyBack,
    /// The VM's own domain was started (paused for its checkpoint, or running): the point
    /// was written into its disk and recorded.
    HomeBooting,
    /// Home, running, the replica at b undefined: the run waits for the port, then
    /// commits and reprotects forward (R37).
    Home,
}

/// How many times the guest's console said it was shutting down.
fn shutdowns(console: &str) -> usize {
    console.matches("GUEST SHUTDOWN").count() + console.matches("POWER BUTTON").count()
}

impl Moment {
    /// Whether the failback reached this moment; `shutdowns_before`: [`shutdowns`] of
    /// `app`'s console before it began.
    fn reached(self, sites: &RealSites, app: &GuestHandle, shutdowns_before: usize) -> bool {
        let state = |site| sites.try_virsh(site, &["domstate", "app01"]).map(|s| s.trim().to_string());
        match self {
            Moment::ReplicaShuttingDown => shutdowns(&sites.console(app)) > shutdowns_before,
            Moment::FinalCopyBack => state("b").is_ok_and(|s| s == "paused"),
            Moment::HomeBooting => state("a").is_ok_and(|s| s == "paused" || s == "running"),
            Moment::Home => {
                let at_b = sites.try_virsh("b", &["list", "--all", "--name"]);
                state("a").is_ok_and(|s| s == "running") && at_b.is_ok_and(|l| l.trim().is_empty())
            }
        }
    }
}

/// Protects the counting guest `vm` at a, copies it once and fails plan.rhai over to b
/// (planned): the run.
pub(super) fn protected_and_failed_over(work: &Workdir, sites: &RealSites, vm: &str) -> Run {
    work.run(&["protect", vm, "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();
    drplan(work, sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok()
}

/// Commits plan.rhai's failover and reprotects it (R34, R36); the reprotect's copy back
/// is made once the replica at `target` has written more: ready to fail back.
pub(super) fn committed_and_reprotected(work: &Workdir, sites: &RealSites, target: &str) {
    work.run(&["commit", "plan.rhai", "--yes"]).ok();
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    let_write(sites, target, 5);
    work.run(&["replicate", "--once"]).ok();
}

/// Kills the failback at the first of `moments`, its resume at the next, and so on, then
/// resumes it to its end, and checks it went home exactly once with nothing lost.
fn failback_killed_and_resumed(moments: &[Moment], mac: &str) {
    let began = Instant::now();
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", mac);
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app01", &app.ip, TARGET)])).plan(PLAN);
    protected_and_failed_over(&work, &sites, "app01");
    committed_and_reprotected(&work, &sites, TARGET);
    let home_starts = qemu_starts(&sites, "a", "app01");
    let read_before = counter(&sites, TARGET);
    let shutdowns_before = shutdowns(&sites.console(&app));

    let mut id: Option<String> = None;
    let mut killed = Vec::new();
    for moment in moments {
        let running = match &id {
            None => spawn(&work, &sites, &["failback", "plan.rhai", "--yes"]),
            Some(id) => spawn(&work, &sites, &["resume", id, "--yes"]),
        };
        let reached = poll(MOMENT_WAIT, || moment.reached(&sites, &app, shutdowns_before));
        running.kill();
        assert!(reached, "the failback never reached {moment:?} within {MOMENT_WAIT:?}\n{}", sites.consoles());
        killed.push(format!("{moment:?} after {:.1} s", began.elapsed().as_secs_f64()));
        let run = work.last_run().expect("the killed run is recorded");
        assert!(id.as_ref().is_none_or(|first| *first == run), "a resume goes on with the same run");
        assert_interrupted_failback(&work, &run, &killed);
        id = Some(run);
    }
    let id = id.expect("killed at least once");
    let resume = drplan(&work, &sites, &["resume", &id, "--yes"]).ok();
    let context = format!("killed at {killed:?}\n{}\n{}", resume.stdout, resume.stderr);
    assert!(resume.stderr.contains("resumed as a failback"), "{context}");

    // R38: home once: its own domain at a (no other defined there) started once, the
    // replica at b gone.
    let at_a = sites.virsh("a", &["list", "--all", "--name"]);
    assert_eq!(at_a.split_whitespace().collect::<Vec<_>>(), ["app01"], "{context}");
    assert_eq!(qemu_starts(&sites, "a", "app01") - home_starts, 1, "the VM's own domain is started once\n{context}");
    assert!(sites.virsh("b", &["list", "--all", "--name"]).trim().is_empty(), "the replica at b is gone\n{context}");
    assert_home(&sites, &app, read_before, &context);

    // R37: the run is the failback it was, succeeded, committed and reprotected forward.
    let show = work.run(&["show", &id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "succeeded", "{show}");
    let runs = work.run(&["runs", "--format", "json"]).ok().json();
    let listed = runs.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).cloned().unwrap();
    assert_eq!((listed["kind"].as_str(), listed["status"].as_str()), (Some("failback"), Some("succeeded")), "{listed}");
    let human = work.run(&["show", &id]).ok().stdout;
    assert!(human.starts_with("Run of plan \"app\": failback from b to a"), "{human}");
    let status = status_of(&work, "app01");
    assert_eq!(status["active_site"], "a", "{status}");
    assert!(status["state"].as_str().unwrap().contains("a delta copy"), "reprotected forward: {status}");

    // Replication forward copies what the guest writes at home; its own disk holds its
    // whole life, a, then b, then a again, each record once, in order.
    let_write(&sites, &app.ip, 5);
    work.run(&["replicate", "--once"]).ok();
    let home = resumed(&sites, &app.ip);
    sites.destroy_guest(&app);
    let last = committed(&app.disk);
    assert!(last >= home, "the guest's own disk ends at {last}, after {home}");
    let turns: Vec<String> = sites_in_turn(&app.disk).into_iter().map(|(site, _)| site).collect();
    assert_eq!(turns, ["a", "b", "a"], "{context}");
    eprintln!("failback killed at {killed:?}; the test took {:.1} s\n{}", began.elapsed().as_secs_f64(), resume.stdout);
}

/// What `drplan runs` and `show` say of a failback killed midway: interrupted, still a
/// failback.
fn assert_interrupted_failback(work: &Workdir, id: &str, killed: &[String]) {
    let runs = work.run(&["runs", "--format", "json"]).ok().json();
    let listed = runs.as_array().unwrap().iter().find(|r| r["id"] == id).cloned();
    let listed = listed.unwrap_or_else(|| panic!("no run {id} in {runs}"));
    assert_eq!(listed["kind"], "failback", "killed at {killed:?}: {listed}");
    assert_eq!(listed["status"], "interrupted", "killed at {killed:?}: {listed}");
    let show = work.run(&["show", id, "--format", "json"]).ok().json();
    assert_eq!(show["status"], "interrupted", "killed at {killed:?}: {show}");
}

#[test]
fn r37_r38_a_failback_killed_as_its_replica_shuts_down_then_as_its_home_domain_boots_resumes_home_once() {
    failback_killed_and_resumed(&[Moment::ReplicaShuttingDown, Moment::HomeBooting], "52:54:00:77:01:70");
}

#[test]
fn r37_a_failback_killed_in_its_final_copy_back_then_once_home_resumes_to_commit_and_reprotect_forward() {
    failback_killed_and_resumed(&[Moment::FinalCopyBack, Moment::Home], "52:54:00:77:01:71");
}
