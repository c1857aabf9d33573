//! The libvirt fabric: real virtual machines (KVM in production, QEMU/TCG in tests)
//! protected, replicated and failed over between two libvirt sites, under the same
//! rules as the simulation (the protection life cycle is the model's state machine).
//!
//! Layout: `tools` (the virsh and qemu-img processes), `domain` (definitions read and
//! the replica's made), `hypervisor` (one site's operations), `host` (the machine holding
//! a site's files: this one, or one reached over ssh), `chain` (recovery points as qcow2
//! image chains at the target), `record` (what is kept per VM), `replication`
//! (one copy cycle, what `drplan replicate` repeats, in either direction), `failover`
//! (every kind, cleanup, commit, change of point, cancel), `way_back` (reprotect, and
//! the failover home a failback is).
//!
//! Time is the wall clock: a call's `at` is when it was made and its end when the real
//! work ended. State lives in `libvirt.db` in the state directory, shared with the
//! replication service, which runs beside the commands: a VM is held by one process at a
//! time (its record's holder), taken and released in single transactions.

pub mod chain;
pub mod domain;
mod failover;
pub mod host;

pub mod hypervisor;
mod record;
pub mod replication;
pub mod tools;
mod way_back;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use self::chain::Chain;
use self::hypervisor::Hypervisor;
pub use self::record::VmRecord;
use super::{
    Call, CallOutcome, Fabric, FabricError, FabricResult, FailoverOutcome, FailoverRequest, Health, Preflight,
    PreflightRequest, ReplicaNic, ReplicationStatus,
};
use crate::model::{
    FailoverKind, Inventory, Job, JobStatus, MeasuredDurations, Operation, Phase, PointChoice, ProtectionState, Side,
    Timestamp, Vm,
};
use crate::store::{CallRecord, SharedStore, StoreError};

/// The state file in the state directory.
pub const STATE_FILE: &str = "libvirt.db";

/// The folder of a site's storage where backups wait to be sent to another host.
const OUTGOING: &str = ".outgoing";

/// How long a failover waits for a replication cycle under way on its VM to end.
const HOLDER_WAIT: Duration = Duration::from_secs(120);

pub struct LibvirtFabric {
    inventory: Arc<Inventory>,
    store: SharedStore,
    hypervisors: HashMap<String, Hypervisor>,
}

fn store_error(e: StoreError) -> FabricError {
    FabricError::Store { message: e.to_string() }
}

fn failed<E: std::fmt::Display>(vm: &str, what: &str) -> impl Fn(E) -> FabricError {
    let (vm, what) = (vm.to_string(), what.to_string());
    move |e| FabricError::OperationFailed { vm: vm.clone(), what: what.clone(), why: e.to_string() }
}

impl LibvirtFabric {
    /// The fabric of a site file whose sites are libvirt ones, with its state in `dir`.
    pub fn open(inventory: Arc<Inventory>, dir: &Path) -> Result<LibvirtFabric, StoreError> {
        let store = SharedStore::open(dir, STATE_FILE)?;
        let hypervisors = inventory
            .sites
            .iter()
            .filter_map(|site| Some((site.name.clone(), Hypervisor::new(&site.libvirt.as_ref()?.uri, dir))))
            .collect();
        let fabric = LibvirtFabric { inventory, store, hypervisors };
        fabric.adopt_site_file_protection()?;
        Ok(fabric)
    }

    /// Whether a site file describes libvirt sites (then every site is one: the site
    /// file refuses pairings between a real site and a simulated one).
    pub fn serves(inventory: &Inventory) -> bool {
        inventory.sites.iter().any(|s| s.libvirt.is_some())
    }

