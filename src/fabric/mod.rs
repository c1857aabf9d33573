//! The fabric: the primitives a recovery plan calls (protection, replication status,
//! recovery points, failover of each kind, commit, cancel, cleanup, reprotect, failback,
//! power, addresses, jobs), as one async trait, and its adapters. `sim` is the embedded
//! default: a simulated datacenter pair described by a site file.
//!
//! Every mutating call takes an idempotency key (`run/step/attempt` when the engine
//! calls): the same key twice does the work once and returns the first outcome.

pub mod dns;
pub mod sim;

use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::network::AddressError;
use crate::model::vm::DiskError;
use crate::model::{Addressing, FailoverKind, Job, Operation, PointChoice, RecoveryPoint, Refusal, Side, Timestamp};

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
    Refused { message: String },
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
        FabricError::Refused { message: refusal.to_string() }
    }
}

impl FabricError {
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
    /// Finished: the outcome (as JSON, for the caller to read as the call's type) or error.
    Done(Result<serde_json::Value, FabricError>),
}

/// The primitives a recovery plan can call. Mutating calls take an idempotency key.
#[async_trait]
pub trait Fabric: Send + Sync {
    /// The fabric's clock: modelled time for the simulation.
    fn now(&self) -> Timestamp;

    /// R1-R6: enables protection; initial replication starts (R4).
    async fn protect(&self, key: &str, vm: &str, policy: &str, exclude_disks: &[String]) -> FabricResult<Job>;
    /// R14: disables protection, deleting the replica's disks if asked.
    async fn unprotect(&self, key: &str, vm: &str, delete_replica: bool) -> FabricResult<Job>;

    /// R15: replication state, latest points, RPO and health.
    async fn replication_status(&self, vm: &str) -> FabricResult<ReplicationStatus>;
    /// R2, R12: the points kept now, oldest first (a group member's are the group's).
    async fn recovery_points(&self, vm: &str) -> FabricResult<Vec<RecoveryPoint>>;

    /// R30-R33, R9, R10: fails one VM over.
    async fn failover(&self, key: &str, vm: &str, request: &FailoverRequest) -> FabricResult<FailoverOutcome>;
    /// R34: moves an uncommitted failover to another recovery point.
    async fn change_recovery_point(&self, key: &str, vm: &str, point: PointChoice) -> FabricResult<FailoverOutcome>;
    /// R34: makes the failover final and deletes the recovery points.
    async fn commit(&self, key: &str, vm: &str) -> FabricResult<Job>;
    /// R35: stops a failover under way; the VM then needs reprotect.
    async fn cancel(&self, key: &str, vm: &str) -> FabricResult<Job>;
    /// R30: deletes the test replica and records the operator's notes.
    async fn cleanup_test(&self, key: &str, vm: &str, notes: &str) -> FabricResult<Job>;
    /// R36: replicates from the active site back to the other one.
    async fn reprotect(&self, key: &str, vm: &str) -> FabricResult<Job>;
    /// R37, R38: a planned failover from the recovery site back to the original one.
    async fn failback(&self, key: &str, vm: &str) -> FabricResult<FailoverOutcome>;

    /// Shuts the VM down where it runs now.
    async fn shutdown(&self, key: &str, vm: &str) -> FabricResult<Job>;
    /// Starts the VM where it runs now.
    async fn start(&self, key: &str, vm: &str) -> FabricResult<Job>;
    /// The addresses of the VM where it runs now (the replica's after failover).
    async fn addresses(&self, vm: &str) -> FabricResult<Vec<ReplicaNic>>;

    /// Every job, oldest first.
    async fn jobs(&self) -> FabricResult<Vec<Job>>;

    /// What the call with `key` did, without presenting the key again: what a resumed run
    /// asks about a call it started but never saw finish.
    async fn call_outcome(&self, key: &str) -> FabricResult<CallOutcome>;

    /// Lets `duration` pass on the fabric's clock (a wait step, a retry's backoff).
    async fn wait(&self, duration: Duration);
}
