//! The simulated fabric, drplan's embedded default: a datacenter pair described by a
//! site file, honouring the replication and failover rules of DOMAIN.md on a modelled
//! clock, with its state kept in the state directory between commands.
//!
//! Layout: `clock` (modelled time), `record` (what is kept per VM), `replication`
//! (recovery points, status, health), `placement` (where a replica lands and its
//! addresses), `addresses` (the addresses in use), `operations` (protect, commit,
//! cleanup, power...), `failover`, `preflight` (a whole plan checked before a run).
//!
//! Operations start at the modelled time their caller gives (causal time) and end at
//! that time plus what they spend; the clock is the latest time any operation reached,
//! what the next command starts from. Pacing (real sleeps shrunk by the speed factor)
//! only slows a run down for people to watch: it never decides a timestamp.

mod addresses;
mod clock;
mod failover;
mod operations;
mod placement;
mod preflight;
mod record;
mod replication;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use addresses::AddressBook;
pub use clock::SimClock;
use record::{Records, VmRecord};

use super::{
    Call, CallOutcome, Fabric, FabricError, FabricResult, FailoverOutcome, FailoverRequest, Preflight,
    PreflightRequest, ReplicaNic, ReplicationStatus,
};
use crate::model::recovery::delta;
use crate::model::{
    FailoverKind, InitialProtection, Inventory, Job, JobStatus, Phase, PointChoice, ProtectionState, RecoveryPoint,
    Timestamp, Vm,
};
use crate::store::{CallRecord, SimBatch, SimStore, StateDir, StoreError};

/// The in-memory state, saved to the store after every change.
struct SimState {
    vms: Records,
    /// In id order.
    jobs: Vec<Job>,
    calls: HashMap<String, CallRecord>,
    /// `None` for a scratch copy: nobody reads back what a dry run did, so it is not
    /// encoded and written anywhere.
    store: Option<SimStore>,
    /// What each call under way changed at its end, saved with its outcome.
    closing: HashMap<String, (Vec<String>, Vec<u64>)>,
    /// The addresses in use, once a placement has needed them.
    addresses: Option<AddressBook>,
}

/// The call the current task is making.
struct CallScope {
    /// Its idempotency key, so the call's last changes are saved in one transaction with
    /// its outcome: a crash leaves either the call pending and the VM where it was, or
    /// both done.
    key: String,
    /// When its job closed: when the call ended, success or failure.
    ended: Cell<Option<Timestamp>>,
}

tokio::task_local! {
    static CURRENT_CALL: CallScope;
}

pub struct SimFabric {
    inventory: Arc<Inventory>,
    clock: SimClock,
    state: Mutex<SimState>,
    /// Failovers under way in this process, by VM, so that cancel can stop them (R35).
    in_flight: Mutex<HashMap<String, Arc<Notify>>>,
}

/// The changes of one step, to save in one transaction.
#[derive(Default)]
struct Changes<'a> {
    vms: Vec<&'a str>,
    jobs: Vec<u64>,
    calls: Vec<&'a str>,
}

/// Jobs are kept in id order (the store loads them so, and a new one takes the next id),
/// so one is found by bisection: a run of 100,000 VMs makes hundreds of thousands.
fn job_position(jobs: &[Job], id: u64) -> Option<usize> {
    jobs.binary_search_by_key(&id, |j| j.id).ok()
}

impl SimState {
    fn save(&mut self, clock: Timestamp, changes: Changes<'_>) -> FabricResult<()> {
        let Some(store) = &mut self.store else { return Ok(()) };
        let vms = changes.vms.iter().filter_map(|name| self.vms.get(name).map(|r| (*name, r))).collect();
        let all = &self.jobs;
        let jobs = changes.jobs.iter().filter_map(|id| job_position(all, *id).map(|i| &all[i])).collect();
        let calls = changes.calls.iter().filter_map(|key| self.calls.get(*key)).collect();
        let batch = SimBatch { clock, vms, jobs, calls };
        store.apply(&batch).map_err(|e| FabricError::Store { message: e.to_string() })
    }

