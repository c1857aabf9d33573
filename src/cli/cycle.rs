//! The rest of the recovery cycle at plan level (R30, R34, R36, R37): `failback` (a
//! planned failover back, then commit, then reprotect towards the recovery site again),
//! `commit`, `reprotect` and `cleanup` of every VM of a plan. Each refuses, with what to
//! do instead, when a VM's state does not allow it.

use std::path::Path;

use super::args::{Format, Global};
use super::context::{confirm, site_path};
use super::error::CliError;
use super::runs::{Prepared, failover, prepare, refuse_unless};
use crate::fabric::Fabric;
use crate::model::{FailoverKind, Operation, PointChoice};
use crate::store::StateDir;

/// R37, R38: the plan's groups come back in order (downtime: each VM is shut down on the
/// recovery site before its original boots), then every VM is committed and reprotected
/// towards the recovery site again.
pub fn failback(global: &Global, plan: &Path, parallel: usize, format: Format) -> Result<String, CliError> {
    let ran = failover(global, plan, FailoverKind::Planned, PointChoice::Latest, parallel, format, true)?;
    let committed = each_vm(global, plan, PlanStep::Commit, true)?;
    let reprotected = each_vm(global, plan, PlanStep::Reprotect, true)?;
    Ok(format!("{ran}{committed}{reprotected}"))
}

/// A step the plan-level commands take for every VM of a plan.
pub enum PlanStep<'a> {
    /// R34.
    Commit,
    /// R36.
    Reprotect,
    /// R30, with the operator's notes.
    Cleanup(&'a str),
    /// R34: until commit, the failover can move to another recovery point.
    ChangePoint(PointChoice),
}

impl PlanStep<'_> {
    fn operation(&self) -> Operation {
        match self {
            PlanStep::Commit => Operation::Commit,
            PlanStep::Reprotect => Operation::Reprotect,
            PlanStep::Cleanup(_) => Operation::Cleanup,
            PlanStep::ChangePoint(_) => Operation::ChangeRecoveryPoint,
        }
    }
}

/// One plan-wide step for every VM of a plan; refused as a whole if any VM's state does
/// not allow it.
pub fn each_vm(global: &Global, plan: &Path, step: PlanStep<'_>, confirmed: bool) -> Result<String, CliError> {
    let operation = step.operation();
    let site = site_path(global, Some(plan))?;
    let state = StateDir::open(&global.state)?;
    let prepared: Prepared = prepare(plan, &site, &state, FailoverKind::Planned, false)?;
    refuse_unless(&prepared, operation)?;
    if !confirmed {
        let question =
            format!("{operation} every VM of plan {:?}? This changes the recovery site.", prepared.plan.name);
        confirm(global, &question)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CliError::Runtime)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.f");
    let mut out = String::new();
    for vm in prepared.resolved.groups.iter().flat_map(|g| &g.vms) {
        let key = format!("{}{stamp}/{operation}/{vm}", crate::store::CLI_KEY_PREFIX);
        let fabric = &prepared.sim;
        let job = runtime.block_on(async {
            match &step {
                PlanStep::Commit => fabric.commit(&key, vm).await,
                PlanStep::Reprotect => fabric.reprotect(&key, vm).await,
                PlanStep::Cleanup(notes) => fabric.cleanup_test(&key, vm, notes).await,
                PlanStep::ChangePoint(point) => fabric.change_recovery_point(&key, vm, *point).await.map(|o| {
                    let mut job = o.job;
                    job.detail = format!("{}; data loss {}", job.detail, crate::model::HumanDuration(o.data_loss));
                    job
                }),
            }
        })?;
        out.push_str(&format!("{vm}: {} (job {})\n", job.detail, job.id));
    }
    if let PlanStep::Cleanup(notes) = step
        && !notes.is_empty()
        && let Some(run) = super::runs::keep_notes(&state, plan, notes)?
    {
        out.push_str(&format!("notes kept with run {run}\n"));
    }
    Ok(out)
}