    /// VMs the site file says are protected start their initial replication the first
    /// time the state is opened (R4): the service then makes the full copy.
    fn adopt_site_file_protection(&self) -> Result<(), StoreError> {
        // Read once: only a VM the store has never seen is written (every command opens this).
        let known: std::collections::HashSet<String> =
            self.store.vms::<serde_json::Value>()?.into_iter().map(|(name, _)| name).collect();
        for (vm, initial) in self.inventory.vms.iter().zip(&self.inventory.initial_protection) {
            let Some(initial) = initial.as_ref().filter(|_| !known.contains(&vm.name)) else { continue };
            let adopted: Result<(), ()> = self.store.update::<VmRecord, _, _>(&vm.name, |record| {
                if record.is_none() {
                    let mut fresh = VmRecord::new(ProtectionState::unprotected());
                    fresh.protection.protect(&initial.policy, initial.excluded_disks.clone(), initial.since, FOREVER);
                    *record = Some(fresh);
                }
                Ok(())
            })?;
            let _ = adopted;
        }
        Ok(())
    }

    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }

    fn vm(&self, name: &str) -> FabricResult<&Vm> {
        self.inventory.vm(name).ok_or_else(|| FabricError::UnknownVm { vm: name.into() })
    }

    /// The VM's record as it is now; a VM never protected has a fresh one.
    pub(crate) fn record(&self, vm: &str) -> FabricResult<VmRecord> {
        self.vm(vm)?;
        Ok(self.store.vm(vm).map_err(store_error)?.unwrap_or_else(|| VmRecord::new(ProtectionState::unprotected())))
    }

    /// Changes the VM's record in one transaction.
    pub(crate) fn update<T>(&self, vm: &str, change: impl FnOnce(&mut VmRecord) -> FabricResult<T>) -> FabricResult<T> {
        self.vm(vm)?;
        self.store
            .update::<VmRecord, _, _>(vm, |slot| {
                let record = slot.get_or_insert_with(|| VmRecord::new(ProtectionState::unprotected()));
                change(record)
            })
            .map_err(store_error)?
    }

    pub(crate) fn hypervisor(&self, site: &str) -> FabricResult<&Hypervisor> {
        self.hypervisors
            .get(site)
            .ok_or_else(|| FabricError::Refused { message: format!("site {site:?} is not a libvirt site"), vm: None })
    }

    /// The site on `side` of the VM's pairing, with its hypervisor.
    pub(crate) fn side(&self, vm: &Vm, side: Side) -> FabricResult<(&crate::model::Site, &Hypervisor)> {
        let site = self
            .inventory
            .site_on(vm, side)
            .ok_or_else(|| FabricError::NotPaired { vm: vm.name.clone(), site: vm.site.clone() })?;
        Ok((site, self.hypervisor(&site.name)?))
    }

    /// The VM's chain of points at the site it replicates to from `source`.
    pub(crate) fn chain(&self, vm: &Vm, source: Side) -> FabricResult<Chain> {
        self.storage_on(vm, source.other(), "")
    }

    /// Where the backups of the VM's copies from `source` are written first when the
    /// target is another host: a folder of the source's own storage, from which each copy
    /// is sent to the chain (`None`: the target's host is the source's, and backups
    /// land in the chain).
    pub(crate) fn outgoing(&self, vm: &Vm, source: Side) -> FabricResult<Option<Chain>> {
        let outgoing = self.storage_on(vm, source, OUTGOING)?;
        Ok((outgoing.host() != self.chain(vm, source)?.host()).then_some(outgoing))
    }

    /// The VM's folder in `sub` of the storage of the site on `side`, on its host.
    fn storage_on(&self, vm: &Vm, side: Side, sub: &str) -> FabricResult<Chain> {
        let (site, hypervisor) = self.side(vm, side)?;
        let storage = &site.libvirt.as_ref().expect("libvirt sites have a connection").storage;
        Ok(Chain::new(hypervisor.host().clone(), &storage.join(sub), &vm.name))
    }

    /// Records a finished job.
    fn job(
        &self,
        operation: &str,
        vm: &str,
        started: Timestamp,
        outcome: Result<String, &FabricError>,
    ) -> FabricResult<Job> {
        let (status, detail) = match outcome {
            Ok(detail) => (JobStatus::Succeeded, detail),
            Err(e) => (JobStatus::Failed, e.to_string()),
        };
        let mut job = Job {
            id: 0,
            operation: operation.into(),
            vm: vm.into(),
            status,
            started,
            finished: Some(Utc::now()),
            detail,
        };
        job.id = self.store.save_job(&job).map_err(store_error)?;
        Ok(job)
    }

    /// Runs a mutating call once per idempotency key: a key seen before returns what it
    /// did then (a resumed run never does a step twice), and the outcome is kept.
    async fn once<T, F>(&self, call: &Call, operation: &str, vm: &str, work: F) -> FabricResult<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = FabricResult<T>>,
    {
        if let Some(seen) = self.store.call(&call.key).map_err(store_error)? {
            let Some(outcome) = seen.outcome else {
                return Err(FabricError::Interrupted { what: format!("{operation} of {vm}") });
            };
            let outcome: Result<T, FabricError> = serde_json::from_str(&outcome).map_err(|e| FabricError::Store {
                message: format!("the outcome of call {} cannot be read: {e}", call.key),
            })?;
            if let Some(ended) = seen.ended {
                call.end_at(ended);
            }
            return outcome;
        }
        let mut record = CallRecord {
            key: call.key.clone(),
            operation: operation.into(),
            vm: vm.into(),
            outcome: None,
            count: 1,
            ended: None,
        };
        self.store.save_call(&record).map_err(store_error)?;
        let outcome = work.await;
        let ended = Utc::now();
        call.end_at(ended);
        record.outcome = Some(serde_json::to_string(&outcome).expect("outcomes serialize"));
        record.ended = Some(ended);
        self.store.save_call(&record).map_err(store_error)?;
        outcome
    }

    /// Takes the VM for `what`: waits (bounded) while a replication cycle holds it, then
    /// checks `operation` is allowed and applies `take` in the same transaction.
    pub(crate) async fn take(
        &self,
        vm: &str,
        what: &str,
        operation: Operation,
        take: impl Fn(&mut VmRecord) + Send,
    ) -> FabricResult<VmRecord> {
        self.remove_left_behind(vm).await?;
        let started = std::time::Instant::now();
        loop {
            let taken = self.update(vm, |record| {
                if let Some(holder) = record.live_holder() {
                    return Ok(Err(holder.clone()));
                }
                // A holder whose process died was cut off: a failover it ran has failed,
                // and can be retried or cancelled (R35).
                if let Some(dead) = record.holder.take()
                    && let Phase::FailingOver { kind, .. } = record.protection.phase
                {
                    let why = format!("interrupted: the drplan process {} running it stopped", dead.pid);
                    record.protection.fail_failover(kind, why);
                }
                record.protection.check(vm, operation)?;
                record.holder = Some(record::Holder::here(what));
                take(record);
                Ok(Ok(record.clone()))
            })?;
            match taken {
                Ok(record) => return Ok(record),
                Err(holder) if started.elapsed() < HOLDER_WAIT => {
                    tracing::debug!(vm, holder = %holder.what, "waiting for the VM to be released");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(holder) => {
                    return Err(FabricError::Refused {
                        message: format!(
                            "{vm} is held by {} (process {}) since {}; try again when it ends",
                            holder.what,
                            holder.pid,
                            crate::model::format_time(holder.since)
                        ),
                        vm: Some(vm.into()),
                    });
                }
            }
        }
    }

    /// Gives the VM back, with a last change.
    pub(crate) fn release(&self, vm: &str, change: impl FnOnce(&mut VmRecord)) -> FabricResult<VmRecord> {
        self.update(vm, |record| {
            record.holder = None;
            change(record);
            Ok(record.clone())
        })
    }

    /// The domain serving the VM now: its replica after a failover, else the VM's own.
    fn serving(&self, vm: &Vm, record: &VmRecord) -> FabricResult<(String, &Hypervisor)> {
        match (&record.replica, record.protection.active) {
            (Some(replica), Side::Recovery) => Ok((replica.domain.clone(), self.hypervisor(&replica.replica.site)?)),
            _ => Ok((vm.name.clone(), self.side(vm, Side::Original)?.1)),
        }
    }
}