    /// Whoever holds the state directory's lock is the only drplan process: a call still
    /// pending, a VM still failing over or a job still running was cut off when an earlier
    /// process stopped. They become failed (a failover can then be retried or cancelled),
    /// saved in one transaction.
    fn reconcile_interrupted(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let interrupted = |what: &str| FabricError::Interrupted { what: what.into() };
        let mut changes = (Vec::new(), Vec::new(), Vec::new());
        for call in self.calls.values_mut().filter(|c| c.outcome.is_none()) {
            let outcome: Result<(), FabricError> = Err(interrupted(&format!("{} of {}", call.operation, call.vm)));
            call.outcome = Some(serde_json::to_string(&outcome).expect("errors serialize"));
            call.ended = Some(now);
            changes.2.push(call.key.clone());
        }
        for (name, record) in self.vms.iter_mut() {
            if let Phase::FailingOver { kind, .. } = record.protection.phase {
                record.protection.fail_failover(kind, interrupted(&format!("the {kind} failover")).to_string());
                changes.0.push(name.clone());
            }
        }
        for job in self.jobs.iter_mut().filter(|j| j.status == JobStatus::Running) {
            job.status = JobStatus::Failed;
            job.finished = Some(now);
            job.detail = interrupted(&job.operation).to_string();
            changes.1.push(job.id);
        }
        if changes.0.is_empty() && changes.1.is_empty() && changes.2.is_empty() {
            return Ok(());
        }
        let (vms, jobs, calls) = &changes;
        let saved = self.save(
            now,
            Changes {
                vms: vms.iter().map(String::as_str).collect(),
                jobs: jobs.clone(),
                calls: calls.iter().map(String::as_str).collect(),
            },
        );
        saved.map_err(|e| StoreError::BadRecord {
            path: "sim.db".into(),
            what: "interrupted calls".into(),
            message: e.to_string(),
        })
    }

    fn record(&mut self, vm: &str) -> &mut VmRecord {
        self.vms.get_mut(vm).expect("every inventory VM has a record")
    }

    fn job_mut(&mut self, id: u64) -> &mut Job {
        let i = job_position(&self.jobs, id).expect("job exists");
        &mut self.jobs[i]
    }

    fn new_job(&mut self, operation: &str, vm: &str, started: Timestamp) -> u64 {
        let id = self.jobs.last().map_or(1, |j| j.id + 1);
        self.jobs.push(Job {
            id,
            operation: operation.into(),
            vm: vm.into(),
            status: JobStatus::Running,
            started,
            finished: None,
            detail: String::new(),
        });
        id
    }

    fn finish_job(&mut self, id: u64, status: JobStatus, at: Timestamp, detail: String) -> Job {
        let job = self.job_mut(id);
        job.status = status;
        job.finished = Some(at);
        job.detail = detail;
        job.clone()
    }
}

impl SimFabric {
    /// Opens the simulation of `inventory` kept in `dir`, creating it on first use.
    pub fn open(inventory: Arc<Inventory>, dir: &StateDir) -> Result<SimFabric, StoreError> {
        Self::load(inventory, SimStore::open(dir)?, true)
    }

    /// The last committed state of a simulation another command is running: for looking,
    /// never for acting (nothing is reconciled or saved).
    pub fn open_read_only(inventory: Arc<Inventory>, dir: &std::path::Path) -> Result<SimFabric, StoreError> {
        Self::load(inventory, SimStore::open_read_only(dir)?, false)
    }

    /// The simulation as the site file (or a rehearsal of real sites) starts it, kept in
    /// memory only. Nothing in a new store was cut off: a failover a rehearsal found under
    /// way stays under way, as it is on the real site.
    pub fn in_memory(inventory: Arc<Inventory>) -> Result<SimFabric, StoreError> {
        Self::load(inventory, SimStore::in_memory()?, false)
    }

