//! The protection life cycle of one VM (R4, R5, R30-R38) as a pure state machine:
//! which operations each state allows, what each does to the state, and refusals that
//! tell the operator what to do instead. The simulated fabric adds time and effects;
//! the rules live here.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::recovery::{RecoveryPoint, Timestamp, format_time};

/// The two sides of a VM's pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The VM's own site, the source of its pairing.
    Original,
    /// The site it is protected to.
    Recovery,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Original => Side::Recovery,
            Side::Recovery => Side::Original,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverKind {
    /// R30: a drill into an isolated network; production is untouched.
    Test,
    /// R31: source shut down first, then the last changes synced: no data loss.
    Planned,
    /// R32: the source is down; changes after the recovery point are lost.
    Unplanned,
}

impl fmt::Display for FailoverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailoverKind::Test => "test",
            FailoverKind::Planned => "planned",
            FailoverKind::Unplanned => "unplanned",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    Unprotected,
    /// R4: the full copy towards the passive side; failover waits for it (R5).
    InitialReplication {
        started: Timestamp,
        completes: Timestamp,
    },
    /// Delta replication from the active side, making recovery points since `since`.
    Protected {
        since: Timestamp,
    },
    /// R35: replication is stopped and a failover is under way.
    FailingOver {
        kind: FailoverKind,
        started: Timestamp,
    },
    /// The failover did not finish (e.g. the replica did not boot): retry or cancel. A
    /// planned one may also be retried as unplanned (R32: when the source will not shut
    /// down, an unplanned failover goes on without it).
    FailoverFailed {
        kind: FailoverKind,
        error: String,
    },
    /// R34: failed over, not yet committed: the recovery point can still be changed.
    FailedOver {
        kind: FailoverKind,
        point: RecoveryPoint,
        at: Timestamp,
        data_loss: Duration,
    },
    /// R34: final, recovery points deleted; replication waits for reprotect (R36).
    Committed {
        kind: FailoverKind,
        at: Timestamp,
    },
    /// R35: a failover was cancelled; the VM replicates again only once reprotected. Its
    /// recovery points are kept (replication stopped, nothing deleted them), so an
    /// unplanned failover to one of them is still possible.
    NeedsReprotect {
        reason: String,
    },
}

/// A test replica living alongside production (R30).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestFailover {
    pub point: RecoveryPoint,
    pub at: Timestamp,
    /// The isolated network it runs in; `None` for no network at all.
    pub network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectionState {
    pub phase: Phase,
    /// Where the VM serves production now.
    pub active: Side,
    /// The policy chosen when protection was enabled. Replication back to the original
    /// site runs under the fixed failback policy instead (R37).
    pub policy: Option<String>,
    /// R6: data disks left out of replication; fixed while protection is enabled.
    pub excluded_disks: Vec<String>,
    pub test: Option<TestFailover>,
    /// R31/R32: after a planned failover to a secondary site the replica's changes are
    /// tracked, so reprotect needs only a delta sync; after an unplanned one, a full copy.
    pub changes_tracked: bool,
}

/// Everything an operator can ask of one VM's protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Protect,
    Unprotect,
    TestFailover,
    Cleanup,
    PlannedFailover,
    UnplannedFailover,
    /// R37: a planned failover from the recovery site back to the original one.
    Failback,
    ChangeRecoveryPoint,
    Commit,
    Cancel,
    Reprotect,
}

impl Operation {
    pub fn for_failover(kind: FailoverKind) -> Operation {
        match kind {
            FailoverKind::Test => Operation::TestFailover,
            FailoverKind::Planned => Operation::PlannedFailover,
            FailoverKind::Unplanned => Operation::UnplannedFailover,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Protect => "protect",
            Operation::Unprotect => "unprotect",
            Operation::TestFailover => "test failover",
            Operation::Cleanup => "cleanup",
            Operation::PlannedFailover => "planned failover",
            Operation::UnplannedFailover => "unplanned failover",
            Operation::Failback => "failback",
            Operation::ChangeRecoveryPoint => "change recovery point",
            Operation::Commit => "commit",
            Operation::Cancel => "cancel",
            Operation::Reprotect => "reprotect",
        })
    }
}

