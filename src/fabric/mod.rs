//! The fabric: the primitives a recovery plan calls (protection, replication status,
//! recovery points, failover of each kind, commit, cancel, cleanup, reprotect, failback,
//! power, addresses, jobs), as one async trait, and its adapters. `sim` is the embedded
//! default: a simulated datacenter pair described by a site file.
//!
//! Every mutating call is a [`Call`]: an idempotency key (`run/step/attempt` when the
//! engine calls), so the same key twice does the work once and returns the first
//! outcome, and the modelled time the call is made at. Time is causal: the caller says
//! when, from the time of what it waited for, and the fabric notes when the call ended;
//! the order in which tokio happens to run tasks never shows in a timeline.
//!
//! Before a run touches its first VM, the fabric answers a [`PreflightRequest`] for the
//! whole plan: every check that could refuse a VM, and where each replica will land.

pub mod dns;
pub mod libvirt;
pub mod readiness;
pub mod sim;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::network::AddressError;
use crate::model::vm::DiskError;
use crate::model::{
    Addressing, FailoverKind, Job, MeasuredDurations, Operation, PointChoice, ProtectionState, RecoveryPoint, Refusal,
    Side, Timestamp,
};

/// Where a VM's replication stands, with its health (R15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub vm: String,
    /// One line: "protected", "failed over (planned...), not committed"...
    pub state: String,
    /// The site serving the VM now.
    pub active_site: String,
    pub active: Side,
    /// `(from, to)` sites while replication runs.
    pub direction: Option<(String, String)>,
    pub policy: Option<String>,
    /// 0..=100 while the initial copy runs (R4).
    pub initial_progress: Option<u8>,
    pub latest_point: Option<RecoveryPoint>,
    pub latest_app_consistent: Option<RecoveryPoint>,
    pub point_count: usize,
    /// Now minus the latest recovery point (R15).
    pub rpo: Option<Duration>,
    pub health: Health,
    /// The test failover alive alongside production (R30), with when it was made.
    pub test_failover: Option<Timestamp>,
    /// What the operator can do next.
    pub allowed: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "health", rename_all = "kebab-case")]
pub enum Health {
    Healthy,
    /// R15: the current RPO exceeds the policy's threshold.
    Unhealthy {
        rpo: Duration,
        threshold: Duration,
    },
    /// Replication is not running (not protected, failed over, awaiting reprotect).
    NotReplicating,
    InitialReplication,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRequest {
    pub kind: FailoverKind,
    pub point: PointChoice,
    /// Test failovers only (R30): the isolated network to use; `None` for no network.
    pub test_network: Option<String>,
    /// Unplanned failovers only (R32): try to shut the source down first.
    pub shut_down_source: bool,
    /// R12: choose the recovery point as it stood at this time, when the first VM of the
    /// VM's replication group began to fail over, so the whole group lands on one point
    /// whenever each member's turn comes. `None`: as of the call's own time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_as_of: Option<Timestamp>,
    /// Where the replica lands, as the run's preflight decided for the whole plan (R9,
    /// R10); `None` to decide at the call. Its addresses are checked again at the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Replica>,
}

impl FailoverRequest {
    /// A request with the defaults a single VM's failover takes.
    pub fn new(kind: FailoverKind, point: PointChoice) -> FailoverRequest {
        FailoverRequest { kind, point, test_network: None, shut_down_source: true, points_as_of: None, placement: None }
    }
}

/// One mutating call to the fabric: its idempotency key, and the modelled time it is
/// made at (the time of what the caller waited for). The fabric notes when the call
/// ended, success or failure, so the caller goes on from there.
#[derive(Debug)]
pub struct Call {
    pub key: String,
    pub at: Timestamp,
    ended: Mutex<Option<Timestamp>>,
}

impl Call {
    pub fn new(key: impl Into<String>, at: Timestamp) -> Call {
        Call { key: key.into(), at, ended: Mutex::new(None) }
    }

    /// The fabric's note: the call ended at `t`.
    pub fn end_at(&self, t: Timestamp) {
        let mut ended = self.ended.lock().expect("call lock");
        *ended = Some(ended.map_or(t, |e| e.max(t)));
    }

