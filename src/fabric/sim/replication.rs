//! Replication in the simulation: how long copies take (R4, R15 throttling), which
//! recovery points a VM has (R2, R3, R12), and its status and health (R15).

use std::time::Duration;

use chrono::Timelike;

use super::record::VmRecord;
use super::{SimFabric, SimState};
use crate::fabric::{FabricError, FabricResult, Health, ReplicationStatus};
use crate::model::{
    Fault, InitialReplication, Inventory, Phase, PointChoice, PointSchedule, RecoveryPoint, ReplicationPolicy, Side,
    Timestamp, Vm,
};

/// How long the "latest" choice (R33) spends processing received data before failover.
pub const LATEST_PROCESSING: Duration = Duration::from_secs(60);

fn time_of_day(t: Timestamp) -> Duration {
    Duration::from_secs(u64::from(t.num_seconds_from_midnight()))
}

/// Upload threads per VM at which a VM uses its whole share of the host's bandwidth.
const FULL_THREADS: u32 = 4;

/// How long sending `bytes` of `vm`'s replication takes from `at` (R15). The throttle is a
/// host's (seed 002: "Hyper-V traffic replicated to the secondary site passes through a
/// particular Hyper-V host; you can limit the host server's bandwidth"): the VMs the host
/// protects share it. Upload threads per VM raise what a VM uses (seed 002): a quarter of
/// its share per thread, all of it with four or more. Compression (seed 000: "whether to
/// compress the replicated data") halves what is sent, the ratio the simulation models.
fn send_time(inventory: &Inventory, vm: &Vm, compressed: bool, bytes: u64, at: Timestamp) -> Duration {
    let sent = if compressed { bytes / 2 } else { bytes };
    let threads = inventory.throttle.threads.clamp(1, FULL_THREADS);
    let slower = f64::from(inventory.host_share(vm)) * f64::from(FULL_THREADS) / f64::from(threads);
    inventory.throttle.transfer_time((sent as f64 * slower) as u64, time_of_day(at))
}

/// R4: the full copy, over the network at the throttled bandwidth (R15) or offline.
pub fn initial_copy_time(
    inventory: &Inventory,
    vm: &Vm,
    policy: &ReplicationPolicy,
    excluded: &[String],
    start: Timestamp,
) -> Duration {
    let delay = policy.initial_replication_delay;
    delay
        + match &policy.initial_replication {
            InitialReplication::Network => {
                let begins = start + crate::model::recovery::delta(delay);
                send_time(inventory, vm, policy.compression, vm.replicated_bytes(excluded), begins)
            }
            InitialReplication::Offline { transfer, .. } => *transfer,
        }
}

/// Sending what changed on `vm` during `changed_for`, starting at `at`.
pub fn delta_copy_time(
    inventory: &Inventory,
    vm: &Vm,
    compressed: bool,
    changed_for: Duration,
    at: Timestamp,
) -> Duration {
    let bytes = vm.change_rate_bytes_per_sec.saturating_mul(changed_for.as_secs());
    send_time(inventory, vm, compressed, bytes, at)
}

impl SimFabric {
    /// The policy replication runs (or will run) under now (R37).
    pub(super) fn effective_policy(&self, record: &VmRecord) -> Option<ReplicationPolicy> {
        self.inventory.policy(record.protection.replication_policy()?)
    }

    /// The points one VM's own stream makes, stalls included.
    fn own_schedule(&self, state: &SimState, vm: &str, now: Timestamp) -> Option<PointSchedule> {
        let record = state.vms.get(vm)?;
        let stream = record.stream.as_ref()?;
        let policy = self.inventory.policy(&stream.policy)?;
        let mut until = stream.stopped.unwrap_or(now).min(now);
        // R15 faults: points that never reached the target are never offered, before
        // the failover or after it (`points`, `change-point`).
        if stream.source == Side::Original {
            for fault in self.inventory.faults_of(vm) {
                if let Fault::ReplicationStall { at, .. } = fault {
                    until = until.min(*at);
                }
            }
        }
        Some(PointSchedule {
            from: stream.from,
            until: until.max(stream.from),
            every: policy.copy_frequency.as_duration(),
            app_every: policy.app_consistent_every,
            retention: policy.retention,
        })
    }

