//! The simulation's operations other than failover: protect and unprotect (R4-R6, R14),
//! commit (R34), cancel (R35), cleanup (R30), reprotect (R36, R37), power and addresses.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::placement::Destination;
use super::record::VmRecord;
use super::replication::{delta_copy_time, initial_copy_time};
use super::{Changes, SimFabric};
use crate::fabric::{FabricError, FabricResult, ReplicaNic};
use crate::model::recovery::{delta, format_time};
use crate::model::vm::check_exclusions;
use crate::model::{Fault, Job, JobStatus, Operation, Phase, Side, Timestamp, Vm};

/// Modelled time the fabric needs for its bookkeeping operations.
pub const COMMIT_TIME: Duration = Duration::from_secs(10);
pub const CLEANUP_TIME: Duration = Duration::from_secs(30);

impl SimFabric {
    /// The shape every state-changing operation shares: check that the state allows it,
    /// open a job, spend `duration` of modelled time, check again (another command may
    /// have moved the VM meanwhile), apply `effect`, close the job. All of it is saved.
    async fn checked<D, E>(
        &self,
        vm: &str,
        at: Timestamp,
        operation: Operation,
        job_name: &str,
        duration: D,
        effect: E,
    ) -> FabricResult<Job>
    where
        D: FnOnce(&Self, &VmRecord, Timestamp) -> Duration,
        E: FnOnce(&Self, &mut VmRecord, Timestamp) -> String,
    {
        let (job, start, spend) = {
            let mut state = self.settled(vm, at)?;
            let record = state.record(vm);
            record.protection.check(vm, operation)?;
            let spend = duration(self, record, at);
            let job = state.new_job(job_name, vm, at);
            state.save(self.clock.now(), Changes { jobs: vec![job], ..Changes::default() })?;
            (job, at, spend)
        };
        let mut t = start;
        self.spend(&mut t, spend, None, vm, job_name).await?;
        let mut state = self.lock();
        let record = state.record(vm);
        record.settle(t);
        let (status, detail) = match record.protection.check(vm, operation) {
            Ok(()) => (JobStatus::Succeeded, effect(self, record, t)),
            Err(refusal) => (JobStatus::Failed, refusal.to_string()),
        };
        let job = self.close_job(&mut state, job, vm, status, t, detail.clone())?;
        match status {
            JobStatus::Succeeded => Ok(job),
            _ => Err(FabricError::Refused { message: detail, vm: Some(vm.into()) }),
        }
    }

