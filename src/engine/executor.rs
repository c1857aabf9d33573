//! The executor: runs a plan for a failover kind (R20, R21). Plan pre-steps; then each
//! group in order — its pre-steps, its VMs' failovers concurrently (bounded), each VM's
//! post actions as soon as it is up, the group's post-steps; then plan post-steps.
//! Failures follow the group's policy: retries with doubling backoff, then stop the
//! plan or go on; an optional VM never stops it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::event::{Event, EventBus, EventKind, Scope};
use super::services::StepServices;
use super::{ManualGate, RunOutcome, RunSpec, RunStatus};
use crate::fabric::dns::DnsUpdater;
use crate::fabric::{Fabric, FabricError, FailoverOutcome, FailoverRequest};
use crate::model::{FailoverKind, HumanDuration, Inventory, format_time};
use crate::plan::validate::ResolvedPlan;
use crate::plan::{Action, ActionContext, EventView, FailurePolicy, Group, Manual, OnFailure, Plan, Step, VmView};

/// What the run needs, shared by its tasks.
pub struct RunState {
    pub(super) spec: RunSpec,
    pub(super) fabric: Arc<dyn Fabric>,
    pub(super) dns: Arc<dyn DnsUpdater>,
    gate: Arc<dyn ManualGate>,
    plan: Arc<Plan>,
    resolved: ResolvedPlan,
    bus: Arc<EventBus>,
    vms: Mutex<BTreeMap<String, VmView>>,
}

/// Everything the executor needs besides the plan.
pub struct Deps {
    pub fabric: Arc<dyn Fabric>,
    pub dns: Arc<dyn DnsUpdater>,
    pub gate: Arc<dyn ManualGate>,
    pub inventory: Arc<Inventory>,
    pub bus: Arc<EventBus>,
}

fn scope(group: Option<&str>, vm: Option<&str>) -> Scope {
    Scope { group: group.map(Into::into), vm: vm.map(Into::into) }
}

/// Whether trying again could help: operational failures, not refusals.
fn retryable(error: &FabricError) -> bool {
    matches!(error, FabricError::OperationFailed { .. } | FabricError::Address { .. })
}

fn backoff(policy: &FailurePolicy, attempt: u32) -> Duration {
    policy.backoff.saturating_mul(1 << attempt.min(16))
}

/// Runs `plan` (already validated and resolved) and returns what happened.
pub async fn execute(deps: Deps, plan: Arc<Plan>, resolved: ResolvedPlan, spec: RunSpec) -> RunOutcome {
    let vms = resolved
        .groups
        .iter()
        .flat_map(|g| g.vms.iter().map(move |vm| (g.name.clone(), vm.clone())))
        .filter_map(|(group, name)| deps.inventory.vm(&name).map(|vm| (group, vm)))
        .map(|(group, vm)| {
            let view = VmView {
                name: vm.name.clone(),
                group,
                source_ip: vm.nics.iter().find_map(|n| n.ip),
                ip: None,
                replica_name: vm.replica_name().into(),
                site: None,
                host: None,
                network: None,
                dns: vm.dns.clone(),
                tags: vm.tags.clone(),
                state: "pending".into(),
            };
            (vm.name.clone(), view)
        })
        .collect();
    let run = Arc::new(RunState {
        spec,
        fabric: deps.fabric,
        dns: deps.dns,
        gate: deps.gate,
        plan,
        resolved,
        bus: deps.bus,
        vms: Mutex::new(vms),
    });
    let started = run.fabric.now();
    run.emit(EventKind::RunStarted, &Scope::default(), Some(run.plan.name.clone()), None).await;
    let ok = run.run_all().await;
    let kind = if ok { EventKind::RunSucceeded } else { EventKind::RunFailed };
    run.emit(kind, &Scope::default(), Some(run.plan.name.clone()), None).await;
    let mut events = run.bus.events();
    if run.spec.dry_run {
        canonical_order(&mut events, &run.resolved);
    }
    RunOutcome {
        run_id: run.spec.run_id.clone(),
        status: if ok { RunStatus::Succeeded } else { RunStatus::Failed },
        started,
        finished: run.fabric.now(),
        events,
    }
}

