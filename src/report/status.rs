//! The `drplan status` report: where each VM's protection stands, its latest recovery
//! points, RPO and health (R15).

use serde::Serialize;

use super::table;
use crate::fabric::{Health, ReplicationStatus};
use crate::model::{HumanDuration, Timestamp, format_time};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub clock: Timestamp,
    pub vms: Vec<ReplicationStatus>,
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

pub fn human(report: &StatusReport) -> String {
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
            ]
        })
        .collect();
    let header = [
        "VM",
        "STATE",
        "ACTIVE",
        "REPLICATION",
        "POLICY",
        "LATEST POINT",
        "LATEST APP-CONSISTENT",
        "POINTS",
        "RPO",
        "HEALTH",
    ];
    format!("clock {}\n\n{}", format_time(report.clock), table::render(&header, &rows))
}
