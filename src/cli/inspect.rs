//! Commands that look at the site's fabric, `status`, `points` and `jobs`, and `advance`,
//! which moves the simulation's clock (simulated sites only).

use super::args::{Format, Global};
use super::context::Session;
use super::error::CliError;
use crate::model::{Consistency, format_time};
use crate::plan::validate::validate;
use crate::report::status::{PlanStanding, StatusReport};
use crate::report::{self};
use crate::script::{ScriptOptions, load_plan};
use std::path::Path;

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}

/// `drplan status [VM...]`, or `drplan status PLAN.rhai`: the plan's VMs, and where the
/// plan as a whole stands in the recovery cycle with the steps it allows next.
pub async fn status(global: &Global, targets: &[String], format: Format) -> Result<String, CliError> {
    let plan_path = match targets {
        [one] if one.ends_with(".rhai") => Some(Path::new(one)),
        _ => None,
    };
    let session = Session::open_to_look(global, plan_path)?;
    let fabric = session.fabric();
    let inventory = &session.opened.inventory;
    let (plan, names) = match plan_path {
        Some(path) => {
            let plan = load_plan(path, inventory.clone(), &ScriptOptions::default())?;
            let resolved = validate(&plan, inventory, &fabric.protection(), None).resolved;
            (Some(plan.name), resolved.groups.into_iter().flat_map(|g| g.vms).collect())
        }
        None if targets.is_empty() => (None, inventory.vms.iter().map(|v| v.name.clone()).collect()),
        None => (None, targets.to_vec()),
    };
    let mut statuses = Vec::with_capacity(names.len());
    for name in &names {
        statuses.push(fabric.replication_status(name, fabric.now()).await?);
    }
    let plan = plan.map(|name| PlanStanding::of(name, &statuses));
    let report = StatusReport { clock: fabric.now(), plan, vms: statuses };
    Ok(match format {
        Format::Human => report::status::human(&report, global.width()),
        Format::Json => json(&report),
    })
}

pub async fn points(global: &Global, vm: &str) -> Result<String, CliError> {
    let session = Session::open_to_look(global, None)?;
    let fabric = session.fabric();
    let points = fabric.recovery_points(vm, fabric.now()).await?;
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
    let session = Session::open_to_look(global, None)?;
    let jobs = session.fabric().jobs().await?;
    Ok(match format {
        Format::Human => report::jobs::human(&jobs, global.width()),
        Format::Json => json(&jobs),
    })
}

pub fn advance(global: &Global, by: std::time::Duration) -> Result<String, CliError> {
    let session = Session::open(global, None)?;
    let now = session.opened.simulation("drplan advance moves the simulation's clock")?.advance(by)?;
    Ok(format!("clock {} (+{})\n", format_time(now), crate::model::HumanDuration(by)))
}
