//! What the libvirt fabric keeps of one VM in the shared store: its protection state
//! (the rules are the model's, as in the simulation), its recovery points at the target,
//! the checkpoint the next incremental copy starts from, its replicas, what a reprotect
//! builds on (R36), and who is working on it right now.

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

/// R31: what a planned failover leaves for a delta reprotect: the passive side's disks
/// hold the shutdown instant, and the active domain has tracked every write since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaBase {
    /// The shutdown instant the passive side's disks hold.
    pub time: Timestamp,
    /// The checkpoint the active domain took before its first instruction ran.
    pub checkpoint: String,
    /// By disk (`vda`): the passive side's image of it: the VM's own disk at home, the
    /// replica's overlay at the recovery site.
    pub disks: std::collections::BTreeMap<String, std::path::PathBuf>,
}

/// R36: how the reprotect under way (or last done) copies, and what its first copy moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reprotect {
    /// Only the changes since `since` (R31), or every disk whole (R32).
    pub delta: bool,
    pub since: Option<Timestamp>,
    /// Bytes the first copy wrote at the target, and the disks' size; `None` until it ends.
    #[serde(default)]
    pub copied: Option<(u64, u64)>,
}

impl Reprotect {
    /// One phrase for status: what the reprotect copies, and what it copied.
    pub fn describe(&self) -> String {
        let how = match (self.delta, self.since) {
            (true, Some(since)) => format!("a delta copy of the changes since {}", crate::model::format_time(since)),
            _ => "a full copy".to_string(),
        };
        match self.copied {
            None => format!("reprotect (R36) by {how}, not copied yet (drplan replicate makes it)"),
            Some((bytes, total)) => format!(
                "reprotected (R36) by {}: {bytes} of {total} bytes copied",
                if self.delta { "a delta copy" } else { "a full copy" }
            ),
        }
    }
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
    /// R31: set by a planned failover (or failback), taken by the reprotect after it.
    #[serde(default)]
    pub delta_base: Option<DeltaBase>,
    #[serde(default)]
    pub reprotect: Option<Reprotect>,
    /// How far the copy under way is, 0-100: what `status` shows of an initial or
    /// reprotect copy (R4, R36) while `drplan replicate` makes it.
    #[serde(default)]
    pub copying: Option<u8>,
    /// R38: the failover home under way has written this point into the VM's own disks:
    /// resumed after a crash, it never writes them again (its domain may have run since).
    /// Cleared when the failover succeeds or is cancelled.
    #[serde(default)]
    pub landed: Option<u64>,
    /// A replica an unplanned failover home could not remove (its site did not answer):
    /// removed as soon as that site answers, before anything else touches the VM there,
    /// so it never runs beside the VM at home.
    #[serde(default)]
    pub left_behind: Option<LeftBehind>,
}

/// A replica left at a site that did not answer: its site and domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftBehind {
    pub site: String,
    pub domain: String,
    pub error: String,
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
            delta_base: None,
            reprotect: None,
            copying: None,
            landed: None,
            left_behind: None,
        }
    }

    /// The failover of `kind` a call of the same run as `key` finished, if the VM still
    /// stands where it left it: a run's retry of a step its killed process completed.
    /// Keys are `RUN/...`; the operator's own (`cli/...`) are never the same run.
    pub fn failover_done_by_run_of(&self, key: &str, kind: FailoverKind) -> Option<FailoverOutcome> {
        let (done_key, outcome) = self.last_failover.as_ref()?;
        let run = |k: &str| k.split('/').next().map(str::to_string);
        let same_run = !key.starts_with(crate::store::CLI_KEY_PREFIX) && run(done_key) == run(key);
        // A failover home leaves no replica: the VM's own domain runs.
        let landed = self.replica.is_some() || self.protection.active == crate::model::Side::Original;
        let still_there = match kind {
            FailoverKind::Test => self.protection.test.is_some() && self.test_replica.is_some(),
            _ => matches!(self.protection.phase, Phase::FailedOver { kind: k, .. } if k == kind) && landed,
        };
        (same_run && still_there && outcome.kind == kind).then(|| outcome.clone())
    }

    /// Whoever holds the VM, if still alive.
    pub fn live_holder(&self) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| h.is_alive())
    }

    /// The seqs of the chain replication writes now whose files a replica boots from:
    /// never merged or removed while used. A replica serving the VM after a reprotect
    /// boots from the other direction's chain.
    pub fn seqs_in_use(&self) -> Vec<u64> {
        let serving = self.replica.iter().filter(|_| self.protection.active == crate::model::Side::Original);
        serving.chain(&self.test_replica).map(|r| r.seq).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Side;

    fn replica(seq: u64) -> ReplicaRecord {
        let replica = Replica {
            name: "app01".into(),
            site: "b".into(),
            host: "kvm-b".into(),
            storage: String::new(),
            nics: vec![],
        };
        ReplicaRecord { domain: "app01".into(), replica, seq }
    }

    #[test]
    fn r36_the_replica_serving_the_way_back_does_not_hold_the_chain_at_home() {
        let mut record = VmRecord::new(ProtectionState::unprotected());
        record.replica = Some(replica(4));
        assert_eq!(record.seqs_in_use(), [4], "from home, the replica boots from the chain written");
        record.protection.active = Side::Recovery;
        assert!(record.seqs_in_use().is_empty(), "its points are the other direction's");
        record.test_replica = Some(replica(9));
        assert_eq!(record.seqs_in_use(), [9], "a drill boots from the chain written");
    }

    #[test]
    fn r36_status_says_how_a_reprotect_copies_and_what_it_copied() {
        let since = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut delta = Reprotect { delta: true, since: Some(since), copied: None };
        assert!(delta.describe().contains("a delta copy of the changes since 2027-"), "{}", delta.describe());
        delta.copied = Some((65536, 1 << 26));
        assert_eq!(delta.describe(), "reprotected (R36) by a delta copy: 65536 of 67108864 bytes copied");
        let full = Reprotect { delta: false, since: None, copied: None };
        assert!(full.describe().contains("by a full copy, not copied yet"), "{}", full.describe());
    }
}