    /// When the call ended: when it was made, unless the fabric noted it took time.
    pub fn ended(&self) -> Timestamp {
        self.ended.lock().expect("call lock").map_or(self.at, |t| t.max(self.at))
    }
}

/// One NIC of a replica after failover. No network means not connected (R10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaNic {
    pub network: Option<String>,
    pub subnet: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub addressing: Option<Addressing>,
}

/// The machine a failover brought up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub name: String,
    pub site: String,
    pub host: String,
    /// R11: where its disks live.
    pub storage: String,
    pub nics: Vec<ReplicaNic>,
}

impl Replica {
    /// The first address, what DNS should point at (R50).
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.nics.iter().find_map(|n| n.ip)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shutdown", rename_all = "kebab-case")]
pub enum SourceShutdown {
    /// The source VM was shut down cleanly.
    Done,
    /// The attempt failed or hung; an unplanned failover went on regardless (R32).
    Failed { error: String },
    /// Not attempted (test failover, or unplanned without trying).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverOutcome {
    pub vm: String,
    pub kind: FailoverKind,
    pub job: Job,
    pub point: RecoveryPoint,
    /// R32: changes after the recovery point that are lost; zero for planned (R31).
    pub data_loss: Duration,
    pub replica: Replica,
    pub source_shutdown: SourceShutdown,
    /// When the workload was down: from the source's shutdown to the replica running.
    pub downtime: Option<Duration>,
    pub started: Timestamp,
    pub finished: Timestamp,
}

impl FailoverOutcome {
    /// R32: whether the source may still be taking writes: an unplanned failover that did
    /// not shut it down. Then what is lost is everything since the point, open-ended, not
    /// just `data_loss` (the changes up to the failover's start).
    pub fn source_may_run(&self) -> bool {
        self.kind == FailoverKind::Unplanned && self.source_shutdown != SourceShutdown::Done
    }

    /// The data-loss window in words, honest when it is open-ended.
    pub fn data_loss_text(&self) -> String {
        let lost = crate::model::HumanDuration(self.data_loss);
        if !self.source_may_run() {
            return format!("data loss {lost}");
        }
        let why = match &self.source_shutdown {
            SourceShutdown::Failed { error } => format!("its shutdown failed ({error})"),
            _ => "no shutdown was tried".into(),
        };
        format!(
            "data loss OPEN-ENDED: every change since {} (at least {lost}); the source is still running, {why}, and may be taking writes",
            crate::model::format_time(self.point.time)
        )
    }
}

/// Everything a fabric call can fail with. Each message names the VM and says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum FabricError {
    #[error("unknown VM {vm:?}: the site file has no VM of that name")]
    UnknownVm { vm: String },
    #[error("unknown replication policy {policy:?}; the site file defines: {known}")]
    UnknownPolicy { policy: String, known: String },
    #[error("{vm} is not in a protection pairing: its site {site:?} is not the source of any [[pairings]] entry")]
    NotPaired { vm: String, site: String },
    #[error("{message}")]
    Refused {
        message: String,
        /// The VM refused, when one was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vm: Option<String>,
    },
    #[error("{vm}: {message}")]
    Disk { vm: String, message: String },
    #[error("{vm}: {message}")]
    Address { vm: String, message: String },
    #[error("{vm}: {message} (R7); set replica_name in the site file")]
    ReplicaName { vm: String, message: String },
    #[error("{vm}: {message}")]
    NotOffered { vm: String, message: String },
    #[error("{vm}: no recovery point matches {choice}: {why}")]
    NoRecoveryPoint { vm: String, choice: String, why: String },
    #[error("{vm}: test network {network:?} does not exist on site {site:?}")]
    UnknownTestNetwork { vm: String, network: String, site: String },
    #[error("{vm}: {what} failed: {why}")]
    OperationFailed { vm: String, what: String, why: String },
    #[error("{vm}: the {what} was cancelled; the VM needs reprotect (R35)")]
    Cancelled { vm: String, what: String },
    #[error("call {key} is still under way")]
    InProgress { key: String },
    #[error("the {what} was interrupted: the drplan process running it stopped; retry it, or cancel it (R35)")]
    Interrupted { what: String },
    #[error("the fabric's state could not be saved: {message}")]
    Store { message: String },
}