    fn load(inventory: Arc<Inventory>, store: SimStore, reconcile: bool) -> Result<SimFabric, StoreError> {
        let now = store.clock()?.unwrap_or(inventory.simulation.start);
        let mut vms: BTreeMap<String, VmRecord> = store.vms()?.into_iter().collect();
        let jobs = store.jobs()?;
        let calls = store.calls()?.into_iter().map(|c| (c.key.clone(), c)).collect();
        // The VMs a rehearsal found on real sites: their replicas are placed once all are in.
        let mut found = Vec::new();
        for (vm, initial) in inventory.vms.iter().zip(&inventory.initial_protection) {
            vms.entry(vm.name.clone()).or_insert_with(|| match initial {
                Some(InitialProtection { found: Some(state), .. }) => {
                    found.push(vm);
                    VmRecord::found(state.clone(), now, |policy| inventory.policy(policy).map(|p| p.retention))
                }
                Some(p) => {
                    let mut protection = ProtectionState::unprotected();
                    let policy = inventory.policy(&p.policy).expect("site file checked the policy");
                    let copy = replication::initial_copy_time(&inventory, vm, &policy, &p.excluded_disks, p.since);
                    protection.protect(&p.policy, p.excluded_disks.clone(), p.since, p.since + delta(copy));
                    VmRecord::new(protection)
                }
                None => VmRecord::new(ProtectionState::unprotected()),
            });
        }
        for record in vms.values_mut() {
            record.settle(now);
        }
        let clock = match inventory.simulation.pace {
            true => SimClock::new(now, inventory.simulation.speed),
            false => SimClock::unpaced(now),
        };
        let mut state = SimState {
            vms: Records::new(vms),
            jobs,
            calls,
            store: Some(store),
            closing: HashMap::new(),
            addresses: None,
        };
        if reconcile {
            state.reconcile_interrupted(now)?;
        }
        let fabric = SimFabric {
            inventory: inventory.clone(),
            clock,
            state: Mutex::new(state),
            in_flight: Mutex::new(HashMap::new()),
        };
        fabric.place_found_replicas(&found);
        Ok(fabric)
    }

