//! Where a VM (or a group) stands in a run, and VMs counted by it: the report's spans, the
//! chart's bars and tooltips, and the live view's bars all use these.

use std::fmt;

use serde::Serialize;

/// Where a VM or a group stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not started yet. Only the live view has such VMs: a report's span begins with its
    /// first event.
    Waiting,
    #[default]
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// It was under way when its run's process stopped (killed, power cut): a report
    /// of a run that is not live says so rather than "running".
    Interrupted,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
        }
    }

    /// Succeeded, failed or skipped (or cut off): nothing more will happen to it.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Skipped | Status::Interrupted)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many VMs stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmCounts {
    pub waiting: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub interrupted: u64,
}

impl VmCounts {
    /// The VMs of these statuses, counted.
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> VmCounts {
        let mut counts = VmCounts::default();
        for status in statuses {
            *counts.at(status) += 1;
        }
        counts
    }

    /// The count of `status`.
    pub fn at(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Waiting => &mut self.waiting,
            Status::Running => &mut self.running,
            Status::Succeeded => &mut self.succeeded,
            Status::Failed => &mut self.failed,
            Status::Skipped => &mut self.skipped,
            Status::Interrupted => &mut self.interrupted,
        }
    }

    pub fn total(&self) -> u64 {
        self.waiting + self.running + self.finished()
    }

    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.skipped + self.interrupted
    }

    /// Running or finished.
    pub fn started(&self) -> u64 {
        self.total() - self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vms_are_counted_by_where_they_stand() {
        let counts = VmCounts::of([Status::Succeeded, Status::Failed, Status::Succeeded, Status::Waiting]);
        assert_eq!((counts.succeeded, counts.failed, counts.waiting, counts.running), (2, 1, 1, 0));
        assert_eq!((counts.total(), counts.finished(), counts.started()), (4, 3, 3));
        assert_eq!(serde_json::to_string(&Status::Skipped).unwrap(), "\"skipped\"");
        assert!(Status::Skipped.is_finished() && !Status::Running.is_finished());
    }
}
