use std::path::Path;
use std::time::Duration;

use super::values::rfc3339;
use super::*;
use crate::model::testing::two_sites;
use crate::model::{CopyFrequency, Fault, Throttle};

const CONTOSO: &str = include_str!("../../../plans/contoso/site.toml");

/// What the tests add to the shared two sites: a policy and one protected VM. Tests
/// append to the whole or replace pieces of it.
const WEB01: &str = r#"
[[policies]]
name = "gold"
retention = "24h"

[[vms]]
name = "web01"
site = "primary"
host = "hv-p01"
os = "linux"
disks = [{ name = "os", size_gb = 30, os = true }, { name = "data", size_gb = 10 }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.21" }]
protection = { policy = "gold" }
"#;

/// The smallest valid site file of the tests.
fn minimal() -> String {
    two_sites(WEB01)
}

fn parse(text: &str) -> Result<Inventory, SiteFileErrors> {
    parse_site(text, Path::new("site.toml"))
}

fn with(extra: &str) -> String {
    format!("{}{extra}", minimal())
}

fn replacing(from: &str, to: &str) -> String {
    let minimal = minimal();
    assert!(minimal.contains(from), "{from:?} is not in the minimal site");
    minimal.replacen(from, to, 1)
}

/// The only error of a file that must fail.
fn error(text: &str) -> SiteFileError {
    let errors = parse(text).expect_err("the site file should be refused").0;
    assert_eq!(errors.len(), 1, "expected one error, got:\n{}", SiteFileErrors(errors.clone()));
    errors.into_iter().next().unwrap()
}

/// The 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
}

fn last_line_of(text: &str, needle: &str) -> usize {
    text.lines().enumerate().filter(|(_, l)| l.contains(needle)).last().expect("needle in text").0 + 1
}

fn assert_error(text: &str, needle: &str, phrase: &str) -> SiteFileError {
    let e = error(text);
    assert_eq!(e.snippet.line, line_of(text, needle), "{e}");
    assert!(e.message.contains(phrase), "{e}");
    e
}

#[test]
fn the_minimal_site_parses_with_defaults() {
    let inv = parse(&minimal()).unwrap();
    assert_eq!(inv.simulation.speed, 600);
    assert_eq!(inv.shutdown_timeout, Duration::from_secs(300));
    assert_eq!(inv.throttle, Throttle::default());
    let gold = &inv.policies[0];
    assert_eq!(gold.copy_frequency, CopyFrequency::Minutes5);
    assert_eq!(gold.rpo_threshold, Duration::from_secs(1800));
    assert!(!gold.compression && !gold.encryption_at_rest);
    let vm = &inv.vms[0];
    assert_eq!(vm.boot_time, Duration::from_secs(60));
    assert_eq!(vm.change_rate_bytes_per_sec, 256 * 1024 / 8);
    assert_eq!(inv.initial_protection[0].as_ref().unwrap().since, inv.simulation.start);
}

#[test]
fn simulations_are_paced_unless_the_file_says_pace_false() {
    assert!(parse(&minimal()).unwrap().simulation.pace);
    let unpaced = parse(&format!("[simulation]\npace = false\n{}", minimal())).unwrap();
    assert!(!unpaced.simulation.pace);
    let e = error(&format!("[simulation]\npace = \"no\"\n{}", minimal()));
    assert_eq!(e.snippet.line, 2, "{e}");
}