/// Puts a dry run's events in one order that does not depend on thread timing, so the
/// same plan prints the same bytes. Modelled time first (it never runs backwards along
/// a chain of causes); at the same instant: the plan's own steps before its groups and
/// its wrap-up after them, groups in plan order, a group's own steps before or after
/// its VMs, VMs in plan order, then the order of publication. Events at one instant in
/// different VMs are independent, so any fixed order among them is a true one.
fn canonical_order(events: &mut [Event], resolved: &ResolvedPlan) {
    let group_index = |name: &str| resolved.groups.iter().position(|g| g.name == name).unwrap_or(usize::MAX);
    let vm_index = |group: usize, vm: &str| {
        resolved.groups.get(group).and_then(|g| g.vms.iter().position(|v| v == vm)).unwrap_or(usize::MAX)
    };
    let seqs = |keep: &dyn Fn(&Event) -> bool| {
        let mut seqs = events.iter().filter(|e| keep(e)).map(|e| e.seq);
        let first = seqs.next();
        (first.unwrap_or(u64::MAX), seqs.last().or(first).unwrap_or(0))
    };
    let (first_in_groups, _) = seqs(&|e| e.group.is_some());
    let vm_spans: Vec<(u64, u64)> = resolved
        .groups
        .iter()
        .map(|g| seqs(&|e| e.vm.is_some() && e.group.as_deref() == Some(g.name.as_str())))
        .collect();
    let key = |e: &Event| {
        let (plan_phase, group, group_phase, vm) = match (&e.group, &e.vm) {
            (None, _) => (if e.seq < first_in_groups { 0 } else { 2 }, 0, 0, 0),
            (Some(g), None) => {
                let gi = group_index(g);
                let before_vms = vm_spans.get(gi).is_some_and(|(first, _)| e.seq < *first);
                (1, gi, if before_vms { 0 } else { 2 }, 0)
            }
            (Some(g), Some(vm)) => {
                let gi = group_index(g);
                (1, gi, 1, vm_index(gi, vm))
            }
        };
        (e.at, plan_phase, group, group_phase, vm, e.seq)
    };
    events.sort_by_key(key);
    for (seq, event) in events.iter_mut().enumerate() {
        event.seq = seq as u64;
    }
}

impl RunState {
    pub(super) fn publish(
        &self,
        kind: EventKind,
        scope: &Scope,
        step: Option<String>,
        detail: Option<String>,
    ) -> Event {
        self.bus.publish(self.fabric.now(), kind, scope, step, detail)
    }

    /// Publishes an event and runs the hooks that listen for it. Hooks do not fire on
    /// their own events, and a failing hook never fails the run.
    async fn emit(self: &Arc<Self>, kind: EventKind, scope: &Scope, step: Option<String>, detail: Option<String>) {
        let event = self.publish(kind, scope, step, detail);
        for hook in self.plan.hooks.iter().filter(|h| kind.matches(&h.event)) {
            let view = EventView {
                kind: kind.name().into(),
                group: event.group.clone(),
                vm: event.vm.clone(),
                error: event.detail.clone().filter(|_| matches!(kind, EventKind::VmFailed | EventKind::ActionFailed)),
            };
            if let Err(e) = self.invoke(&*hook.action, scope, Some(view)).await {
                let at = e.at.as_ref().map(|p| format!(" at {p}")).unwrap_or_default();
                self.publish(
                    EventKind::HookFailed,
                    scope,
                    Some(format!("on {}", hook.event)),
                    Some(format!("{e}{at}")),
                );
            }
        }
    }

    pub(super) fn is_running_replica(&self, ip: Ipv4Addr) -> bool {
        self.vms.lock().expect("vms lock").values().any(|v| v.ip == Some(ip) && v.state == "succeeded")
    }

    fn set_vm(&self, name: &str, update: impl FnOnce(&mut VmView)) {
        if let Some(view) = self.vms.lock().expect("vms lock").get_mut(name) {
            update(view);
        }
    }

