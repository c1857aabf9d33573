//! The executor: runs a plan for a failover kind (R20, R21). Plan pre-steps; then each
//! group in order — its pre-steps, its VMs' failovers concurrently (bounded), each VM's
//! post actions as soon as it is up, the group's post-steps; then plan post-steps; and
//! for a failback, the commit and reprotect that complete it (R37).
//! Failures follow the group's policy: retries with doubling backoff, then stop the
//! plan or go on; an optional VM never stops it.
//!
//! Time is causal: every task carries the modelled time it has reached (`t`), each step
//! starts at the time of what it waited for (its group's start, the slot it got, the
//! step before it) and ends when the fabric or the action says it did. Events are
//! stamped with it. So a dry run, a paced run and an unpaced run of one plan give one
//! timeline, whatever order tokio polls the tasks in and however loaded the machine is.
//!
//! Durability: every event goes to the journal, and the engine waits for it to be on
//! disk before acting on it (a failover's intent before the call, its result before
//! the VM's post actions). A resumed run skips the steps its journal shows done.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::event::{Draft, Event, EventBus, EventData, EventKind, Scope};
use super::history::History;
use super::keys;
use super::services::StepServices;
use super::slots::{Hold, Slots};
use super::{EventLog, ManualGate, RunOutcome, RunSpec, RunStatus, Stop};
use crate::fabric::dns::DnsUpdater;
use crate::fabric::{
    Call, CallOutcome, Fabric, FabricError, FabricResult, FailoverOutcome, FailoverRequest, Intent, Preflight,
    PreflightRequest, Replica,
};
use crate::model::recovery::delta;
use crate::model::{FailoverKind, HumanDuration, Inventory, Timestamp, format_time};
use crate::plan::validate::ResolvedPlan;
use crate::plan::{
    Action, ActionContext, ActionError, Direction, EventView, FailurePolicy, Group, Hook, Manual, OnFailure, Plan,
    Services, Step, VmBoard, VmView,
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
    inventory: Arc<Inventory>,
    bus: Arc<EventBus>,
    /// Numbering and journaling happen under one lock, so the journal receives events
    /// in their order and a crash can leave no gap in it.
    publishing: Mutex<()>,
    vms: Arc<VmBoard>,
    /// Where each VM's replica lands, as the preflight decided.
    placements: HashMap<String, Replica>,
    /// R12: per replication group, when its first VM of this run began: every member
    /// chooses its recovery point as of then, so the group shares one.
    horizons: Mutex<HashMap<String, Timestamp>>,
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
    /// Where each VM's replica lands: the preflight's placements (see [`preflight`]).
    pub placements: HashMap<String, Replica>,
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

/// When a run starts, or goes on after a stop: the fabric's clock, or the journal's last
/// event if that is later. The clock never moves backwards.
pub fn start_time(fabric: &dyn Fabric, history: &History) -> Timestamp {
    let now = fabric.now();
    history.last_at.map_or(now, |last| last.max(now))
}

/// What the run asks of each VM, without the per-VM parts (point horizon, placement).
fn base_request(spec: &RunSpec, plan: &Plan) -> FailoverRequest {
    FailoverRequest {
        test_network: (spec.kind == FailoverKind::Test).then(|| plan.test_network.clone()).flatten(),
        shut_down_source: spec.shut_down_source,
        ..FailoverRequest::new(spec.kind, spec.point)
    }
}

/// Checks the whole plan against the fabric before the first VM is touched (DESIGN.md,
/// "Preflight, then act"): for a new run every VM, for a resumed one those it has not
/// brought up and was not in the middle of (the fabric is asked about those). Returns
/// every refusal at once, and the placements the run must be given in [`Deps`].
pub async fn preflight(
    fabric: &dyn Fabric,
    plan: &Plan,
    resolved: &ResolvedPlan,
    spec: &RunSpec,
    history: &History,
) -> FabricResult<Preflight> {
    let vms = resolved
        .groups
        .iter()
        .flat_map(|g| &g.vms)
        .filter(|vm| history.outcome(vm).is_none() && history.open_attempt(vm).is_none())
        .cloned()
        .collect();
    let intent = if spec.failback { Intent::Failback } else { Intent::Failover(base_request(spec, plan)) };
    fabric.preflight(&PreflightRequest { at: start_time(fabric, history), intent, vms }).await
}

/// Runs `plan` (already validated, resolved and preflighted) and returns what happened.
pub async fn execute(deps: Deps, plan: Arc<Plan>, resolved: ResolvedPlan, spec: RunSpec) -> RunOutcome {
    let vms = initial_views(&deps, &resolved);
    let resumed = deps.history.started.is_some();
    let mut t = start_time(&*deps.fabric, &deps.history);
    let started = deps.history.started.unwrap_or(t);
    let horizons =
        deps.history.horizons().filter_map(|(vm, at)| Some((deps.inventory.group_of(vm)?.name.clone(), at))).collect();
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
        inventory: deps.inventory,
        bus: deps.bus,
        publishing: Mutex::new(()),
        vms: Arc::new(VmBoard::new(vms)),
        placements: deps.placements,
        horizons: Mutex::new(horizons),
    });
    let first = if resumed { EventKind::RunResumed } else { EventKind::RunStarted };
    run.emit(first, &Scope::default(), draft(Some(run.plan.name.clone()), None), &mut t).await;
    let canceller = tokio::spawn(run.clone().cancel_when_stopped());
    let ok = run.run_all(&mut t).await;
    canceller.abort();
    let (status, kind, detail) = match run.stop.reason() {
        Some(reason) if run.stop.is_cancel() => (RunStatus::Cancelled, EventKind::RunCancelled, Some(reason)),
        Some(reason) => (RunStatus::Failed, EventKind::RunFailed, Some(reason)),
        None if ok => (RunStatus::Succeeded, EventKind::RunSucceeded, None),
        None => (RunStatus::Failed, EventKind::RunFailed, None),
    };
    // The run ends with its last event; hooks on it run after, off its clock.
    let finished = t;
    run.emit(kind, &Scope::default(), draft(Some(run.plan.name.clone()), detail), &mut t).await;
    // The fabric's clock moves to the run's end, even if a manual step or a script
    // action took the last stretch without calling it.
    run.fabric.wait(t, Duration::ZERO).await;
    let mut events = run.bus.take_events();
    if run.spec.dry_run {
        canonical_order(&mut events, &run.resolved);
    }
    RunOutcome { run_id: run.spec.run_id.clone(), status, started, finished, events }
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
                services: vm.services.clone(),
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