/// An initial replication has no modelled end: it ends when the service's full copy does.
pub(crate) const FOREVER: Timestamp = chrono::DateTime::<Utc>::MAX_UTC;

#[async_trait]
impl Fabric for LibvirtFabric {
    fn now(&self) -> Timestamp {
        Utc::now()
    }

    fn is_simulated(&self) -> bool {
        false
    }

    /// Every VM's protection state, for validating plans.
    fn protection(&self) -> BTreeMap<String, ProtectionState> {
        let stored: HashMap<String, VmRecord> = self.store.vms::<VmRecord>().unwrap_or_default().into_iter().collect();
        self.inventory
            .vms
            .iter()
            .map(|vm| {
                let state = stored.get(&vm.name).map_or_else(ProtectionState::unprotected, |r| r.protection.clone());
                (vm.name.clone(), state)
            })
            .collect()
    }

    async fn preflight(&self, request: &PreflightRequest) -> FabricResult<Preflight> {
        self.check_plan(request).await
    }

    async fn protect(&self, call: &Call, vm: &str, policy: &str, exclude_disks: &[String]) -> FabricResult<Job> {
        self.once(call, "protect", vm, async {
            let started = Utc::now();
            let outcome = self.enable_protection(vm, policy, exclude_disks).await;
            let job = self.job("protect", vm, started, outcome.as_ref().cloned())?;
            outcome.map(|_| job)
        })
        .await
    }

