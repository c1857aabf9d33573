//! The domain model: plain data and the pure rules of DOMAIN.md. No I/O, no async, no
//! Rhai: everything here can be tested with values alone.

pub mod duration;
pub mod inventory;
pub mod job;
pub mod names;
pub mod network;
pub mod policy;
pub mod protection;
pub mod recovery;
#[cfg(test)]
mod round_trips;
pub mod site;
pub mod site_file;
pub mod snippet;
#[cfg(test)]
pub(crate) mod testing;
pub mod vm;

pub use duration::{HumanDuration, MAX_DURATION, parse_duration};
pub use inventory::{Fault, InitialProtection, Inventory, ReplicationGroup, Simulation};
pub use job::{Job, JobStatus};
pub use network::{Addressing, Ipv4Net, Network, NetworkMapping, Subnet};
pub use policy::{CopyFrequency, InitialReplication, ReplicationPolicy, StorageTier, Throttle};
pub use protection::{FailoverKind, Operation, Phase, ProtectionState, Refusal, Side};
pub use recovery::{Consistency, PointChoice, PointSchedule, PointSummary, RecoveryPoint, Timestamp, format_time};
pub use site::{Pairing, Platform, Site, SiteKind};
pub use site_file::{SiteFileError, SiteFileErrors, parse_site, parse_site_bytes};
pub use vm::{Disk, MeasuredDurations, Nic, Os, StorageMapping, TargetSize, Vm};