/// Whether an action may be cut off when the run is told to stop. Hooks on the run's
/// end run to completion: they are how a cancel is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    OnStop,
    Never,
}

impl RunState {
    /// Publishes an event at modelled time `at` to the bus and queues it for the
    /// journal; returns its number and a future that resolves once it is durable.
    pub(super) fn publish(
        &self,
        kind: EventKind,
        scope: &Scope,
        draft: Draft,
        at: Timestamp,
    ) -> (u64, Option<super::Durable>) {
        let _in_order = self.publishing.lock().expect("publish lock");
        self.bus.publish(at, kind, scope, draft, |event| {
            (event.seq, self.journal.as_ref().map(|journal| journal.record(event)))
        })
    }

    /// Publishes an event at `t` and runs the hooks that listen for it, which move `t`
    /// on by the time they take. Before acting on an event (see
    /// [`EventKind::is_acted_on`]) or running its hooks, waits until the journal has it;
    /// the journal keeps events in order, so that covers every event before it too, and
    /// the others need no wait of their own. Hooks do not fire on their own events, and
    /// a failing hook never fails the run. A journal that cannot be written stops the run.
    async fn emit(self: &Arc<Self>, kind: EventKind, scope: &Scope, what: Draft, t: &mut Timestamp) {
        let hooks: Vec<&Hook> = self.plan.hooks.iter().filter(|h| kind.matches(&h.event)).collect();
        // What the hooks see of the event: its error, if it reports one.
        let error = match kind {
            EventKind::VmFailed | EventKind::ActionFailed if !hooks.is_empty() => what.detail.clone(),
            _ => None,
        };
        let (seq, durable) = self.publish(kind, scope, what, *t);
        let acting = kind.is_acted_on() || !hooks.is_empty();
        if let Some(durable) = durable.filter(|_| acting)
            && let Err(e) = durable.await
        {
            self.stop.fail(format!("the run stopped: {e}"));
        }
        let cut = if kind.ends_run() { Cut::Never } else { Cut::OnStop };
        for hook in hooks {
            let view = EventView {
                kind: kind.name().into(),
                group: scope.group.clone(),
                vm: scope.vm.clone(),
                error: error.clone(),
            };
            let step = keys::hook(kind.name(), seq);
            if let Err(e) = self.invoke(&*hook.action, scope, &step, Some(view), t, cut).await {
                let at = e.at.as_ref().map(|p| format!(" at {p}")).unwrap_or_default();
                let detail = format!("{e}{at}");
                let failed = draft(Some(format!("on {}", hook.event)), Some(detail));
                self.publish(EventKind::HookFailed, scope, failed, *t);
            }
        }
    }

