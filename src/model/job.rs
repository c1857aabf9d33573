//! Jobs: every operation on the fabric (protect, failover, commit...) is a job with a
//! status and timings that an operator can list.

use serde::{Deserialize, Serialize};

use super::recovery::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    /// What was done, e.g. "planned failover", "commit".
    pub operation: String,
    pub vm: String,
    pub status: JobStatus,
    pub started: Timestamp,
    pub finished: Option<Timestamp>,
    /// The error of a failed job, or what a finished one did.
    pub detail: String,
}
