//! Static validation of a plan against an inventory (DESIGN.md, "The shape of a run",
//! step 2): everything a plan can be found wrong with before anything moves. Used by
//! `drplan check`, and by dry runs and real runs, which refuse to start on an error.
//!
//! Each check is a small function that reports at the script position of what causes
//! it, so the operator is pointed at file:line:column: a finding about a VM at what
//! named it (its name's literal, or the selector), one about a group at the group, one
//! about a step or a call at the call. Whether a problem is an error depends on the
//! failover about to run: one that only the other kind would hit (an unmapped production
//! network during a drill, a broken test network during a real failover) is a warning; a
//! plain check (`kind` = `None`) holds the plan to both.
//!
//! Besides the plan's data, checks read what its files show (`Plan::written`): the
//! literal arguments of calls inside actions (waits, DNS names, uses of a replica's
//! address), the zones of the folder's DNS servers, and the mistakes the script made in
//! calls that built the plan, which are reported here with the rest, all at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use super::{DnsSetting, Group, Member, Plan, Selector, SourcePos, Step, UsedVms};
use crate::fabric::dns::in_zone;
use crate::model::names::{did_you_mean, list};
use crate::model::network::mapped_network;
pub use crate::model::snippet::Severity;
use crate::model::snippet::{Diagnostic, Source};
use crate::model::vm::{check_replica_name, replica_nic_count};
use crate::model::{
    FailoverKind, HumanDuration, Inventory, MAX_DURATION, Network, Nic, Operation, Phase, Platform, ProtectionState,
    Side, Site, SiteKind, Subnet, Vm, parse_duration,
};

/// What a wait or the retries of a plan with no `rto` are held to: longer than this, a
/// run would sit still for an unreasonable time.
pub const LONGEST_REASONABLE_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A group of the plan with its selectors expanded to VM names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResolvedGroup {
    pub name: String,
    /// In member order, a selector expanding in inventory order; each VM once per plan.
    pub vms: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResolvedPlan {
    /// In plan order (R20).
    pub groups: Vec<ResolvedGroup>,
}

/// One problem with a plan, where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub at: SourcePos,
    /// What the finding is about, as the operator names it: a VM, group, site, network
    /// or manual step, e.g. "sql99".
    pub subject: String,
    /// The DOMAIN.md rule at stake, e.g. "R9": rendered after the message, which does
    /// not repeat it.
    pub rule: Option<&'static str>,
    pub message: String,
}

impl Finding {
    /// The finding as the operator reads it, with the line of `source` it points at
    /// (`source` is the text of `at.file`, when it could be read) and the rule appended:
    /// `error: plan.rhai:3:5: unknown VM sql99 (R20)`, then the line and a caret.
    pub fn render(&self, source: Option<&Source>) -> String {
        let message = match self.rule {
            Some(rule) => format!("{} ({rule})", self.message),
            None => self.message.clone(),
        };
        let snippet = source.and_then(|source| source.snippet_at(self.at.line, self.at.column));
        Diagnostic { severity: self.severity, at: self.at.location(), message: &message, snippet: snippet.as_ref() }
            .to_string()
    }
}

/// The first line of `render`: without the source line.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub resolved: ResolvedPlan,
    /// Sorted by position (file, line, column), then message.
    pub findings: Vec<Finding>,
}

impl Validation {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Checks `plan` against `inventory` for a failover of `kind` (`None`: a plain check).
/// `protection` is each VM's protection state now; a VM missing from it is unprotected.
pub fn validate(
    plan: &Plan,
    inventory: &Inventory,
    protection: &BTreeMap<String, ProtectionState>,
    kind: Option<FailoverKind>,
) -> Validation {
    let mut v = Validator::new(plan, inventory, kind);
    v.sites();
    v.planned_to_cloud();
    v.test_network();
    v.group_names();
    v.manual_steps();
    let (resolved, placed) = v.resolve();
    let unprotected = ProtectionState::unprotected();
    for p in &placed {
        v.protection(p, protection.get(&p.vm.name).unwrap_or(&unprotected));
        v.replica_name(p);
        v.nic_limit(p);
        v.nic_networks(p);
    }
    v.target_addresses(&placed);
    v.replication_groups(&placed);
    v.dns_zones(&placed);
    v.long_waits();
    v.retries();
    v.mistakes();
    let mut findings = v.findings;
    findings.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message.cmp(&b.message)));
    Validation { resolved, findings }
}

