use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Severity::{Error, Warning};
use super::*;
use crate::model::MAX_DURATION;
use crate::model::testing::{SQL_CLUSTER, two_sites};
use crate::model::{Timestamp, parse_site};
use crate::plan::{AddressUse, FailurePolicy, Manual, Mistake, UsedVms, WrittenName, WrittenWait};

/// After the shared two sites (primary/backup unmapped; test-bubble, whose db subnet
/// reuses prod-dr's range, and prod-dr's reserved 10.2.1.5 are what R9 and R10 tests need)
/// and SQL cluster: VMs of every other kind a check meets.
const VMS: &str = r#"
[[sizes]]
name = "standard-1"
max_nics = 1

[[vms]]
name = "web01"
site = "primary"
host = "hv-p01"
os = "linux"
size = "standard-1"
tags = { tier = "web" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.21", target_ip = "10.2.3.21" }]
protection = { policy = "gold" }

[[vms]]
name = "web02"
site = "primary"
host = "hv-p01"
os = "linux"
size = "standard-1"
tags = { tier = "web" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.22", target_ip = "10.2.3.22" }]
protection = { policy = "gold" }

[[vms]]
name = "report01"
site = "primary"
host = "hv-p01"
os = "linux"
tags = { tier = "report" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.50" }]

[[vms]]
name = "backup01"
site = "primary"
host = "hv-p01"
os = "linux"
tags = { tier = "backup" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "backup", subnet = "backup", ip = "10.1.9.10" }]
protection = { policy = "gold" }

[[vms]]
name = "mon01"
site = "secondary"
host = "hv-s01"
os = "linux"
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod-dr", subnet = "web", ip = "10.2.3.99" }]
"#;

fn t(hours: i64) -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_767_225_600 + hours * 3600, 0).unwrap()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn at(line: usize) -> SourcePos {
    SourcePos::new("plan.rhai", line, 5)
}

fn member(selector: Selector, line: usize) -> Member {
    Member { selector, at: at(line) }
}

fn vm(name: &str, line: usize) -> Member {
    member(Selector::Vm(name.into()), line)
}

fn tag(key: &str, value: &str, line: usize) -> Member {
    member(Selector::Tag { key: key.into(), value: value.into() }, line)
}

fn group(name: &str, line: usize, members: Vec<Member>) -> Group {
    Group::new(name, at(line), members)
}

/// primary -> secondary, tested in test-bubble, written on line 1.
fn plan(groups: Vec<Group>) -> Plan {
    Plan { test_network: Some("test-bubble".into()), groups, ..Plan::new("contoso", ("primary", "secondary"), at(1)) }
}

/// The SQL cluster, then the web tier: sound as written.
fn sound_plan() -> Plan {
    plan(vec![
        group("db", 3, vec![member(Selector::ReplicationGroup("sql-cluster".into()), 3)]),
        group("web", 4, vec![tag("tier", "web", 4)]),
    ])
}

/// An inventory and every VM's protection, both editable by a test.
struct World {
    inventory: Inventory,
    protection: BTreeMap<String, ProtectionState>,
}

impl World {
    /// The site file's VMs, those with `protection = ...` protected since hour 1.
    fn new() -> Self {
        let inventory = parse_site(&two_sites(&format!("{SQL_CLUSTER}{VMS}")), Path::new("site.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let protection = inventory
            .vms
            .iter()
            .zip(&inventory.initial_protection)
            .map(|(vm, initial)| {
                let mut state = ProtectionState::unprotected();
                if let Some(initial) = initial {
                    state.protect(&initial.policy, vec![], t(0), t(1));
                    state.settle(t(1));
                }
                (vm.name.clone(), state)
            })
            .collect();
        World { inventory, protection }
    }

    fn vm(&mut self, name: &str) -> &mut Vm {
        self.inventory.vms.iter_mut().find(|v| v.name == name).unwrap()
    }

    fn site(&mut self, name: &str) -> &mut Site {
        self.inventory.sites.iter_mut().find(|s| s.name == name).unwrap()
    }

    fn state(&mut self, vm: &str) -> &mut ProtectionState {
        self.protection.get_mut(vm).unwrap()
    }

    fn check(&self, plan: &Plan, kind: Option<FailoverKind>) -> Validation {
        validate(plan, &self.inventory, &self.protection, kind)
    }
}

fn rendered(v: &Validation) -> Vec<String> {
    v.findings.iter().map(ToString::to_string).collect()
}

/// The one finding of a validation.
fn only(v: &Validation) -> &Finding {
    assert_eq!(v.findings.len(), 1, "{:#?}", rendered(v));
    &v.findings[0]
}

/// Asserts a finding's (severity, line, rule), and a phrase of its message.
fn assert_finding(f: &Finding, (severity, line, rule): (Severity, usize, Option<&str>), phrase: &str) {
    assert_eq!((f.severity, f.at.line, f.rule), (severity, line, rule), "{f}");
    // As rendered: the rule comes after the message, which does not repeat it.
    assert!(f.to_string().contains(phrase), "{f}\nwanted: {phrase}");
    assert!(!f.message.contains(&format!("({})", rule.unwrap_or("-"))), "the rule twice: {f}");
}

fn names(v: &Validation) -> Vec<(&str, Vec<&str>)> {
    v.resolved.groups.iter().map(|g| (g.name.as_str(), g.vms.iter().map(String::as_str).collect())).collect()
}

#[test]
fn a_sound_plan_has_no_findings_for_any_kind() {
    let world = World::new();
    for kind in [None, Some(FailoverKind::Test), Some(FailoverKind::Planned), Some(FailoverKind::Unplanned)] {
        let v = world.check(&sound_plan(), kind);
        assert!(v.findings.is_empty(), "{kind:?}: {:#?}", rendered(&v));
        assert!(!v.has_errors());
    }
}

#[test]
fn r12_replication_group_selector_expands_to_its_members() {
    let v = World::new().check(&sound_plan(), None);
    // In inventory order, whatever the order the group lists them in.
    assert_eq!(names(&v), [("db", vec!["sql01", "sql02"]), ("web", vec!["web01", "web02"])]);
}

#[test]
fn r12_part_of_a_replication_group_is_a_warning() {
    let v = World::new().check(&plan(vec![group("db", 3, vec![vm("sql02", 3)])]), None);
    assert_finding(
        only(&v),
        (Warning, 3, Some("R12")),
        "sql-cluster fails over to one common recovery point, but the plan leaves out sql01",
    );
    assert!(!v.has_errors());
}

#[test]
fn r12_a_replication_group_split_across_plan_groups_is_an_error_where_a_planned_failover_would_break_it() {
    let plan = plan(vec![
        group("db", 3, vec![vm("sql01", 3)]),
        group("web", 4, vec![vm("web01", 4)]),
        group("late", 5, vec![vm("web02", 5), vm("sql02", 6)]),
    ]);
    let world = World::new();
    for kind in [None, Some(FailoverKind::Planned)] {
        let v = world.check(&plan, kind);
        assert_finding(
            only(&v),
            (Error, 6, Some("R12")),
            "replication group sql-cluster is split across plan groups db (sql01) and late (sql02): a planned \
             failover shuts each member down and syncs it when its group's turn comes, so sql02 and sql01 would not \
             share a common recovery point; put all of it in one group: replication_group(\"sql-cluster\")",
        );
    }
    for kind in [FailoverKind::Unplanned, FailoverKind::Test] {
        let v = world.check(&plan, Some(kind));
        assert_finding(
            only(&v),
            (Warning, 6, Some("R12")),
            "sql02 fails over to the point chosen when sql01 began, but later: until then sql01 runs on secondary without it",
        );
    }
}

#[test]
fn unknown_replication_group_is_an_error_with_a_suggestion() {
    let plan = plan(vec![group("db", 3, vec![member(Selector::ReplicationGroup("sql-clustr".into()), 3)])]);
    let v = World::new().check(&plan, None);
    assert_eq!(v.findings.len(), 2, "and the group is empty: {:#?}", rendered(&v));
    assert_finding(&v.findings[0], (Error, 3, Some("R20")), "group db is empty");
    assert_finding(
        &v.findings[1],
        (Error, 3, Some("R12")),
        "unknown replication group sql-clustr (did you mean sql-cluster?)",
    );
}

#[test]
fn unknown_vm_is_an_error_with_the_closest_name_suggested() {
    let plan = plan(vec![group("db", 3, vec![vm("sql01", 3), vm("slq02", 4), vm("nothing-like-it", 5)])]);
    let v = World::new().check(&plan, None);
    assert_eq!(
        rendered(&v),
        [
            "warning: plan.rhai:3:5: replication group sql-cluster fails over to one common recovery point, but the plan leaves out sql02 (R12)",
            "error: plan.rhai:4:5: unknown VM slq02 (did you mean sql02?)",
            "error: plan.rhai:5:5: unknown VM nothing-like-it",
        ]
    );
    assert_eq!(v.findings[1].subject, "slq02");
    assert_eq!(names(&v), [("db", vec!["sql01"])]);
}

#[test]
fn tag_selector_matching_nothing_is_an_error_and_empties_its_group() {
    let plan = plan(vec![group("web", 3, vec![]), group("cache", 4, vec![tag("tier", "cache", 5)])]);
    let v = World::new().check(&plan, None);
    assert_eq!(v.findings.len(), 3, "{:#?}", rendered(&v));
    assert_finding(&v.findings[0], (Error, 3, Some("R20")), "group web is empty: it has no members");
    assert_finding(&v.findings[1], (Error, 4, Some("R20")), "group cache is empty: its members resolve to no VM");
    assert_finding(&v.findings[2], (Error, 5, None), "no VM of site primary is tagged tier=cache");
    assert_eq!(v.findings[2].subject, "tier=cache");
}

#[test]
fn a_plan_without_groups_is_an_error() {
    let v = World::new().check(&plan(vec![]), None);
    assert_finding(only(&v), (Error, 1, Some("R20")), "plan contoso has no groups");
}

#[test]
fn r20_tag_selector_takes_only_vms_of_the_source_site() {
    let mut world = World::new();
    world.vm("mon01").tags.insert("tier".into(), "web".into());
    let v = world.check(&sound_plan(), None);
    assert!(v.findings.is_empty(), "{:#?}", rendered(&v));
    assert_eq!(names(&v)[1], ("web", vec!["web01", "web02"]));
}

#[test]
fn r20_vm_not_on_the_source_site_is_an_error() {
    let v = World::new().check(&plan(vec![group("mon", 3, vec![vm("web01", 3), vm("mon01", 4)])]), None);
    assert_finding(
        only(&v),
        (Error, 4, Some("R20")),
        "mon01 runs on site secondary, not on primary, the plan's source site",
    );
    assert_eq!(names(&v), [("mon", vec!["web01"])]);
}

#[test]
fn r20_vm_in_two_groups_is_reported_at_the_second() {
    let plan = plan(vec![
        group("db", 3, vec![member(Selector::ReplicationGroup("sql-cluster".into()), 3)]),
        group("web", 4, vec![tag("tier", "web", 4), vm("sql01", 5)]),
        // Twice in one group, through two selectors.
        group("more", 6, vec![vm("report01", 6), tag("tier", "report", 7)]),
    ]);
    let mut world = World::new();
    *world.state("report01") = world.protection["web01"].clone();
    let v = world.check(&plan, None);
    assert_eq!(v.findings.len(), 2, "{:#?}", rendered(&v));
    assert_finding(&v.findings[0], (Error, 5, Some("R20")), "sql01 is already in group db (at plan.rhai:3:5)");
    assert_finding(&v.findings[1], (Error, 7, Some("R20")), "report01 is already in group more (at plan.rhai:6:5)");
    assert_eq!(
        names(&v),
        [("db", vec!["sql01", "sql02"]), ("web", vec!["web01", "web02"]), ("more", vec!["report01"])]
    );
}

#[test]
fn r5_vm_in_initial_replication_cannot_be_in_a_plan() {
    let mut world = World::new();
    let state = world.state("sql01");
    *state = ProtectionState::unprotected();
    state.protect("gold", vec![], t(0), t(5));
    let v = world.check(&sound_plan(), None);
    let f = only(&v);
    assert_finding(
        f,
        (Error, 3, Some("R5")),
        "cannot fail over sql01: it is in initial replication until 2026-01-01T05:00:00Z; failover waits for it. Run the plan once the copy is done. (R5)",
    );
    assert_eq!(f.subject, "sql01");
    let v = world.check(&sound_plan(), Some(FailoverKind::Test));
    assert_finding(only(&v), (Error, 3, Some("R5")), "cannot start the test failover of sql01");
}

#[test]
fn r20_unprotected_vm_is_an_error_that_says_how_to_protect_it() {
    let v = World::new().check(&plan(vec![group("report", 3, vec![vm("report01", 3)])]), None);
    assert_finding(
        only(&v),
        (Error, 3, Some("R20")),
        "cannot fail over report01: it is unprotected. Protect it first: drplan protect report01 --policy NAME (policies: gold).",
    );
}

#[test]
fn r20_vm_failed_over_already_cannot_fail_over_again() {
    let mut world = World::new();
    let point = crate::model::RecoveryPoint { time: t(2), consistency: crate::model::Consistency::Crash };
    let state = world.state("web01");
    state.begin_failover(FailoverKind::Planned, t(3));
    state.finish_failover(FailoverKind::Planned, point, t(3), Duration::ZERO, None, true);
    let v = world.check(&sound_plan(), Some(FailoverKind::Planned));
    assert_finding(
        only(&v),
        (Error, 4, Some("R20")),
        "cannot start the planned failover of web01: it is failed over (planned",
    );
    assert!(v.findings[0].message.contains("Next: change recovery point, commit."), "{}", v.findings[0]);

    // Committed and reprotected back: protected, but from the target to the source.
    let state = world.state("web01");
    state.commit(t(4));
    state.reprotect(t(4), t(5));
    state.settle(t(5));
    let v = world.check(&sound_plan(), Some(FailoverKind::Unplanned));
    assert_finding(
        only(&v),
        (Error, 4, Some("R20")),
        "cannot start the unplanned failover of web01 from primary: it runs on secondary already; fail it back first",
    );
    let v = world.check(&sound_plan(), None);
    assert_finding(only(&v), (Error, 4, Some("R20")), "going back is a failback");
}

#[test]
fn r10_an_unmapped_network_is_a_warning_when_nothing_needs_the_address() {
    let plan = plan(vec![group("backup", 3, vec![vm("backup01", 3)])]);
    let world = World::new();
    let v = world.check(&plan, None);
    assert_finding(
        only(&v),
        (Warning, 3, Some("R10")),
        "backup01's NIC 1 on network backup has no network mapping to secondary: its replica will fail over not \
         connected to any network, with no address; map backup to a network of secondary if it needs one (R10)",
    );
    assert!(!v.has_errors());
}

#[test]
fn r10_an_unmapped_network_is_an_error_where_the_plan_needs_the_address() {
    let mut world = World::new();
    let check = |world: &World, plan: &Plan, kind| {
        let v = world.check(plan, kind);
        let f = only(&v);
        assert_eq!((f.at.line, f.rule), (3, Some("R10")), "{f}");
        (f.severity, f.message.clone())
    };
    let mut base = plan(vec![group("backup", 3, vec![vm("backup01", 3)])]);
    base.written.dns = DnsSetting::Recorded;
    // An action that uses the address of each VM of the group, or of this one by name.
    for (vms, what) in
        [(UsedVms::EachOfGroup(0), "vm.ip"), (UsedVms::Named("backup01".into()), "ctx.vm(\"backup01\").ip")]
    {
        let mut plan = base.clone();
        let at = SourcePos::new("plan.rhai", 7, 9);
        plan.written.address_uses.push(AddressUse { vms, what: what.into(), at, updates_dns: false });
        let (severity, message) = check(&world, &plan, None);
        assert_eq!(severity, Error);
        assert!(
            message.ends_with(&format!(
                "would not be connected to any network, but {what} at plan.rhai:7:9 needs its address"
            )),
            "{message}"
        );
        // A drill puts its replicas in the test network, mapped or not.
        assert_eq!(check(&world, &plan, Some(FailoverKind::Test)).0, Warning);
    }
    // Its DNS names, updated by the plan.
    world.vm("backup01").dns = vec!["backup01.contoso.test".into()];
    let mut plan = base.clone();
    plan.update_dns = true;
    let (severity, message) = check(&world, &plan, None);
    assert_eq!(severity, Error);
    assert!(message.ends_with("but plan.update_dns() points its DNS names (backup01.contoso.test) at it"), "{message}");
    // A static target IP.
    world.vm("backup01").nics[0].target_ip = Some(ip("10.2.9.10"));
    let (severity, message) = check(&world, &base, Some(FailoverKind::Planned));
    assert_eq!(severity, Error);
    assert!(message.ends_with("but its NIC 1 is to take the static target IP 10.2.9.10"), "{message}");
}

#[test]
fn r8_more_nics_than_the_target_size_allows_is_a_warning() {
    let mut world = World::new();
    let backup = Nic { network: "backup".into(), subnet: "backup".into(), ip: Some(ip("10.1.9.21")), target_ip: None };
    world.vm("web01").nics.push(backup);
    let v = world.check(&sound_plan(), None);
    // The unmapped NIC is dropped, so nothing more is said of it.
    assert_finding(
        only(&v),
        (Warning, 4, Some("R8")),
        "web01 has 2 NICs; size standard-1 allows 1: the replica gets 1 (R8)",
    );
    assert!(!v.has_errors());
}

#[test]
fn r8_all_nics_of_a_replica_join_the_first_nics_network() {
    let mut world = World::new();
    let backup = Nic { network: "backup".into(), subnet: "backup".into(), ip: Some(ip("10.1.9.22")), target_ip: None };
    world.vm("sql02").nics.push(backup);
    let v = world.check(&sound_plan(), None);
    assert_finding(
        only(&v),
        (Warning, 3, Some("R8")),
        "sql02's NIC 2 on network backup has no network mapping to secondary, but a replica's NICs all join one network: it joins prod-dr with NIC 1 (R8)",
    );
}

#[test]
fn r9_two_vms_with_the_same_target_ip_conflict() {
    let mut world = World::new();
    world.vm("web02").nics[0].target_ip = Some(ip("10.2.3.21"));
    let plan = plan(vec![group("web", 3, vec![vm("web01", 3), vm("web02", 4)])]);
    let v = world.check(&plan, None);
    let f = only(&v);
    assert_finding(
        f,
        (Error, 4, Some("R9")),
        "web02's NIC 1 target IP 10.2.3.21 is also the target IP of web01's NIC 1 in prod-dr: its failover would fail (R9)",
    );
    assert_eq!(f.subject, "web02");
    // In a drill, 10.2.3.21 lies outside test-bubble's web subnet: both get one by DHCP.
    let v = world.check(&plan, Some(FailoverKind::Test));
    assert_eq!(only(&v).severity, Warning);
}

#[test]
fn r9_target_ip_outside_the_subnet_it_joins_or_reserved_there_is_an_error() {
    let mut world = World::new();
    world.vm("sql01").nics[0].target_ip = Some(ip("10.2.3.10"));
    world.vm("sql02").nics[0].target_ip = Some(ip("10.2.1.5"));
    let v = world.check(&sound_plan(), Some(FailoverKind::Planned));
    assert_eq!(v.findings.len(), 2, "{:#?}", rendered(&v));
    assert_finding(
        &v.findings[0],
        (Error, 3, Some("R9")),
        "sql01's NIC 1 target IP 10.2.3.10 is outside subnet db (10.2.1.0/24) of prod-dr, the subnet it joins",
    );
    assert_finding(
        &v.findings[1],
        (Error, 3, Some("R9")),
        "sql02's NIC 1 target IP 10.2.1.5 is reserved in subnet db (10.2.1.0/24) of prod-dr",
    );
}

#[test]
fn r9_a_test_failover_checks_target_ips_that_lie_in_the_test_subnet() {
    let mut world = World::new();
    let bubble = world.site("secondary").networks.iter_mut().find(|n| n.name == "test-bubble").unwrap();
    bubble.subnets[0].reserved.push(ip("10.2.1.10"));
    let v = world.check(&sound_plan(), Some(FailoverKind::Test));
    assert_finding(
        only(&v),
        (Error, 3, Some("R9")),
        "sql01's NIC 1 target IP 10.2.1.10 is reserved in subnet db (10.2.1.0/24) of test-bubble for a machine drplan does not manage: its test failover would fail (R9)",
    );
    assert_eq!(only(&world.check(&sound_plan(), None)).severity, Error);
    assert_eq!(only(&world.check(&sound_plan(), Some(FailoverKind::Planned))).severity, Warning);
}

#[test]
fn r7_replica_name_breaking_the_target_rules_is_an_error() {
    let mut world = World::new();
    world.site("secondary").kind = SiteKind::Cloud;
    world.vm("web02").replica_name = Some("web_02".into());
    let v = world.check(&sound_plan(), None);
    assert_finding(
        only(&v),
        (Error, 4, Some("R7")),
        "web02: replica name \"web_02\" contains '_'; the cloud target allows letters, digits and hyphens (R7)",
    );
}

#[test]
fn r31_planned_failover_to_the_cloud_from_vmware_is_refused() {
    let mut world = World::new();
    world.site("secondary").kind = SiteKind::Cloud;
    world.site("primary").platform = Platform::Vmware;
    let f = only(&world.check(&sound_plan(), Some(FailoverKind::Planned))).clone();
    assert_finding(&f, (Error, 1, Some("R31")), "planned failover from primary (vmware) to the cloud is not offered");
    assert_eq!(only(&world.check(&sound_plan(), None)).severity, Warning);
    assert!(world.check(&sound_plan(), Some(FailoverKind::Unplanned)).findings.is_empty());
}

#[test]
fn r30_missing_test_network_is_an_error() {
    let mut plan = sound_plan();
    plan.test_network = Some("bubbel".into());
    let world = World::new();
    let v = world.check(&plan, Some(FailoverKind::Test));
    assert_finding(
        only(&v),
        (Error, 1, Some("R30")),
        "test network bubbel does not exist on secondary (its networks: prod-dr, test-bubble)",
    );
    // A real failover does not use it.
    assert_eq!(only(&world.check(&plan, Some(FailoverKind::Unplanned))).severity, Warning);
}

#[test]
fn r30_test_network_not_isolated_is_a_warning() {
    let mut plan = sound_plan();
    plan.test_network = Some("prod-dr".into());
    let v = World::new().check(&plan, None);
    assert_finding(only(&v), (Warning, 1, Some("R30")), "test network prod-dr on secondary is not isolated");
}

#[test]
fn r30_test_failover_without_test_network_is_a_warning() {
    let mut plan = sound_plan();
    plan.test_network = None;
    let world = World::new();
    let v = world.check(&plan, Some(FailoverKind::Test));
    assert_finding(only(&v), (Warning, 1, Some("R30")), "test replicas will not be connected to any network");
    assert!(world.check(&plan, None).findings.is_empty());
}

#[test]
fn r20_source_and_target_must_be_paired() {
    let world = World::new();
    let mut reversed = sound_plan();
    (reversed.source, reversed.target) = ("secondary".into(), "primary".into());
    let v = world.check(&reversed, None);
    // One mistake, one finding: the VMs are not held to a source that is not paired.
    assert_finding(
        only(&v),
        (Error, 1, Some("R20")),
        "site secondary does not replicate to primary, so no VM is protected from one to the other (pairings: primary -> secondary); swap the plan's source and target",
    );

    let mut typo = sound_plan();
    typo.source = "primry".into();
    let v = world.check(&typo, None);
    // Not held to a source that does not exist: one finding, not one per VM.
    assert_finding(
        only(&v),
        (Error, 1, Some("R20")),
        "unknown source site primry (did you mean primary?) (sites: primary, secondary)",
    );
}

#[test]
fn r21_manual_step_with_a_zero_timeout_is_an_error() {
    let manual = |line, timeout| {
        Step::Manual(Manual {
            text: "Confirm the listener".into(),
            timeout,
            estimate: Duration::from_secs(60),
            at: at(line),
        })
    };
    let mut plan = sound_plan();
    plan.pre.push(manual(2, Duration::ZERO));
    plan.groups[0].post.push(manual(5, Duration::from_secs(1800)));
    let f = only(&World::new().check(&plan, None)).clone();
    assert_finding(&f, (Error, 2, Some("R21")), "manual step \"Confirm the listener\" has a zero timeout");
}

#[test]
fn group_names_are_unique_and_optional_vms_belong_to_their_group() {
    let mut plan = sound_plan();
    plan.groups[1].name = "db".into();
    plan.groups[1].optional = vec!["web02".into(), "web09".into()];
    let v = World::new().check(&plan, None);
    assert_eq!(v.findings.len(), 2, "{:#?}", rendered(&v));
    assert_finding(&v.findings[0], (Error, 4, None), "group db is defined twice (first at plan.rhai:3:5)");
    assert_finding(&v.findings[1], (Error, 4, None), "web09 is marked optional in group db but is not one of its VMs");
}

#[test]
fn findings_are_sorted_by_position_then_message_and_deterministic() {
    let mut world = World::new();
    for name in ["web02", "web01"] {
        *world.state(name) = ProtectionState::unprotected();
    }
    let plan = plan(vec![
        group("late", 9, vec![vm("nobody", 9)]),
        group("web", 3, vec![tag("tier", "web", 3)]),
        group("backup", 6, vec![vm("backup01", 6)]),
    ]);
    let first = world.check(&plan, None);
    let lines: Vec<usize> = first.findings.iter().map(|f| f.at.line).collect();
    assert_eq!(lines, [3, 3, 6, 9, 9], "{:#?}", rendered(&first));
    assert!(first.findings[0].message.contains("web01") && first.findings[1].message.contains("web02"));
    assert_eq!(rendered(&world.check(&plan, None)), rendered(&first));
}

#[test]
fn a_finding_renders_as_severity_file_line_column_message() {
    let v = World::new().check(&plan(vec![group("db", 2, vec![vm("sql99", 3)])]), None);
    assert_eq!(rendered(&v)[1], "error: plan.rhai:3:5: unknown VM sql99 (did you mean sql01?)");
    // With the plan's text: the line, and a caret under the token at the column.
    let text = "let plan = recovery_plan(\"contoso\", #{});\nplan\n    .group(\"db\", [\"sql99\"]);\n";
    let source = Source::new(text);
    let mut finding = v.findings[1].clone();
    finding.at.column = 19;
    assert_eq!(
        finding.render(Some(&source)),
        "error: plan.rhai:3:19: unknown VM sql99 (did you mean sql01?)\n  |\n3 |     .group(\"db\", [\"sql99\"]);\n  |                   ^^^^^^^"
    );
    let json = serde_json::to_value(&v.findings[1]).unwrap();
    assert_eq!(json["severity"], "error");
    assert_eq!(json["at"], "plan.rhai:3:5");
    assert!(v.has_errors());
}

/// A plan of the SQL cluster with `edit` applied, checked for a planned failover.
fn written(edit: impl FnOnce(&mut Plan)) -> Validation {
    let mut plan = plan(vec![group("db", 3, vec![member(Selector::ReplicationGroup("sql-cluster".into()), 3)])]);
    edit(&mut plan);
    World::new().check(&plan, Some(FailoverKind::Planned))
}

fn pos(line: usize, column: usize) -> SourcePos {
    SourcePos::new("plan.rhai", line, column)
}

#[test]
fn r50_dns_names_the_folders_dns_servers_do_not_serve_are_errors() {
    let zones = DnsSetting::Served(vec!["example.org".to_string(), "contoso.test".to_string()]);
    // In record mode nothing is sent: nothing to hold the names to.
    let v = written(|plan| {
        plan.update_dns = true;
        plan.written.dns = DnsSetting::Recorded;
    });
    assert!(v.findings.is_empty(), "{:#?}", rendered(&v));
    // Without [dns], a real run is refused: the check warns once, where the plan updates.
    let v = written(|plan| plan.update_dns = true);
    assert_finding(
        only(&v),
        (Warning, 3, Some("R50")),
        "the plan changes DNS (plan.update_dns()) but the folder's drplan.toml has no [dns] section: real runs \
         are refused until it names each zone's server, or sets mode = \"record\"",
    );
    // The VMs' names, from the site file (sql01 has two, sql02 none): served, then not.
    let v = written(|plan| {
        plan.update_dns = true;
        plan.written.dns = DnsSetting::Served(vec!["contoso.test".into()]);
    });
    assert!(v.findings.is_empty(), "{:#?}", rendered(&v));
    let v = written(|plan| {
        plan.update_dns = true;
        plan.written.dns = DnsSetting::Served(vec!["example.org".into()]);
    });
    assert_eq!(v.findings.len(), 2, "sql01's two names: {:#?}", rendered(&v));
    assert_finding(
        &v.findings[1],
        (Error, 3, Some("R50")),
        "sql01's DNS name sql01.contoso.test (from the site file) cannot be updated: no [[dns.servers]] of \
         drplan.toml serves its zone (zones: example.org), so plan.update_dns() would fail",
    );
    // Those of a VM an action points at its replica.
    let v = written(|plan| {
        plan.written.dns = DnsSetting::Served(vec!["example.org".into()]);
        let what = "dns::point_vm(vm)".into();
        let usage = AddressUse { vms: UsedVms::Named("sql01".into()), what, at: pos(9, 4), updates_dns: true };
        plan.written.address_uses.push(usage);
    });
    assert_eq!(v.findings.len(), 2, "{:#?}", rendered(&v));
    assert_finding(&v.findings[0], (Error, 3, Some("R50")), "so dns::point_vm(vm) at plan.rhai:9:4 would fail");
    // Names written as literals, at the literal.
    let v = written(|plan| {
        plan.written.dns = zones.clone();
        for (name, line) in [("www.contoso.test", 7), ("WWW.Example.Org.", 8), ("www.contoso.org", 9)] {
            plan.written.dns_names.push(WrittenName {
                call: "dns::point".into(),
                name: name.into(),
                at: pos(line, 12),
            });
        }
    });
    assert_finding(
        only(&v),
        (Error, 9, Some("R50")),
        "DNS name www.contoso.org cannot be updated: no [[dns.servers]] of drplan.toml serves its zone \
         (zones: example.org, contoso.test), so dns::point would fail",
    );
}

#[test]
fn waits_longer_than_the_rto_or_a_day_are_warnings_at_the_duration() {
    let wait = |call: &str, duration: &str, line| WrittenWait {
        call: call.into(),
        duration: duration.into(),
        at: pos(line, 10),
    };
    let v = written(|plan| {
        plan.written.waits = vec![wait("wait", "1000d", 5), wait("wait", "23h", 6), wait("wait_port", "2d", 7)];
    });
    assert_eq!(v.findings.len(), 2, "{:#?}", rendered(&v));
    assert_finding(
        &v.findings[0],
        (Warning, 5, None),
        "wait(\"1000d\") holds the run for 1000d, longer than 1d, the bound of a plan that sets no rto",
    );
    assert_finding(
        &v.findings[1],
        (Warning, 7, None),
        "wait_port with a timeout of \"2d\" may hold the run for up to 2d",
    );
    let v = written(|plan| {
        plan.rto = Some(Duration::from_secs(1800));
        plan.written.waits = vec![wait("wait", "31m", 5), wait("wait", "30m", 6)];
    });
    assert_finding(only(&v), (Warning, 5, None), "holds the run for 31m, longer than the plan's RTO target of 30m");
    // A duration that does not parse fails the action: an error now.
    let v = written(|plan| plan.written.waits = vec![wait("wait", "1000000000d", 5)]);
    assert_finding(only(&v), (Error, 5, None), "wait: bad duration \"1000000000d\": longer than 3650d (10 years)");
}

#[test]
fn retries_whose_doubling_backoffs_add_up_past_the_rto_are_warnings_at_the_retry() {
    let v = written(|plan| {
        plan.rto = Some(Duration::from_secs(3600));
        plan.groups[0].policy =
            Some(FailurePolicy { retries: 4, backoff: Duration::from_secs(300), ..FailurePolicy::default() });
        plan.written.retries = vec![(Some(0), pos(4, 6))];
        // The plan's own retries: 3 x 10s, doubling: 70s.
        plan.policy = FailurePolicy { retries: 3, backoff: Duration::from_secs(10), ..FailurePolicy::default() };
        plan.written.retries.push((None, pos(8, 6)));
    });
    assert_finding(
        only(&v),
        (Warning, 4, None),
        "retry(4, \"5m\") waits 1h15m in all between attempts (5m first, doubling each time), longer than the \
         plan's RTO target of 1h",
    );
    // Without rto, a day; a hundred doublings do not overflow.
    let v = written(|plan| {
        plan.policy = FailurePolicy { retries: 100, backoff: MAX_DURATION, ..FailurePolicy::default() };
        plan.written.retries = vec![(None, pos(8, 6))];
    });
    assert_finding(only(&v), (Warning, 8, None), "longer than 1d, the bound of a plan that sets no rto");
}

#[test]
fn mistakes_of_the_calls_that_built_the_plan_are_errors_with_the_rest() {
    let v = written(|plan| {
        plan.groups[0].members.push(vm("sql99", 4));
        let mistake =
            |line, message: &str| Mistake { at: pos(line, 6), subject: "retry".into(), message: message.into() };
        plan.written.mistakes =
            vec![mistake(5, "retry: bad duration \"1x\""), mistake(2, "recovery_plan: unknown option \"rpo\"")];
    });
    let lines: Vec<(usize, Severity)> = v.findings.iter().map(|f| (f.at.line, f.severity)).collect();
    assert_eq!(lines, [(2, Error), (4, Error), (5, Error)], "{:#?}", rendered(&v));
}
