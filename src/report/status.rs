//! The `drplan status` report: where each VM's protection stands, its latest recovery
//! points, RPO and health (R15).

use serde::Serialize;

use super::table;
use crate::fabric::{Health, ReplicationStatus};
use crate::model::{HumanDuration, Operation, Timestamp, format_time};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub clock: Timestamp,
    /// With `drplan status PLAN`: where the plan as a whole stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStanding>,
    pub vms: Vec<ReplicationStatus>,
}

/// Where a plan stands in the recovery cycle: its VMs' states, counted, and the steps
/// every one of them allows next (a plan-level command needs them all to allow it).
#[derive(Debug, Serialize)]
pub struct PlanStanding {
    pub name: String,
    /// "3 protected, 2 failed over (planned...)": each distinct state and how many VMs.
    pub states: Vec<(String, usize)>,
    /// Sites the plan's VMs are active on, with how many.
    pub active: Vec<(String, usize)>,
    pub next: Vec<Operation>,
}

impl PlanStanding {
    pub fn of(name: String, vms: &[ReplicationStatus]) -> PlanStanding {
        fn count(items: impl Iterator<Item = String>) -> Vec<(String, usize)> {
            let mut counted: Vec<(String, usize)> = Vec::new();
            for item in items {
                match counted.iter_mut().find(|(i, _)| *i == item) {
                    Some((_, n)) => *n += 1,
                    None => counted.push((item, 1)),
                }
            }
            counted
        }
        let mut next = vms.first().map(|v| v.allowed.clone()).unwrap_or_default();
        next.retain(|op| vms.iter().all(|v| v.allowed.contains(op)));
        PlanStanding {
            name,
            states: count(vms.iter().map(|v| v.state.clone())),
            active: count(vms.iter().map(|v| v.active_site.clone())),
            next,
        }
    }
}

fn health(status: &ReplicationStatus) -> String {
    match &status.health {
        Health::Healthy => "healthy".into(),
        Health::Unhealthy { rpo, threshold } => {
            format!("UNHEALTHY: RPO {} > {}", HumanDuration(*rpo), HumanDuration(*threshold))
        }
        Health::NotReplicating => "not replicating".into(),
        Health::InitialReplication => format!("initial copy {}%", status.initial_progress.unwrap_or(0)),
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

pub fn human(report: &StatusReport, width: table::Width) -> String {
    let rows: Vec<Vec<String>> = report
        .vms
        .iter()
        .map(|s| {
            vec![
                s.vm.clone(),
                s.state.clone(),
                s.active_site.clone(),
                or_dash(s.direction.as_ref().map(|(from, to)| format!("{from} -> {to}"))),
                or_dash(s.policy.clone()),
                or_dash(s.latest_point.map(|p| format_time(p.time))),
                or_dash(s.latest_app_consistent.map(|p| format_time(p.time))),
                s.point_count.to_string(),
                or_dash(s.rpo.map(|d| HumanDuration(d).to_string())),
                health(s),
                s.allowed.iter().map(|op| op.to_string()).collect::<Vec<_>>().join(", "),
            ]
        })
        .collect();
    use table::{keep, spare, wrap};
    // ACTIVE tells where a VM runs, which is what REPLICATION's direction follows from.
    let header = [
        keep("VM"),
        keep("STATE"),
        keep("ACTIVE"),
        spare("REPLICATION", 2),
        keep("POLICY"),
        keep("LATEST POINT"),
        spare("LATEST APP-CONSISTENT", 0),
        spare("POINTS", 1),
        keep("RPO"),
        keep("HEALTH"),
        wrap("NEXT"),
    ];
    let mut out = format!("clock {}\n", format_time(report.clock));
    if let Some(plan) = &report.plan {
        let list =
            |items: &[(String, usize)]| items.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
        let next = if plan.next.is_empty() {
            "none for the whole plan: see each VM's NEXT".to_string()
        } else {
            plan.next.iter().map(|op| op.to_string()).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!(
            "plan {}: {}; active on {}\nnext for the plan: {next}\n",
            plan.name,
            list(&plan.states),
            list(&plan.active)
        ));
    }
    format!("{out}\n{}", table::render(&header, &rows, width))
}