impl From<Refusal> for FabricError {
    fn from(refusal: Refusal) -> Self {
        FabricError::Refused { message: refusal.to_string(), vm: Some(refusal.vm) }
    }
}

impl FabricError {
    /// The VM the error is about, where it is about one.
    pub fn vm(&self) -> Option<&str> {
        match self {
            FabricError::UnknownVm { vm }
            | FabricError::NotPaired { vm, .. }
            | FabricError::Disk { vm, .. }
            | FabricError::Address { vm, .. }
            | FabricError::ReplicaName { vm, .. }
            | FabricError::NotOffered { vm, .. }
            | FabricError::NoRecoveryPoint { vm, .. }
            | FabricError::UnknownTestNetwork { vm, .. }
            | FabricError::OperationFailed { vm, .. }
            | FabricError::Cancelled { vm, .. } => Some(vm),
            FabricError::Refused { vm, .. } => vm.as_deref(),
            FabricError::UnknownPolicy { .. }
            | FabricError::InProgress { .. }
            | FabricError::Interrupted { .. }
            | FabricError::Store { .. } => None,
        }
    }

    pub(crate) fn disk(vm: &str, e: DiskError) -> Self {
        FabricError::Disk { vm: vm.into(), message: e.to_string() }
    }

    pub(crate) fn address(vm: &str, e: AddressError) -> Self {
        FabricError::Address { vm: vm.into(), message: format!("{e} (R9)") }
    }
}

pub type FabricResult<T> = Result<T, FabricError>;

/// What a call did, as the fabric remembers it by idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// The fabric never saw the key: the call can be made.
    Unknown,
    /// Under way in this process.
    Pending,
    /// Finished: the outcome (as JSON, for the caller to read as the call's type) or
    /// error, and when it ended if the fabric knows.
    Done { result: Result<serde_json::Value, FabricError>, ended: Option<Timestamp> },
}

/// What a run is about to ask of each VM of its plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// R30-R33: a failover of this kind, with this point choice.
    Failover(FailoverRequest),
    /// R37, R38: a planned failover back to the original site.
    Failback,
    /// R34: another recovery point before commit.
    ChangePoint(PointChoice),
    /// Any other operation of the life cycle (commit, reprotect, cleanup...).
    Other(Operation),
}

/// A run's whole plan, for the fabric to check before the first VM is touched.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightRequest {
    /// When the run starts.
    pub at: Timestamp,
    pub intent: Intent,
    /// The VMs, in plan order: where two compete (for an address), the earlier wins.
    pub vms: Vec<String>,
}

/// The fabric's answer to a preflight: every refusal at once, and what it decided for
/// the plan as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preflight {
    /// Each VM that cannot go, with why, in plan order. Empty: the plan can run.
    pub refusals: Vec<FabricError>,
    /// Where each VM's replica will land (R8-R11), decided in plan order for the whole
    /// plan, so VMs failing over at once get the same addresses whatever order they run in.
    pub placements: HashMap<String, Replica>,
}

/// The primitives a recovery plan can call. Mutating calls are a [`Call`]: an
/// idempotency key and the modelled time they are made at; reads say the time they read at.
#[async_trait]
pub trait Fabric: Send + Sync {
    /// The fabric's clock: modelled time for the simulation. A run starts from it.
    fn now(&self) -> Timestamp;

    /// Whether the VMs are simulated: what decides that a rehearsal may approve a real
    /// run's manual steps by itself.
    fn is_simulated(&self) -> bool;

    /// Whether every call completes at its first poll, never waiting on a timer, a socket
    /// or another task: a simulation that spends no real time (a dry run's). What lets a
    /// dry run's script actions run on the engine's thread (`plan::Services`).
    fn completes_at_once(&self) -> bool {
        false
    }

    /// Each VM's protection state now (its policy, phase and points), by name: what a
    /// plan is validated against before any call (unprotected VMs R5/R20, a failover
    /// already under way...), and what plan-wide steps read to see where each VM stands.
    /// Every VM of the inventory has an entry.
    fn protection(&self) -> BTreeMap<String, ProtectionState>;