/// Which replicas a finding concerns: a real failover's or a drill's (R30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Replicas {
    Production,
    Test,
}

impl Replicas {
    fn failover(self) -> &'static str {
        match self {
            Replicas::Production => "failover",
            Replicas::Test => "test failover",
        }
    }
}

/// A VM of the plan and the member that brought it in.
struct Placed<'a> {
    vm: &'a Vm,
    at: &'a SourcePos,
    group: &'a str,
    /// The index of `group` in the plan.
    group_index: usize,
}

/// A static target IP a replica NIC asks for in the network it joins (R9).
struct Claim<'a> {
    replicas: Replicas,
    network: &'a Network,
    subnet: &'a Subnet,
    /// 1-based, as operators count NICs.
    nic: usize,
    ip: Ipv4Addr,
}

struct Validator<'a> {
    plan: &'a Plan,
    inventory: &'a Inventory,
    kind: Option<FailoverKind>,
    vms: HashMap<&'a str, &'a Vm>,
    /// Only a sound pairing holds VMs to the source site, so that one mistake in the
    /// plan's sites does not bury the report under a "not on the source site" per VM.
    hold_to_source: bool,
    /// The target site when the plan's pairing is sound; checks that need it skip
    /// otherwise (the pairing is reported once).
    target: Option<&'a Site>,
    findings: Vec<Finding>,
}

impl<'a> Validator<'a> {
    fn new(plan: &'a Plan, inventory: &'a Inventory, kind: Option<FailoverKind>) -> Self {
        let paired = inventory.pairings.iter().any(|p| p.source == plan.source && p.target == plan.target);
        Validator {
            plan,
            inventory,
            kind,
            vms: inventory.vms.iter().map(|vm| (vm.name.as_str(), vm)).collect(),
            hold_to_source: paired,
            target: inventory.site(&plan.target).filter(|_| paired),
            findings: Vec::new(),
        }
    }

    fn report(
        &mut self,
        severity: Severity,
        at: &SourcePos,
        subject: &str,
        rule: Option<&'static str>,
        message: String,
    ) {
        self.findings.push(Finding { severity, at: at.clone(), subject: subject.into(), rule, message });
    }

    fn error(&mut self, at: &SourcePos, subject: &str, rule: Option<&'static str>, message: String) {
        self.report(Severity::Error, at, subject, rule, message);
    }

    fn warn(&mut self, at: &SourcePos, subject: &str, rule: Option<&'static str>, message: String) {
        self.report(Severity::Warning, at, subject, rule, message);
    }

    /// An error when the run about to start would hit it, else a warning.
    fn severity(&self, replicas: Replicas) -> Severity {
        match self.kind {
            Some(kind) if (kind == FailoverKind::Test) != (replicas == Replicas::Test) => Severity::Warning,
            _ => Severity::Error,
        }
    }

    // ------------------------------------------------------------------ the plan

    /// R20: the plan's sites exist and form a protection pairing, source to target.
    fn sites(&mut self) {
        let (plan, inventory) = (self.plan, self.inventory);
        let site_names = || inventory.sites.iter().map(|s| s.name.as_str());
        for (role, name) in [("source", &plan.source), ("target", &plan.target)] {
            if inventory.site(name).is_none() {
                let hint = did_you_mean(name, site_names());
                let message = format!("unknown {role} site {name}{hint} (sites: {})", list(site_names()));
                self.error(&plan.at, name, Some("R20"), message);
            }
        }
        if inventory.site(&plan.source).is_some() && inventory.site(&plan.target).is_some() && self.target.is_none() {
            let pairings = list(inventory.pairings.iter().map(|p| format!("{} -> {}", p.source, p.target)));
            let reversed = inventory.pairings.iter().any(|p| p.source == plan.target && p.target == plan.source);
            let hint = if reversed { "; swap the plan's source and target" } else { "" };
            let message = format!(
                "site {} does not replicate to {}, so no VM is protected from one to the other (pairings: {pairings}){hint}",
                plan.source, plan.target
            );
            self.error(&plan.at, &plan.target, Some("R20"), message);
        }
    }