/// An operation the VM's state does not allow, with what the operator can do instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot {operation} {vm}: it is {state}{why}. {hint}")]
pub struct Refusal {
    pub vm: String,
    pub operation: Operation,
    pub state: String,
    pub why: String,
    pub hint: String,
}

impl ProtectionState {
    pub fn unprotected() -> Self {
        ProtectionState {
            phase: Phase::Unprotected,
            active: Side::Original,
            policy: None,
            excluded_disks: Vec::new(),
            test: None,
            changes_tracked: false,
        }
    }

    /// Moves time-driven phases on: an initial replication whose copy is done becomes
    /// protected from the moment it completed.
    pub fn settle(&mut self, now: Timestamp) {
        if let Phase::InitialReplication { completes, .. } = self.phase
            && now >= completes
        {
            self.phase = Phase::Protected { since: completes };
        }
    }

    /// The operations this state allows, in the order an operator would consider them.
    pub fn allowed(&self) -> Vec<Operation> {
        use Operation::*;
        let mut ops = Vec::new();
        let no_test = self.test.is_none();
        match &self.phase {
            Phase::Unprotected => ops.push(Protect),
            Phase::InitialReplication { .. } => ops.push(Unprotect),
            Phase::Protected { .. } => {
                if no_test {
                    ops.push(TestFailover);
                    match self.active {
                        Side::Original => ops.extend([PlannedFailover, UnplannedFailover]),
                        Side::Recovery => ops.extend([Failback, UnplannedFailover]),
                    }
                    ops.push(Unprotect);
                } else {
                    ops.push(Cleanup);
                }
            }
            Phase::FailingOver { .. } => ops.push(Cancel),
            Phase::FailoverFailed { kind: FailoverKind::Planned, .. } => {
                ops.extend([PlannedFailover, UnplannedFailover, Cancel])
            }
            Phase::FailoverFailed { kind, .. } => ops.extend([Operation::for_failover(*kind), Cancel]),
            Phase::FailedOver { .. } => ops.extend([ChangeRecoveryPoint, Commit]),
            Phase::Committed { .. } => ops.extend([Reprotect, Unprotect]),
            Phase::NeedsReprotect { .. } => ops.extend([UnplannedFailover, Reprotect, Unprotect]),
        }
        ops
    }