    async fn unprotect(&self, call: &Call, vm: &str, delete_replica: bool) -> FabricResult<Job> {
        self.once(call, "unprotect", vm, async {
            let started = Utc::now();
            let record = self.take(vm, "unprotect", Operation::Unprotect, |_| {}).await?;
            let inventory_vm = self.vm(vm)?;
            if delete_replica && let Ok(chain) = self.chain(inventory_vm, record.protection.active) {
                chain.remove_files_except(&[], &[]).await;
            }
            if let Ok((_, source)) = self.side(inventory_vm, record.protection.active)
                && let Some(checkpoint) = &record.checkpoint
            {
                let _ = source.forget_checkpoint(vm, checkpoint).await;
            }
            self.release(vm, |record| {
                record.protection.unprotect();
                record.points.clear();
                record.checkpoint = None;
                record.delta_base = None;
                record.reprotect = None;
            })?;
            self.job("unprotect", vm, started, Ok("protection disabled".into()))
        })
        .await
    }

    async fn replication_status(&self, vm: &str, at: Timestamp) -> FabricResult<ReplicationStatus> {
        let record = self.record(vm)?;
        let inventory_vm = self.vm(vm)?;
        let latest = record.points.last().map(|p| p.point());
        let latest_app = record.points.iter().rev().find(|p| p.consistency == crate::model::Consistency::App);
        let rpo = latest.as_ref().map(|p| (at - p.time).to_std().unwrap_or_default());
        let policy = record.protection.replication_policy().and_then(|p| self.inventory.policy(p));
        let health = match (&record.protection.phase, rpo, &policy) {
            (Phase::InitialReplication { .. }, ..) => Health::InitialReplication,
            (Phase::Protected { .. }, Some(rpo), Some(policy)) if rpo > policy.rpo_threshold => {
                Health::Unhealthy { rpo, threshold: policy.rpo_threshold }
            }
            (Phase::Protected { .. }, ..) => Health::Healthy,
            _ => Health::NotReplicating,
        };
        let active = record.protection.active;
        let active_site = self.inventory.site_on(inventory_vm, active).map(|s| s.name.clone()).unwrap_or_default();
        let direction = match record.protection.phase {
            Phase::InitialReplication { .. } | Phase::Protected { .. } => self
                .inventory
                .site_on(inventory_vm, active.other())
                .map(|target| (active_site.clone(), target.name.clone())),
            _ => None,
        };
        let mut state = match (&record.protection.phase, &record.reprotect) {
            (Phase::InitialReplication { .. }, Some(reprotect)) => format!("in {}", reprotect.describe()),
            (Phase::InitialReplication { .. }, None) => {
                "in initial replication (R4: the full copy comes with the next cycle of drplan replicate)".to_string()
            }
            (Phase::Protected { .. }, Some(reprotect)) => {
                format!("{}; {}", record.protection.describe(), reprotect.describe())
            }
            _ => record.protection.describe(),
        };
        if let Some(error) = &record.last_error {
            state.push_str(&format!("; last replication cycle failed: {error}"));
        }
        if let Some(left) = &record.left_behind {
            state.push_str(&format!(
                "; its replica {} was left at site {} (unreachable: {}), and is removed as soon as that site answers",
                left.domain, left.site, left.error
            ));
        }
        Ok(ReplicationStatus {
            vm: vm.into(),
            state,
            active_site,
            active,
            direction,
            policy: record.protection.policy.clone(),
            // R4, R36: how far the initial or reprotect copy is while the service makes it.
            initial_progress: matches!(record.protection.phase, Phase::InitialReplication { .. })
                .then(|| record.copying.unwrap_or(0)),
            latest_point: latest,
            latest_app_consistent: latest_app.map(|p| p.point()),
            point_count: record.points.len(),
            rpo,
            health,
            test_failover: record.protection.test.as_ref().map(|t| t.at),
            allowed: record.protection.allowed(),
        })
    }

