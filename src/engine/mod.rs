//! The event-driven engine: runs a validated plan against a fabric (DESIGN.md, "The
//! shape of a run"). Every state change is an event on one bus. The engine sees plan
//! actions only as `Action` trait objects: it knows nothing of Rhai.

mod auto_dns;
mod event;
mod executor;
mod fingerprint;
mod history;
mod journal_log;
pub mod keys;
pub mod operator;
mod services;
mod slots;

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use event::{Draft, Event, EventBus, EventData, EventKind, Scope};
pub use executor::{Deps, execute, preflight, sort_events, start_time};
pub use fingerprint::{Unreadable, fingerprint};
pub use history::History;
pub use journal_log::JournalLog;

use crate::model::{FailoverKind, PointChoice, Timestamp};
use crate::plan::Manual;

/// Resolves once an event is durable, or with the storage error.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Where a run's events are kept: the journal of real runs.
pub trait EventLog: Send + Sync {
    /// Queues `event` at once; the future resolves when it, and everything queued
    /// before it, is durable.
    fn record(&self, event: &Event) -> Durable;
}

/// Stops a run at the next step: an operator's cancel (R35), or a failure the run
/// cannot go on after (a journal that cannot be written).
#[derive(Default)]
pub struct Stop {
    reason: Mutex<Option<(String, bool)>>,
    notify: Notify,
}

impl Stop {
    /// R35: stops the run and the failovers under way.
    pub fn cancel(&self, reason: impl Into<String>) {
        self.set(reason.into(), true);
    }

    /// Stops the run because it cannot go on.
    pub fn fail(&self, reason: impl Into<String>) {
        self.set(reason.into(), false);
    }

    fn set(&self, reason: String, cancel: bool) {
        let mut current = self.reason.lock().expect("stop lock");
        if current.is_none() {
            *current = Some((reason, cancel));
            self.notify.notify_waiters();
        }
    }

    pub fn reason(&self) -> Option<String> {
        self.reason.lock().expect("stop lock").as_ref().map(|(r, _)| r.clone())
    }

    pub fn is_cancel(&self) -> bool {
        self.reason.lock().expect("stop lock").as_ref().is_some_and(|(_, cancel)| *cancel)
    }

    /// Resolves once the run is told to stop.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.reason().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// How to run a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// R37, R38: the run brings the VMs back from the recovery site to their original one.
    #[serde(default)]
    pub failback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// R35: an operator cancelled it.
    Cancelled,
    /// Still under way: what a report of a live run's journal says.
    Running,
    /// Its process stopped (killed, power cut) before it ended: `drplan resume` goes on.
    Interrupted,
}

impl RunStatus {
    /// As reports write it, the same word as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the run came to its end: succeeded, failed or cancelled.
    pub fn ended(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: RunStatus,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub events: Vec<Event>,
}

/// A manual step marked done.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// How long the step took, in the run's modelled time.
    pub took: std::time::Duration,
    /// Who or what approved it, when that is worth a line in the report.
    pub how: Option<String>,
}

/// R21: how a run waits for an operator to complete a manual step.
#[async_trait]
pub trait ManualGate: Send + Sync {
    /// Returns once the step `key` is marked done, with how long that took, or an error
    /// when it times out.
    async fn wait(&self, run_id: &str, key: &str, manual: &Manual) -> Result<Approval, String>;
}

/// Approves every manual step at once, as taking its estimate: what a dry run assumes,
/// so that a rehearsal with it gives the dry run's timeline.
pub struct AutoApprove;

#[async_trait]
impl ManualGate for AutoApprove {
    async fn wait(&self, _run_id: &str, _key: &str, manual: &Manual) -> Result<Approval, String> {
        Ok(Approval { took: manual.estimate, how: None })
    }
}

#[cfg(test)]
mod tests;
