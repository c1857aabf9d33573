//! The way back on real VMs, through the real binary (R31, R32, R36-R38): reprotect
//! copies the replica's changes back (only the changes after a planned failover, the
//! whole disk after an unplanned one), failback brings each VM home onto its own domain,
//! disk and address, and reprotect goes forward again. Each step is proven from the
//! guests' own sequence numbers: never backwards, never a gap.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use super::cli::{
    AppVm, assert_reported_loss, committed, counter, drplan, points_at, resumed, running_guest, site_file, start_bubble,
};
use super::{GuestHandle, RealSites, read_records};
use crate::util::Workdir;

/// Two plan groups, each guest's port waited for where it lands.
const TWO_GROUPS: &str = r#"
let plan = recovery_plan("app", #{ source: "a", target: "b", rto: "10m", test_network: "bubble" });
plan.group("first", ["app01"]).post_each(|vm, ctx| wait_port(vm.ip, 80, "90s"));
plan.group("second", ["app02"]).post_each(|vm, ctx| wait_port(vm.ip, 80, "90s"));
plan
"#;

/// What a run report says was done, whatever it took: each group, VM and action that
/// succeeded, and where each VM landed (`IP on SITE/HOST`), in order of kind and name.
fn outline(report: &serde_json::Value) -> Vec<String> {
    let text = |event: &serde_json::Value, key: &str| event[key].as_str().unwrap_or_default().to_string();
    let mut done: Vec<String> = report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .filter(|event| text(event, "kind").ends_with(".succeeded"))
        .map(|event| {
            let landed = match text(event, "kind").as_str() {
                "vm.succeeded" => text(event, "detail").split(';').next().unwrap_or_default().to_string(),
                _ => String::new(),
            };
            let names = ["kind", "group", "vm", "step"].map(|key| text(event, key));
            format!("{} {landed}", names.join(" "))
        })
        .collect();
    done.sort();
    done
}

/// `vm`'s line of `drplan status --format json`.
pub(super) fn status_of(work: &Workdir, vm: &str) -> serde_json::Value {
    let status = work.run(&["status", "--format", "json"]).ok().json();
    let found = status["vms"].as_array().unwrap().iter().find(|v| v["name"] == vm || v["vm"] == vm).cloned();
    found.unwrap_or_else(|| panic!("no {vm} in {status}"))
}

/// R36: what the reprotect's first copy moved, as status says it: (how, bytes, disk bytes).
fn reprotect_copy(work: &Workdir, vm: &str) -> (String, u64, u64) {
    let status = status_of(work, vm);
    let state = status["state"].as_str().unwrap().to_string();
    let (_, copy) = state.split_once("reprotected (R36) by a ").unwrap_or_else(|| panic!("{status}"));
    let (how, numbers) = copy.split_once(": ").unwrap();
    let words: Vec<&str> = numbers.split_whitespace().collect();
    (how.to_string(), words[0].parse().unwrap(), words[2].parse().unwrap())
}

/// Waits until the guest at `ip` has written `more` records past what it shows now.
pub(super) fn let_write(sites: &RealSites, ip: &str, more: u64) {
    let now = counter(sites, ip);
    sites.wait_counter(ip, now + more, Duration::from_secs(60));
}

/// The sites a disk's records were written at, in order, each run of one site once:
/// where the VM ran, in turn.
pub(super) fn sites_in_turn(disk: &Path) -> Vec<(String, u64)> {
    let mut turns: Vec<(String, u64)> = Vec::new();
    for record in read_records(disk) {
        if turns.last().is_none_or(|(site, _)| *site != record.site) {
            turns.push((record.site.clone(), record.seq));
        }
    }
    turns
}

/// R37, R38: back home, the guest resumed right after the last record its replica
/// wrote (the image the way forward starts from: the newest file of its chain at b), on
/// its own address at a.
pub(super) fn assert_home(sites: &RealSites, guest: &GuestHandle, read_before: u64, context: &str) -> u64 {
    let replica_last = committed(points_at(sites, "b", &guest.name).last().unwrap());
    assert!(replica_last >= read_before, "{}: the replica wrote {read_before} before the failback", guest.name);
    let home = resumed(sites, &guest.ip);
    assert_eq!(home, replica_last + 1, "{} resumes home right after its replica's last record\n{context}", guest.name);
    assert_eq!(sites.http_get(&guest.ip, "site").unwrap().trim(), "a");
    home
}

#[test]
fn r31_r36_r37_r38_two_guests_go_over_and_back_home_and_reprotect_copies_only_the_changes() {
    let sites = RealSites::start(&["a", "b"]);
    start_bubble(&sites);
    let guests =
        [running_guest(&sites, "app01", "52:54:00:77:01:60"), running_guest(&sites, "app02", "52:54:00:77:01:61")];
    let targets = ["10.77.2.80", "10.77.2.81"];
    for guest in &guests {
        sites.wait_counter(&guest.ip, 3, Duration::from_secs(120));
    }
    let vms = [AppVm::new("app01", &guests[0].ip, targets[0]), AppVm::new("app02", &guests[1].ip, targets[1])];
    // `services`: the port the dry run's model finds answering, as the guests' port 80 does.
    let site = site_file(&sites, &vms).replace("os = \"linux\"", "os = \"linux\"\nservices = [80]");
    let work = Workdir::with_site(&site).plan(TWO_GROUPS);
    work.run(&["protect", "app01", "app02", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();

    // R30: a drill and its cleanup first, as an operator would.
    drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "test", "--yes"]).ok();
    drplan(&work, &sites, &["cleanup", "plan.rhai", "--yes"]).ok();

    // R31: over to b, nothing lost.
    let over = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    for (guest, target) in guests.iter().zip(targets) {
        assert_eq!(resumed(&sites, target), committed(&guest.disk) + 1, "{}\n{}", guest.name, over.stdout);
    }
    work.run(&["commit", "plan.rhai", "--yes"]).ok();

    // R36: replication back to a; the first copy moves only what the replicas wrote.
    let reprotect = work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    assert!(reprotect.stdout.contains("replicating b -> a under policy failback"), "{}", reprotect.stdout);
    let state = status_of(&work, "app01")["state"].as_str().unwrap().to_string();
    assert!(state.contains("a delta copy of the changes since"), "{state}");
    for target in targets {
        let_write(&sites, target, 5);
    }
    let copied = work.run(&["replicate", "--once"]).ok();
    for (guest, target) in guests.iter().zip(targets) {
        let (how, bytes, disk) = reprotect_copy(&work, &guest.name);
        assert_eq!((how.as_str(), disk), ("delta copy", 64 << 20), "{}", copied.stderr);
        assert!(bytes * 16 < disk, "{}: a delta copy of {bytes} bytes, of a {disk}-byte disk", guest.name);
        // The point at a holds the whole sequence, on past where the replica began.
        let back = committed(points_at(&sites, "a", &guest.name).last().unwrap());
        assert!(back > resumed(&sites, target), "{}: the point at a ends at {back}", guest.name);
        assert!(counter(&sites, target) >= back, "the replica writes on");
    }
    let jobs = work.run(&["jobs"]).ok().stdout;
    assert!(jobs.contains("reprotect copy"), "the copy is in the journal of jobs: {jobs}");

    // The dry run starts each VM as it stands, replicating back from b: a new failover is
    // refused in the real run's words, and the failback is modelled (below, against the
    // real one).
    let dry_over = drplan(&work, &sites, &["dry-run", "plan.rhai", "--kind", "planned"]).fails(1);
    let real_over = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "planned", "--yes"]).fails(1);
    assert_eq!(dry_over.plan_errors(), real_over.plan_errors(), "{}", real_over.stderr);
    assert!(dry_over.stderr.contains("going back is a failback"), "{}", dry_over.stderr);
    let dry_back = drplan(&work, &sites, &["dry-run", "plan.rhai", "--kind", "failback", "--format", "json"]).ok();

    // R37, R38: failback, a planned failover home, committed and reprotected forward.
    let read_before: Vec<u64> = targets.iter().map(|t| counter(&sites, t)).collect();
    let back = drplan(&work, &sites, &["failback", "plan.rhai", "--yes"]).ok();
    let real_back = work.run(&["show", &work.last_run().unwrap(), "--format", "json"]).ok().json();
    let (dry_back, real_back) = (dry_back.json(), real_back);
    let modelled = outline(&dry_back);
    assert_eq!(modelled, outline(&real_back), "the dry run's steps are the failback's");
    let home = modelled.iter().filter(|done| done.starts_with("vm.succeeded") && done.contains(" on a/kvm-a"));
    assert_eq!(home.count(), 2, "both home, at their own addresses: {modelled:#?}");
    eprintln!("failback: predicted RTO {} ms, real {} ms", dry_back["rto_ms"], real_back["rto_ms"]);
    for (guest, before) in guests.iter().zip(&read_before) {
        assert_home(&sites, guest, *before, &back.stdout);
        let status = status_of(&work, &guest.name);
        assert_eq!(status["active_site"], "a", "{status}");
        assert!(status["state"].as_str().unwrap().contains("a delta copy"), "{status}");
    }
    assert!(sites.virsh("b", &["list", "--all", "--name"]).trim().is_empty(), "the replicas at b are gone");
    for guest in &guests {
        let_write(&sites, &guest.ip, 5);
    }
    work.run(&["replicate", "--once"]).ok();
    for guest in &guests {
        let (how, bytes, disk) = reprotect_copy(&work, &guest.name);
        assert_eq!(how, "delta copy");
        assert!(bytes * 16 < disk, "{}: a delta copy of {bytes} bytes forward", guest.name);
        let forward = committed(points_at(&sites, "b", &guest.name).last().unwrap());
        assert!(forward >= resumed(&sites, &guest.ip), "{}: the point at b ends at {forward}", guest.name);
    }

    // The VM's own disk holds its whole life, without a gap: a, then b, then a again.
    for guest in &guests {
        sites.destroy_guest(guest);
        let turns: Vec<String> = sites_in_turn(&guest.disk).into_iter().map(|(site, _)| site).collect();
        assert_eq!(turns, ["a", "b", "a"], "{}", guest.name);
    }
}