    async fn recovery_points(&self, vm: &str, _at: Timestamp) -> FabricResult<Vec<crate::model::RecoveryPoint>> {
        Ok(self.record(vm)?.points.iter().map(|p| p.point()).collect())
    }

    async fn failover(&self, call: &Call, vm: &str, request: &FailoverRequest) -> FabricResult<FailoverOutcome> {
        let operation = Operation::for_failover(request.kind);
        self.once(call, &format!("{} failover", request.kind), vm, self.fail_over(&call.key, vm, request, operation))
            .await
    }

    async fn change_recovery_point(&self, call: &Call, vm: &str, point: PointChoice) -> FabricResult<FailoverOutcome> {
        self.once(call, "change recovery point", vm, self.change_point(vm, point)).await
    }

    async fn commit(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "commit", vm, self.commit_failover(vm)).await
    }

    async fn cancel(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "cancel", vm, self.cancel_failover(vm)).await
    }

    async fn cleanup_test(&self, call: &Call, vm: &str, notes: &str) -> FabricResult<Job> {
        self.once(call, "cleanup", vm, self.clean_up_test(vm, notes)).await
    }

    async fn reprotect(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "reprotect", vm, self.reprotect_vm(vm)).await
    }

    /// R37, R38: a planned failover home, on the final copy of the way back.
    async fn failback(&self, call: &Call, vm: &str, kind: FailoverKind) -> FabricResult<FailoverOutcome> {
        let request = FailoverRequest::new(kind, PointChoice::Latest);
        self.once(call, "failback", vm, self.fail_over(&call.key, vm, &request, Operation::Failback)).await
    }

    async fn shutdown(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "shutdown", vm, async {
            let started = Utc::now();
            let record = self.record(vm)?;
            let (domain, hypervisor) = self.serving(self.vm(vm)?, &record)?;
            let timeout = self.inventory.shutdown_timeout;
            let outcome = hypervisor.shutdown(&domain, timeout).await.map_err(failed(vm, "shutdown"));
            let job = self.job("shutdown", vm, started, outcome.as_ref().map(|_| format!("{domain} shut down")))?;
            outcome.map(|_| job)
        })
        .await
    }

    async fn start(&self, call: &Call, vm: &str) -> FabricResult<Job> {
        self.once(call, "start", vm, async {
            let started = Utc::now();
            let record = self.record(vm)?;
            let (domain, hypervisor) = self.serving(self.vm(vm)?, &record)?;
            let outcome = match hypervisor.state(&domain).await.map_err(failed(vm, "start"))? {
                Some(domain::DomainState::Running) => Ok(()),
                _ => hypervisor.start(&domain, false).await.map_err(failed(vm, "start")),
            };
            let job = self.job("start", vm, started, outcome.as_ref().map(|_| format!("{domain} started")))?;
            outcome.map(|_| job)
        })
        .await
    }

    async fn addresses(&self, vm: &str, _at: Timestamp) -> FabricResult<Vec<ReplicaNic>> {
        let record = self.record(vm)?;
        if let (Some(replica), Side::Recovery) = (&record.replica, record.protection.active) {
            return Ok(self.discovered(&replica.replica, &record.definition).await);
        }
        let inventory_vm = self.vm(vm)?;
        let (_, hypervisor) = self.side(inventory_vm, Side::Original)?;
        let found = hypervisor.addresses(vm).await.map_err(failed(vm, "address lookup"))?;
        let macs = domain::nic_macs(&record.definition);
        Ok(inventory_vm
            .nics
            .iter()
            .enumerate()
            .map(|(i, nic)| ReplicaNic {
                network: Some(nic.network.clone()),
                subnet: Some(nic.subnet.clone()),
                ip: domain::seen_address(&macs, i, &found).or(nic.ip),
                addressing: None,
            })
            .collect())
    }

    async fn jobs(&self) -> FabricResult<Vec<Job>> {
        self.store.jobs().map_err(store_error)
    }

    async fn call_outcome(&self, key: &str) -> FabricResult<CallOutcome> {
        Ok(match self.store.call(key).map_err(store_error)? {
            None => CallOutcome::Unknown,
            // Begun, never ended: its process died (a live one holds the state directory).
            Some(CallRecord { outcome: None, operation, vm, .. }) => CallOutcome::Done {
                result: Err(FabricError::Interrupted { what: format!("{operation} of {vm}") }),
                ended: None,
            },
            Some(CallRecord { outcome: Some(json), ended, .. }) => {
                let result: Result<serde_json::Value, FabricError> =
                    serde_json::from_str(&json).map_err(|e| FabricError::Store { message: e.to_string() })?;
                CallOutcome::Done { result, ended }
            }
        })
    }

    async fn wait(&self, _from: Timestamp, duration: Duration) -> Timestamp {
        tokio::time::sleep(duration).await;
        Utc::now()
    }

    /// A real TCP connect, tried again every half second: each try is bounded, so an
    /// address not up yet never blocks for the whole timeout.
    async fn wait_port(
        &self,
        ip: std::net::Ipv4Addr,
        port: u16,
        timeout: Duration,
    ) -> Option<Result<Timestamp, String>> {
        let started = std::time::Instant::now();
        let mut last = String::from("no answer");
        while started.elapsed() < timeout {
            let attempt =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect((ip, port))).await;
            match attempt {
                Ok(Ok(_)) => {
                    let answered = Utc::now();
                    self.boot_answered(ip, answered);
                    return Some(Ok(answered));
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "the connection attempt timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Some(Err(format!("nothing answered at {ip}:{port} within {} ({last})", crate::model::HumanDuration(timeout))))
    }

    fn measured_durations(&self) -> BTreeMap<String, MeasuredDurations> {
        let stored = self.store.vms::<VmRecord>().unwrap_or_default();
        stored.into_iter().filter(|(_, r)| !r.measured.is_empty()).map(|(vm, r)| (vm, r.measured)).collect()
    }
}

impl LibvirtFabric {
    /// A port answered at `ip`: a replica booting there has booted, and its boot took
    /// from its start to now. Measuring is best effort: it never fails the wait.
    fn boot_answered(&self, ip: std::net::Ipv4Addr, answered: Timestamp) {
        let Ok(records) = self.store.vms::<VmRecord>() else { return };
        for (vm, record) in records {
            if record.booting.as_ref().is_some_and(|b| b.ips.contains(&ip)) {
                let _ = self.update(&vm, |r| {
                    if let Some(booting) = r.booting.take() {
                        r.measured.boot = (answered - booting.began).to_std().ok();
                        r.measured.at = Some(answered);
                    }
                    Ok(())
                });
            }
        }
    }
}
