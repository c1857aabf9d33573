//! Static validation of a plan against an inventory (DESIGN.md, "The shape of a run",
//! step 2): everything a plan can be found wrong with before anything moves. Used by
//! `drplan check`, and by dry runs and real runs, which refuse to start on an error.
//!
//! Each check is a small function that reports at the script position of what causes
//! it (the member, group, step or plan), so the operator is pointed at
//! file:line:column. Whether a problem is an error depends on the failover about to
//! run: one that only the other kind would hit (an unmapped production network during
//! a drill, a broken test network during a real failover) is a warning; a plain check
//! (`kind` = `None`) holds the plan to both.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::{Group, Member, Plan, Selector, SourcePos, Step};
use crate::model::names::{did_you_mean, list};
use crate::model::network::mapped_network;
use crate::model::vm::{check_replica_name, replica_nic_count};
use crate::model::{
    FailoverKind, Inventory, Network, Nic, Operation, Phase, Platform, ProtectionState, Side, Site, SiteKind, Subnet,
    Vm,
};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The plan must not run.
    Error,
    /// Worth a look; the run may go on.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem with a plan, where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub at: SourcePos,
    /// What the finding is about, as the operator names it: a VM, group, site, network
    /// or manual step, e.g. "sql99".
    pub subject: String,
    /// The DOMAIN.md rule at stake, e.g. "R9".
    pub rule: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.severity, self.message)
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
    let mut findings = v.findings;
    findings.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message.cmp(&b.message)));
    Validation { resolved, findings }
}

/// Which replicas a finding concerns: a real failover's or a drill's (R30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Production,
    Test,
}

impl Scope {
    fn failover(self) -> &'static str {
        match self {
            Scope::Production => "failover",
            Scope::Test => "test failover",
        }
    }
}

/// A VM of the plan and the member that brought it in.
struct Placed<'a> {
    vm: &'a Vm,
    at: &'a SourcePos,
    group: &'a str,
}

