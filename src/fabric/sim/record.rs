//! What the simulation remembers of one VM between commands: its protection state, its
//! replication stream, the replicas it has, and whether it is running; and the records
//! of all VMs, which note whose record may have changed.

use std::collections::{BTreeMap, HashSet};
use std::mem;
use std::ops::Index;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fabric::Replica;
use crate::model::recovery::delta;
use crate::model::{Phase, ProtectionState, Side, Timestamp};

/// A running (or stopped) delta replication: it makes recovery points from `from` on,
/// until `stopped` (R35: a failover stops it) or, while running, until now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    pub from: Timestamp,
    pub stopped: Option<Timestamp>,
    /// The policy it replicates under; it keeps it after a failover flips the VM's side.
    pub policy: String,
    /// The side it replicates from: a stall of the original site's replication stays in
    /// force for its points after a failover flips the VM's active side.
    #[serde(default = "original_side")]
    pub source: Side,
}

fn original_side() -> Side {
    Side::Original
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub protection: ProtectionState,
    pub stream: Option<Stream>,
    /// The machine serving the VM on the recovery site after a failover.
    pub replica: Option<Replica>,
    /// R30: the test replica of a drill, until cleanup.
    pub test_replica: Option<Replica>,
    /// Whether the VM is running where it is active.
    pub powered_on: bool,
    /// R14: protection was disabled but the replica's disks were kept.
    pub replica_kept: bool,
}

impl VmRecord {
    pub fn new(protection: ProtectionState) -> Self {
        VmRecord { protection, stream: None, replica: None, test_replica: None, powered_on: true, replica_kept: false }
    }

    /// A VM a rehearsal of real sites found in `protection`, with the replication stream
    /// its phase implies: replicating while protected ([`VmRecord::settle`] starts it from
    /// `since`); stopped by a failover under way, failed, cancelled or not committed yet,
    /// its points kept (R34, R35); none once a commit deleted them. When a stopped stream
    /// began is not known: it is given the `retention` of its policy's points.
    pub fn found(protection: ProtectionState, now: Timestamp, retention: impl Fn(&str) -> Option<Duration>) -> Self {
        let mut record = VmRecord::new(protection);
        let found = &record.protection;
        // When the failover stopped replication, and the side it replicated from (`active`
        // flips when a failover finishes). A failed or cancelled one keeps no time: now.
        let stopped = match &found.phase {
            Phase::FailingOver { started, .. } => Some((*started, found.active)),
            Phase::FailedOver { point, .. } => Some((point.time, found.active.other())),
            Phase::FailoverFailed { .. } | Phase::NeedsReprotect { .. } => Some((now, found.active)),
            _ => None,
        };
        if let Some((stopped, source)) = stopped
            && let Some(policy) = found.policy_from(source)
        {
            let from = stopped - delta(retention(policy).unwrap_or_default());
            record.stream = Some(Stream { from, stopped: Some(stopped), policy: policy.into(), source });
        }
        record
    }

    /// Brings time-driven state up to `now`: a finished initial copy starts the stream.
    pub fn settle(&mut self, now: Timestamp) {
        self.protection.settle(now);
        if let Phase::Protected { since } = self.protection.phase
            && self.stream.is_none()
            && let Some(policy) = self.protection.replication_policy()
        {
            let source = self.protection.active;
            self.stream = Some(Stream { from: since, stopped: None, policy: policy.into(), source });
        }
    }
}

/// Every VM's record, by name. Handing a record out to change it notes its name, so that
/// what is derived from the records (the addresses in use) catches up with the changed
/// ones alone instead of reading them all again.
#[derive(Clone)]
pub struct Records {
    map: BTreeMap<String, VmRecord>,
    changed: Changed,
}

/// Whose records may have changed since it was last asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Changed {
    All,
    Some(HashSet<String>),
}

impl Records {
    pub fn new(map: BTreeMap<String, VmRecord>) -> Self {
        Records { map, changed: Changed::All }
    }

    pub fn get(&self, name: &str) -> Option<&VmRecord> {
        self.map.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut VmRecord> {
        let record = self.map.get_mut(name)?;
        if let Changed::Some(names) = &mut self.changed
            && !names.contains(name)
        {
            names.insert(name.to_string());
        }
        Some(record)
    }

    /// Every record, to change any: all count as changed.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut VmRecord)> {
        self.changed = Changed::All;
        self.map.iter_mut()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    /// Whose records may have changed since the last call.
    pub fn take_changed(&mut self) -> Changed {
        mem::replace(&mut self.changed, Changed::Some(HashSet::new()))
    }
}

impl Index<&str> for Records {
    type Output = VmRecord;

    fn index(&self, name: &str) -> &VmRecord {
        &self.map[name]
    }
}
