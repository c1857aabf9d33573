//! The executor: runs a plan for a failover kind (R20, R21). Plan pre-steps; then each
//! group in order — its pre-steps, its VMs' failovers concurrently (bounded), each VM's
//! post actions as soon as it is up, the group's post-steps; then plan post-steps.
//! Failures follow the group's policy: retries with doubling backoff, then stop the
//! plan or go on; an optional VM never stops it.
//!
//! Durability: every event goes to the journal, and the engine waits for it to be on
//! disk before acting on it (a failover's intent before the call, its result before
//! the VM's post actions). A resumed run skips the steps its journal shows done.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::event::{Draft, Event, EventBus, EventData, EventKind, Scope};
use super::history::History;
use super::services::StepServices;
use super::{EventLog, ManualGate, RunOutcome, RunSpec, RunStatus, Stop};
use crate::fabric::dns::DnsUpdater;
use crate::fabric::{CallOutcome, Fabric, FabricError, FailoverOutcome, FailoverRequest};
use crate::model::{FailoverKind, HumanDuration, Inventory, format_time};
use crate::plan::validate::ResolvedPlan;
use crate::plan::{
    Action, ActionContext, EventView, FailurePolicy, Group, Hook, Manual, OnFailure, Plan, Step, VmBoard, VmView,
};

/// What the run needs, shared by its tasks.
pub struct RunState {
    pub(super) spec: RunSpec,
    pub(super) fabric: Arc<dyn Fabric>,
    pub(super) dns: Arc<dyn DnsUpdater>,
    gate: Arc<dyn ManualGate>,
    journal: Option<Arc<dyn EventLog>>,
    history: History,
    stop: Arc<Stop>,
    plan: Arc<Plan>,
    resolved: ResolvedPlan,
    bus: Arc<EventBus>,
    /// Numbering and journaling happen under one lock, so the journal receives events
    /// in their order and a crash can leave no gap in it.
    publishing: Mutex<()>,
    vms: Arc<VmBoard>,
}

/// Everything the executor needs besides the plan.
pub struct Deps {
    pub fabric: Arc<dyn Fabric>,
    pub dns: Arc<dyn DnsUpdater>,
    pub gate: Arc<dyn ManualGate>,
    pub inventory: Arc<Inventory>,
    pub bus: Arc<EventBus>,
    /// Where events are made durable; `None` for dry runs.
    pub journal: Option<Arc<dyn EventLog>>,
    /// What the run already did, for a resumed run.
    pub history: History,
    /// Stops the run: an operator's cancel (R35), or a journal that cannot be written.
    pub stop: Arc<Stop>,
}

fn scope(group: Option<&str>, vm: Option<&str>) -> Scope {
    Scope { group: group.map(Into::into), vm: vm.map(Into::into) }
}

fn draft(step: Option<String>, detail: Option<String>) -> Draft {
    Draft { step, detail, ..Draft::default() }
}

/// Whether trying again could help: operational failures, not refusals.
fn retryable(error: &FabricError) -> bool {
    matches!(error, FabricError::OperationFailed { .. } | FabricError::Address { .. } | FabricError::Interrupted { .. })
}

/// The wait before retry `attempt`: the policy's backoff, doubled each time, never more
/// than the longest duration (which the fabric's clock can always add).
fn backoff(policy: &FailurePolicy, attempt: u32) -> Duration {
    policy.backoff.saturating_mul(1 << attempt.min(16)).min(crate::model::MAX_DURATION)
}

/// Runs `plan` (already validated and resolved) and returns what happened.
pub async fn execute(deps: Deps, plan: Arc<Plan>, resolved: ResolvedPlan, spec: RunSpec) -> RunOutcome {
    let vms = initial_views(&deps, &resolved);
    let resumed = deps.history.started.is_some();
    let run = Arc::new(RunState {
        spec,
        fabric: deps.fabric,
        dns: deps.dns,
        gate: deps.gate,
        journal: deps.journal,
        history: deps.history,
        stop: deps.stop,
        plan,
        resolved,
        bus: deps.bus,
        publishing: Mutex::new(()),
        vms: Arc::new(VmBoard::new(vms)),
    });
    let started = run.history.started.unwrap_or_else(|| run.fabric.now());
    let first = if resumed { EventKind::RunResumed } else { EventKind::RunStarted };
    run.emit(first, &Scope::default(), draft(Some(run.plan.name.clone()), None)).await;
    let canceller = tokio::spawn(run.clone().cancel_when_stopped());
    let ok = run.run_all().await;
    canceller.abort();
    let (status, kind, detail) = match run.stop.reason() {
        Some(reason) if run.stop.is_cancel() => (RunStatus::Cancelled, EventKind::RunCancelled, Some(reason)),
        Some(reason) => (RunStatus::Failed, EventKind::RunFailed, Some(reason)),
        None if ok => (RunStatus::Succeeded, EventKind::RunSucceeded, None),
        None => (RunStatus::Failed, EventKind::RunFailed, None),
    };
    run.emit(kind, &Scope::default(), draft(Some(run.plan.name.clone()), detail)).await;
    let mut events = run.bus.take_events();
    if run.spec.dry_run {
        canonical_order(&mut events, &run.resolved);
    }
    RunOutcome { run_id: run.spec.run_id.clone(), status, started, finished: run.fabric.now(), events }
}