    /// R31: planned failover to the cloud is not offered for VMware and physical sources.
    fn planned_to_cloud(&mut self) {
        let plan = self.plan;
        let (Some(target), Some(source)) = (self.target, self.inventory.site(&plan.source)) else { return };
        if target.kind != SiteKind::Cloud || source.platform == Platform::HyperV {
            return;
        }
        // A plain check cannot know the kind; the plan may still run unplanned.
        let severity = match self.kind {
            Some(FailoverKind::Planned) => Severity::Error,
            None => Severity::Warning,
            Some(_) => return,
        };
        let platform = format!("{:?}", source.platform).to_lowercase();
        let message = format!(
            "planned failover from {} ({platform}) to the cloud is not offered: run an unplanned failover instead",
            source.name
        );
        self.report(severity, &plan.at, &source.name, Some("R31"), message);
    }

    /// R30: the test network exists on the target site and is isolated; a drill without
    /// one leaves its replicas unconnected.
    fn test_network(&mut self) {
        let plan = self.plan;
        let Some(target) = self.target else { return };
        let Some(name) = &plan.test_network else {
            if self.kind == Some(FailoverKind::Test) {
                let message = "the plan names no test network: test replicas will not be connected to any network";
                self.warn(&plan.at, &plan.name, Some("R30"), message.into());
            }
            return;
        };
        match target.network(name) {
            None => {
                let networks = list(target.networks.iter().map(|n| n.name.as_str()));
                let message =
                    format!("test network {name} does not exist on {} (its networks: {networks})", target.name);
                self.report(self.severity(Replicas::Test), &plan.at, name, Some("R30"), message);
            }
            Some(network) if !network.isolated => {
                let message = format!(
                    "test network {name} on {} is not isolated: test replicas would share it with production",
                    target.name
                );
                self.warn(&plan.at, name, Some("R30"), message);
            }
            Some(_) => {}
        }
    }

    /// Events, hooks and reports name groups, so two groups cannot share a name.
    fn group_names(&mut self) {
        let plan = self.plan;
        let mut first: HashMap<&str, &SourcePos> = HashMap::new();
        for group in &plan.groups {
            match first.get(group.name.as_str()) {
                Some(at) => {
                    let message =
                        format!("group {} is defined twice (first at {at}); give each its own name", group.name);
                    self.error(&group.at, &group.name, None, message);
                }
                None => {
                    first.insert(&group.name, &group.at);
                }
            }
        }
    }

    /// R21: a manual step with no time to wait fails before anyone can act on it.
    fn manual_steps(&mut self) {
        let plan = self.plan;
        let around_groups = plan.groups.iter().flat_map(|g| g.pre.iter().chain(&g.post));
        for step in plan.pre.iter().chain(&plan.post).chain(around_groups) {
            if let Step::Manual(manual) = step
                && manual.timeout.is_zero()
            {
                let message = format!(
                    "manual step {:?} has a zero timeout: it would fail before an operator could act; give it one, e.g. 30m",
                    manual.text
                );
                self.error(&manual.at, &manual.text, Some("R21"), message);
            }
        }
    }

    // ---------------------------------------------------------------- membership

    /// R20: expands every group's members into VMs, each VM once in the plan.
    fn resolve(&mut self) -> (ResolvedPlan, Vec<Placed<'a>>) {
        let plan = self.plan;
        if plan.groups.is_empty() {
            let message = format!("plan {} has no groups: it would fail nothing over", plan.name);
            self.error(&plan.at, &plan.name, Some("R20"), message);
        }
        let mut placed: Vec<Placed<'a>> = Vec::new();
        let mut index: HashMap<&'a str, usize> = HashMap::new();
        let mut groups = Vec::with_capacity(plan.groups.len());
        for (group_index, group) in plan.groups.iter().enumerate() {
            let mut vms = Vec::new();
            for member in &group.members {
                for vm in self.expand(member) {
                    if let Some(&first) = index.get(vm.name.as_str()) {
                        self.duplicate(vm, member, &placed[first]);
                        continue;
                    }
                    index.insert(&vm.name, placed.len());
                    placed.push(Placed { vm, at: &member.at, group: &group.name, group_index });
                    vms.push(vm.name.clone());
                }
            }
            self.empty_group(group, &vms);
            self.optional_vms(group, &vms);
            groups.push(ResolvedGroup { name: group.name.clone(), vms });
        }
        (ResolvedPlan { groups }, placed)
    }