    pub(super) async fn do_protect(
        &self,
        name: &str,
        policy_name: &str,
        exclude: &[String],
        at: Timestamp,
    ) -> FabricResult<Job> {
        let vm = self.vm(name)?;
        if self.inventory.recovery_site_of(vm).is_none() {
            return Err(FabricError::NotPaired { vm: name.into(), site: vm.site.clone() });
        }
        let policy = self.inventory.policy(policy_name).ok_or_else(|| FabricError::UnknownPolicy {
            policy: policy_name.into(),
            known: self.inventory.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        check_exclusions(&vm.disks, exclude).map_err(|e| FabricError::disk(name, e))?;
        let target = self.inventory.recovery_site_of(vm);
        if policy.encryption_at_rest && target.is_some_and(|site| site.kind != crate::model::SiteKind::Cloud) {
            return Err(FabricError::Refused {
                vm: Some(name.into()),
                message: format!(
                    "cannot protect {name} with policy {}: it encrypts at rest, which applies to replication to a cloud only, and {name} replicates to a datacenter; use a policy with encryption = false",
                    policy.name
                ),
            });
        }
        let excluded = exclude.to_vec();
        self.checked(
            name,
            at,
            Operation::Protect,
            "protect",
            |_, _, _| Duration::ZERO,
            move |this, record, t| {
                let copy = initial_copy_time(&this.inventory, vm, &policy, &excluded, t);
                let completes = t + delta(copy);
                record.protection.protect(&policy.name, excluded, t, completes);
                record.replica_kept = false;
                format!("policy {}; initial replication until {}", policy.name, format_time(completes))
            },
        )
        .await
    }

    pub(super) async fn do_unprotect(&self, name: &str, delete_replica: bool, at: Timestamp) -> FabricResult<Job> {
        self.checked(
            name,
            at,
            Operation::Unprotect,
            "unprotect",
            |_, _, _| Duration::ZERO,
            move |_, record, _| {
                record.protection.unprotect();
                record.stream = None;
                // R14: the replica's disks stay on the target unless deletion was asked for.
                record.replica_kept = !delete_replica;
                if delete_replica {
                    "protection disabled; replica deleted"
                } else {
                    "protection disabled; replica kept"
                }
                .into()
            },
        )
        .await
    }

    pub(super) async fn do_commit(&self, name: &str, at: Timestamp) -> FabricResult<Job> {
        self.checked(
            name,
            at,
            Operation::Commit,
            "commit",
            // What the real site took last time beats the model's bookkeeping time.
            |this, _, _| this.vm(name).ok().and_then(|vm| vm.measured.as_ref()?.commit).unwrap_or(COMMIT_TIME),
            |_, record, t| {
                record.protection.commit(t);
                // R34: the recovery points go with the stream.
                record.stream = None;
                "failover committed; recovery points deleted".into()
            },
        )
        .await
    }

    pub(super) async fn do_cleanup(&self, name: &str, notes: &str, at: Timestamp) -> FabricResult<Job> {
        let notes = notes.to_string();
        self.checked(
            name,
            at,
            Operation::Cleanup,
            "cleanup",
            |_, _, _| CLEANUP_TIME,
            move |_, record, _| {
                record.protection.cleanup();
                record.test_replica = None;
                if notes.is_empty() {
                    "test replica deleted".into()
                } else {
                    format!("test replica deleted; notes: {notes}")
                }
            },
        )
        .await
    }

    pub(super) async fn do_reprotect(&self, name: &str, at: Timestamp) -> FabricResult<Job> {
        let vm = self.vm(name)?;
        self.checked(
            name,
            at,
            Operation::Reprotect,
            "reprotect",
            |_, _, _| Duration::ZERO,
            move |this, record, t| {
                let policy = this.effective_policy(record).expect("a VM that failed over has a policy");
                // R31: after a planned failover only the changes since it need copying back.
                let copy = match record.protection.phase {
                    Phase::Committed { at, .. } if record.protection.reprotect_is_delta() => delta_copy_time(
                        &this.inventory,
                        vm,
                        policy.compression,
                        (t - at).to_std().unwrap_or_default(),
                        t,
                    ),
                    _ => initial_copy_time(&this.inventory, vm, &policy, &record.protection.excluded_disks, t),
                };
                let completes = t + delta(copy);
                record.protection.reprotect(t, completes);
                record.stream = None;
                let from = this.inventory.site_on(vm, record.protection.active).map(|s| s.name.as_str()).unwrap_or("?");
                let to = this
                    .inventory
                    .site_on(vm, record.protection.active.other())
                    .map(|s| s.name.as_str())
                    .unwrap_or("?");
                format!(
                    "replicating {from} -> {to} under policy {}; copy done at {}",
                    policy.name,
                    format_time(completes)
                )
            },
        )
        .await
    }

    pub(super) async fn do_cancel(&self, name: &str, at: Timestamp) -> FabricResult<Job> {
        let job = self
            .checked(
                name,
                at,
                Operation::Cancel,
                "cancel",
                |_, _, _| Duration::ZERO,
                |_, record, _| {
                    let reason = record.protection.describe();
                    // R35: replication is stopped (the failover began so), and the points
                    // it made are kept: nothing in the rule deletes them, only commit does.
                    record.protection.cancel();
                    if record.protection.active == Side::Original {
                        record.replica = None;
                    }
                    format!("cancelled while {reason}; recovery points kept; reprotect needed (R35)")
                },
            )
            .await?;
        // Stop a failover still running in this process.
        if let Some(running) = self.in_flight.lock().expect("in-flight lock").get(name) {
            running.notify_one();
        }
        Ok(job)
    }

    /// Shuts the VM down where it is active, honouring injected faults.
    pub(super) async fn power_off(&self, vm: &Vm, t: &mut Timestamp, cancel: Option<&Notify>) -> FabricResult<()> {
        let failed = |why: String| FabricError::OperationFailed { vm: vm.name.clone(), what: "shutdown".into(), why };
        for fault in self.inventory.faults_of(&vm.name) {
            match fault {
                Fault::ShutdownFailure { .. } => {
                    return Err(failed("the guest refused to shut down (injected fault)".into()));
                }
                Fault::ShutdownHang { .. } => {
                    let timeout = self.inventory.shutdown_timeout;
                    self.spend(t, timeout, cancel, &vm.name, "shutdown").await?;
                    return Err(failed(format!("it hung; gave up after {}", crate::model::HumanDuration(timeout))));
                }
                _ => {}
            }
        }
        self.spend(t, vm.shutdown_time, cancel, &vm.name, "shutdown").await?;
        let mut state = self.lock();
        state.record(&vm.name).powered_on = false;
        Ok(())
    }

    /// Boots the VM on `side`; an injected boot failure hits the recovery site only.
    pub(super) async fn boot(
        &self,
        vm: &Vm,
        side: Side,
        t: &mut Timestamp,
        cancel: Option<&Notify>,
    ) -> FabricResult<()> {
        self.spend(t, vm.boot_time, cancel, &vm.name, "boot").await?;
        let fails = self.inventory.faults_of(&vm.name).any(|f| matches!(f, Fault::BootFailure { .. }));
        if fails && side == Side::Recovery {
            return Err(FabricError::OperationFailed {
                vm: vm.name.clone(),
                what: "boot".into(),
                why: "the replica did not boot (injected fault)".into(),
            });
        }
        Ok(())
    }

    /// Runs a power operation as a job: refused while a failover is under way.
    async fn power_job(&self, name: &str, job_name: &str, turn_on: bool, now: Timestamp) -> FabricResult<Job> {
        let vm = self.vm(name)?;
        let (job, start, side, already) = {
            let mut state = self.settled(name, now)?;
            let record = state.record(name);
            if let Phase::FailingOver { .. } = record.protection.phase {
                return Err(FabricError::Refused {
                    vm: Some(name.into()),
                    message: format!("cannot {job_name} {name}: a failover is under way"),
                });
            }
            let (side, already) = (record.protection.active, record.powered_on == turn_on);
            let job = state.new_job(job_name, name, now);
            state.save(self.clock.now(), Changes { jobs: vec![job], ..Changes::default() })?;
            (job, now, side, already)
        };
        let mut t = start;
        let result = match (already, turn_on) {
            (true, _) => Ok(()),
            (false, true) => self.boot(vm, side, &mut t, None).await,
            (false, false) => self.power_off(vm, &mut t, None).await,
        };
        let mut state = self.lock();
        let (status, detail) = match &result {
            Ok(()) if already => (JobStatus::Succeeded, format!("already {}", if turn_on { "running" } else { "off" })),
            Ok(()) => {
                state.record(name).powered_on = turn_on;
                (JobStatus::Succeeded, String::new())
            }
            Err(e) => (JobStatus::Failed, e.to_string()),
        };
        let job = self.close_job(&mut state, job, name, status, t, detail)?;
        result.map(|()| job)
    }

    pub(super) async fn do_shutdown(&self, name: &str, at: Timestamp) -> FabricResult<Job> {
        self.power_job(name, "shutdown", false, at).await
    }

    pub(super) async fn do_start(&self, name: &str, at: Timestamp) -> FabricResult<Job> {
        self.power_job(name, "start", true, at).await
    }

    pub(super) fn current_addresses(&self, name: &str, at: Timestamp) -> FabricResult<Vec<ReplicaNic>> {
        let vm = self.vm(name)?;
        let mut state = self.settled(name, at)?;
        let record = &state.vms[name];
        match (&record.replica, record.protection.active) {
            (Some(replica), Side::Recovery) => Ok(replica.nics.clone()),
            _ => Ok(self
                .place(&mut state, vm, Destination { side: Side::Original, test: false, test_network: None })?
                .nics),
        }
    }

    pub(super) fn register_in_flight(&self, vm: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.in_flight.lock().expect("in-flight lock").insert(vm.into(), notify.clone());
        notify
    }

    pub(super) fn unregister_in_flight(&self, vm: &str) {
        self.in_flight.lock().expect("in-flight lock").remove(vm);
    }
}
