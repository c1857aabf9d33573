//! DNS after failover for real (R50): the real binary runs plans against a BIND 9 it
//! starts on a loopback port, and a real `dig` reads the records back. A drill changes
//! only the test zone (R30), proven by transferring the production zone before and after.

use crate::bind::{self, Bind, KEY_NAME};
use crate::util::{RECORD_DNS, Run, Workdir};

const PLAN: &str = r#"
let plan = recovery_plan("dns", #{ source: "primary", target: "secondary", test_network: "test-bubble" });
plan.group("web", vms_tagged("tier", "web"));
plan.update_dns();
plan
"#;

/// A plan folder: the contoso site, the plan, and a drplan.toml naming the BIND server,
/// whose commands get the server's TSIG secret.
struct Lab {
    work: Workdir,
    bind: Bind,
}

/// The README's `[dns]`: the production zone's server, and the test zone's own entry
/// (here the same server, which serves both zones).
fn config(bind: &Bind, test_zone: &str) -> String {
    format!(
        "[dns]\nttl = 60\ntest_zone = \"{test_zone}\"\n\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"{address}\"\nkey = \"{KEY_NAME}\"\n\n[[dns.servers]]\nzone = \"{test_zone}\"\naddress = \"{address}\"\nkey = \"{KEY_NAME}\"\n\n[[dns.keys]]\nname = \"{KEY_NAME}\"\nsecret_env = \"DRPLAN_TEST_TSIG\"\n",
        address = bind.address()
    )
}

impl Lab {
    fn new() -> Lab {
        let bind = Bind::start();
        Lab::with_config(config(&bind, "drill.contoso.test"), bind)
    }

    fn with_config(config: String, bind: Bind) -> Lab {
        let work = Workdir::contoso().plan(PLAN).file("drplan.toml", &config).env("DRPLAN_TEST_TSIG", &bind.secret);
        Lab { work, bind }
    }

    fn a(&self, name: &str) -> Vec<String> {
        self.bind.dig(&["+short", name, "A"]).lines().map(str::to_string).collect()
    }
}

#[test]
fn r50_a_failover_points_dns_at_the_replicas_and_a_real_query_reads_them_back() {
    let lab = Lab::new();
    assert_eq!(lab.a("web01.contoso.test"), ["10.1.3.21"]);
    lab.work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    assert_eq!(lab.a("web01.contoso.test"), ["10.2.3.21"]);
    assert_eq!(lab.a("web02.contoso.test"), ["10.2.3.22"]);
    assert_eq!(lab.a("web03.contoso.test"), ["10.2.3.23"]);
    let show = lab.work.run(&["show", &lab.work.last_run().unwrap(), "--format", "json"]).ok();
    assert!(show.stdout.contains("dns.verify web01.contoso.test A 10.2.3.21"), "verified against the server");

    // The cycle goes on: commit, reprotect, and once the copy back is done, fail back
    // (R37): the records point at the original addresses again.
    lab.work.run(&["commit", "plan.rhai", "--yes"]).ok();
    lab.work.run(&["reprotect", "plan.rhai", "--yes"]).ok();
    lab.work.run(&["advance", "1h"]).ok();
    lab.work.run(&["failback", "plan.rhai", "--yes"]).ok();
    assert_eq!(lab.a("web01.contoso.test"), ["10.1.3.21"]);
    assert_eq!(lab.a("web03.contoso.test"), ["10.1.3.23"]);
}

#[test]
fn a_wrong_tsig_key_fails_the_dns_step_clearly_and_the_run_resumes_once_it_is_fixed() {
    let lab = Lab::new();
    let wrong = bind::random_secret();
    // The preflight asks the server first, and refuses: no run, nothing changed.
    let failover = lab.work.drplan(["failover", "plan.rhai", "--kind", "planned", "--yes"]);
    let refused = failover.env("DRPLAN_TEST_TSIG", &wrong).fails(1);
    assert!(refused.stderr.contains("error: preflight: server 127.0.0.1:"), "{}", refused.stderr);
    assert!(refused.stderr.contains("BADSIG"), "{}", refused.stderr);
    assert_eq!(lab.work.last_run(), None, "a refused run leaves no record");
    // Past the preflight (the key breaks after it, say), the DNS step itself fails.
    let failover = lab.work.drplan(["failover", "plan.rhai", "--kind", "planned", "--yes", "--no-preflight"]);
    let run = failover.env("DRPLAN_TEST_TSIG", &wrong).fails(1);
    let id = lab.work.last_run().unwrap();
    let show = lab.work.run(&["show", &id]).ok();
    assert!(show.stdout.contains("authentication failed at"), "{}", show.stdout);
    assert!(show.stdout.contains("check the TSIG key name and secret"), "{}", show.stdout);
    for output in [&run.stdout, &run.stderr, &show.stdout] {
        assert!(!output.contains(&wrong) && !output.contains(&lab.bind.secret), "a secret was printed");
    }
    assert_eq!(lab.a("web01.contoso.test"), ["10.1.3.21"], "nothing changed in DNS");

    // The operator fixes the key; the run goes on from the DNS step.
    lab.work.run(&["resume", &id, "--yes"]).ok();
    assert_eq!(lab.a("web01.contoso.test"), ["10.2.3.21"]);
    let jobs = lab.work.run(&["jobs", "--format", "json"]).ok().json();
    let failovers = jobs.as_array().unwrap().iter().filter(|j| j["operation"] == "planned failover").count();
    assert_eq!(failovers, 3, "the VMs were not failed over again");
}

#[test]
fn r30_a_drill_updates_only_the_test_zone_and_a_transfer_of_production_finds_no_change() {
    let lab = Lab::new();
    let production = lab.bind.axfr(bind::ZONE);
    lab.work.run(&["failover", "plan.rhai", "--kind", "test"]).ok();
    for vm in ["web01", "web02", "web03"] {
        let drill = lab.a(&format!("{vm}.drill.contoso.test"));
        assert_eq!(drill.len(), 1, "{vm}");
        assert!(drill[0].starts_with("192.168.103."), "the test replica's address: {drill:?}");
    }
    assert_eq!(lab.bind.axfr(bind::ZONE), production, "the production zone is as it was, record for record");
    let test_zone = lab.bind.axfr(bind::TEST_ZONE);
    assert!(test_zone.iter().any(|r| r.starts_with("web01.drill.contoso.test. 60 IN A 192.168.103.")), "{test_zone:?}");
}

#[test]
fn r30_a_test_zone_with_no_server_of_its_own_is_refused_at_check_before_a_drill_runs() {
    // The README's old layout: one entry, for contoso.test, and a test zone inside it. A
    // drill sent its updates to contoso.test's entry, and BIND added them to that zone.
    let bind = Bind::start();
    let production = bind.axfr(bind::ZONE);
    let readme = config(&bind, "drill.contoso.test").replace(
        &format!(
            "[[dns.servers]]\nzone = \"drill.contoso.test\"\naddress = \"{}\"\nkey = \"{KEY_NAME}\"\n\n",
            bind.address()
        ),
        "",
    );
    let lab = Lab::with_config(readme, bind);
    let phrase = "dns.test_zone: \"drill.contoso.test\" has no [[dns.servers]] entry of its own";
    let check = lab.work.drplan(["check", "plan.rhai"]).fails(1);
    assert!(check.stderr.contains(phrase), "{}", check.stderr);
    let drill = lab.work.drplan(["failover", "plan.rhai", "--kind", "test"]).fails(1);
    assert!(drill.stderr.contains(phrase), "{}", drill.stderr);
    assert_eq!(lab.work.last_run(), None, "no run was started");
    assert_eq!(lab.bind.axfr(bind::ZONE), production);
}

#[test]
fn r30_a_test_zone_its_server_does_not_serve_fails_the_step_and_writes_nowhere_else() {
    // The entry is there, but the server has no such zone: BIND refuses the update rather
    // than putting it in contoso.test, and the drill's DNS step fails saying so.
    let bind = Bind::start();
    let production = bind.axfr(bind::ZONE);
    let lab = Lab::with_config(config(&bind, "drill2.contoso.test"), bind);
    let refused = lab.work.drplan(["failover", "plan.rhai", "--kind", "test"]).fails(1);
    assert!(refused.stderr.contains("drill2.contoso.test"), "the preflight names the zone: {}", refused.stderr);
    assert_eq!(lab.work.last_run(), None, "a refused drill leaves no record");
    // Past the preflight, BIND itself refuses the update.
    let run = lab.work.drplan(["failover", "plan.rhai", "--kind", "test", "--no-preflight"]).fails(1);
    let show = lab.work.run(&["show", &lab.work.last_run().unwrap()]).ok();
    assert!(
        show.stdout.contains("web01.drill2.contoso.test"),
        "names the record it tried:\n{}\n{}",
        show.stdout,
        run.stderr
    );
    assert!(show.stdout.contains("not authoritative for zone drill2.contoso.test"), "{}", show.stdout);
    assert_eq!(lab.bind.axfr(bind::ZONE), production);
}

/// Verifies a record the drill never wrote: db01 is in the production zone only.
const VERIFY_PLAN: &str = r#"
import "dns" as dns;
let plan = recovery_plan("verify", #{ source: "primary", target: "secondary", test_network: "test-bubble" });
plan.group("web", vms_tagged("tier", "web")).post(|ctx| dns::verify("db01.contoso.test", ctx.vm("web01").ip));
plan
"#;

#[test]
fn a_drills_verify_names_the_test_zones_record_it_queried() {
    let lab = Lab::new();
    std::fs::write(lab.work.path().join("verify.rhai"), VERIFY_PLAN).unwrap();
    lab.work.drplan(["failover", "verify.rhai", "--kind", "test"]).fails(1);
    let show = lab.work.run(&["show", &lab.work.last_run().unwrap(), "--wide"]).ok();
    assert!(show.stdout.contains("db01.drill.contoso.test resolves to nothing, not 192.168.103."), "{}", show.stdout);
}

#[test]
fn a_real_run_of_a_plan_that_updates_dns_without_a_dns_section_is_refused() {
    let work = Workdir::contoso().plan(PLAN);
    let run = work.drplan(["failover", "plan.rhai", "--kind", "planned", "--yes"]).fails(1);
    assert!(run.stderr.contains("drplan.toml has no [dns] section, so this run cannot change DNS"), "{}", run.stderr);
    assert!(run.stderr.contains("set mode = \"record\" under [dns]"), "{}", run.stderr);
    assert_eq!(work.last_run(), None, "refused before the run exists");
    let status = work.run(&["status", "--format", "json"]).ok().json();
    assert!(status["vms"].as_array().unwrap().iter().all(|vm| vm["active_site"] == "primary"), "{status}");
}

#[test]
fn record_mode_runs_and_every_report_says_the_changes_were_not_sent() {
    let work = Workdir::contoso().plan(PLAN).file("drplan.toml", RECORD_DNS);
    // A dry run sends nothing in any mode, and says so as it always has.
    let dry = work.run(&["dry-run", "plan.rhai", "--kind", "planned"]).ok().stdout;
    assert!(dry.contains("dns.point web01.contoso.test A 10.2.3.21\n"), "{dry}");

    let run = work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    let id = work.last_run().unwrap();
    let note = "dns.point web01.contoso.test A 10.2.3.21 (record mode: not sent)";
    let human = work.run(&["show", &id]).ok().stdout;
    let json = work.run(&["show", &id, "--format", "json"]).ok().stdout;
    for report in [&run.stdout, &human, &json] {
        assert!(report.contains(note), "{report}");
        assert!(report.contains("dns.verify web01.contoso.test A 10.2.3.21 (record mode: not sent)"), "{report}");
    }
}

#[test]
fn a_dry_run_leaves_the_zone_serial_unchanged() {
    let lab = Lab::new();
    let serial = lab.bind.soa_serial();
    let dry = lab.work.run(&["dry-run", "plan.rhai", "--kind", "planned"]).ok();
    assert!(dry.stdout.contains("dns.point web01.contoso.test A 10.2.3.21"), "the update it would make is listed");
    assert_eq!(lab.bind.soa_serial(), serial);
    assert_eq!(lab.a("web01.contoso.test"), ["10.1.3.21"]);
}

/// A load balancer flip: `www` follows the other site's load balancer once the web tier is up.
const CNAME_PLAN: &str = r#"
import "dns" as dns;
let plan = recovery_plan("lb", #{ source: "primary", target: "secondary", test_network: "test-bubble" });
plan.group("web", vms_tagged("tier", "web")).post(|ctx| {
    dns::cname("www.contoso.test", "lb-dr.contoso.test");
    dns::verify_cname("www.contoso.test", "lb-dr.contoso.test");
});
plan
"#;

impl Lab {
    fn cname(&self, name: &str) -> Vec<String> {
        self.bind.dig(&["+short", name, "CNAME"]).lines().map(str::to_string).collect()
    }
}

#[test]
fn r50_a_plan_flips_a_load_balancer_cname_and_verifies_it_with_the_server() {
    let lab = Lab::new();
    std::fs::write(lab.work.path().join("lb.rhai"), CNAME_PLAN).unwrap();
    assert_eq!(lab.cname("www.contoso.test"), ["lb-primary.contoso.test."]);

    let serial = lab.bind.soa_serial();
    let dry = lab.work.run(&["dry-run", "lb.rhai", "--kind", "planned"]).ok();
    assert!(dry.stdout.contains("dns.cname www.contoso.test -> lb-dr.contoso.test"), "{}", dry.stdout);
    assert_eq!(lab.bind.soa_serial(), serial, "a dry run sends nothing");

    // A drill flips the test zone's copy, target included; production stays.
    lab.work.run(&["failover", "lb.rhai", "--kind", "test"]).ok();
    assert_eq!(lab.cname("www.drill.contoso.test"), ["lb-dr.drill.contoso.test."]);
    assert_eq!(lab.cname("www.contoso.test"), ["lb-primary.contoso.test."], "production DNS untouched");
    lab.work.run(&["cleanup", "lb.rhai", "--yes"]).ok();

    lab.work.run(&["failover", "lb.rhai", "--kind", "planned", "--yes"]).ok();
    assert_eq!(lab.cname("www.contoso.test"), ["lb-dr.contoso.test."]);
    let show = lab.work.run(&["show", &lab.work.last_run().unwrap(), "--format", "json"]).ok();
    assert!(show.stdout.contains("dns.verify-cname www.contoso.test -> lb-dr.contoso.test"), "{}", show.stdout);
}

/// Runs `drplan ARGS` in the background and approves the run's manual steps from a
/// second process until it ends; returns how it ended.
fn run_approving(work: &Workdir, args: &[&str]) -> Run {
    let mut child = work.drplan(args).spawn();
    while child.try_wait().is_none() {
        if let Some(id) = work.last_run() {
            work.run(&["approve", &id]); // when nothing waits, refused: no matter
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait()
}

#[test]
fn r50_the_example_plan_fails_over_and_back_with_dns_against_bind() {
    let bind = Bind::start();
    let dns = format!(
        "\n[dns]\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"{}\"\nkey = \"{KEY_NAME}\"\n\n[[dns.keys]]\nname = \"{KEY_NAME}\"\nsecret_env = \"DRPLAN_TEST_TSIG\"\n",
        bind.address()
    );
    let work = Workdir::contoso_plans().env("DRPLAN_TEST_TSIG", &bind.secret);
    // The example records its DNS changes (mode = "record"): send them to BIND instead.
    let example = std::fs::read_to_string(work.path().join("drplan.toml")).unwrap();
    let config = example[..example.find("\n[dns]").expect("the example's [dns]")].to_string() + dns.as_str();
    std::fs::write(work.path().join("drplan.toml"), config).unwrap();
    let dig = |name: &str| bind.dig(&["+short", name, "A"]).trim().to_string();

    run_approving(&work, &["failover", "failover.rhai", "--kind", "planned", "--yes"]).ok();
    assert_eq!(dig("web01.contoso.test"), "10.2.3.21");
    assert_eq!(dig("web02.contoso.test"), "10.2.3.22");

    for step in
        [&["commit", "failover.rhai", "--yes"][..], &["reprotect", "failover.rhai", "--yes"], &["advance", "1d"]]
    {
        work.run(step).ok();
    }
    run_approving(&work, &["failback", "failover.rhai", "--yes"]).ok();
    assert_eq!(dig("web01.contoso.test"), "10.1.3.21", "back at the original address");
    assert_eq!(dig("web03.contoso.test"), "10.1.3.23");
}

/// A drplan.toml for the lab's server whose key `key_name` reads its secret from
/// `tsig.key` (plus `extra` lines for the key, e.g. an algorithm).
fn key_file_config(bind: &Bind, key_name: &str, extra: &str) -> String {
    format!(
        "[dns]\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"{}\"\nkey = \"{key_name}\"\n\n[[dns.keys]]\nname = \"{key_name}\"\nsecret_file = \"tsig.key\"\n{extra}",
        bind.address()
    )
}

#[test]
fn a_tsig_keygen_file_of_a_key_named_dr_secret_signs_the_updates() {
    let bind = Bind::start();
    let config = key_file_config(&bind, bind::DR_SECRET_KEY_NAME, "");
    let work = Workdir::contoso().plan(PLAN).file("drplan.toml", &config).file("tsig.key", &bind.dr_secret_key_file);
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    assert_eq!(bind.dig(&["+short", "web01.contoso.test", "A"]).trim(), "10.2.3.21");
}

#[test]
fn a_key_file_of_another_key_or_algorithm_refuses_the_run_before_anything_changes() {
    let bind = Bind::start();
    let serial = bind.soa_serial();
    let cases = [
        (KEY_NAME, "", "it holds the key \"dr-secret\", not \"drplan-key\""),
        (
            bind::DR_SECRET_KEY_NAME,
            "algorithm = \"hmac-sha512\"\n",
            "the key \"dr-secret\" is hmac-sha256 in the key file but hmac-sha512 in drplan.toml",
        ),
    ];
    for (key_name, extra, phrase) in cases {
        let work = Workdir::contoso()
            .plan(PLAN)
            .file("drplan.toml", &key_file_config(&bind, key_name, extra))
            .file("tsig.key", &bind.dr_secret_key_file);
        let run = work.drplan(["failover", "plan.rhai", "--kind", "planned", "--yes"]).fails(1);
        assert!(run.stderr.contains(phrase), "{phrase:?} in:\n{}", run.stderr);
        assert!(run.stderr.contains("tsig.key"), "names the file: {}", run.stderr);
        assert!(!run.stderr.contains("secret \""), "{}", run.stderr);
        assert_eq!(work.last_run(), None, "refused before the run exists");
        let status = work.run(&["status", "--format", "json"]).ok().json();
        assert!(status["vms"].as_array().unwrap().iter().all(|vm| vm["active_site"] != "secondary"), "{status}");
    }
    assert_eq!(bind.soa_serial(), serial, "nothing was sent");
}

#[test]
fn preflight_asks_each_dns_server_with_its_key_and_is_ready_only_when_all_answer() {
    let lab = Lab::new();
    let serial = lab.bind.dig(&["+short", bind::ZONE, "SOA"]);
    let ready = lab.work.run(&["preflight", "plan.rhai", "--format", "json"]).ok().json();
    assert_eq!(ready["ready"], true, "{ready:#}");
    let server = ready["dns"].as_array().unwrap().iter().find(|l| l["subject"].as_str().unwrap().starts_with("server"));
    assert_eq!(server.unwrap()["status"], "ok", "{ready:#}");
    // A wrong secret: one problem line, exit 1, and the same for a drill's test zone.
    let wrong = bind::random_secret();
    let preflight = lab.work.drplan(["preflight", "plan.rhai"]).env("DRPLAN_TEST_TSIG", &wrong).fails(1);
    assert!(preflight.stdout.contains("PROBLEM  dns"), "{}", preflight.stdout);
    assert!(preflight.stdout.contains("BADSIG"), "{}", preflight.stdout);
    assert!(preflight.stdout.contains("NOT READY: 1 problem"), "{}", preflight.stdout);
    assert!(!preflight.stdout.contains(&wrong) && !preflight.stdout.contains(&lab.bind.secret), "a secret was printed");
    let drill = lab.work.drplan(["preflight", "plan.rhai", "--kind", "test"]).env("DRPLAN_TEST_TSIG", &wrong).fails(1);
    assert!(drill.stdout.contains("drill.contoso.test"), "the drill asks the test zone's server: {}", drill.stdout);
    // Only queries were sent.
    assert_eq!(lab.bind.dig(&["+short", bind::ZONE, "SOA"]), serial, "the zone's serial did not move");
    assert_eq!(lab.work.last_run(), None, "a preflight starts no run");
}