    /// Checks that `operation` is allowed now; the refusal says why not and what to do.
    pub fn check(&self, vm: &str, operation: Operation) -> Result<(), Refusal> {
        let allowed = self.allowed();
        // A failed failover is retried with the same kind; failback is a planned failover.
        let retry_as_failback = operation == Operation::Failback
            && matches!(self.phase, Phase::FailoverFailed { kind: FailoverKind::Planned, .. })
            && self.active == Side::Recovery;
        if allowed.contains(&operation) || retry_as_failback {
            return Ok(());
        }
        let why = match (&self.phase, operation) {
            (Phase::InitialReplication { completes, .. }, _) => {
                format!(" (R5: failover waits for the initial copy, done at {})", format_time(*completes))
            }
            (Phase::Protected { .. }, Operation::PlannedFailover) if self.active == Side::Recovery => {
                "; going back is a failback".into()
            }
            (Phase::Protected { .. }, Operation::Failback) => " and already runs on its original site".into(),
            (_, Operation::Cleanup) => " with no test failover to clean up".into(),
            (Phase::Protected { .. }, _) if self.test.is_some() => " and a test failover is not cleaned up yet".into(),
            _ => String::new(),
        };
        let hint = match allowed.as_slice() {
            [] => "Nothing can be done to it now.".to_string(),
            ops => format!("Next: {}.", ops.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ")),
        };
        Err(Refusal { vm: vm.into(), operation, state: self.describe(), why, hint })
    }

    /// One line for status displays and refusals.
    pub fn describe(&self) -> String {
        let active = match self.active {
            Side::Original => "",
            Side::Recovery => " on the recovery site",
        };
        match &self.phase {
            Phase::Unprotected => "unprotected".into(),
            Phase::InitialReplication { completes, .. } => {
                format!("in initial replication until {}", format_time(*completes))
            }
            Phase::Protected { .. } if self.test.is_some() => {
                format!("protected{active}, with a test failover running")
            }
            Phase::Protected { .. } => format!("protected{active}"),
            Phase::FailingOver { kind, .. } => format!("in a {kind} failover"),
            Phase::FailoverFailed { kind, error } => format!("after a failed {kind} failover ({error})"),
            Phase::FailedOver { kind, point, .. } => {
                format!("failed over ({kind}, point {}), not committed", format_time(point.time))
            }
            Phase::Committed { kind, .. } => format!("failed over ({kind}) and committed{active}"),
            Phase::NeedsReprotect { reason } => format!("in need of reprotect ({reason})"),
        }
    }

    pub fn protect(&mut self, policy: &str, excluded: Vec<String>, started: Timestamp, completes: Timestamp) {
        self.phase = Phase::InitialReplication { started, completes };
        self.policy = Some(policy.into());
        self.excluded_disks = excluded;
        self.changes_tracked = false;
    }

    /// R14: the replica, if kept, is no longer protected or replicated.
    pub fn unprotect(&mut self) {
        *self = ProtectionState { active: self.active, ..ProtectionState::unprotected() };
    }

    /// R35: a real failover stops replication before it begins. A test failover leaves
    /// production replication running (R30).
    pub fn begin_failover(&mut self, kind: FailoverKind, now: Timestamp) {
        if kind != FailoverKind::Test {
            self.phase = Phase::FailingOver { kind, started: now };
        }
    }

    pub fn finish_failover(
        &mut self,
        kind: FailoverKind,
        point: RecoveryPoint,
        at: Timestamp,
        data_loss: Duration,
        network: Option<String>,
        to_secondary_site: bool,
    ) {
        match kind {
            FailoverKind::Test => self.test = Some(TestFailover { point, at, network }),
            _ => {
                self.phase = Phase::FailedOver { kind, point, at, data_loss };
                self.active = self.active.other();
                // R31/R32.
                self.changes_tracked = kind == FailoverKind::Planned && to_secondary_site;
            }
        }
    }

    pub fn fail_failover(&mut self, kind: FailoverKind, error: String) {
        if kind != FailoverKind::Test {
            self.phase = Phase::FailoverFailed { kind, error };
        }
    }

    /// R34: the recovery point can change until commit.
    pub fn change_point(&mut self, point: RecoveryPoint, data_loss: Duration) {
        if let Phase::FailedOver { point: p, data_loss: d, .. } = &mut self.phase {
            *p = point;
            *d = data_loss;
        }
    }

    /// R34: final; the recovery points are gone with the replication stream.
    pub fn commit(&mut self, at: Timestamp) {
        if let Phase::FailedOver { kind, .. } = self.phase {
            self.phase = Phase::Committed { kind, at };
        }
    }

    /// R35: cancelled failovers leave the VM needing reprotect.
    pub fn cancel(&mut self) {
        let reason = match &self.phase {
            Phase::FailingOver { kind, .. } | Phase::FailoverFailed { kind, .. } => {
                format!("{kind} failover cancelled")
            }
            _ => "failover cancelled".into(),
        };
        self.phase = Phase::NeedsReprotect { reason };
        self.changes_tracked = false;
    }

    /// R30: deletes the test replica; production was never touched.
    pub fn cleanup(&mut self) {
        self.test = None;
    }

    /// R36: replication restarts from the active site towards the other one.
    pub fn reprotect(&mut self, started: Timestamp, completes: Timestamp) {
        self.phase = Phase::InitialReplication { started, completes };
        self.changes_tracked = false;
    }

    /// The policy replication runs under now: the chosen one from the original site,
    /// the fixed failback policy from the recovery site back (R37).
    pub fn replication_policy(&self) -> Option<&str> {
        self.policy_from(self.active)
    }

    /// The policy replication from `side` runs under: the chosen one from the original
    /// site, the fixed failback policy back from the recovery site (R37).
    pub fn policy_from(&self, side: Side) -> Option<&str> {
        match side {
            Side::Original => self.policy.as_deref(),
            Side::Recovery => Some(super::policy::FAILBACK_POLICY_NAME),
        }
    }

    /// True when reprotect needs only the changes, not a full copy (R31).
    pub fn reprotect_is_delta(&self) -> bool {
        self.changes_tracked && matches!(self.phase, Phase::Committed { .. })
    }
}

impl fmt::Display for ProtectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::recovery::Consistency;
    use chrono::{DateTime, Utc};