/// A static target IP a replica NIC asks for in the network it joins (R9).
struct Claim<'a> {
    scope: Scope,
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
    fn severity(&self, scope: Scope) -> Severity {
        match self.kind {
            Some(kind) if (kind == FailoverKind::Test) != (scope == Scope::Test) => Severity::Warning,
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
            "planned failover from {} ({platform}) to the cloud is not offered: run an unplanned failover instead (R31)",
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
                self.report(self.severity(Scope::Test), &plan.at, name, Some("R30"), message);
            }
            Some(network) if !network.isolated => {
                let message = format!(
                    "test network {name} on {} is not isolated: test replicas would share it with production (R30)",
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
        for group in &plan.groups {
            let mut vms = Vec::new();
            for member in &group.members {
                for vm in self.expand(member) {
                    if let Some(&first) = index.get(vm.name.as_str()) {
                        self.duplicate(vm, member, &placed[first]);
                        continue;
                    }
                    index.insert(&vm.name, placed.len());
                    placed.push(Placed { vm, at: &member.at, group: &group.name });
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
    /// all of it.
    fn replication_groups(&mut self, placed: &[Placed]) {
        let in_plan: HashMap<&str, &Placed> = placed.iter().map(|p| (p.vm.name.as_str(), p)).collect();
        for group in &self.inventory.replication_groups {
            let Some(first) = group.vms.iter().find_map(|vm| in_plan.get(vm.as_str())) else { continue };
            let missing: Vec<&str> =
                group.vms.iter().map(String::as_str).filter(|vm| !in_plan.contains_key(vm)).collect();
            if !missing.is_empty() {
                let message = format!(
                    "replication group {} fails over to one common recovery point, but the plan leaves out {} (R12)",
                    group.name,
                    list(missing.into_iter())
                );
                self.warn(first.at, &group.name, Some("R12"), message);
            }
        }
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
                        ("; failover waits for it (R5)".into(), "Run the plan once the copy is done.".into())
                    }
                    _ => (refusal.why, refusal.hint),
                };
                format!("cannot {what}: it is {}{why}. {hint}", refusal.state)
            }
            // Replicating back from the target: not protected from source to target.
            Ok(()) if state.active == Side::Recovery => format!(
                "cannot {what} from {}: it runs on {} already; fail it back first (R20)",
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
            self.error(p.at, &p.vm.name, Some("R7"), format!("{}: {why} (R7)", p.vm.name));
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
            format!("{} has {} NICs; size {size} allows {kept}: the replica gets {kept} (R8)", vm.name, vm.nics.len());
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
            let message = format!(
                "{}'s NIC 1 on network {} has no network mapping to {}: the replica would not be connected (R10)",
                vm.name, first.network, target.name
            );
            self.report(self.severity(Scope::Production), p.at, &vm.name, Some("R10"), message);
            return;
        };
        for (i, nic) in others.iter().enumerate() {
            let how = match self.mapped(vm, nic, target) {
                Some(network) if network == joined => continue,
                Some(network) => format!("maps to {network}"),
                None => format!("has no network mapping to {}", target.name),
            };
            let message = format!(
                "{}'s NIC {} on network {} {how}, but a replica's NICs all join one network: it joins {joined} with NIC 1 (R8)",
                vm.name,
                i + 2,
                nic.network
            );
            self.warn(p.at, &vm.name, Some("R8"), message);
        }
    }

    /// The static target IPs a VM's replica NICs ask for, in the production network and
    /// in the test network. A test replica keeps its target IP only where it lies in the
    /// test subnet, and takes one by DHCP otherwise (R9), so only those count there.
    fn claims(&self, vm: &'a Vm) -> Vec<Claim<'a>> {
        let test = self.plan.test_network.as_deref().and_then(|name| self.target?.network(name));
        let mut claims = Vec::new();
        for (scope, network) in [(Scope::Production, self.production_network(vm)), (Scope::Test, test)] {
            let Some(network) = network else { continue };
            for (i, nic) in self.kept_nics(vm).iter().enumerate() {
                let (Some(ip), Some(subnet)) = (nic.target_ip, network.subnet_for(&nic.subnet)) else { continue };
                if scope == Scope::Production || subnet.cidr.contains(ip) {
                    claims.push(Claim { scope, network, subnet, nic: i + 1, ip });
                }
            }
        }
        claims
    }

    /// R9: a static target IP must lie in the subnet its NIC joins, not be reserved
    /// there, and not be asked for twice by the plan; otherwise that VM's failover fails.
    fn target_addresses(&mut self, placed: &[Placed<'a>]) {
        let mut claimed: HashMap<(Scope, &str, Ipv4Addr), (&str, usize)> = HashMap::new();
        for p in placed {
            for claim in self.claims(p.vm) {
                let Claim { scope, network, subnet, nic, ip } = claim;
                let place = format!("subnet {} ({}) of {}", subnet.name, subnet.cidr, network.name);
                let problem = if !subnet.cidr.contains(ip) {
                    format!("is outside {place}, the subnet it joins")
                } else if subnet.reserved.contains(&ip) {
                    format!("is reserved in {place} for a machine drplan does not manage")
                } else if let Some((other, other_nic)) = claimed.get(&(scope, network.name.as_str(), ip)) {
                    format!("is also the target IP of {other}'s NIC {other_nic} in {}", network.name)
                } else {
                    claimed.insert((scope, &network.name, ip), (&p.vm.name, nic));
                    continue;
                };
                let message = format!(
                    "{}'s NIC {nic} target IP {ip} {problem}: its {} would fail (R9)",
                    p.vm.name,
                    scope.failover()
                );
                self.report(self.severity(scope), p.at, &p.vm.name, Some("R9"), message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::Severity::{Error, Warning};
    use super::*;
    use crate::model::{Timestamp, parse_site};
    use crate::plan::{FailurePolicy, Manual};

    /// Two on-premises sites, primary -> secondary. primary/prod maps to secondary/prod-dr;
    /// primary/backup is left unmapped. secondary has an isolated test network, bubble,
    /// whose db subnet reuses prod-dr's range (a drill may reuse target IPs, R9).
    const SITE: &str = r#"
[[sites]]
name = "primary"
kind = "onprem"
hosts = ["p1"]
  [[sites.networks]]
  name = "prod"
  subnets = [{ name = "db", cidr = "10.1.1.0/24" }, { name = "web", cidr = "10.1.3.0/24" }]
  [[sites.networks]]
  name = "backup"
  subnets = [{ name = "backup", cidr = "10.1.9.0/24" }]

[[sites]]
name = "secondary"
kind = "onprem"
hosts = ["s1"]
  [[sites.networks]]
  name = "prod-dr"
  subnets = [{ name = "db", cidr = "10.2.1.0/24", reserved = ["10.2.1.5"] }, { name = "web", cidr = "10.2.3.0/24" }]
  [[sites.networks]]
  name = "bubble"
  isolated = true
  subnets = [{ name = "db", cidr = "10.2.1.0/24" }, { name = "web", cidr = "192.168.3.0/24" }]

[[pairings]]
source = "primary"
target = "secondary"

[[network_mappings]]
source = "primary/prod"
target = "secondary/prod-dr"

[[policies]]
name = "gold"
retention = "24h"

[[sizes]]
name = "standard-1"
max_nics = 1

[[replication_groups]]
name = "sql-cluster"
vms = ["sql02", "sql01"]

[[vms]]
name = "sql01"
site = "primary"
host = "p1"
os = "windows"
tags = { tier = "db" }
disks = [{ name = "os", size_gb = 127, os = true }]
nics = [{ network = "prod", subnet = "db", ip = "10.1.1.10", target_ip = "10.2.1.10" }]
protection = { policy = "gold" }

[[vms]]
name = "sql02"
site = "primary"
host = "p1"
os = "windows"
tags = { tier = "db" }
disks = [{ name = "os", size_gb = 127, os = true }]
nics = [{ network = "prod", subnet = "db", ip = "10.1.1.11", target_ip = "10.2.1.11" }]
protection = { policy = "gold" }

[[vms]]
name = "web01"
site = "primary"
host = "p1"
os = "linux"
size = "standard-1"
tags = { tier = "web" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.21", target_ip = "10.2.3.21" }]
protection = { policy = "gold" }

[[vms]]
name = "web02"
site = "primary"
host = "p1"
os = "linux"
size = "standard-1"
tags = { tier = "web" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.22", target_ip = "10.2.3.22" }]
protection = { policy = "gold" }

[[vms]]
name = "report01"
site = "primary"
host = "p1"
os = "linux"
tags = { tier = "report" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.50" }]

[[vms]]
name = "backup01"
site = "primary"
host = "p1"
os = "linux"
tags = { tier = "backup" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "backup", subnet = "backup", ip = "10.1.9.10" }]
protection = { policy = "gold" }

[[vms]]
name = "mon01"
site = "secondary"
host = "s1"
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
        Group {
            name: name.into(),
            at: at(line),
            members,
            pre: vec![],
            post: vec![],
            post_each: vec![],
            policy: None,
            optional: vec![],
        }
    }

    /// primary -> secondary, tested in bubble, written on line 1.
    fn plan(groups: Vec<Group>) -> Plan {
        Plan {
            name: "contoso".into(),
            source: "primary".into(),
            target: "secondary".into(),
            rto: None,
            test_network: Some("bubble".into()),
            at: at(1),
            pre: vec![],
            post: vec![],
            groups,
            hooks: vec![],
            policy: FailurePolicy::default(),
            update_dns: false,
        }
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
            let inventory = parse_site(SITE, Path::new("site.toml")).unwrap_or_else(|e| panic!("{e}"));
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
        assert!(f.message.contains(phrase), "{f}\nwanted: {phrase}");
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
                "plan.rhai:3:5: warning: replication group sql-cluster fails over to one common recovery point, but the plan leaves out sql02 (R12)",
                "plan.rhai:4:5: error: unknown VM slq02 (did you mean sql02?)",
                "plan.rhai:5:5: error: unknown VM nothing-like-it",
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
            "cannot fail over sql01: it is in initial replication until 2026-01-01T05:00:00Z; failover waits for it (R5)",
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
    fn r10_unmapped_network_is_an_error() {
        let plan = plan(vec![group("backup", 3, vec![vm("backup01", 3)])]);
        let world = World::new();
        let v = world.check(&plan, None);
        assert_finding(
            only(&v),
            (Error, 3, Some("R10")),
            "backup01's NIC 1 on network backup has no network mapping to secondary: the replica would not be connected (R10)",
        );
        // A drill puts its replicas in the test network, mapped or not.
        let v = world.check(&plan, Some(FailoverKind::Test));
        assert_eq!(only(&v).severity, Warning);
    }

    #[test]
    fn r8_more_nics_than_the_target_size_allows_is_a_warning() {
        let mut world = World::new();
        let backup =
            Nic { network: "backup".into(), subnet: "backup".into(), ip: Some(ip("10.1.9.21")), target_ip: None };
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
        let backup =
            Nic { network: "backup".into(), subnet: "backup".into(), ip: Some(ip("10.1.9.22")), target_ip: None };
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
        // In a drill, 10.2.3.21 lies outside bubble's web subnet: both get one by DHCP.
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
        let bubble = world.site("secondary").networks.iter_mut().find(|n| n.name == "bubble").unwrap();
        bubble.subnets[0].reserved.push(ip("10.2.1.10"));
        let v = world.check(&sound_plan(), Some(FailoverKind::Test));
        assert_finding(
            only(&v),
            (Error, 3, Some("R9")),
            "sql01's NIC 1 target IP 10.2.1.10 is reserved in subnet db (10.2.1.0/24) of bubble for a machine drplan does not manage: its test failover would fail (R9)",
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
        assert_finding(
            &f,
            (Error, 1, Some("R31")),
            "planned failover from primary (vmware) to the cloud is not offered",
        );
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
            "test network bubbel does not exist on secondary (its networks: prod-dr, bubble)",
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
        assert_finding(
            &v.findings[1],
            (Error, 4, None),
            "web09 is marked optional in group db but is not one of its VMs",
        );
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
    fn a_finding_renders_as_file_line_column_severity_message() {
        let v = World::new().check(&plan(vec![group("db", 2, vec![vm("sql99", 3)])]), None);
        assert_eq!(rendered(&v)[1], "plan.rhai:3:5: error: unknown VM sql99 (did you mean sql01?)");
        let json = serde_json::to_value(&v.findings[1]).unwrap();
        assert_eq!(json["severity"], "error");
        assert_eq!(json["at"], "plan.rhai:3:5");
        assert!(v.has_errors());
    }
}