/// Every VM of the plan as actions see it; those a resumed run already brought up
/// come back with their replicas' addresses.
fn initial_views(deps: &Deps, resolved: &ResolvedPlan) -> BTreeMap<String, VmView> {
    let mut views = BTreeMap::new();
    for group in &resolved.groups {
        for name in &group.vms {
            let Some(vm) = deps.inventory.vm(name) else { continue };
            let mut view = VmView {
                name: vm.name.clone(),
                group: group.name.clone(),
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
            if let Some(outcome) = deps.history.outcome(name) {
                landed(&mut view, outcome);
            }
            views.insert(vm.name.clone(), view);
        }
    }
    views
}

fn landed(view: &mut VmView, outcome: &FailoverOutcome) {
    let replica = &outcome.replica;
    view.ip = replica.ip();
    view.site = Some(replica.site.clone());
    view.host = Some(replica.host.clone());
    view.network = replica.nics.iter().find_map(|n| n.network.clone());
    view.replica_name = replica.name.clone();
    view.state = "succeeded".into();
}

impl RunState {
    /// Publishes an event to the bus and queues it for the journal; returns the event
    /// and a future that resolves once it is durable.
    pub(super) fn publish(&self, kind: EventKind, scope: &Scope, draft: Draft) -> (Event, Option<super::Durable>) {
        let _in_order = self.publishing.lock().expect("publish lock");
        let event = self.bus.publish(self.fabric.now(), kind, scope, draft);
        let durable = self.journal.as_ref().map(|journal| journal.record(&event));
        (event, durable)
    }

    /// Publishes an event and runs the hooks that listen for it. Before acting on an
    /// event (see [`EventKind::is_acted_on`]) or running its hooks, waits until the
    /// journal has it; the journal keeps events in order, so that covers every event
    /// before it too, and the others need no wait of their own. Hooks do not fire on
    /// their own events, and a failing hook never fails the run. A journal that cannot be
    /// written stops the run.
    async fn emit(self: &Arc<Self>, kind: EventKind, scope: &Scope, what: Draft) -> Event {
        let (event, durable) = self.publish(kind, scope, what);
        let hooks: Vec<&Hook> = self.plan.hooks.iter().filter(|h| kind.matches(&h.event)).collect();
        let acting = kind.is_acted_on() || !hooks.is_empty();
        if let Some(durable) = durable.filter(|_| acting)
            && let Err(e) = durable.await
        {
            self.stop.fail(format!("the run stopped: {e}"));
        }
        for hook in hooks {
            let view = EventView {
                kind: kind.name().into(),
                group: event.group.clone(),
                vm: event.vm.clone(),
                error: event.detail.clone().filter(|_| matches!(kind, EventKind::VmFailed | EventKind::ActionFailed)),
            };
            let step = format!("hook/{}/{}", kind.name(), event.seq);
            if let Err(e) = self.invoke(&*hook.action, scope, &step, Some(view)).await {
                let at = e.at.as_ref().map(|p| format!(" at {p}")).unwrap_or_default();
                let detail = format!("{e}{at}");
                self.publish(EventKind::HookFailed, scope, draft(Some(format!("on {}", hook.event)), Some(detail)));
            }
        }
        event
    }

    /// The reason to stop, if the run must: checked before every step.
    fn stopped(&self) -> Result<(), String> {
        self.stop.reason().map_or(Ok(()), Err)
    }

    /// R35: an operator's cancel stops the failovers under way; their VMs will need
    /// reprotect.
    async fn cancel_when_stopped(self: Arc<Self>) {
        self.stop.stopped().await;
        if !self.stop.is_cancel() {
            return;
        }
        let running = self.vms.names_where(|v| v.state == "running");
        for vm in running {
            let key = format!("{}/vm/{vm}/cancel", self.spec.run_id);
            if let Err(e) = self.fabric.cancel(&key, &vm).await {
                tracing::warn!(%vm, error = %e, "cancel of a failover under way failed");
            }
        }
    }

    pub(super) fn test_network(&self) -> Option<String> {
        self.plan.test_network.clone()
    }

    pub(super) fn is_running_replica(&self, ip: Ipv4Addr) -> bool {
        self.vms.is_up_at(ip)
    }

    /// Calls an action once, spending any time it waited in a dry run afterwards.
    async fn invoke(
        self: &Arc<Self>,
        action: &dyn Action,
        scope: &Scope,
        step: &str,
        event: Option<EventView>,
    ) -> Result<(), crate::plan::ActionError> {
        let services = Arc::new(StepServices::new(self.clone(), scope.clone(), step.into()));
        let ctx = ActionContext {
            run_id: self.spec.run_id.clone(),
            plan: self.plan.name.clone(),
            kind: self.spec.kind,
            dry_run: self.spec.dry_run,
            group: scope.group.clone(),
            vm: scope.vm.clone(),
            vms: self.vms.clone(),
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
        key: &str,
        policy: FailurePolicy,
    ) -> Result<(), String> {
        let label = action.label();
        let keyed =
            |detail: Option<String>| Draft { step: Some(label.clone()), detail, key: Some(key.into()), data: None };
        for attempt in 0..=policy.retries {
            self.stopped()?;
            self.emit(EventKind::ActionStarted, scope, keyed(None)).await;
            match self.invoke(action, scope, key, None).await {
                Ok(()) => {
                    self.emit(EventKind::ActionSucceeded, scope, keyed(None)).await;
                    return Ok(());
                }
                Err(e) => {
                    let at = e.at.as_ref().unwrap_or(action.at());
                    let detail = format!("{at}: {e}");
                    if attempt < policy.retries {
                        self.emit(EventKind::ActionRetried, scope, keyed(Some(detail))).await;
                        self.fabric.wait(backoff(&policy, attempt)).await;
                    } else {
                        self.emit(EventKind::ActionFailed, scope, keyed(Some(detail.clone()))).await;
                        return Err(detail);
                    }
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// R21: the plan waits for an operator; a dry run assumes the expected time.
    async fn run_manual(self: &Arc<Self>, manual: &Manual, scope: &Scope, key: &str) -> Result<(), String> {
        let keyed = |detail: Option<String>| Draft {
            step: Some(manual.text.clone()),
            detail,
            key: Some(key.into()),
            data: None,
        };
        let expect = format!("timeout {}, expected {}", HumanDuration(manual.timeout), HumanDuration(manual.estimate));
        self.emit(EventKind::ManualWaiting, scope, keyed(Some(expect))).await;
        if self.spec.dry_run {
            self.fabric.wait(manual.estimate).await;
        } else {
            let waited = tokio::select! {
                biased;
                _ = self.stop.stopped() => Err(self.stop.reason().unwrap_or_default()),
                result = self.gate.wait(&self.spec.run_id, key, manual, &*self.fabric) => result,
            };
            if let Err(e) = waited {
                self.emit(EventKind::ActionFailed, scope, keyed(Some(e.clone()))).await;
                return Err(e);
            }
        }
        self.emit(EventKind::ManualDone, scope, keyed(None)).await;
        Ok(())
    }

    /// Steps in order; each has the key `{prefix}/{index}`, and those a resumed run
    /// finished before are skipped.
    async fn run_steps(
        self: &Arc<Self>,
        steps: &[Step],
        scope: &Scope,
        prefix: &str,
        policy: FailurePolicy,
    ) -> Result<(), String> {
        for (index, step) in steps.iter().enumerate() {
            let key = format!("{prefix}/{index}");
            if self.history.is_done(&key) {
                continue;
            }
            self.stopped()?;
            match step {
                Step::Action(action) => self.run_action(&**action, scope, &key, policy).await?,
                Step::Manual(manual) => self.run_manual(manual, scope, &key).await?,
            }
        }
        Ok(())
    }

    async fn run_all(self: &Arc<Self>) -> bool {
        let plan = self.plan.clone();
        let top = Scope::default();
        if self.run_steps(&plan.pre, &top, "plan/pre", plan.policy).await.is_err() {
            self.skip_from(0).await;
            return false;
        }
        let mut ok = true;
        for index in 0..plan.groups.len() {
            if self.stopped().is_err() {
                self.skip_from(index).await;
                return false;
            }
            let group_ok = self.run_group(index).await;
            ok &= group_ok;
            if !group_ok
                && (self.stopped().is_err() || plan.policy_of(&plan.groups[index]).on_failure == OnFailure::Stop)
            {
                self.skip_from(index + 1).await;
                return false;
            }
        }
        ok & self.run_steps(&plan.post, &top, "plan/post", plan.policy).await.is_ok()
    }

    /// Marks the VMs of groups from `first` on that did not start as not attempted.
    async fn skip_from(self: &Arc<Self>, first: usize) {
        for group in self.resolved.groups.iter().skip(first) {
            for vm in &group.vms {
                let pending = self.vms.get(vm).is_some_and(|v| v.state == "pending");
                if pending {
                    self.vms.update(vm, |v| v.state = "skipped".into());
                    self.emit(EventKind::VmSkipped, &scope(Some(&group.name), Some(vm)), Draft::default()).await;
                }
            }
        }
    }

    async fn run_group(self: &Arc<Self>, index: usize) -> bool {
        let group: &Group = &self.plan.groups[index];
        let group_key = format!("group/{}", group.name);
        if self.history.is_done(&group_key) {
            return true;
        }
        let policy = self.plan.policy_of(group);
        let group_scope = scope(Some(&group.name), None);
        self.emit(EventKind::GroupStarted, &group_scope, Draft::default()).await;
        if let Err(e) = self.run_steps(&group.pre, &group_scope, &format!("{group_key}/pre"), policy).await {
            return self.finish_group(&group_scope, &group_key, Some(e)).await;
        }
        let slots = Arc::new(Semaphore::new(self.spec.parallel.max(1)));
        let mut tasks = JoinSet::new();
        for vm in self.resolved.groups[index].vms.clone() {
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
            return self.finish_group(&group_scope, &group_key, Some(format!("failed: {}", failed.join(", ")))).await;
        }
        let result = self.run_steps(&group.post, &group_scope, &format!("{group_key}/post"), policy).await;
        self.finish_group(&group_scope, &group_key, result.err()).await
    }

    async fn finish_group(self: &Arc<Self>, group_scope: &Scope, key: &str, error: Option<String>) -> bool {
        let kind = if error.is_none() { EventKind::GroupSucceeded } else { EventKind::GroupFailed };
        let ok = error.is_none();
        self.emit(kind, group_scope, Draft { detail: error, key: Some(key.into()), ..Draft::default() }).await;
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

    /// One VM: its failover with retries (unless a resumed run brought it up already),
    /// then its post actions.
    async fn fail_over_vm(self: &Arc<Self>, group_index: usize, vm: &str) -> Result<(), String> {
        let group = &self.plan.groups[group_index];
        let policy = self.plan.policy_of(group);
        let vm_scope = scope(Some(&group.name), Some(vm));
        if self.history.outcome(vm).is_none() {
            self.stopped()?;
            self.vms.update(vm, |v| v.state = "running".into());
            self.emit(EventKind::VmStarted, &vm_scope, Draft::default()).await;
            let outcome = match self.fail_over_with_retries(vm, &vm_scope, policy).await {
                Ok(outcome) => outcome,
                Err(e) => return self.vm_failed(vm, &vm_scope, e).await,
            };
            self.vms.update(vm, |v| landed(v, &outcome));
            let up = Draft {
                detail: Some(describe(&outcome)),
                key: Some(format!("vm/{vm}/failover")),
                data: EventData::of(&outcome),
                ..Draft::default()
            };
            self.emit(EventKind::VmSucceeded, &vm_scope, up).await;
        }
        if self.plan.update_dns {
            let key = format!("vm/{vm}/dns");
            let step = super::auto_dns::AutoDns { at: self.plan.at.clone() };
            if !self.history.is_done(&key)
                && let Err(e) = self.run_action(&step, &vm_scope, &key, policy).await
            {
                return self.vm_failed(vm, &vm_scope, e).await;
            }
        }
        for (index, action) in group.post_each.iter().enumerate() {
            let key = format!("vm/{vm}/each/{index}");
            if self.history.is_done(&key) {
                continue;
            }
            if let Err(e) = self.run_action(&**action, &vm_scope, &key, policy).await {
                return self.vm_failed(vm, &vm_scope, e).await;
            }
        }
        Ok(())
    }

    /// The failover call, journaled before it is made, retried per the policy. A resumed
    /// run first asks the fabric what became of an attempt it never saw finish, and makes
    /// the call again only if the fabric never saw it.
    async fn fail_over_with_retries(
        self: &Arc<Self>,
        vm: &str,
        vm_scope: &Scope,
        policy: FailurePolicy,
    ) -> Result<FailoverOutcome, String> {
        let request = self.request();
        let step = format!("vm/{vm}/failover");
        if let Some(key) = self.history.open_attempt(vm) {
            match self.fabric.call_outcome(key).await.map_err(|e| e.to_string())? {
                CallOutcome::Unknown => {}
                CallOutcome::Done(Ok(json)) => {
                    return serde_json::from_value(json).map_err(|e| format!("{key}: unreadable outcome: {e}"));
                }
                CallOutcome::Done(Err(e)) => {
                    let detail = Draft { detail: Some(e.to_string()), key: Some(step.clone()), ..Draft::default() };
                    self.emit(EventKind::VmRetried, vm_scope, detail).await;
                }
                CallOutcome::Pending => return Err(format!("{key} is still under way")),
            }
            if let CallOutcome::Unknown = self.fabric.call_outcome(key).await.map_err(|e| e.to_string())? {
                // Journaled but never made: make it now, under the same key.
                return self.attempt(vm, key, &request).await.map_err(|e| e.to_string());
            }
        }
        let first = self.history.attempts(vm) + 1;
        for attempt in first..=first + policy.retries {
            self.stopped()?;
            let key = format!("{}/vm/{vm}/failover/{attempt}", self.spec.run_id);
            let intent = Draft { detail: Some(key.clone()), key: Some(step.clone()), ..Draft::default() };
            self.emit(EventKind::VmAttempt, vm_scope, intent).await;
            self.stopped()?;
            match self.attempt(vm, &key, &request).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if retryable(&e) && attempt < first + policy.retries => {
                    let detail = Draft { detail: Some(e.to_string()), key: Some(step.clone()), ..Draft::default() };
                    self.emit(EventKind::VmRetried, vm_scope, detail).await;
                    self.fabric.wait(backoff(&policy, attempt - first)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn attempt(&self, vm: &str, key: &str, request: &FailoverRequest) -> Result<FailoverOutcome, FabricError> {
        if self.spec.failback {
            self.fabric.failback(key, vm).await
        } else {
            self.fabric.failover(key, vm, request).await
        }
    }

    async fn vm_failed(self: &Arc<Self>, vm: &str, vm_scope: &Scope, error: String) -> Result<(), String> {
        self.vms.update(vm, |v| v.state = "failed".into());
        self.emit(EventKind::VmFailed, vm_scope, draft(None, Some(error.clone()))).await;
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

/// Puts a dry run's events in one order that does not depend on thread timing, so the
/// same plan prints the same bytes. Modelled time first (it never runs backwards along
/// a chain of causes); at the same instant: the plan's own steps before its groups and
/// its wrap-up after them, groups in plan order, a group's own steps before or after
/// its VMs, VMs in plan order, then the order of publication. Events at one instant in
/// different VMs are independent, so any fixed order among them is a true one.
fn canonical_order(events: &mut [Event], resolved: &ResolvedPlan) {
    let groups: HashMap<&str, usize> = resolved.groups.iter().enumerate().map(|(i, g)| (g.name.as_str(), i)).collect();
    let group_index = |name: &str| groups.get(name).copied().unwrap_or(usize::MAX);
    // A VM is in one group only (validation refuses duplicates): its place in that group.
    let places: HashMap<&str, usize> =
        resolved.groups.iter().flat_map(|g| g.vms.iter().enumerate().map(|(i, vm)| (vm.as_str(), i))).collect();
    let vm_index = |vm: &str| places.get(vm).copied().unwrap_or(usize::MAX);
    let first_in_groups = events.iter().filter(|e| e.group.is_some()).map(|e| e.seq).min().unwrap_or(u64::MAX);
    // Per group, the first event of any of its VMs: the group's own steps before it come first.
    let mut first_of_vms = vec![u64::MAX; resolved.groups.len()];
    for e in events.iter().filter(|e| e.vm.is_some()) {
        if let Some(first) = e.group.as_deref().and_then(|g| first_of_vms.get_mut(group_index(g))) {
            *first = (*first).min(e.seq);
        }
    }
    let key = |e: &Event| {
        let (plan_phase, group, group_phase, vm) = match (&e.group, &e.vm) {
            (None, _) => (if e.seq < first_in_groups { 0 } else { 2 }, 0, 0, 0),
            (Some(g), None) => {
                let gi = group_index(g);
                let before_vms = first_of_vms.get(gi).is_some_and(|first| e.seq < *first);
                (1, gi, if before_vms { 0 } else { 2 }, 0)
            }
            (Some(g), Some(vm)) => {
                let gi = group_index(g);
                (1, gi, 1, vm_index(vm))
            }
        };
        (e.at, plan_phase, group, group_phase, vm, e.seq)
    };
    events.sort_by_cached_key(key);
    for (seq, event) in events.iter_mut().enumerate() {
        event.seq = seq as u64;
    }
}
