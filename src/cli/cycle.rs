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
    let committed = each_vm(global, plan, Operation::Commit, "", true)?;
    let reprotected = each_vm(global, plan, Operation::Reprotect, "", true)?;
    Ok(format!("{ran}{committed}{reprotected}"))
}

/// Commit (R34), reprotect (R36) or cleanup (R30) of every VM of a plan.
pub fn each_vm(
    global: &Global,
    plan: &Path,
    operation: Operation,
    notes: &str,
    confirmed: bool,
) -> Result<String, CliError> {
    let site = site_path(global, Some(plan))?;
    let state = StateDir::open(&global.state)?;
    let prepared: Prepared = prepare(global, plan, &site, &state, FailoverKind::Planned, false)?;
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
        let key = format!("cli/{stamp}/{operation}/{vm}");
        let fabric = &prepared.sim;
        let job = runtime.block_on(async {
            match operation {
                Operation::Commit => fabric.commit(&key, vm).await,
                Operation::Reprotect => fabric.reprotect(&key, vm).await,
                Operation::Cleanup => fabric.cleanup_test(&key, vm, notes).await,
                other => unreachable!("{other} is not a plan-wide step"),
            }
        })?;
        out.push_str(&format!("{vm}: {} (job {})\n", job.detail, job.id));
    }
    Ok(out)
}