    /// The reason to stop, if the run must: checked before every step.
    fn stopped(&self) -> Result<(), String> {
        self.stop.reason().map_or(Ok(()), Err)
    }

    /// Lets `duration` pass from `t` on the fabric's clock, unless the run is told to stop.
    async fn pause(&self, t: &mut Timestamp, duration: Duration) -> Result<(), String> {
        tokio::select! {
            biased;
            () = self.stop.stopped() => Err(self.stop.reason().unwrap_or_default()),
            end = self.fabric.wait(*t, duration) => {
                *t = end;
                Ok(())
            }
        }
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
            let call = Call::new(keys::vm_call(&self.spec.run_id, &vm, "cancel"), self.fabric.now());
            if let Err(e) = self.fabric.cancel(&call, &vm).await {
                tracing::warn!(%vm, error = %e, "cancel of a failover under way failed");
            }
        }
    }

    pub(super) fn test_network(&self) -> Option<String> {
        self.plan.test_network.clone()
    }

    /// Whether a VM this run brought up at `ip` serves `port`: what a dry run and a real
    /// run on the simulated fabric both take for an answer, so they agree.
    pub(super) fn is_served(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.vms.serves(ip, port)
    }

    /// Calls an action once, from `t`; `t` moves to where the action got. An action cut
    /// off by a stop is dropped, which stops its script.
    async fn invoke(
        self: &Arc<Self>,
        action: &dyn Action,
        scope: &Scope,
        step: &str,
        event: Option<EventView>,
        t: &mut Timestamp,
        cut: Cut,
    ) -> Result<(), ActionError> {
        let services = Arc::new(StepServices::new(self.clone(), scope.clone(), step.into(), *t));
        let (direction, source, target) = match self.spec.failback {
            false => (Direction::Failover, &self.plan.source, &self.plan.target),
            true => (Direction::Failback, &self.plan.target, &self.plan.source),
        };
        let ctx = ActionContext {
            run_id: self.spec.run_id.clone(),
            plan: self.plan.name.clone(),
            kind: self.spec.kind,
            source: source.clone(),
            target: target.clone(),
            direction,
            dry_run: self.spec.dry_run,
            group: scope.group.clone(),
            vm: scope.vm.clone(),
            vms: self.vms.clone(),
            test_network: self.plan.test_network.clone(),
            event,
            services: services.clone(),
        };
        let result = match cut {
            Cut::Never => action.run(ctx).await,
            Cut::OnStop => tokio::select! {
                result = action.run(ctx) => result,
                () = self.stop.stopped() => {
                    Err(ActionError { message: self.stop.reason().unwrap_or_default(), at: None })
                }
            },
        };
        *t = (*t).max(services.now());
        result
    }

    /// An action with the policy's retries. Returns the last error.
    async fn run_action(
        self: &Arc<Self>,
        action: &dyn Action,
        scope: &Scope,
        key: &str,
        policy: FailurePolicy,
        t: &mut Timestamp,
    ) -> Result<(), String> {
        let label = action.label();
        let keyed =
            |detail: Option<String>| Draft { step: Some(label.clone()), detail, key: Some(key.into()), data: None };
        for attempt in 0..=policy.retries {
            self.stopped()?;
            self.emit(EventKind::ActionStarted, scope, keyed(None), t).await;
            match self.invoke(action, scope, key, None, t, Cut::OnStop).await {
                Ok(()) => {
                    self.emit(EventKind::ActionSucceeded, scope, keyed(None), t).await;
                    return Ok(());
                }
                Err(e) => {
                    let at = e.at.as_ref().unwrap_or(action.at());
                    let detail = format!("{at}: {e}");
                    if attempt < policy.retries && self.stopped().is_ok() {
                        self.emit(EventKind::ActionRetried, scope, keyed(Some(detail)), t).await;
                        self.pause(t, backoff(&policy, attempt)).await?;
                    } else {
                        self.emit(EventKind::ActionFailed, scope, keyed(Some(detail.clone())), t).await;
                        return Err(detail);
                    }
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// R21: the plan waits for an operator. The gate says how long the step took: a
    /// person's time as it passed, or the step's estimate where it approves by itself
    /// (a dry run, a rehearsal).
    async fn run_manual(
        self: &Arc<Self>,
        manual: &Manual,
        scope: &Scope,
        key: &str,
        t: &mut Timestamp,
    ) -> Result<(), String> {
        let keyed = |detail: Option<String>| Draft {
            step: Some(manual.text.clone()),
            detail,
            key: Some(key.into()),
            data: None,
        };
        let expect = format!("timeout {}, expected {}", HumanDuration(manual.timeout), HumanDuration(manual.estimate));
        self.emit(EventKind::ManualWaiting, scope, keyed(Some(expect)), t).await;
        let waited = tokio::select! {
            biased;
            () = self.stop.stopped() => Err(self.stop.reason().unwrap_or_default()),
            result = self.gate.wait(&self.spec.run_id, key, manual) => result,
        };
        match waited {
            Ok(approval) => {
                *t += delta(approval.took);
                self.emit(EventKind::ManualDone, scope, keyed(approval.how), t).await;
                Ok(())
            }
            Err(e) => {
                self.emit(EventKind::ActionFailed, scope, keyed(Some(e.clone())), t).await;
                Err(e)
            }
        }
    }

    /// Steps in order from `t`; each has the key `{prefix}/{index}`, and those a resumed
    /// run finished before are skipped.
    async fn run_steps(
        self: &Arc<Self>,
        steps: &[Step],
        scope: &Scope,
        prefix: &str,
        policy: FailurePolicy,
        t: &mut Timestamp,
    ) -> Result<(), String> {
        for (index, step) in steps.iter().enumerate() {
            let key = keys::step(prefix, index);
            if self.history.is_done(&key) {
                continue;
            }
            self.stopped()?;
            match step {
                Step::Action(action) => self.run_action(&**action, scope, &key, policy, t).await?,
                Step::Manual(manual) => self.run_manual(manual, scope, &key, t).await?,
            }
        }
        Ok(())
    }

    async fn run_all(self: &Arc<Self>, t: &mut Timestamp) -> bool {
        let plan = self.plan.clone();
        let top = Scope::default();
        if self.run_steps(&plan.pre, &top, &keys::plan_steps("pre"), plan.policy, t).await.is_err() {
            self.skip_from(0, t).await;
            return false;
        }
        let mut ok = true;
        for index in 0..plan.groups.len() {
            if self.stopped().is_err() {
                self.skip_from(index, t).await;
                return false;
            }
            let group_ok = self.run_group(index, t).await;
            ok &= group_ok;
            if !group_ok
                && (self.stopped().is_err() || plan.policy_of(&plan.groups[index]).on_failure == OnFailure::Stop)
            {
                self.skip_from(index + 1, t).await;
                return false;
            }
        }
        ok &= self.run_steps(&plan.post, &top, &keys::plan_steps("post"), plan.policy, t).await.is_ok();
        if ok && self.spec.failback {
            ok &= self.complete_failback(t).await;
        }
        ok
    }

    /// Marks the VMs of groups from `first` on that did not start as not attempted.
    async fn skip_from(self: &Arc<Self>, first: usize, t: &mut Timestamp) {
        for group in self.resolved.groups.iter().skip(first) {
            for vm in &group.vms {
                let pending = self.vms.get(vm).is_some_and(|v| v.state == "pending");
                if pending {
                    self.vms.update(vm, |v| v.state = "skipped".into());
                    self.emit(EventKind::VmSkipped, &scope(Some(&group.name), Some(vm)), Draft::default(), t).await;
                }
            }
        }
    }

    /// One group from `t`: `t` moves to its end, when its last VM and post-step are done.
    async fn run_group(self: &Arc<Self>, index: usize, t: &mut Timestamp) -> bool {
        let group: &Group = &self.plan.groups[index];
        let group_key = keys::group(&group.name);
        if self.history.is_done(&group_key) {
            return true;
        }
        let policy = self.plan.policy_of(group);
        let group_scope = scope(Some(&group.name), None);
        self.emit(EventKind::GroupStarted, &group_scope, Draft::default(), t).await;
        if let Err(e) =
            self.run_steps(&group.pre, &group_scope, &keys::group_steps(&group.name, "pre"), policy, t).await
        {
            return self.finish_group(&group_scope, &group_key, Some(e), t).await;
        }
        let vms = self.resolved.groups[index].vms.clone();
        let slots = Slots::new(self.spec.parallel.max(1).min(vms.len()), *t, vms.len());
        let mut tasks = JoinSet::new();
        for (ticket, vm) in vms.into_iter().enumerate() {
            let (run, slots) = (self.clone(), slots.clone());
            tasks.spawn(async move {
                let (mut hold, mut at) = slots.take(ticket).await;
                let result = run.fail_over_vm(index, &vm, &mut at, &mut hold).await;
                hold.release(at);
                (vm, result, at)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (vm, result, end) = joined.expect("VM task panicked");
            *t = (*t).max(end);
            if result.is_err() && !group.optional.contains(&vm) {
                failed.push(vm);
            }
        }
        if !failed.is_empty() {
            failed.sort();
            let error = Some(format!("failed: {}", failed.join(", ")));
            return self.finish_group(&group_scope, &group_key, error, t).await;
        }
        let post = keys::group_steps(&group.name, "post");
        let result = self.run_steps(&group.post, &group_scope, &post, policy, t).await;
        self.finish_group(&group_scope, &group_key, result.err(), t).await
    }

    async fn finish_group(
        self: &Arc<Self>,
        group_scope: &Scope,
        key: &str,
        error: Option<String>,
        t: &mut Timestamp,
    ) -> bool {
        let kind = if error.is_none() { EventKind::GroupSucceeded } else { EventKind::GroupFailed };
        let ok = error.is_none();
        self.emit(kind, group_scope, Draft { detail: error, key: Some(key.into()), ..Draft::default() }, t).await;
        ok
    }

    /// R12: when `vm`'s replication group began to fail over in this run; the first
    /// member to ask, at `t`, fixes it. Members ask as they get their slots, which is in
    /// plan order, so the first in the plan fixes it whatever order tasks run in.
    fn horizon(&self, vm: &str, t: Timestamp) -> Option<Timestamp> {
        let group = self.inventory.group_of(vm)?;
        let mut horizons = self.horizons.lock().expect("horizons lock");
        Some(*horizons.entry(group.name.clone()).or_insert(t))
    }

    /// What the run asks of `vm`, which starts at `t`.
    fn request(&self, vm: &str, t: Timestamp) -> FailoverRequest {
        FailoverRequest {
            points_as_of: self.horizon(vm, t),
            placement: self.placements.get(vm).cloned(),
            ..base_request(&self.spec, &self.plan)
        }
    }

    /// One VM from `t`: its failover with retries (unless a resumed run brought it up
    /// already), then its post actions; `t` moves to where it got, and the slot it holds
    /// hears of each step done.
    async fn fail_over_vm(
        self: &Arc<Self>,
        group_index: usize,
        vm: &str,
        t: &mut Timestamp,
        hold: &mut Hold,
    ) -> Result<(), String> {
        let group = &self.plan.groups[group_index];
        let policy = self.plan.policy_of(group);
        let vm_scope = scope(Some(&group.name), Some(vm));
        if self.history.outcome(vm).is_none() {
            self.stopped()?;
            self.vms.update(vm, |v| v.state = "running".into());
            self.emit(EventKind::VmStarted, &vm_scope, Draft::default(), t).await;
            let outcome = match self.fail_over_with_retries(vm, &vm_scope, policy, t).await {
                Ok(outcome) => outcome,
                Err(e) => return self.vm_failed(vm, &vm_scope, e, t).await,
            };
            hold.progress(*t);
            self.vms.update(vm, |v| landed(v, &outcome));
            let up = Draft {
                detail: Some(describe(&outcome)),
                key: Some(keys::vm_failover(vm)),
                data: EventData::of(&outcome),
                ..Draft::default()
            };
            self.emit(EventKind::VmSucceeded, &vm_scope, up, t).await;
        }
        if self.plan.update_dns {
            let key = keys::vm_dns(vm);
            let step = super::auto_dns::AutoDns { at: self.plan.at.clone() };
            if !self.history.is_done(&key)
                && let Err(e) = self.run_action(&step, &vm_scope, &key, policy, t).await
            {
                return self.vm_failed(vm, &vm_scope, e, t).await;
            }
            hold.progress(*t);
        }
        for (index, action) in group.post_each.iter().enumerate() {
            let key = keys::vm_each(vm, index);
            if self.history.is_done(&key) {
                continue;
            }
            if let Err(e) = self.run_action(&**action, &vm_scope, &key, policy, t).await {
                return self.vm_failed(vm, &vm_scope, e, t).await;
            }
            hold.progress(*t);
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
        t: &mut Timestamp,
    ) -> Result<FailoverOutcome, String> {
        let request = self.request(vm, *t);
        let step = keys::vm_failover(vm);
        if let Some(key) = self.history.open_attempt(vm) {
            match self.fabric.call_outcome(key).await.map_err(|e| e.to_string())? {
                CallOutcome::Unknown => {
                    // Journaled but never made: make it now, under the same key.
                    return self.attempt(vm, key, &request, t).await.map_err(|e| e.to_string());
                }
                CallOutcome::Done { result: Ok(json), ended } => {
                    *t = ended.map_or(*t, |ended| ended.max(*t));
                    return serde_json::from_value(json).map_err(|e| format!("{key}: unreadable outcome: {e}"));
                }
                CallOutcome::Done { result: Err(e), ended } => {
                    *t = ended.map_or(*t, |ended| ended.max(*t));
                    let detail = Draft { detail: Some(e.to_string()), key: Some(step.clone()), ..Draft::default() };
                    self.emit(EventKind::VmRetried, vm_scope, detail, t).await;
                }
                CallOutcome::Pending => return Err(format!("{key} is still under way")),
            }
        }
        let first = self.history.attempts(vm) + 1;
        for attempt in first..=first + policy.retries {
            self.stopped()?;
            let key = keys::failover_call(&self.spec.run_id, vm, attempt);
            let intent = Draft {
                detail: Some(key.clone()),
                key: Some(step.clone()),
                data: request.points_as_of.and_then(|at| EventData::of(&super::history::Attempt { points_as_of: at })),
                ..Draft::default()
            };
            self.emit(EventKind::VmAttempt, vm_scope, intent, t).await;
            self.stopped()?;
            match self.attempt(vm, &key, &request, t).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if retryable(&e) && attempt < first + policy.retries => {
                    let detail = Draft { detail: Some(e.to_string()), key: Some(step.clone()), ..Draft::default() };
                    self.emit(EventKind::VmRetried, vm_scope, detail, t).await;
                    self.pause(t, backoff(&policy, attempt - first)).await?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// One failover call from `t`; `t` moves to when it ended, success or failure.
    async fn attempt(
        &self,
        vm: &str,
        key: &str,
        request: &FailoverRequest,
        t: &mut Timestamp,
    ) -> Result<FailoverOutcome, FabricError> {
        let call = Call::new(key, *t);
        let result = if self.spec.failback {
            self.fabric.failback(&call, vm, self.spec.kind).await
        } else {
            self.fabric.failover(&call, vm, request).await
        };
        *t = call.ended();
        result
    }

    async fn vm_failed(
        self: &Arc<Self>,
        vm: &str,
        vm_scope: &Scope,
        error: String,
        t: &mut Timestamp,
    ) -> Result<(), String> {
        self.vms.update(vm, |v| v.state = "failed".into());
        self.emit(EventKind::VmFailed, vm_scope, draft(None, Some(error.clone())), t).await;
        Err(error)
    }

    /// R37: a failback is complete once every VM is committed at home and reprotected
    /// towards the recovery site again. Journaled steps, like the rest of the run, so a
    /// resumed failback finishes them; the VMs go at once, each commit then reprotect.
    async fn complete_failback(self: &Arc<Self>, t: &mut Timestamp) -> bool {
        let mut tasks = JoinSet::new();
        for group in &self.resolved.groups {
            for vm in group.vms.clone() {
                let (run, group, mut at) = (self.clone(), group.name.clone(), *t);
                tasks.spawn(async move {
                    let vm_scope = scope(Some(&group), Some(&vm));
                    let mut ok = true;
                    for operation in ["commit", "reprotect"] {
                        ok = ok && run.cycle_step(&vm, operation, &vm_scope, &mut at).await;
                    }
                    (ok, at)
                });
            }
        }
        let mut ok = true;
        while let Some(joined) = tasks.join_next().await {
            let (done, end) = joined.expect("failback task panicked");
            ok &= done;
            *t = (*t).max(end);
        }
        ok
    }

    /// One journaled commit or reprotect of `vm` from `t`.
    async fn cycle_step(self: &Arc<Self>, vm: &str, operation: &str, vm_scope: &Scope, t: &mut Timestamp) -> bool {
        let step_key = keys::vm_cycle(vm, operation);
        if self.history.is_done(&step_key) {
            return true;
        }
        if self.stopped().is_err() {
            return false;
        }
        let keyed = |detail: Option<String>| Draft {
            step: Some(operation.into()),
            detail,
            key: Some(step_key.clone()),
            data: None,
        };
        self.emit(EventKind::ActionStarted, vm_scope, keyed(None), t).await;
        let call = Call::new(keys::vm_call(&self.spec.run_id, vm, operation), *t);
        let result = match operation {
            "commit" => self.fabric.commit(&call, vm).await,
            _ => self.fabric.reprotect(&call, vm).await,
        };
        *t = call.ended();
        match result {
            Ok(job) => {
                self.emit(EventKind::ActionSucceeded, vm_scope, keyed(Some(job.detail)), t).await;
                true
            }
            Err(e) => {
                self.emit(EventKind::ActionFailed, vm_scope, keyed(Some(e.to_string())), t).await;
                false
            }
        }
    }
}

/// The line a VM's success event carries: where it landed and what it cost.
fn describe(outcome: &FailoverOutcome) -> String {
    let ip = outcome.replica.ip().map_or("not connected".to_string(), |ip| ip.to_string());
    format!(
        "{} on {}/{}; point {}; {}",
        ip,
        outcome.replica.site,
        outcome.replica.host,
        format_time(outcome.point.time),
        outcome.data_loss_text()
    )
}

/// Puts a dry run's events in one order that does not depend on thread timing, so the
/// same plan prints the same bytes, and numbers them in it.
fn canonical_order(events: &mut [Event], resolved: &ResolvedPlan) {
    sort_events(events, resolved);
    for (seq, event) in events.iter_mut().enumerate() {
        event.seq = seq as u64;
    }
}

/// Sorts a run's events for reading: modelled time first (it never runs backwards along
/// a chain of causes); at the same instant: the plan's own steps before its groups and
/// its wrap-up after them, groups in plan order, a group's own steps before or after
/// its VMs, VMs in plan order, then the order of publication. Events at one instant in
/// different VMs are independent, so any fixed order among them is a true one.
pub fn sort_events(events: &mut [Event], resolved: &ResolvedPlan) {
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
}
