//! The preflight's checklist (`drplan preflight`): is the world ready for a run of a
//! plan, right now? Lines about the plan, its VMs and DNS, each ok, a warning or a problem.

use serde::Serialize;

use super::table::{self, keep, wrap};
use crate::fabric::readiness::{CheckStatus, ReadinessCheck};
use crate::model::names::Count;
use crate::model::{FailoverKind, PointChoice, Timestamp, format_time};

#[derive(Debug, Clone, Serialize)]
pub struct PreflightReport {
    pub plan: String,
    pub kind: FailoverKind,
    pub source: String,
    pub target: String,
    pub point: PointChoice,
    /// When the world was looked at: the fabric's clock.
    pub checked_at: Timestamp,
    /// No line is a problem: a run started now passes its preflight.
    pub ready: bool,
    /// The plan's own check: its errors and warnings, or one line saying it is sound.
    pub plan_checks: Vec<ReadinessCheck>,
    /// One line per VM of the plan, in plan order.
    pub vms: Vec<ReadinessCheck>,
    /// The DNS configuration, keys and servers the run would use.
    pub dns: Vec<ReadinessCheck>,
}

impl PreflightReport {
    pub fn new(
        header: (String, FailoverKind, String, String, PointChoice),
        checked_at: Timestamp,
        plan_checks: Vec<ReadinessCheck>,
        vms: Vec<ReadinessCheck>,
        dns: Vec<ReadinessCheck>,
    ) -> Self {
        let (plan, kind, source, target, point) = header;
        let ready = plan_checks.iter().chain(&vms).chain(&dns).all(ReadinessCheck::is_ready);
        PreflightReport { plan, kind, source, target, point, checked_at, ready, plan_checks, vms, dns }
    }

    /// Every line with its area, in the order shown.
    fn lines(&self) -> impl Iterator<Item = (&'static str, &ReadinessCheck)> {
        self.plan_checks
            .iter()
            .map(|l| ("plan", l))
            .chain(self.vms.iter().map(|l| ("vm", l)))
            .chain(self.dns.iter().map(|l| ("dns", l)))
    }

    pub fn problems(&self) -> usize {
        self.lines().filter(|(_, l)| l.status == CheckStatus::Problem).count()
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize") + "\n"
    }

    pub fn human(&self, width: table::Width) -> String {
        let mut out = format!(
            "Preflight of plan {:?}: {} failover from {} to {}, recovery point {}\n\
             Read-only: the fabric and DNS were looked at, nothing was changed (at {}).\n\n",
            self.plan,
            self.kind,
            self.source,
            self.target,
            self.point,
            format_time(self.checked_at)
        );
        let rows: Vec<Vec<String>> = self
            .lines()
            .map(|(area, l)| vec![l.status.as_str().to_uppercase(), area.into(), l.subject.clone(), l.message.clone()])
            .collect();
        out.push_str(&table::render(&[keep("STATUS"), keep("AREA"), wrap("SUBJECT"), wrap("FOUND")], &rows, width));
        let warnings = self.lines().filter(|(_, l)| l.status == CheckStatus::Warning).count();
        let checks = Count::numbered("check", rows.len());
        let cited: Vec<&str> = self.lines().map(|(_, l)| l.message.as_str()).collect();
        let note = super::rules::note(&cited.join(" ")).map(|note| format!("\n{note}")).unwrap_or_default();
        out.push_str(&note);
        out.push_str(&if self.ready {
            format!("\nReady: {checks}, {}, no problem.\n", Count::numbered("warning", warnings))
        } else {
            format!(
                "\nNOT READY: {} of {checks}; a run now would be refused or would fail. Nothing was changed.\n",
                Count::numbered("problem", self.problems())
            )
        });
        out
    }
}
