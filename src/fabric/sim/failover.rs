//! Failover in the simulation: test (R30), planned (R31), unplanned (R32), failback
//! (R37, R38), with the recovery point choice (R33), its change before commit (R34),
//! stopping replication first and cancellation (R35).

use std::time::Duration;

use tokio::sync::Notify;

use super::placement::Destination;
use super::replication::delta_copy_time;
use super::{Changes, SimFabric, SimState};
use crate::fabric::{FabricError, FabricResult, FailoverOutcome, FailoverRequest, Replica, SourceShutdown};
use crate::model::vm::check_replica_name;
use crate::model::{
    Consistency, FailoverKind, JobStatus, Operation, Phase, Platform, PointChoice, PointSchedule, RecoveryPoint, Side,
    SiteKind, Timestamp, Vm,
};

/// What the steps of a failover produced, before it is recorded.
struct Landed {
    point: RecoveryPoint,
    data_loss: Duration,
    replica: Replica,
    source_shutdown: SourceShutdown,
}

fn non_negative(d: chrono::TimeDelta) -> Duration {
    d.to_std().unwrap_or_default()
}

impl SimFabric {
    /// The refusals a failover of `name` would meet before anything is touched: the VM's
    /// state (R5, R20), its pairing, the replica's name (R7), what the target offers
    /// (R31) and the test network (R30). What the preflight and the call itself check.
    pub(super) fn failover_refusal(
        &self,
        state: &mut SimState,
        vm: &Vm,
        request: &FailoverRequest,
        failback: bool,
    ) -> FabricResult<()> {
        let name = vm.name.as_str();
        let kind = request.kind;
        let operation = if failback { Operation::Failback } else { Operation::for_failover(kind) };
        let from = state.record(name).protection.active;
        state.record(name).protection.check(name, operation)?;
        let to = from.other();
        let not_paired = || FabricError::NotPaired { vm: name.into(), site: vm.site.clone() };
        let source = self.inventory.site_on(vm, from).ok_or_else(not_paired)?;
        let target = self.inventory.site_on(vm, to).ok_or_else(not_paired)?;
        if to == Side::Recovery {
            check_replica_name(vm.replica_name(), vm.os, target.kind)
                .map_err(|message| FabricError::ReplicaName { vm: name.into(), message })?;
        }
        // Seed 003: "failback needs an on-premises VMware infrastructure; you cannot fail
        // back to a physical machine".
        if failback && target.platform == Platform::Physical {
            return Err(FabricError::NotOffered {
                vm: name.into(),
                message: format!(
                    "failback to a physical server is not offered: site {:?} is physical, and a physical machine cannot be failed back to, only a VMware VM; fail it back to a VMware VM by hand",
                    target.name
                ),
            });
        }
        if kind == FailoverKind::Planned && target.kind == SiteKind::Cloud && source.platform != Platform::HyperV {
            return Err(FabricError::NotOffered {
                vm: name.into(),
                message: format!(
                    "planned failover to the cloud is not offered for {:?} sources (R31); use an unplanned failover",
                    source.platform
                ),
            });
        }
        if let (FailoverKind::Test, Some(network)) = (kind, &request.test_network)
            && target.network(network).is_none()
        {
            return Err(FabricError::UnknownTestNetwork {
                vm: name.into(),
                network: network.clone(),
                site: target.name.clone(),
            });
        }
        Ok(())
    }

    /// When the recovery point of a failover starting at `start` is chosen: R12, as the
    /// request says when its replication group began; otherwise at the start.
    pub(super) fn points_as_of(request: &FailoverRequest, start: Timestamp) -> Timestamp {
        request.points_as_of.map_or(start, |t| t.min(start))
    }