#[test]
fn the_contoso_site_parses() {
    let inv = parse_site(CONTOSO, Path::new("plans/contoso/site.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.vms.len(), 9);
    assert_eq!(inv.policies.len(), 2);
    assert_eq!(inv.replication_groups.len(), 1);
    assert_eq!(inv.replication_groups[0].vms, ["sql01", "sql02"]);
    let sql01 = inv.vms.iter().position(|v| v.name == "sql01").unwrap();
    let protection = inv.initial_protection[sql01].as_ref().expect("sql01 is protected");
    assert_eq!(protection.policy, "gold");
    assert_eq!(protection.since, rfc3339("2026-01-03T08:00:00Z").unwrap());
    let report01 = inv.vms.iter().position(|v| v.name == "report01").unwrap();
    assert!(inv.initial_protection[report01].is_none());
    assert!(inv.site("secondary").unwrap().network("test-bubble").unwrap().isolated);
    assert!(inv.faults.is_empty());
}

#[test]
fn toml_syntax_error_is_reported_at_its_line() {
    let text = with("[throttle]\nthreads = = 4\n");
    let e = error(&text);
    assert_eq!(e.snippet.line, line_of(&text, "= ="));
    assert!(e.field.is_empty());
}

#[test]
fn unknown_field_is_refused() {
    let text = replacing("os = \"linux\"", "os = \"linux\"\ncolour = \"blue\"");
    assert_error(&text, "colour", "unknown field `colour`");
}

#[test]
fn r10_nic_on_unknown_network_is_reported_with_line() {
    let text = replacing("network = \"prod\"", "network = \"prod-x\"");
    let e =
        assert_error(&text, "prod-x", "unknown network \"prod-x\" on site \"primary\" (its networks: prod, backup)");
    assert_eq!(e.field, "vms.\"web01\".nics[0].network");
    assert_eq!(e.snippet.width, "\"prod-x\"".len());
    let rendered = e.to_string();
    assert!(rendered.starts_with(&format!(
        "error: site.toml:{}:{}: vms.\"web01\".nics[0].network: unknown",
        e.snippet.line, e.snippet.column
    )));
    assert!(rendered.ends_with(&format!("{}^^^^^^^^", " ".repeat(e.snippet.column - 1))), "{rendered}");
}

#[test]
fn hosts_networks_and_subnets_are_those_of_the_vms_site_and_network() {
    let text = replacing("host = \"hv-p01\"", "host = \"hv-s01\"");
    assert_error(&text, "host = \"hv-s01\"", "unknown host \"hv-s01\" on site \"primary\" (its hosts: hv-p01, hv-p02)");
    let text = replacing("network = \"prod\", subnet = \"web\"", "network = \"prod-dr\", subnet = \"web\"");
    assert_error(&text, "network = \"prod-dr\"", "unknown network \"prod-dr\" on site \"primary\"");
    // A subnet "backup" exists on the VM's site, but in another network than its NIC's.
    let text = replacing("subnet = \"web\", ip", "subnet = \"backup\", ip");
    assert_error(
        &text,
        "subnet = \"backup\", ip",
        "unknown subnet \"backup\" in network \"prod\" (its subnets: db, web)",
    );
}

#[test]
fn r6_two_os_disks_reported_with_line() {
    let text = replacing("size_gb = 10 }", "size_gb = 10, os = true }");
    assert_error(&text, "size_gb = 10", "exactly one OS disk");
}

#[test]
fn r6_excluding_the_os_disk_is_refused() {
    let text = replacing("{ policy = \"gold\" }", "{ policy = \"gold\", exclude = [\"os\"] }");
    assert_error(&text, "exclude", "only data disks can be excluded");
}

#[test]
fn r3_app_consistent_not_below_retention_reported_with_line() {
    let text = replacing("retention = \"24h\"", "retention = \"4h\"\napp_consistent = \"4h\"");
    let e = assert_error(&text, "app_consistent", "must be less than the retention window");
    assert_eq!(e.field, "policies.\"gold\".app_consistent");
}

#[test]
fn r1_thirty_seconds_to_premium_reported_with_line() {
    let text =
        replacing("retention = \"24h\"", "retention = \"24h\"\ncopy_frequency = \"30s\"\ntarget_storage = \"premium\"");
    assert_error(&text, "premium", "not offered when the target storage is premium");
}

#[test]
fn r1_copy_frequency_must_be_30s_5m_or_15m() {
    let text = replacing("retention = \"24h\"", "retention = \"24h\"\ncopy_frequency = \"10m\"");
    assert_error(&text, "10m", "copy frequency must be 30s, 5m or 15m, not 10m");
}

#[test]
fn r13_site_in_two_pairings_is_refused() {
    let text = with(
        "[[sites]]\nname = \"third\"\nkind = \"cloud\"\nhosts = [\"c1\"]\n\n[[pairings]]\nsource = \"primary\"\ntarget = \"third\"\n",
    );
    let e = error(&text);
    assert_eq!(e.snippet.line, last_line_of(&text, "source = \"primary\""), "{e}");
    assert!(e.message.contains("already in a protection pairing"), "{e}");
    assert_eq!(e.field, "pairings[1].source");
}

#[test]
fn r15_throttle_out_of_range_is_refused() {
    let text = with("[throttle]\nwork_kbps = 100\nthreads = 64\n");
    let errors = parse(&text).unwrap_err().0;
    assert_eq!(errors.len(), 2, "{}", SiteFileErrors(errors.clone()));
    assert_eq!(errors[0].snippet.line, line_of(&text, "work_kbps"));
    assert!(errors[0].message.contains("outside 512 Kbps to 102 Mbps"), "{}", errors[0]);
    assert_eq!(errors[1].snippet.line, line_of(&text, "threads"));
    assert!(errors[1].message.contains("1 to 32"), "{}", errors[1]);
}

#[test]
fn ip_outside_its_subnet_is_refused() {
    let text = replacing("ip = \"10.1.3.21\"", "ip = \"10.9.3.21\"");
    assert_error(&text, "10.9.3.21", "outside subnet \"web\" (10.1.3.0/24)");
}

#[test]
fn several_errors_are_reported_together_in_line_order() {
    let text = with("\n[[faults]]\nkind = \"boot-failure\"\nvm = \"nobody\"\n")
        .replacen("host = \"hv-p01\"", "host = \"hv-p09\"", 1)
        .replacen("kind = \"onprem\"", "kind = \"on-prem\"", 1);
    let errors = parse(&text).unwrap_err();
    let found: Vec<(usize, &str)> = errors.0.iter().map(|e| (e.snippet.line, e.field.as_str())).collect();
    assert_eq!(
        found,
        [
            (line_of(&text, "on-prem"), "sites.\"primary\".kind"),
            (line_of(&text, "hv-p09"), "vms.\"web01\".host"),
            (line_of(&text, "nobody"), "faults[0].vm"),
        ]
    );
    let rendered = errors.to_string();
    assert!(rendered.ends_with("\n\n3 errors in site.toml"), "{errors}");
    // Each error says what it is, not only the first.
    assert_eq!(rendered.matches("error: site.toml:").count(), 3, "{errors}");
}

#[test]
fn a_stall_fault_needs_a_time() {
    let text = with("\n[[faults]]\nkind = \"replication-stall\"\nvm = \"web01\"\n");
    assert_error(&text, "replication-stall", "needs at = ");
    let ok = with("\n[[faults]]\nkind = \"replication-stall\"\nvm = \"web01\"\nat = \"+2h\"\n");
    let inv = parse(&ok).unwrap();
    let start = inv.simulation.start;
    assert_eq!(inv.faults, [Fault::ReplicationStall { vm: "web01".into(), at: start + chrono::TimeDelta::hours(2) }]);
}

#[test]
fn duplicate_names_point_at_the_second() {
    let text = with("\n[[policies]]\nname = \"gold\"\nretention = \"48h\"\n");
    let e = error(&text);
    assert_eq!(e.snippet.line, last_line_of(&text, "name = \"gold\""), "{e}");
    assert!(e.message.contains(&format!(
        "duplicate policy \"gold\": it is already defined on line {}",
        line_of(&text, "name = \"gold\"")
    )));
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_the_line_of_the_bad_byte() {
    let text = replacing("name = \"web01\"", "name = \"web?01\"");
    let mut bytes = text.clone().into_bytes();
    // A continuation byte cannot start a character.
    bytes[text.find("web?01").unwrap() + 3] = 0xBF;
    let errors = parse_site_bytes(&bytes, Path::new("site.toml")).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!((e.snippet.line, e.snippet.column, e.snippet.width), (line_of(&text, "web?01"), 12, 1), "{e}");
    assert!(e.message.contains("byte 0xBF is not UTF-8"), "{e}");
    let rendered = e.to_string();
    assert!(rendered.contains("| name = \"web\u{FFFD}01\"\n"), "{rendered}");
    assert!(rendered.ends_with(&format!("| {}^", " ".repeat(11))), "{rendered}");
    // Valid UTF-8 parses as the text does.
    assert!(parse_site_bytes(text.as_bytes(), Path::new("site.toml")).is_ok());
}

/// Two libvirt sites, for the checks of real sites.
fn libvirt_sites(extra: &str) -> String {
    format!(
        r#"
[[sites]]
name = "a"
kind = "onprem"
hosts = ["kvm-a"]
libvirt = {{ uri = "qemu:///system", storage = "/srv/replicas" }}
networks = [{{ name = "prod", libvirt_network = "net-a", subnets = [{{ name = "lan", cidr = "10.7.1.0/24" }}] }}]

[[sites]]
name = "b"
kind = "onprem"
hosts = ["kvm-b"]
libvirt = {{ uri = "qemu+ssh://kvm-b/system", storage = "/srv/replicas" }}
networks = [{{ name = "prod-dr", bridge = "br0", subnets = [{{ name = "lan", cidr = "10.7.2.0/24" }}] }}]

[[pairings]]
source = "a"
target = "b"

[[policies]]
name = "gold"
retention = "1h"

[[vms]]
name = "app01"
site = "a"
host = "kvm-a"
os = "linux"
nics = [{{ network = "prod", subnet = "lan", ip = "10.7.1.20" }}]
{extra}"#
    )
}

#[test]
fn a_libvirt_site_is_real_its_networks_plug_into_libvirt_and_its_vms_disks_come_from_libvirt() {
    use crate::model::network::Attachment;
    use crate::model::site::Platform;
    let inventory = parse(&libvirt_sites("")).unwrap();
    let a = inventory.site("a").unwrap();
    assert_eq!(a.platform, Platform::Kvm);
    assert_eq!(a.libvirt.as_ref().unwrap().uri, "qemu:///system");
    assert_eq!(a.networks[0].attachment, Some(Attachment::LibvirtNetwork("net-a".into())));
    assert_eq!(inventory.site("b").unwrap().networks[0].attachment, Some(Attachment::Bridge("br0".into())));
    assert!(inventory.vm("app01").unwrap().disks.is_empty(), "read from the domain when the fabric opens");
}

#[test]
fn libvirt_site_mistakes_name_their_field() {
    let retyped = libvirt_sites("disks = [{ name = \"os\", size_gb = 10, os = true }]");
    let e = error(&retyped);
    assert_eq!(e.field, "vms.\"app01\".disks");
    assert!(e.message.contains("read") || e.message.contains("libvirt domain"), "{}", e.message);

    let relative = libvirt_sites("").replacen("storage = \"/srv/replicas\"", "storage = \"replicas\"", 1);
    assert_eq!(error(&relative).field, "sites.\"a\".libvirt.storage");

    let unplugged = libvirt_sites("").replacen("libvirt_network = \"net-a\", ", "", 1);
    let e = error(&unplugged);
    assert_eq!(e.field, "sites.\"a\".networks.\"prod\".libvirt_network");
    assert!(e.message.contains("bridge"), "{}", e.message);

    let simulated_network =
        two_sites(WEB01).replacen("{ name = \"backup\",", "{ name = \"backup\", bridge = \"br9\",", 1);
    let e = error(&simulated_network);
    assert!(e.message.contains("applies to a libvirt site"), "{}", e.message);
}

#[test]
fn a_pairing_cannot_join_a_real_site_to_a_simulated_one() {
    let mixed = libvirt_sites("").replacen(
        "libvirt = { uri = \"qemu+ssh://kvm-b/system\", storage = \"/srv/replicas\" }\nnetworks = [{ name = \"prod-dr\", bridge = \"br0\",",
        "networks = [{ name = \"prod-dr\",",
        1,
    );
    let e = error(&mixed);
    assert_eq!(e.field, "pairings[0].target");
    assert!(e.message.contains("real site and a simulated one"), "{}", e.message);
}
