//! The event-driven engine: runs a validated plan against a fabric (DESIGN.md, "The
//! shape of a run"). Every state change is an event on one bus. The engine sees plan
//! actions only as `Action` trait objects: it knows nothing of Rhai.

mod event;
mod executor;
mod services;

use async_trait::async_trait;
use serde::Serialize;

pub use event::{Event, EventBus, EventKind, Scope};
pub use executor::{Deps, execute};

use crate::model::{FailoverKind, PointChoice, Timestamp};
use crate::plan::Manual;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub kind: FailoverKind,
    pub point: PointChoice,
    /// How many VMs of a group fail over at once.
    pub parallel: usize,
    /// Record instead of act, on a virtual clock.
    pub dry_run: bool,
    /// Unplanned failovers: try to shut the source down first (R32).
    pub shut_down_source: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: RunStatus,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub events: Vec<Event>,
}

/// R21: how a real run waits for an operator to complete a manual step.
#[async_trait]
pub trait ManualGate: Send + Sync {
    /// Returns once the step is marked done, or an error when it times out.
    async fn wait(&self, run_id: &str, manual: &Manual) -> Result<(), String>;
}

/// Approves every manual step at once: for tests and unattended drills.
pub struct AutoApprove;

#[async_trait]
impl ManualGate for AutoApprove {
    async fn wait(&self, _run_id: &str, _manual: &Manual) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