    /// The VMs a member names; reports a name that resolves to nothing.
    fn expand(&mut self, member: &Member) -> Vec<&'a Vm> {
        match &member.selector {
            Selector::Vm(name) => self.vm_named(name, &member.at).into_iter().collect(),
            Selector::Tag { key, value } => self.tagged(key, value, &member.at),
            Selector::ReplicationGroup(name) => self.replication_group(name, &member.at),
        }
    }

    fn vm_named(&mut self, name: &str, at: &SourcePos) -> Option<&'a Vm> {
        let Some(&vm) = self.vms.get(name) else {
            let hint = did_you_mean(name, self.inventory.vms.iter().map(|v| v.name.as_str()));
            self.error(at, name, None, format!("unknown VM {name}{hint}"));
            return None;
        };
        self.on_source(vm, at).then_some(vm)
    }

    /// Every VM of the source site with the tag, in inventory order.
    fn tagged(&mut self, key: &str, value: &str, at: &SourcePos) -> Vec<&'a Vm> {
        let vms: Vec<&Vm> = self.inventory.tagged(key, value).filter(|vm| self.runs_on_source(vm)).collect();
        if vms.is_empty() {
            let message = format!(
                "no VM of site {} is tagged {key}={value}: this selector adds no VM to its group",
                self.plan.source
            );
            self.error(at, &format!("{key}={value}"), None, message);
        }
        vms
    }

    /// R12: the members of a replication group, in inventory order.
    fn replication_group(&mut self, name: &str, at: &SourcePos) -> Vec<&'a Vm> {
        let inventory = self.inventory;
        let Some(group) = inventory.replication_groups.iter().find(|g| g.name == name) else {
            let names = || inventory.replication_groups.iter().map(|g| g.name.as_str());
            let message = format!(
                "unknown replication group {name}{} (replication groups: {})",
                did_you_mean(name, names()),
                list(names())
            );
            self.error(at, name, Some("R12"), message);
            return Vec::new();
        };
        inventory.vms.iter().filter(|vm| group.vms.contains(&vm.name)).filter(|vm| self.on_source(vm, at)).collect()
    }

    fn runs_on_source(&self, vm: &Vm) -> bool {
        !self.hold_to_source || vm.site == self.plan.source
    }

    /// R20: a plan fails over VMs of its source site only.
    fn on_source(&mut self, vm: &Vm, at: &SourcePos) -> bool {
        let on_source = self.runs_on_source(vm);
        if !on_source {
            let message =
                format!("{} runs on site {}, not on {}, the plan's source site", vm.name, vm.site, self.plan.source);
            self.error(at, &vm.name, Some("R20"), message);
        }
        on_source
    }

    /// R20: a VM fails over once per plan; its second mention is the mistake.
    fn duplicate(&mut self, vm: &Vm, member: &Member, first: &Placed) {
        let message = format!(
            "{} is already in group {} (at {}); a VM can be in only one group of a plan",
            vm.name, first.group, first.at
        );
        self.error(&member.at, &vm.name, Some("R20"), message);
    }

    fn empty_group(&mut self, group: &Group, vms: &[String]) {
        if !vms.is_empty() {
            return;
        }
        let why = if group.members.is_empty() { "it has no members" } else { "its members resolve to no VM" };
        self.error(&group.at, &group.name, Some("R20"), format!("group {} is empty: {why}", group.name));
    }

    /// A VM marked optional must be one of the group's, or the marking does nothing.
    fn optional_vms(&mut self, group: &Group, vms: &[String]) {
        for name in group.optional.iter().filter(|name| !vms.contains(name)) {
            let message = format!("{name} is marked optional in group {} but is not one of its VMs", group.name);
            self.error(&group.at, name, None, message);
        }
    }

    /// R12: a replication group fails over to one common point, so a plan should take
    /// all of it, into one of its groups.
    fn replication_groups(&mut self, placed: &[Placed]) {
        let in_plan: HashMap<&str, usize> = placed.iter().enumerate().map(|(i, p)| (p.vm.name.as_str(), i)).collect();
        for group in &self.inventory.replication_groups {
            // In plan order: the first member placed fails over first.
            let mut order: Vec<usize> = group.vms.iter().filter_map(|vm| in_plan.get(vm.as_str()).copied()).collect();
            order.sort_unstable();
            let members: Vec<&Placed> = order.into_iter().map(|i| &placed[i]).collect();
            let Some(&first) = members.first() else { continue };
            let missing: Vec<&str> =
                group.vms.iter().map(String::as_str).filter(|vm| !in_plan.contains_key(vm)).collect();
            if !missing.is_empty() {
                let message = format!(
                    "replication group {} fails over to one common recovery point, but the plan leaves out {}",
                    group.name,
                    list(missing.into_iter())
                );
                self.warn(first.at, &group.name, Some("R12"), message);
            }
            let mut reported = BTreeSet::new();
            for later in members.iter().filter(|p| p.group_index != first.group_index) {
                if reported.insert(later.group_index) {
                    self.split_replication_group(&group.name, first, later);
                }
            }
        }
    }

    /// R12: members of one replication group in two groups of the plan fail over at
    /// different times. A planned failover shuts each member down and syncs it when its
    /// turn comes, so they would not share a recovery point: an error. The other kinds
    /// choose the later member's point as of when the first began, so they share one, but
    /// the first runs on the target while the later one still waits: a warning.
    fn split_replication_group(&mut self, name: &str, first: &Placed, later: &Placed) {
        let (target, vm, first_vm) = (&self.plan.target, &later.vm.name, &first.vm.name);
        let planned = matches!(self.kind, None | Some(FailoverKind::Planned));
        let consequence = if planned {
            format!(
                "a planned failover shuts each member down and syncs it when its group's turn comes, so {vm} \
                 and {first_vm} would not share a common recovery point"
            )
        } else {
            format!(
                "{vm} fails over to the point chosen when {first_vm} began, but later: until then {first_vm} runs on {target} without it"
            )
        };
        let message = format!(
            "replication group {name} is split across plan groups {} ({first_vm}) and {} ({vm}): {consequence}; \
             put all of it in one group: replication_group({name:?})",
            first.group, later.group
        );
        let severity = if planned { Severity::Error } else { Severity::Warning };
        self.report(severity, later.at, name, Some("R12"), message);
    }

    // -------------------------------------------------------------- per VM

    /// R5, R20: the VM is protected from the source to the target, in a state that
    /// allows the failover about to run (a planned one for a plain check).
    fn protection(&mut self, p: &Placed, state: &ProtectionState) {
        let vm = &p.vm.name;
        let operation = self.kind.map_or(Operation::PlannedFailover, Operation::for_failover);
        let what = match self.kind {
            None => format!("fail over {vm}"),
            Some(kind) => format!("start the {kind} failover of {vm}"),
        };
        let message = match state.check(vm, operation) {
            Err(refusal) => {
                let (why, hint) = match state.phase {
                    Phase::Unprotected => {
                        let policies = list(self.inventory.policies.iter().map(|policy| policy.name.as_str()));
                        (
                            String::new(),
                            format!("Protect it first: drplan protect {vm} --policy NAME (policies: {policies})."),
                        )
                    }
                    Phase::InitialReplication { .. } => {
                        ("; failover waits for it".into(), "Run the plan once the copy is done.".into())
                    }
                    _ => (refusal.why, refusal.hint),
                };
                format!("cannot {what}: it is {}{why}. {hint}", refusal.state)
            }
            // Replicating back from the target: not protected from source to target.
            Ok(()) if state.active == Side::Recovery => format!(
                "cannot {what} from {}: it runs on {} already; fail it back first",
                self.plan.source, self.plan.target
            ),
            Ok(()) => return,
        };
        let rule = if matches!(state.phase, Phase::InitialReplication { .. }) { "R5" } else { "R20" };
        self.error(p.at, vm, Some(rule), message);
    }

    /// R7: the replica's name satisfies the target site's naming rules.
    fn replica_name(&mut self, p: &Placed) {
        let Some(target) = self.target else { return };
        if let Err(why) = check_replica_name(p.vm.replica_name(), p.vm.os, target.kind) {
            self.error(p.at, &p.vm.name, Some("R7"), format!("{}: {why}", p.vm.name));
        }
    }

    /// R8: the replica gets min(source NICs, what its size allows), first ones first.
    fn kept_nics<'v>(&self, vm: &'v Vm) -> &'v [Nic] {
        let size = vm.size.as_deref().and_then(|s| self.inventory.size(s));
        &vm.nics[..replica_nic_count(vm.nics.len(), size)]
    }

    /// R8: NICs beyond the target size's limit are dropped.
    fn nic_limit(&mut self, p: &Placed) {
        let (vm, kept) = (p.vm, self.kept_nics(p.vm).len());
        let Some(size) = vm.size.as_deref().filter(|_| kept < vm.nics.len()) else { return };
        let message =
            format!("{} has {} NICs; size {size} allows {kept}: the replica gets {kept}", vm.name, vm.nics.len());
        self.warn(p.at, &vm.name, Some("R8"), message);
    }

    /// R10: the target network a source NIC's network maps to.
    fn mapped(&self, vm: &Vm, nic: &Nic, target: &Site) -> Option<&'a str> {
        mapped_network(&self.inventory.network_mappings, &vm.site, &nic.network, &target.name)
    }

    /// R8, R10: a replica's NICs all join the network its first NIC's network maps to.
    fn production_network(&self, vm: &Vm) -> Option<&'a Network> {
        let target = self.target?;
        target.network(self.mapped(vm, vm.nics.first()?, target)?)
    }

    /// R10: a replica whose first NIC's network is unmapped is not connected at all.
    /// R8: its other NICs join that same network, whatever theirs maps to.
    fn nic_networks(&mut self, p: &Placed) {
        let (vm, Some(target)) = (p.vm, self.target) else { return };
        let Some((first, others)) = self.kept_nics(vm).split_first() else { return };
        let Some(joined) = self.mapped(vm, first, target) else {
            let unmapped =
                format!("{}'s NIC 1 on network {} has no network mapping to {}", vm.name, first.network, target.name);
            match self.address_need(p) {
                Some(need) => {
                    let message = format!("{unmapped}: its replica would not be connected to any network, but {need}");
                    self.report(self.severity(Replicas::Production), p.at, &vm.name, Some("R10"), message);
                }
                None => {
                    let message = format!(
                        "{unmapped}: its replica will fail over not connected to any network, with no address; \
                         map {} to a network of {} if it needs one",
                        first.network, target.name
                    );
                    self.warn(p.at, &vm.name, Some("R10"), message);
                }
            }
            return;
        };
        for (i, nic) in others.iter().enumerate() {
            let how = match self.mapped(vm, nic, target) {
                Some(network) if network == joined => continue,
                Some(network) => format!("maps to {network}"),
                None => format!("has no network mapping to {}", target.name),
            };
            let message = format!(
                "{}'s NIC {} on network {} {how}, but a replica's NICs all join one network: it joins {joined} with NIC 1",
                vm.name,
                i + 2,
                nic.network
            );
            self.warn(p.at, &vm.name, Some("R8"), message);
        }
    }

    /// Why the plan needs a replica's address, if it does: its DNS names, an action that
    /// uses it, or a static target IP the replica is to take (R10: a replica that is not
    /// connected has none).
    fn address_need(&self, p: &Placed) -> Option<String> {
        let (plan, vm) = (self.plan, p.vm);
        if plan.update_dns && !vm.dns.is_empty() {
            return Some(format!("plan.update_dns() points its DNS names ({}) at it", list(vm.dns.iter())));
        }
        if let Some(usage) = plan.written.address_uses.iter().find(|u| self.covers(&u.vms, p)) {
            return Some(format!("{} at {} needs its address", usage.what, usage.at));
        }
        let (i, ip) = self.kept_nics(vm).iter().enumerate().find_map(|(i, nic)| Some((i, nic.target_ip?)))?;
        Some(format!("its NIC {} is to take the static target IP {ip}", i + 1))
    }

    /// Whether the VMs an action uses include `p`.
    fn covers(&self, vms: &UsedVms, p: &Placed) -> bool {
        match vms {
            UsedVms::EachOfGroup(group) => *group == p.group_index,
            UsedVms::Named(name) => *name == p.vm.name,
        }
    }

    /// The static target IPs a VM's replica NICs ask for, in the production network and
    /// in the test network. A test replica keeps its target IP only where it lies in the
    /// test subnet, and takes one by DHCP otherwise (R9), so only those count there.
    fn claims(&self, vm: &'a Vm) -> Vec<Claim<'a>> {
        let test = self.plan.test_network.as_deref().and_then(|name| self.target?.network(name));
        let mut claims = Vec::new();
        for (replicas, network) in [(Replicas::Production, self.production_network(vm)), (Replicas::Test, test)] {
            let Some(network) = network else { continue };
            for (i, nic) in self.kept_nics(vm).iter().enumerate() {
                let (Some(ip), Some(subnet)) = (nic.target_ip, network.subnet_for(&nic.subnet)) else { continue };
                if replicas == Replicas::Production || subnet.cidr.contains(ip) {
                    claims.push(Claim { replicas, network, subnet, nic: i + 1, ip });
                }
            }
        }
        claims
    }

    /// R9: a static target IP must lie in the subnet its NIC joins, not be reserved
    /// there, and not be asked for twice by the plan; otherwise that VM's failover fails.
    fn target_addresses(&mut self, placed: &[Placed<'a>]) {
        let mut claimed: HashMap<(Replicas, &str, Ipv4Addr), (&str, usize)> = HashMap::new();
        for p in placed {
            for claim in self.claims(p.vm) {
                let Claim { replicas, network, subnet, nic, ip } = claim;
                let place = format!("subnet {} ({}) of {}", subnet.name, subnet.cidr, network.name);
                let problem = if !subnet.cidr.contains(ip) {
                    format!("is outside {place}, the subnet it joins")
                } else if subnet.reserved.contains(&ip) {
                    format!("is reserved in {place} for a machine drplan does not manage")
                } else if let Some((other, other_nic)) = claimed.get(&(replicas, network.name.as_str(), ip)) {
                    format!("is also the target IP of {other}'s NIC {other_nic} in {}", network.name)
                } else {
                    claimed.insert((replicas, &network.name, ip), (&p.vm.name, nic));
                    continue;
                };
                let message = format!(
                    "{}'s NIC {nic} target IP {ip} {problem}: its {} would fail",
                    p.vm.name,
                    replicas.failover()
                );
                self.report(self.severity(replicas), p.at, &p.vm.name, Some("R9"), message);
            }
        }
    }

    // -------------------------------------------------------- what the files show

    /// R50: every DNS name the plan updates lies in a zone one of the folder's `[dns]`
    /// servers serves; an update of any other fails. The names: each VM's (from the site
    /// file) when the plan updates them (`plan.update_dns()`, `dns::point_vm(vm)`), and
    /// those written as literals (`dns::point("www.contoso.test", ip)`). In record mode
    /// nothing is sent, so nothing is held to a zone; without `[dns]`, a real run that
    /// changes DNS is refused, which the check warns of once.
    fn dns_zones(&mut self, placed: &[Placed]) {
        let (plan, written) = (self.plan, &self.plan.written);
        // Which call updates each placed VM's names, if any does.
        let updates: Vec<Option<String>> = placed
            .iter()
            .map(|p| {
                if plan.update_dns {
                    Some("plan.update_dns()".to_string())
                } else {
                    written
                        .address_uses
                        .iter()
                        .find(|u| u.updates_dns && self.covers(&u.vms, p))
                        .map(|u| format!("{} at {}", u.what, u.at))
                }
            })
            .collect();
        let zones = match &written.dns {
            DnsSetting::Recorded => return,
            DnsSetting::Served(zones) => zones,
            DnsSetting::Missing => {
                let first_vm = placed.iter().zip(&updates).find_map(|(p, via)| via.clone().map(|via| (p.at, via)));
                let first_name = written.dns_names.first().map(|w| (&w.at, w.call.clone()));
                if let Some((at, via)) = first_vm.or(first_name) {
                    let message = format!(
                        "the plan changes DNS ({via}) but the folder's drplan.toml has no [dns] section: real runs \
                         are refused until it names each zone's server, or sets mode = \"record\""
                    );
                    self.report(Severity::Warning, at, "dns", Some("R50"), message);
                }
                return;
            }
        };
        let served = |name: &str| {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            zones.iter().any(|zone| in_zone(&name, zone))
        };
        let zones_named = if zones.is_empty() {
            "drplan.toml's [dns] names no server".to_string()
        } else {
            format!("no [[dns.servers]] of drplan.toml serves its zone (zones: {})", list(zones.iter()))
        };
        for (p, via) in placed.iter().zip(updates) {
            let Some(via) = via else { continue };
            for name in p.vm.dns.iter().filter(|name| !served(name)) {
                let message = format!(
                    "{}'s DNS name {name} (from the site file) cannot be updated: {zones_named}, so {via} would fail",
                    p.vm.name
                );
                self.error(p.at, &p.vm.name, Some("R50"), message);
            }
        }
        for written in written.dns_names.iter().filter(|w| !served(&w.name)) {
            let message =
                format!("DNS name {} cannot be updated: {zones_named}, so {} would fail", written.name, written.call);
            self.error(&written.at, &written.name, Some("R50"), message);
        }
    }

    /// What a wait is held to: the plan's RTO target, or a day.
    fn wait_bound(&self) -> (Duration, String) {
        match self.plan.rto {
            Some(rto) => (rto, format!("the plan's RTO target of {}", HumanDuration(rto))),
            None => (
                LONGEST_REASONABLE_WAIT,
                format!("{}, the bound of a plan that sets no rto", HumanDuration(LONGEST_REASONABLE_WAIT)),
            ),
        }
    }

    /// A wait written in an action that would block the run for longer than the plan can
    /// afford; a duration that does not parse fails the action, so it is an error now.
    fn long_waits(&mut self) {
        let (bound, bound_named) = self.wait_bound();
        for wait in &self.plan.written.waits {
            let written = &wait.duration;
            match parse_duration(written) {
                Err(e) => self.error(&wait.at, &wait.call, None, format!("{}: {e}", wait.call)),
                Ok(duration) if duration > bound => {
                    let (call, duration) = (&wait.call, HumanDuration(duration));
                    let holds = match call.as_str() {
                        "wait" => format!("{call}({written:?}) holds the run for {duration}"),
                        _ => format!("{call} with a timeout of {written:?} may hold the run for up to {duration}"),
                    };
                    self.warn(&wait.at, call, None, format!("{holds}, longer than {bound_named}"));
                }
                Ok(_) => {}
            }
        }
    }

    /// Retries whose backoffs alone, doubling, add up to longer than the plan can afford:
    /// one VM or action retried that often holds its group that long.
    fn retries(&mut self) {
        let plan = self.plan;
        let (bound, bound_named) = self.wait_bound();
        // The last call on the plan or a group is the one that counts.
        let mut last: BTreeMap<Option<usize>, &SourcePos> = BTreeMap::new();
        for (group, at) in &plan.written.retries {
            last.insert(*group, at);
        }
        for (group, at) in last {
            let policy = match group {
                None => plan.policy,
                Some(i) => match plan.groups.get(i) {
                    Some(group) => plan.policy_of(group),
                    None => continue,
                },
            };
            let total = (0..policy.retries).fold(Duration::ZERO, |total, attempt| {
                total.saturating_add(policy.backoff.saturating_mul(1 << attempt.min(16)).min(MAX_DURATION))
            });
            if total > bound {
                let message = format!(
                    "retry({}, {:?}) waits {} in all between attempts ({} first, doubling each time), longer than {bound_named}",
                    policy.retries,
                    HumanDuration(policy.backoff).to_string(),
                    HumanDuration(total),
                    HumanDuration(policy.backoff)
                );
                self.warn(at, "retry", None, message);
            }
        }
    }

    /// Mistakes in calls that built the plan: the script went on, the plan is wrong.
    fn mistakes(&mut self) {
        for mistake in &self.plan.written.mistakes {
            self.error(&mistake.at, &mistake.subject, None, mistake.message.clone());
        }
    }
}

#[cfg(test)]
mod tests;