    pub(super) async fn do_failover(
        &self,
        name: &str,
        request: &FailoverRequest,
        failback: bool,
        at: Timestamp,
    ) -> FabricResult<FailoverOutcome> {
        let vm = self.vm(name)?;
        let kind = request.kind;
        let job_name = if failback { "failback".to_string() } else { format!("{kind} failover") };

        // Checks first: a refused failover changes nothing.
        let start = at;
        let (job, from, schedule, to_onprem) = {
            let mut state = self.settled(name, start)?;
            self.failover_refusal(&mut state, vm, request, failback)?;
            let from = state.record(name).protection.active;
            let to_onprem = self.inventory.site_on(vm, from.other()).is_some_and(|s| s.kind == SiteKind::OnPrem);
            // A planned failover syncs up to its own shutdown; the others pick a point (R12).
            let as_of = if kind == FailoverKind::Planned { start } else { Self::points_as_of(request, start) };
            let schedule = self.schedule(&state, name, as_of);
            let record = state.record(name);
            record.protection.begin_failover(kind, start);
            if kind != FailoverKind::Test
                && let Some(stream) = &mut record.stream
            {
                // R35: replication stops before the failover begins.
                stream.stopped.get_or_insert(start);
            }
            let job = state.new_job(&job_name, name, start);
            state.save(self.clock.now(), Changes { vms: vec![name], jobs: vec![job], ..Changes::default() })?;
            (job, from, schedule, to_onprem)
        };

        let cancel = self.register_in_flight(name);
        let mut t = start;
        let landed = self.fail_over_steps(vm, request, from, schedule, &mut t, &cancel).await;
        self.unregister_in_flight(name);

        let mut state = self.lock();
        let record = state.record(name);
        let test = kind == FailoverKind::Test;
        // A cancel may have landed after the last step (R35).
        let cancelled = !test && matches!(record.protection.phase, Phase::NeedsReprotect { .. });
        let landed = match landed {
            Ok(_) if cancelled => Err(FabricError::Cancelled { vm: name.into(), what: job_name.clone() }),
            other => other,
        };
        match landed {
            Ok(landed) => {
                record.protection.finish_failover(
                    kind,
                    landed.point,
                    t,
                    landed.data_loss,
                    request.test_network.clone(),
                    to_onprem,
                );
                if !test {
                    record.powered_on = true;
                    if from == Side::Recovery {
                        // R38: back home; the recovery-site machine is off.
                        record.replica = None;
                    }
                }
                // The job as it is open, replaced by the closed one: its detail is the outcome's.
                let open = state.job_mut(job).clone();
                let mut outcome = FailoverOutcome {
                    vm: name.into(),
                    kind,
                    job: open,
                    point: landed.point,
                    data_loss: landed.data_loss,
                    replica: landed.replica,
                    source_shutdown: landed.source_shutdown,
                    downtime: (!test).then(|| non_negative(t - start)),
                    started: start,
                    finished: t,
                };
                let detail =
                    format!("point {}; {}", crate::model::format_time(outcome.point.time), outcome.data_loss_text());
                outcome.job = self.close_job(&mut state, job, name, JobStatus::Succeeded, t, detail)?;
                Ok(outcome)
            }
            Err(error) => {
                if !cancelled {
                    record.protection.fail_failover(kind, error.to_string());
                }
                // Give back what was reserved for the replica.
                match (test, from) {
                    (true, _) => record.test_replica = None,
                    (false, Side::Original) => record.replica = None,
                    (false, Side::Recovery) => {}
                }
                let status = if cancelled { JobStatus::Cancelled } else { JobStatus::Failed };
                self.close_job(&mut state, job, name, status, t, error.to_string())?;
                Err(error)
            }
        }
    }