    /// Calls an action once, spending any time it waited in a dry run afterwards.
    async fn invoke(
        self: &Arc<Self>,
        action: &dyn Action,
        scope: &Scope,
        event: Option<EventView>,
    ) -> Result<(), crate::plan::ActionError> {
        let services = Arc::new(StepServices::new(self.clone(), scope.clone()));
        let ctx = ActionContext {
            run_id: self.spec.run_id.clone(),
            plan: self.plan.name.clone(),
            kind: self.spec.kind,
            dry_run: self.spec.dry_run,
            group: scope.group.clone(),
            vm: scope.vm.clone(),
            vms: Arc::new(self.vms.lock().expect("vms lock").clone()),
            test_network: self.plan.test_network.clone(),
            event,
            services: services.clone(),
        };
        let result = action.run(ctx).await;
        let waited = services.take_deferred_wait();
        if !waited.is_zero() {
            self.fabric.wait(waited).await;
        }
        result
    }

    /// An action with the policy's retries. Returns the last error.
    async fn run_action(
        self: &Arc<Self>,
        action: &dyn Action,
        scope: &Scope,
        policy: FailurePolicy,
    ) -> Result<(), String> {
        let label = action.label();
        for attempt in 0..=policy.retries {
            self.emit(EventKind::ActionStarted, scope, Some(label.clone()), None).await;
            match self.invoke(action, scope, None).await {
                Ok(()) => {
                    self.emit(EventKind::ActionSucceeded, scope, Some(label.clone()), None).await;
                    return Ok(());
                }
                Err(e) => {
                    let at = e.at.as_ref().unwrap_or(action.at());
                    let detail = format!("{at}: {e}");
                    if attempt < policy.retries {
                        self.emit(EventKind::ActionRetried, scope, Some(label.clone()), Some(detail)).await;
                        self.fabric.wait(backoff(&policy, attempt)).await;
                    } else {
                        self.emit(EventKind::ActionFailed, scope, Some(label.clone()), Some(detail.clone())).await;
                        return Err(detail);
                    }
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// R21: the plan waits for an operator; a dry run assumes the expected time.
    async fn run_manual(self: &Arc<Self>, manual: &Manual, scope: &Scope) -> Result<(), String> {
        let detail = format!("timeout {}, expected {}", HumanDuration(manual.timeout), HumanDuration(manual.estimate));
        self.emit(EventKind::ManualWaiting, scope, Some(manual.text.clone()), Some(detail)).await;
        if self.spec.dry_run {
            self.fabric.wait(manual.estimate).await;
        } else if let Err(e) = self.gate.wait(&self.spec.run_id, manual).await {
            self.emit(EventKind::ActionFailed, scope, Some(manual.text.clone()), Some(e.clone())).await;
            return Err(e);
        }
        self.emit(EventKind::ManualDone, scope, Some(manual.text.clone()), None).await;
        Ok(())
    }

    async fn run_steps(self: &Arc<Self>, steps: &[Step], scope: &Scope, policy: FailurePolicy) -> Result<(), String> {
        for step in steps {
            match step {
                Step::Action(action) => self.run_action(&**action, scope, policy).await?,
                Step::Manual(manual) => self.run_manual(manual, scope).await?,
            }
        }
        Ok(())
    }

    async fn run_all(self: &Arc<Self>) -> bool {
        let plan = self.plan.clone();
        let top = Scope::default();
        if self.run_steps(&plan.pre, &top, plan.policy).await.is_err() {
            self.skip_from(0).await;
            return false;
        }
        let mut ok = true;
        for index in 0..plan.groups.len() {
            let group_ok = self.run_group(index).await;
            ok &= group_ok;
            if !group_ok && plan.policy_of(&plan.groups[index]).on_failure == OnFailure::Stop {
                self.skip_from(index + 1).await;
                return false;
            }
        }
        ok & self.run_steps(&plan.post, &top, plan.policy).await.is_ok()
    }

    /// Marks the VMs of groups from `first` on as not attempted.
    async fn skip_from(self: &Arc<Self>, first: usize) {
        for group in self.resolved.groups.iter().skip(first) {
            for vm in &group.vms {
                self.set_vm(vm, |v| v.state = "skipped".into());
                self.emit(EventKind::VmSkipped, &scope(Some(&group.name), Some(vm)), None, None).await;
            }
        }
    }

    async fn run_group(self: &Arc<Self>, index: usize) -> bool {
        let group: &Group = &self.plan.groups[index];
        let policy = self.plan.policy_of(group);
        let group_scope = scope(Some(&group.name), None);
        self.emit(EventKind::GroupStarted, &group_scope, None, None).await;
        if let Err(e) = self.run_steps(&group.pre, &group_scope, policy).await {
            return self.finish_group(&group_scope, Some(e)).await;
        }
        let slots = Arc::new(Semaphore::new(self.spec.parallel.max(1)));
        let mut tasks = JoinSet::new();
        let vms = self.resolved.groups[index].vms.clone();
        for vm in vms {
            let (run, slots) = (self.clone(), slots.clone());
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("semaphore open");
                let result = run.fail_over_vm(index, &vm).await;
                (vm, result)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (vm, result) = joined.expect("VM task panicked");
            if result.is_err() && !group.optional.contains(&vm) {
                failed.push(vm);
            }
        }
        if !failed.is_empty() {
            failed.sort();
            return self.finish_group(&group_scope, Some(format!("failed: {}", failed.join(", ")))).await;
        }
        let result = self.run_steps(&group.post, &group_scope, policy).await;
        self.finish_group(&group_scope, result.err()).await
    }

    async fn finish_group(self: &Arc<Self>, group_scope: &Scope, error: Option<String>) -> bool {
        let kind = if error.is_none() { EventKind::GroupSucceeded } else { EventKind::GroupFailed };
        let ok = error.is_none();
        self.emit(kind, group_scope, None, error).await;
        ok
    }

    fn request(&self) -> FailoverRequest {
        FailoverRequest {
            kind: self.spec.kind,
            point: self.spec.point,
            test_network: (self.spec.kind == FailoverKind::Test).then(|| self.plan.test_network.clone()).flatten(),
            shut_down_source: self.spec.shut_down_source,
        }
    }

    /// One VM: its failover with retries, then its post actions.
    async fn fail_over_vm(self: &Arc<Self>, group_index: usize, vm: &str) -> Result<(), String> {
        let group = &self.plan.groups[group_index];
        let policy = self.plan.policy_of(group);
        let vm_scope = scope(Some(&group.name), Some(vm));
        self.set_vm(vm, |v| v.state = "running".into());
        self.emit(EventKind::VmStarted, &vm_scope, None, None).await;
        let request = self.request();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let key = format!("{}/{group_index}/{vm}/failover/{attempt}", self.spec.run_id);
            match self.fabric.failover(&key, vm, &request).await {
                Ok(outcome) => break outcome,
                Err(e) if retryable(&e) && attempt <= policy.retries => {
                    self.emit(EventKind::VmRetried, &vm_scope, None, Some(e.to_string())).await;
                    self.fabric.wait(backoff(&policy, attempt - 1)).await;
                }
                Err(e) => return self.vm_failed(vm, &vm_scope, e.to_string()).await,
            }
        };
        self.vm_up(vm, &outcome);
        self.emit(EventKind::VmSucceeded, &vm_scope, None, Some(describe(&outcome))).await;
        for action in &group.post_each {
            if let Err(e) = self.run_action(&**action, &vm_scope, policy).await {
                return self.vm_failed(vm, &vm_scope, e).await;
            }
        }
        Ok(())
    }

    fn vm_up(&self, vm: &str, outcome: &FailoverOutcome) {
        let replica = &outcome.replica;
        self.set_vm(vm, |v| {
            v.ip = replica.ip();
            v.site = Some(replica.site.clone());
            v.host = Some(replica.host.clone());
            v.network = replica.nics.iter().find_map(|n| n.network.clone());
            v.replica_name = replica.name.clone();
            v.state = "succeeded".into();
        });
    }

    async fn vm_failed(self: &Arc<Self>, vm: &str, vm_scope: &Scope, error: String) -> Result<(), String> {
        self.set_vm(vm, |v| v.state = "failed".into());
        self.emit(EventKind::VmFailed, vm_scope, None, Some(error.clone())).await;
        Err(error)
    }
}

/// The line a VM's success event carries: where it landed and what it cost.
fn describe(outcome: &FailoverOutcome) -> String {
    let ip = outcome.replica.ip().map_or("not connected".to_string(), |ip| ip.to_string());
    format!(
        "{} on {}/{}; point {}; data loss {}",
        ip,
        outcome.replica.site,
        outcome.replica.host,
        format_time(outcome.point.time),
        HumanDuration(outcome.data_loss)
    )
}
