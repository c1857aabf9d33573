//! What the simulation remembers of one VM between commands: its protection state, its
//! replication stream, the replicas it has, and whether it is running.

use serde::{Deserialize, Serialize};

use crate::fabric::Replica;
use crate::model::{Phase, ProtectionState, Timestamp};

/// A running (or stopped) delta replication: it makes recovery points from `from` on,
/// until `stopped` (R35: a failover stops it) or, while running, until now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    pub from: Timestamp,
    pub stopped: Option<Timestamp>,
    /// The policy it replicates under; it keeps it after a failover flips the VM's side.
    pub policy: String,
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

    /// Brings time-driven state up to `now`: a finished initial copy starts the stream.
    pub fn settle(&mut self, now: Timestamp) {
        self.protection.settle(now);
        if let Phase::Protected { since } = self.protection.phase
            && self.stream.is_none()
            && let Some(policy) = self.protection.replication_policy()
        {
            self.stream = Some(Stream { from: since, stopped: None, policy: policy.into() });
        }
    }
}