    /// Checks a run's whole plan against the world without changing anything: every
    /// refusal any VM would meet (state R5/R20, names R7, point choice R2/R33, addresses
    /// R9, networks R10, test network R30), and where each replica will land.
    async fn preflight(&self, request: &PreflightRequest) -> FabricResult<Preflight>;

    /// R1-R6: enables protection; initial replication starts (R4).
    async fn protect(&self, call: &Call, vm: &str, policy: &str, exclude_disks: &[String]) -> FabricResult<Job>;
    /// R14: disables protection, deleting the replica's disks if asked.
    async fn unprotect(&self, call: &Call, vm: &str, delete_replica: bool) -> FabricResult<Job>;

    /// R15: replication state, latest points, RPO and health, as of `at`.
    async fn replication_status(&self, vm: &str, at: Timestamp) -> FabricResult<ReplicationStatus>;
    /// R2, R12: the points kept at `at`, oldest first (a group member's are the group's).
    async fn recovery_points(&self, vm: &str, at: Timestamp) -> FabricResult<Vec<RecoveryPoint>>;

    /// R30-R33, R9, R10: fails one VM over.
    async fn failover(&self, call: &Call, vm: &str, request: &FailoverRequest) -> FabricResult<FailoverOutcome>;
    /// R34: moves an uncommitted failover to another recovery point.
    async fn change_recovery_point(&self, call: &Call, vm: &str, point: PointChoice) -> FabricResult<FailoverOutcome>;
    /// R34: makes the failover final and deletes the recovery points.
    async fn commit(&self, call: &Call, vm: &str) -> FabricResult<Job>;
    /// R35: stops a failover under way; the VM then needs reprotect.
    async fn cancel(&self, call: &Call, vm: &str) -> FabricResult<Job>;
    /// R30: deletes the test replica and records the operator's notes.
    async fn cleanup_test(&self, call: &Call, vm: &str, notes: &str) -> FabricResult<Job>;
    /// R36: replicates from the active site back to the other one.
    async fn reprotect(&self, call: &Call, vm: &str) -> FabricResult<Job>;
    /// R37, R38: a planned failover from the recovery site back to the original one;
    /// `Unplanned` where the recovery site's VM will not shut down (R32: a failback
    /// resumed as unplanned goes on from the latest point copied home).
    async fn failback(&self, call: &Call, vm: &str, kind: FailoverKind) -> FabricResult<FailoverOutcome>;

    /// Shuts the VM down where it runs now.
    async fn shutdown(&self, call: &Call, vm: &str) -> FabricResult<Job>;
    /// Starts the VM where it runs now.
    async fn start(&self, call: &Call, vm: &str) -> FabricResult<Job>;
    /// The addresses of the VM where it runs at `at` (the replica's after failover).
    async fn addresses(&self, vm: &str, at: Timestamp) -> FabricResult<Vec<ReplicaNic>>;

    /// Every job, oldest first.
    async fn jobs(&self) -> FabricResult<Vec<Job>>;

    /// What the call with `key` did, without presenting the key again: what a resumed run
    /// asks about a call it started but never saw finish.
    async fn call_outcome(&self, key: &str) -> FabricResult<CallOutcome>;

    /// Lets `duration` pass from `from` (a wait step, a retry's backoff); returns when
    /// it ends.
    async fn wait(&self, from: Timestamp, duration: Duration) -> Timestamp;

    /// Waits up to `timeout` for a TCP port to accept a connection, on a fabric of real
    /// machines: `Some(Ok(when))` once one did, `Some(Err(why))` when none did in time.
    /// `None`: the fabric has no sockets (the simulation), and the caller models it.
    async fn wait_port(&self, _ip: Ipv4Addr, _port: u16, _timeout: Duration) -> Option<Result<Timestamp, String>> {
        None
    }

    /// What this fabric measured of each VM's past failovers, by VM (real fabrics; the
    /// simulation measures nothing: its durations are the model).
    fn measured_durations(&self) -> BTreeMap<String, MeasuredDurations> {
        BTreeMap::new()
    }
}