    /// A copy of this simulation that keeps its state in memory only, saves it nowhere
    /// and spends no real time: what a dry run runs against, so the real state is never
    /// touched. Causal time makes its timeline the one a paced run would have.
    pub fn scratch_copy(&self) -> Result<SimFabric, StoreError> {
        let state = self.lock();
        let copy = SimState {
            vms: state.vms.clone(),
            jobs: state.jobs.clone(),
            calls: HashMap::new(),
            store: None,
            closing: HashMap::new(),
            addresses: None,
        };
        Ok(SimFabric {
            inventory: self.inventory.clone(),
            clock: SimClock::unpaced(self.clock.now()),
            state: Mutex::new(copy),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Makes modelled time pass (replication goes on, points age out) and saves it.
    pub fn advance(&self, by: Duration) -> FabricResult<Timestamp> {
        let now = self.clock.advance(by);
        let mut state = self.lock();
        let names: Vec<String> = state.vms.names().cloned().collect();
        for (_, record) in state.vms.iter_mut() {
            record.settle(now);
        }
        state.save(now, Changes { vms: names.iter().map(String::as_str).collect(), ..Changes::default() })?;
        Ok(now)
    }

    /// How many times each idempotency key was presented, for tests and audits.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.lock().calls.values().map(|c| (c.key.clone(), c.count)).collect()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().expect("sim state lock poisoned")
    }

    fn vm(&self, name: &str) -> FabricResult<&Vm> {
        self.inventory.vm(name).ok_or_else(|| FabricError::UnknownVm { vm: name.into() })
    }

    /// Locks the state with the VM's record settled to `at`.
    fn settled(&self, vm: &str, at: Timestamp) -> FabricResult<MutexGuard<'_, SimState>> {
        self.vm(vm)?;
        let mut state = self.lock();
        state.record(vm).settle(at);
        Ok(state)
    }

    /// Runs `work` once per idempotency key: a key seen before returns the outcome it
    /// had, success or error, without doing the work again. Either way the call learns
    /// when it ended. A scratch copy keeps no calls: a dry run presents no key twice and
    /// nothing reads its calls back, and keeping 100,000 outcomes cost it a tenth of its
    /// memory and time.
    async fn once<T, F, Fut>(&self, call: &Call, operation: &str, vm: &str, work: F) -> FabricResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = FabricResult<T>>,
    {
        let key = call.key.as_str();
        let kept = self.lock().store.is_some();
        if kept {
            let mut state = self.lock();
            let seen = match state.calls.get_mut(key) {
                Some(record) => {
                    record.count += 1;
                    Some((record.outcome.clone(), record.ended))
                }
                None => {
                    let record = CallRecord {
                        key: key.into(),
                        operation: operation.into(),
                        vm: vm.into(),
                        outcome: None,
                        count: 1,
                        ended: None,
                    };
                    state.calls.insert(key.into(), record);
                    None
                }
            };
            state.save(self.clock.now(), Changes { calls: vec![key], ..Changes::default() })?;
            match seen {
                Some((Some(json), ended)) => {
                    if let Some(ended) = ended {
                        call.end_at(ended);
                    }
                    return serde_json::from_str::<Result<T, FabricError>>(&json)
                        .map_err(|e| FabricError::Store { message: format!("call {key}: unreadable outcome: {e}") })?;
                }
                Some((None, _)) => return Err(FabricError::InProgress { key: key.into() }),
                None => {}
            }
        }
        let scope = CallScope { key: key.to_string(), ended: Cell::new(None) };
        let (result, ended) = CURRENT_CALL
            .scope(scope, async {
                let result = work().await;
                (result, CURRENT_CALL.with(|c| c.ended.get()))
            })
            .await;
        if let Some(ended) = ended {
            call.end_at(ended);
        }
        let mut state = self.lock();
        let (vms, jobs) = state.closing.remove(key).unwrap_or_default();
        if !kept {
            return result;
        }
        if matches!(result, Err(FabricError::Store { .. })) {
            // Nothing reliable can be recorded; the caller must stop.
            return result;
        }
        let json = serde_json::to_string(&result).map_err(|e| FabricError::Store { message: e.to_string() })?;
        if let Some(record) = state.calls.get_mut(key) {
            record.outcome = Some(json);
            record.ended = Some(call.ended());
        }
        let changes = Changes { vms: vms.iter().map(String::as_str).collect(), jobs, calls: vec![key] };
        state.save(self.clock.now(), changes)?;
        result
    }

    /// Ends an operation: closes its job at `t`, moves the clock there and saves the
    /// VM's record with the job in one transaction.
    fn close_job(
        &self,
        state: &mut SimState,
        job: u64,
        vm: &str,
        status: JobStatus,
        t: Timestamp,
        detail: String,
    ) -> FabricResult<Job> {
        let job = state.finish_job(job, status, t, detail);
        self.clock.reached(t);
        let key = CURRENT_CALL.try_with(|call| {
            call.ended.set(Some(call.ended.get().map_or(t, |e| e.max(t))));
            call.key.clone()
        });
        match key {
            Ok(key) => {
                let closing = state.closing.entry(key).or_default();
                closing.0.push(vm.into());
                closing.1.push(job.id);
            }
            Err(_) => {
                state.save(self.clock.now(), Changes { vms: vec![vm], jobs: vec![job.id], ..Changes::default() })?
            }
        }
        Ok(job)
    }

    /// Spends modelled time on an operation of `vm`, cut short if it is cancelled.
    async fn spend(
        &self,
        t: &mut Timestamp,
        d: Duration,
        cancel: Option<&Notify>,
        vm: &str,
        what: &str,
    ) -> FabricResult<()> {
        match cancel {
            // Biased: the same order every time, so dry runs print the same bytes.
            Some(cancel) => tokio::select! {
                biased;
                _ = self.clock.pace(d) => {}
                _ = cancel.notified() => return Err(FabricError::Cancelled { vm: vm.into(), what: what.into() }),
            },
            None => self.clock.pace(d).await,
        }
        *t += delta(d);
        Ok(())
    }
}

#[async_trait]
impl Fabric for SimFabric {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn is_simulated(&self) -> bool {
        true
    }