    fn t(secs: i64) -> Timestamp {
        DateTime::<Utc>::from_timestamp(1_767_225_600 + secs, 0).unwrap()
    }

    fn point(secs: i64) -> RecoveryPoint {
        RecoveryPoint { time: t(secs), consistency: Consistency::Crash }
    }

    fn protected() -> ProtectionState {
        let mut s = ProtectionState::unprotected();
        s.protect("gold", vec![], t(0), t(100));
        s.settle(t(100));
        s
    }

    #[test]
    fn r4_initial_replication_becomes_protection_when_the_copy_completes() {
        let mut s = ProtectionState::unprotected();
        s.protect("gold", vec![], t(0), t(100));
        s.settle(t(99));
        assert!(matches!(s.phase, Phase::InitialReplication { .. }));
        s.settle(t(500));
        assert_eq!(s.phase, Phase::Protected { since: t(100) });
    }

    #[test]
    fn r5_failover_refused_during_initial_replication() {
        let mut s = ProtectionState::unprotected();
        s.protect("gold", vec![], t(0), t(100));
        for kind in [FailoverKind::Test, FailoverKind::Planned, FailoverKind::Unplanned] {
            let err = s.check("sql01", Operation::for_failover(kind)).unwrap_err();
            assert!(err.to_string().contains("R5"), "{err}");
        }
    }

    #[test]
    fn r6_disk_set_cannot_change_while_protected() {
        let s = protected();
        let err = s.check("sql01", Operation::Protect).unwrap_err();
        assert!(err.to_string().contains("Next:") && err.to_string().contains("unprotect"), "{err}");
    }