#[test]
fn r32_r36_r37_after_an_unplanned_failover_reprotect_copies_everything_and_failback_drops_what_a_kept() {
    let sites = RealSites::start(&["a", "b"]);
    let guest = running_guest(&sites, "app03", "52:54:00:77:01:62");
    let target = "10.77.2.82";
    sites.wait_counter(&guest.ip, 3, Duration::from_secs(120));
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app03", &guest.ip, target)]))
        .plan(&super::cli::plan_of(&["app03"]));
    work.run(&["protect", "app03", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();

    // R32: site a's copy writes on after its point, then its plug is pulled.
    let_write(&sites, &guest.ip, 10);
    let pulling = Utc::now();
    sites.destroy_guest(&guest);
    let run = drplan(&work, &sites, &["failover", "plan.rhai", "--kind", "unplanned", "--yes"]).ok();
    let at_b = resumed(&sites, target);
    assert_eq!(at_b, committed(points_at(&sites, "b", "app03").last().unwrap()) + 1, "{}", run.stdout);
    assert_reported_loss(&work, &run, "app03", &read_records(&guest.disk), at_b, pulling);
    work.run(&["commit", "plan.rhai", "--yes"]).ok();

    // R36: a's disk went its own way: the copy back is full.
    work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    let state = status_of(&work, "app03")["state"].as_str().unwrap().to_string();
    assert!(state.contains("a full copy"), "{state}");
    work.run(&["replicate", "--once"]).ok();
    let (how, _, disk) = reprotect_copy(&work, "app03");
    assert_eq!((how.as_str(), disk), ("full copy", 64 << 20));

    // R37, R38: home, on what b wrote; what a wrote after its point is gone.
    let_write(&sites, target, 5);
    let before = counter(&sites, target);
    let back = drplan(&work, &sites, &["failback", "plan.rhai", "--yes"]).ok();
    assert_home(&sites, &guest, before, &back.stdout);
    let_write(&sites, &guest.ip, 3);
    sites.destroy_guest(&guest);
    let turns = sites_in_turn(&guest.disk);
    let sites_only: Vec<&str> = turns.iter().map(|(site, _)| site.as_str()).collect();
    assert_eq!(sites_only, ["a", "b", "a"]);
    assert_eq!(turns[1].1, at_b, "b's records follow the point's last, and a's lost ones are overwritten");
}
