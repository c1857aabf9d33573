//! Commands that look at the simulated datacenter or move its clock: `status`,
//! `points`, `jobs`, `advance`.

use super::args::{Format, Global};
use super::context::Session;
use super::error::CliError;
use crate::fabric::Fabric;
use crate::model::{Consistency, format_time, parse_duration};
use crate::report::{self, status::StatusReport};

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}

pub async fn status(global: &Global, vms: &[String], format: Format) -> Result<String, CliError> {
    let session = Session::open_to_look(global)?;
    let fabric = &session.fabric;
    let names: Vec<String> =
        if vms.is_empty() { fabric.inventory().vms.iter().map(|v| v.name.clone()).collect() } else { vms.to_vec() };
    let mut statuses = Vec::with_capacity(names.len());
    for name in &names {
        statuses.push(fabric.replication_status(name).await?);
    }
    let report = StatusReport { clock: fabric.now(), vms: statuses };
    Ok(match format {
        Format::Human => report::status::human(&report),
        Format::Json => json(&report),
    })
}

pub async fn points(global: &Global, vm: &str) -> Result<String, CliError> {
    let session = Session::open_to_look(global)?;
    let points = session.fabric.recovery_points(vm).await?;
    if points.is_empty() {
        return Ok(format!("{vm} has no recovery points now\n"));
    }
    let mut out = format!("{} recovery points of {vm}, oldest first:\n", points.len());
    for p in points {
        let kind = match p.consistency {
            Consistency::App => "app-consistent",
            Consistency::Crash => "crash-consistent",
        };
        out.push_str(&format!("{}  {kind}\n", format_time(p.time)));
    }
    Ok(out)
}

pub async fn jobs(global: &Global, format: Format) -> Result<String, CliError> {
    let session = Session::open_to_look(global)?;
    let jobs = session.fabric.jobs().await?;
    Ok(match format {
        Format::Human => report::jobs::human(&jobs),
        Format::Json => json(&jobs),
    })
}

pub fn advance(global: &Global, by: &str) -> Result<String, CliError> {
    let by = parse_duration(by).map_err(CliError::Usage)?;
    let session = Session::open(global, None)?;
    let now = session.fabric.advance(by)?;
    Ok(format!("clock {} (+{})\n", format_time(now), crate::model::HumanDuration(by)))
}
