//! What the libvirt fabric keeps of one VM in the shared store: its protection state
//! (the rules are the model's, as in the simulation), its recovery points at the target,
//! the checkpoint the next incremental copy starts from, its replicas, and who is
//! working on it right now.

use serde::{Deserialize, Serialize};

use crate::fabric::{FailoverOutcome, Replica};
use crate::model::MeasuredDurations;
use crate::model::{Consistency, FailoverKind, Phase, ProtectionState, RecoveryPoint, Timestamp};

/// One recovery point: the image files `point-SEQ-DISK.qcow2` of the VM's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPoint {
    pub seq: u64,
    /// When the backup job began: the instant the point holds.
    pub time: Timestamp,
    pub consistency: Consistency,
    /// A full copy: its files have no backing file.
    pub full: bool,
}

impl StoredPoint {
    pub fn point(&self) -> RecoveryPoint {
        RecoveryPoint { time: self.time, consistency: self.consistency }
    }
}

/// Who holds the VM: a replication cycle or a failover, by process. A holder whose
/// process is gone (killed mid-cycle) holds nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub what: String,
    pub pid: u32,
    pub since: Timestamp,
}

impl Holder {
    pub fn here(what: &str) -> Holder {
        Holder { what: what.into(), pid: std::process::id(), since: chrono::Utc::now() }
    }

    pub fn is_alive(&self) -> bool {
        self.pid == std::process::id() || std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A replica domain drplan defined at the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub domain: String,
    pub replica: Replica,
    /// The point its overlay is on.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub protection: ProtectionState,
    /// Oldest first.
    #[serde(default)]
    pub points: Vec<StoredPoint>,
    #[serde(default)]
    pub next_seq: u64,
    /// The source's checkpoint the next incremental copy starts from.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// The disks replicated (targets such as `vda`), fixed at protect (R6).
    #[serde(default)]
    pub disks: Vec<String>,
    /// The source's domain definition, refreshed at every cycle: what the replica is made
    /// from when the source site is down (R32).
    #[serde(default)]
    pub definition: String,
    #[serde(default)]
    pub holder: Option<Holder>,
    #[serde(default)]
    pub replica: Option<ReplicaRecord>,
    #[serde(default)]
    pub test_replica: Option<ReplicaRecord>,
    /// The last cycle's failure, cleared by a good cycle (R15).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_cycle: Option<Timestamp>,
    /// R15: the health last reported to hooks, so that a restarted service reports
    /// changes, not states.
    #[serde(default)]
    pub reported_healthy: Option<bool>,
    /// The last failover that finished, with the key of the call that made it: what a
    /// resumed run finds done.
    #[serde(default)]
    pub last_failover: Option<(String, crate::fabric::FailoverOutcome)>,
    /// R2: a merge of point `.0` (forgotten) into point `.1` under way.
    #[serde(default)]
    pub merging: Option<(u64, u64)>,
    /// R31: the final copy of the planned failover under way began when the latest point
    /// was this one (0: none). A later point is that copy; a failover resumed after a crash
    /// boots it instead of copying again, and otherwise knows the source it finds paused
    /// is its own copy's (nothing ran in it). Cleared when the failover succeeds or is
    /// cancelled.
    #[serde(default)]
    pub final_copy_after: Option<u64>,
    /// What this VM's past failovers took here: what dry runs model it by.
    #[serde(default)]
    pub measured: MeasuredDurations,
    /// A replica started by a failover and not yet heard on a port: when its start was
    /// asked and its addresses. The first port that answers there ends its boot.
    #[serde(default)]
    pub booting: Option<Booting>,
}

/// A replica booting, for measuring its boot up to its first answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booting {
    pub began: Timestamp,
    pub ips: Vec<std::net::Ipv4Addr>,
}

impl VmRecord {
    pub fn new(protection: ProtectionState) -> VmRecord {
        VmRecord {
            protection,
            points: Vec::new(),
            next_seq: 1,
            checkpoint: None,
            disks: Vec::new(),
            definition: String::new(),
            holder: None,
            replica: None,
            test_replica: None,
            last_error: None,
            last_cycle: None,
            merging: None,
            reported_healthy: None,
            final_copy_after: None,
            last_failover: None,
            measured: MeasuredDurations::default(),
            booting: None,
        }
    }

    /// The failover of `kind` a call of the same run as `key` finished, if the VM still
    /// stands where it left it: a run's retry of a step its killed process completed.
    /// Keys are `RUN/...`; the operator's own (`cli/...`) are never the same run.
    pub fn failover_done_by_run_of(&self, key: &str, kind: FailoverKind) -> Option<FailoverOutcome> {
        let (done_key, outcome) = self.last_failover.as_ref()?;
        let run = |k: &str| k.split('/').next().map(str::to_string);
        let same_run = !key.starts_with(crate::store::CLI_KEY_PREFIX) && run(done_key) == run(key);
        let still_there = match kind {
            FailoverKind::Test => self.protection.test.is_some() && self.test_replica.is_some(),
            _ => {
                matches!(self.protection.phase, Phase::FailedOver { kind: k, .. } if k == kind)
                    && self.replica.is_some()
            }
        };
        (same_run && still_there && outcome.kind == kind).then(|| outcome.clone())
    }

    /// Whoever holds the VM, if still alive.
    pub fn live_holder(&self) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| h.is_alive())
    }

    /// The seqs whose files a replica boots from: never merged or removed while used.
    pub fn seqs_in_use(&self) -> Vec<u64> {
        self.replica.iter().chain(&self.test_replica).map(|r| r.seq).collect()
    }
}
