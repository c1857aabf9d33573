//! DNS follows a real VM over and back (R50, R37): a real BIND 9 serves `contoso.test.`
//! in the sites' network namespace (on its 127.0.0.1, where drplan and the guests are),
//! and the VM's A record, updated by the plan's `update_dns()` through the real binary,
//! is read back with `dig` after each step: the recovery site's address once failed over,
//! the original one once failed back, and each time the guest answering there is the one
//! that runs at that site.

use std::time::Duration;

use super::RealSites;
use super::cli::{AppVm, PLAN, drplan, running_guest, site_file};
use super::failback_resume::{committed_and_reprotected, protected_and_failed_over};
use crate::bind::{Bind, KEY_NAME};
use crate::util::Workdir;

/// The replica's address at b (R9).
const TARGET: &str = "10.77.2.52";

/// The DNS name the site file gives app01 (R50).
const NAME: &str = "app01.contoso.test";

/// drplan.toml: the zone's server in the namespace, and its update key.
fn dns_config(bind: &Bind) -> String {
    format!(
        "[dns]\nttl = 60\n\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"{}\"\nkey = \"{KEY_NAME}\"\n\n\
         [[dns.keys]]\nname = \"{KEY_NAME}\"\nsecret_env = \"DRPLAN_TEST_TSIG\"\n",
        bind.address()
    )
}

/// What the run's report says it verified with the server (`dns.verify NAME A IP`).
fn verified(work: &Workdir, ip: &str) -> bool {
    let show = work.run(&["show", &work.last_run().unwrap()]).ok().stdout;
    show.contains(&format!("dns.verify {NAME} A {ip}"))
}

#[test]
fn r50_r37_dns_follows_a_real_vm_to_the_recovery_site_and_back_home() {
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:72");
    // Dropped before the sites: nothing of it is left in their namespace.
    let bind = Bind::start_in_netns(sites.netns_pid(), &format!("app01   IN A    {}\n", app.ip));
    let a_record = || bind.dig(&["+short", NAME, "A"]).trim().to_string();
    let answering = |ip: &str| sites.http_get(ip, "site").map(|s| s.trim().to_string());
    assert_eq!(a_record(), app.ip, "the zone starts at the VM's own address");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let site = site_file(&sites, &[AppVm::new("app01", &app.ip, TARGET)])
        .replace("name = \"app01\"\n", &format!("name = \"app01\"\ndns = [\"{NAME}\"]\n"));
    let work = Workdir::with_site(&site)
        .plan(&PLAN.replace("\nplan\n", "\nplan.update_dns();\nplan\n"))
        .file("drplan.toml", &dns_config(&bind))
        .env("DRPLAN_TEST_TSIG", &bind.secret);

    // R31, R50: over to b, and the name with it.
    let over = protected_and_failed_over(&work, &sites, "app01");
    assert_eq!(a_record(), TARGET, "{}", over.stdout);
    assert_eq!(answering(&a_record()).as_deref(), Some("b"), "the name leads to the replica at b");
    assert!(verified(&work, TARGET), "the run verified the record with the server");

    // R36, R37, R38: back home, and the name with it.
    committed_and_reprotected(&work, &sites, TARGET);
    assert_eq!(a_record(), TARGET, "commit and reprotect leave DNS alone");
    let back = drplan(&work, &sites, &["failback", "plan.rhai", "--yes"]).ok();
    assert_eq!(a_record(), app.ip, "{}", back.stdout);
    assert_eq!(answering(&a_record()).as_deref(), Some("a"), "the name leads to the VM's own domain at a");
    assert!(verified(&work, &app.ip), "the failback verified the record with the server");
    assert!(sites.virsh("b", &["list", "--all", "--name"]).trim().is_empty(), "nothing answers at b any more");
}