    /// Unpaced, its operations only take the state's lock: nothing of it waits.
    fn completes_at_once(&self) -> bool {
        !self.clock.is_paced()
    }

    fn protection(&self) -> BTreeMap<String, ProtectionState> {
        let now = self.clock.now();
        let mut state = self.lock();
        state
            .vms
            .iter_mut()
            .map(|(name, record)| {
                record.settle(now);
                (name.clone(), record.protection.clone())
            })
            .collect()
    }

    async fn preflight(&self, request: &PreflightRequest) -> FabricResult<Preflight> {
        Ok(self.check_plan(request))
    }

    async fn protect(&self, call: &Call, vm: &str, policy: &str, exclude_disks: &[String]) -> FabricResult<Job> {
        self.once(call, "protect", vm, || self.do_protect(vm, policy, exclude_disks, call.at)).await
    }

    async fn unprotect(&self, call: &Call, vm: &str, delete_replica: bool) -> FabricResult<Job> {
        self.once(call, "unprotect", vm, || self.do_unprotect(vm, delete_replica, call.at)).await
    }

    async fn replication_status(&self, vm: &str, at: Timestamp) -> FabricResult<ReplicationStatus> {
        self.status(vm, at)
    }

    async fn recovery_points(&self, vm: &str, at: Timestamp) -> FabricResult<Vec<RecoveryPoint>> {
        self.points(vm, at)
    }

    async fn failover(&self, call: &Call, vm: &str, request: &FailoverRequest) -> FabricResult<FailoverOutcome> {
        let operation = format!("{} failover", request.kind);
        self.once(call, &operation, vm, || self.do_failover(vm, request, false, call.at)).await
    }

    async fn change_recovery_point(&self, call: &Call, vm: &str, point: PointChoice) -> FabricResult<FailoverOutcome> {
        self.once(call, "change recovery point", vm, || self.do_change_point(vm, point, call.at)).await
    }

    async fn commit(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "commit", vm, || self.do_commit(vm, call.at)).await
    }

    async fn cancel(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "cancel", vm, || self.do_cancel(vm, call.at)).await
    }

    async fn cleanup_test(&self, call: &Call, vm: &str, notes: &str) -> FabricResult<Job> {
        self.once(call, "cleanup", vm, || self.do_cleanup(vm, notes, call.at)).await
    }

    async fn reprotect(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "reprotect", vm, || self.do_reprotect(vm, call.at)).await
    }

    async fn failback(&self, call: &Call, vm: &str, kind: FailoverKind) -> FabricResult<FailoverOutcome> {
        let request = FailoverRequest::new(kind, PointChoice::Latest);
        self.once(call, "failback", vm, || self.do_failover(vm, &request, true, call.at)).await
    }

    async fn shutdown(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "shutdown", vm, || self.do_shutdown(vm, call.at)).await
    }

    async fn start(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "start", vm, || self.do_start(vm, call.at)).await
    }

    async fn addresses(&self, vm: &str, at: Timestamp) -> FabricResult<Vec<ReplicaNic>> {
        self.current_addresses(vm, at)
    }

    async fn jobs(&self) -> FabricResult<Vec<Job>> {
        Ok(self.lock().jobs.clone())
    }

    async fn call_outcome(&self, key: &str) -> FabricResult<CallOutcome> {
        let state = self.lock();
        let Some(call) = state.calls.get(key) else { return Ok(CallOutcome::Unknown) };
        let Some(json) = &call.outcome else { return Ok(CallOutcome::Pending) };
        let result: Result<serde_json::Value, FabricError> = serde_json::from_str(json)
            .map_err(|e| FabricError::Store { message: format!("call {key}: unreadable outcome: {e}") })?;
        Ok(CallOutcome::Done { result, ended: call.ended })
    }

    async fn wait(&self, from: Timestamp, duration: Duration) -> Timestamp {
        self.clock.pace(duration).await;
        let end = from + delta(duration);
        self.clock.reached(end);
        end
    }
}

#[cfg(test)]
mod tests;