    /// Shutdown, recovery point, placement and boot: the parts of a failover that take
    /// modelled time and can fail.
    async fn fail_over_steps(
        &self,
        vm: &Vm,
        request: &FailoverRequest,
        from: Side,
        schedule: Option<PointSchedule>,
        t: &mut Timestamp,
        cancel: &Notify,
    ) -> FabricResult<Landed> {
        let start = *t;
        let kind = request.kind;
        let source_shutdown = match kind {
            // R31: no data loss, so the source must be down before the last sync.
            FailoverKind::Planned => {
                self.power_off(vm, t, Some(cancel)).await?;
                SourceShutdown::Done
            }
            // R32: try, and go on whatever happens.
            FailoverKind::Unplanned if request.shut_down_source => match self.power_off(vm, t, Some(cancel)).await {
                Ok(()) => SourceShutdown::Done,
                Err(e @ FabricError::Cancelled { .. }) => return Err(e),
                Err(e) => SourceShutdown::Failed { error: e.to_string() },
            },
            _ => SourceShutdown::Skipped,
        };
        // The last moment the source changed: what a recovery point is measured against.
        let changes_stopped = if source_shutdown == SourceShutdown::Done { *t } else { start };
        let point = if kind == FailoverKind::Planned {
            let last_tick = schedule.and_then(|s| s.latest(start)).map_or(start, |p| p.time);
            let compressed = self.effective_policy(&self.lock().vms[&vm.name]).is_some_and(|p| p.compression);
            let measured = vm.measured.as_ref();
            let sync = measured
                .and_then(|m| m.final_sync)
                .unwrap_or_else(|| delta_copy_time(&self.inventory, vm, compressed, non_negative(*t - last_tick), *t));
            self.spend(t, sync, Some(cancel), &vm.name, "final sync").await?;
            // A real site's replica is prepared after the copy (the model has no such step).
            let processing = measured.and_then(|m| m.processing).unwrap_or_default();
            self.spend(t, processing, Some(cancel), &vm.name, "processing").await?;
            // A clean shutdown leaves applications consistent.
            RecoveryPoint { time: changes_stopped, consistency: Consistency::App }
        } else {
            let (point, modelled) =
                self.choose_point(&vm.name, schedule, request.point, Self::points_as_of(request, start))?;
            let processing = vm.measured.as_ref().and_then(|m| m.processing).unwrap_or(modelled);
            self.spend(t, processing, Some(cancel), &vm.name, "processing").await?;
            point
        };
        let data_loss = non_negative(changes_stopped - point.time);

        let to = from.other();
        let test = kind == FailoverKind::Test;
        let replica = {
            let mut state = self.lock();
            let destination = Destination { side: to, test, test_network: request.test_network.as_deref() };
            let replica = match &request.placement {
                // Decided by the run's preflight; still checked: R9 is about failover time.
                Some(planned) => self.claim(&mut state, vm, planned)?,
                None => self.place(&mut state, vm, destination)?,
            };
            // Reserved at once, so concurrent failovers never share an address.
            let record = state.record(&vm.name);
            match (test, to) {
                (true, _) => record.test_replica = Some(replica.clone()),
                (false, Side::Recovery) => record.replica = Some(replica.clone()),
                (false, Side::Original) => {}
            }
            replica
        };
        self.boot(vm, to, t, Some(cancel)).await?;
        Ok(Landed { point, data_loss, replica, source_shutdown })
    }

    /// R34: until commit, the replica can be moved to another recovery point.
    pub(super) async fn do_change_point(
        &self,
        name: &str,
        choice: PointChoice,
        now: Timestamp,
    ) -> FabricResult<FailoverOutcome> {
        let vm = self.vm(name)?;
        let (job, start, kind, point, processing, data_loss, replica) = {
            let mut state = self.settled(name, now)?;
            state.record(name).protection.check(name, Operation::ChangeRecoveryPoint)?;
            let Phase::FailedOver { kind, point: old, data_loss: old_loss, .. } =
                state.vms[name].protection.phase.clone()
            else {
                unreachable!("check allows a point change only after a failover")
            };
            let schedule = self.schedule(&state, name, now);
            let (point, processing) = self.choose_point(name, schedule, choice, now)?;
            let changes_stopped = old.time + crate::model::recovery::delta(old_loss);
            let replica = match &state.vms[name].replica {
                Some(replica) => replica.clone(),
                None => {
                    self.place(&mut state, vm, Destination { side: Side::Original, test: false, test_network: None })?
                }
            };
            let job = state.new_job("change recovery point", name, now);
            state.save(self.clock.now(), Changes { jobs: vec![job], ..Changes::default() })?;
            (job, now, kind, point, processing, non_negative(changes_stopped - point.time), replica)
        };
        let mut t = start;
        // The replica restarts from the new point.
        self.spend(&mut t, processing + vm.boot_time, None, name, "change recovery point").await?;
        let mut state = self.lock();
        state.record(name).protection.change_point(point, data_loss);
        let detail = format!("point {}", crate::model::format_time(point.time));
        let job = self.close_job(&mut state, job, name, JobStatus::Succeeded, t, detail)?;
        Ok(FailoverOutcome {
            vm: name.into(),
            kind,
            job,
            point,
            data_loss,
            replica,
            source_shutdown: SourceShutdown::Skipped,
            downtime: None,
            started: start,
            finished: t,
        })
    }
}
