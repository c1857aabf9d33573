//! The replication service on real VMs: health events for the folder's hook scripts
//! (R15), a copy that fails while the source is off and the service's recovery after,
//! a dry run of a real site, and the errors an operator meets first.

use std::time::Duration;

use super::RealSites;
use super::cli::{AppVm, PLAN, drplan, site_file};
use crate::util::Workdir;

const HOOKS: &str = r#"
[hooks]
scripts = ["page.rhai"]
"#;

const PAGE: &str = r#"on("replication.*", |ev| log(`PAGE ${ev.kind} ${ev.vm} ${ev.error}`));"#;

#[test]
fn r15_the_service_pages_through_hook_scripts_when_copies_fail_and_when_they_recover() {
    let sites = RealSites::start(&["a", "b"]);
    let app = sites.define_guest("a", "app01", "52:54:00:77:01:30", &sites.network("a"));
    sites.start_guest(&app);
    sites.wait_counter(&app.ip, 3, Duration::from_secs(90));
    // `services`: the ports the dry run's model finds answering (a real run connects).
    let site = site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.51")]);
    let work = Workdir::with_site(&site.replace("os = \"linux\"", "os = \"linux\"\nservices = [80]"))
        .plan(PLAN)
        .file("drplan.toml", HOOKS)
        .file("page.rhai", PAGE);
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();

    let first = work.run(&["replicate", "--once"]).ok();
    assert!(first.stderr.contains("PAGE replication.initial-copy-done app01"), "{}", first.stderr);

    // The preflight asks the real sites, and changes nothing.
    let ready = drplan(&work, &sites, &["preflight", "plan.rhai", "--kind", "planned", "--format", "json"]).ok();
    assert!(ready.stdout.contains("app01"), "{}", ready.stdout);
    assert!(sites.virsh("b", &["list", "--all", "--name"]).trim().is_empty(), "nothing defined at b");

    // The dry run of a real site runs on a simulation seeded from the real state.
    let dry = drplan(&work, &sites, &["dry-run", "plan.rhai", "--kind", "planned"]).ok();
    assert!(dry.stdout.contains("RTO"), "{}", dry.stdout);

    // The source goes off: the copy fails, the hook pages, status says why.
    sites.destroy_guest(&app);
    let failed = work.run(&["replicate", "--once"]).fails(1);
    assert!(failed.stderr.contains("PAGE replication.unhealthy app01 the last copy failed"), "{}", failed.stderr);
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(status.contains("last replication cycle failed"), "{status}");

    // Back on: the next copy is incremental again (the checkpoint's bitmap survived) and
    // the hook hears that replication is healthy.
    sites.start_guest(&app);
    sites.wait_counter(&app.ip, 1, Duration::from_secs(90));
    let back = work.run(&["replicate", "--once"]).ok();
    assert!(back.stderr.contains("incremental copy"), "{}", back.stderr);
    assert!(back.stderr.contains("PAGE replication.healthy app01"), "{}", back.stderr);
}

#[test]
fn protecting_a_vm_without_a_libvirt_domain_names_the_domain_and_the_site() {
    let sites = RealSites::start(&["a", "b"]);
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("ghost", "10.77.1.99", "10.77.2.99")]));
    let refused = work.run(&["protect", "ghost", "--policy", "gold", "--yes"]).fails(1);
    assert!(refused.stderr.contains("domain \"ghost\" does not exist at qemu+unix"), "{}", refused.stderr);
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(status.contains("unprotected"), "nothing changed: {status}");
}

#[test]
fn replicate_on_a_simulated_site_says_what_it_is_for() {
    let work = Workdir::contoso();
    let refused = work.run(&["replicate", "--once"]).fails(2);
    assert!(refused.stderr.contains("copies real VMs between libvirt sites"), "{}", refused.stderr);
}