    /// R12: a replication group member's points are those all members share.
    pub(super) fn schedule(&self, state: &SimState, vm: &str, now: Timestamp) -> Option<PointSchedule> {
        let own = self.own_schedule(state, vm, now)?;
        let Some(group) = self.inventory.group_of(vm) else { return Some(own) };
        let members: Vec<PointSchedule> = group.vms.iter().filter_map(|m| self.own_schedule(state, m, now)).collect();
        PointSchedule::common(&members).or(Some(own))
    }

    /// R33: the point a choice picks, with the processing time it costs.
    pub(super) fn choose_point(
        &self,
        vm: &str,
        schedule: Option<PointSchedule>,
        choice: PointChoice,
        now: Timestamp,
    ) -> FabricResult<(RecoveryPoint, Duration)> {
        let none =
            |why: &str| FabricError::NoRecoveryPoint { vm: vm.into(), choice: choice.to_string(), why: why.into() };
        let schedule = schedule.ok_or_else(|| none("the VM has no replication stream"))?;
        match choice {
            PointChoice::Latest => {
                // Everything received, up to when replication stopped or stalled.
                let point = RecoveryPoint { time: schedule.until, consistency: crate::model::Consistency::Crash };
                Ok((point, LATEST_PROCESSING))
            }
            PointChoice::LatestProcessed => schedule.latest(now).map(|p| (p, Duration::ZERO)).ok_or_else(|| {
                let every = crate::model::HumanDuration(schedule.every);
                none(&format!("none yet: the first comes on the first {every} tick after the initial copy"))
            }),
            PointChoice::LatestAppConsistent => schedule
                .latest_app_consistent(now)
                .map(|p| (p, Duration::ZERO))
                .ok_or_else(|| none("no app-consistent point is kept (is the policy's app_consistent 0?)")),
            PointChoice::At(t) if t > now => Err(none("that time is in the future")),
            PointChoice::At(t) => schedule
                .at_or_before(t, now, None)
                .map(|p| (p, Duration::ZERO))
                .ok_or_else(|| none("it is outside the retention window (R2)")),
        }
    }

    pub(super) fn points(&self, vm: &str, now: Timestamp) -> FabricResult<Vec<RecoveryPoint>> {
        let state = self.settled(vm, now)?;
        Ok(self.schedule(&state, vm, now).map(|s| s.points(now)).unwrap_or_default())
    }

    pub(super) fn status(&self, name: &str, now: Timestamp) -> FabricResult<ReplicationStatus> {
        let vm = self.vm(name)?;
        let state = self.settled(name, now)?;
        let record = &state.vms[name];
        let protection = &record.protection;
        let site_name = |side| self.inventory.site_on(vm, side).map(|s| s.name.clone()).unwrap_or_default();
        let schedule = self.schedule(&state, name, now);
        let points = schedule.map(|s| s.summary(now)).unwrap_or_default();
        let latest_point = points.latest;
        let policy = self.effective_policy(record);
        let replicating = matches!(protection.phase, Phase::Protected { .. } | Phase::InitialReplication { .. });
        let rpo = match protection.phase {
            Phase::Protected { since } => Some(now - latest_point.map_or(since, |p| p.time)),
            _ => None,
        }
        .map(|d| d.to_std().unwrap_or_default());
        let health = match (&protection.phase, rpo, &policy) {
            (Phase::InitialReplication { .. }, ..) => Health::InitialReplication,
            (Phase::Protected { .. }, Some(rpo), Some(p)) if rpo > p.rpo_threshold => {
                Health::Unhealthy { rpo, threshold: p.rpo_threshold }
            }
            (Phase::Protected { .. }, ..) => Health::Healthy,
            _ => Health::NotReplicating,
        };
        let initial_progress = match protection.phase {
            Phase::InitialReplication { started, completes } => {
                let total = (completes - started).num_milliseconds().max(1);
                let done = (now - started).num_milliseconds().clamp(0, total);
                Some((done * 100 / total) as u8)
            }
            _ => None,
        };
        Ok(ReplicationStatus {
            vm: name.into(),
            state: protection.describe(),
            active_site: site_name(protection.active),
            active: protection.active,
            direction: replicating.then(|| (site_name(protection.active), site_name(protection.active.other()))),
            policy: replicating.then(|| policy.map(|p| p.name)).flatten(),
            initial_progress,
            latest_point,
            latest_app_consistent: points.latest_app_consistent,
            point_count: points.count,
            rpo,
            health,
            test_failover: protection.test.as_ref().map(|t| t.at),
            allowed: protection.allowed(),
        })
    }
}