    #[test]
    fn r30_test_failover_leaves_production_replicating_until_cleanup() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Test, t(200));
        s.finish_failover(FailoverKind::Test, point(100), t(300), Duration::ZERO, Some("test".into()), true);
        assert_eq!(s.phase, Phase::Protected { since: t(100) }, "production untouched");
        assert_eq!(s.active, Side::Original);
        let err = s.check("web01", Operation::TestFailover).unwrap_err();
        assert!(err.to_string().contains("not cleaned up") && err.hint.contains("cleanup"), "{err}");
        assert!(s.check("web01", Operation::PlannedFailover).is_err());
        s.cleanup();
        assert!(s.check("web01", Operation::TestFailover).is_ok());
        assert!(s.check("web01", Operation::Cleanup).unwrap_err().to_string().contains("no test failover"));
    }

    #[test]
    fn r31_planned_failover_to_secondary_site_tracks_changes_for_delta_reprotect() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Planned, t(200));
        s.finish_failover(FailoverKind::Planned, point(200), t(300), Duration::ZERO, None, true);
        assert_eq!(s.active, Side::Recovery);
        s.commit(t(400));
        assert!(s.reprotect_is_delta());
    }

    #[test]
    fn r32_unplanned_failover_leaves_the_replica_unprotected() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Unplanned, t(200));
        s.finish_failover(FailoverKind::Unplanned, point(100), t(300), Duration::from_secs(100), None, true);
        s.commit(t(400));
        assert!(!s.reprotect_is_delta(), "a full copy is needed");
        assert!(matches!(s.phase, Phase::Committed { .. }));
        assert_eq!(s.allowed(), vec![Operation::Reprotect, Operation::Unprotect]);
    }

    #[test]
    fn r34_point_changes_until_commit_then_is_final() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Unplanned, t(200));
        s.finish_failover(FailoverKind::Unplanned, point(100), t(300), Duration::from_secs(100), None, false);
        assert!(s.check("a", Operation::ChangeRecoveryPoint).is_ok());
        s.change_point(point(50), Duration::from_secs(150));
        assert!(matches!(s.phase, Phase::FailedOver { point: p, .. } if p == point(50)));
        s.commit(t(400));
        let err = s.check("a", Operation::ChangeRecoveryPoint).unwrap_err();
        assert!(err.to_string().contains("committed"), "{err}");
        assert!(s.check("a", Operation::Commit).is_err());
    }

    #[test]
    fn r34_commit_before_failover_is_refused() {
        let err = protected().check("sql01", Operation::Commit).unwrap_err();
        assert_eq!(err.state, "protected");
        assert!(err.hint.contains("planned failover"), "{err}");
    }

    #[test]
    fn r35_failover_stops_replication_and_cancel_needs_reprotect() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Planned, t(200));
        assert!(matches!(s.phase, Phase::FailingOver { .. }), "replication stopped");
        assert_eq!(s.allowed(), vec![Operation::Cancel]);
        s.cancel();
        assert!(matches!(s.phase, Phase::NeedsReprotect { .. }));
        assert!(s.check("a", Operation::TestFailover).unwrap_err().hint.contains("reprotect"));
        s.reprotect(t(300), t(400));
        s.settle(t(400));
        assert!(matches!(s.phase, Phase::Protected { .. }));
    }

    #[test]
    fn r36_reprotect_keeps_the_recovery_site_active() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Planned, t(200));
        s.finish_failover(FailoverKind::Planned, point(200), t(300), Duration::ZERO, None, true);
        s.commit(t(400));
        s.reprotect(t(400), t(500));
        s.settle(t(600));
        assert_eq!(s.active, Side::Recovery);
        assert!(s.allowed().contains(&Operation::Failback));
        assert!(s.check("a", Operation::PlannedFailover).unwrap_err().to_string().contains("failback"));
    }

    #[test]
    fn r37_failback_refused_before_reprotect() {
        let mut s = protected();
        let err = s.check("a", Operation::Failback).unwrap_err();
        assert!(err.to_string().contains("original site"), "{err}");
        s.begin_failover(FailoverKind::Planned, t(200));
        s.finish_failover(FailoverKind::Planned, point(200), t(300), Duration::ZERO, None, true);
        s.commit(t(400));
        let err = s.check("a", Operation::Failback).unwrap_err();
        assert!(err.hint.contains("reprotect"), "{err}");
    }

    #[test]
    fn failed_failover_can_be_retried_or_cancelled() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Planned, t(200));
        s.fail_failover(FailoverKind::Unplanned, "replica did not boot".into());
        assert_eq!(s.allowed(), vec![Operation::UnplannedFailover, Operation::Cancel]);
        assert!(s.describe().contains("did not boot"));
    }

    #[test]
    fn r32_a_planned_failover_that_failed_can_be_retried_as_unplanned_without_cancel() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Planned, t(200));
        s.fail_failover(FailoverKind::Planned, "the source would not shut down".into());
        assert_eq!(s.allowed(), vec![Operation::PlannedFailover, Operation::UnplannedFailover, Operation::Cancel]);
        assert!(s.check("a", Operation::UnplannedFailover).is_ok());
    }

    #[test]
    fn r35_a_cancelled_failover_can_still_fail_over_unplanned_to_a_kept_point() {
        let mut s = protected();
        s.begin_failover(FailoverKind::Unplanned, t(200));
        s.cancel();
        assert_eq!(s.allowed(), vec![Operation::UnplannedFailover, Operation::Reprotect, Operation::Unprotect]);
        assert!(s.check("a", Operation::PlannedFailover).is_err(), "replication stopped: no final sync");
    }
}
