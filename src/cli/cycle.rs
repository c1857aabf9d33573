//! The rest of the recovery cycle at plan level (R30, R34, R36, R37): `failback` (a
//! planned failover back, then commit, then reprotect towards the recovery site again),
//! `commit`, `change-point`, `reprotect` and `cleanup` of every VM of a plan. Each
//! checks every VM first and refuses as a whole, with what to do instead, when a VM's
//! state does not allow it: nothing is changed unless everything can be.

use std::collections::BTreeMap;
use std::path::Path;

use super::args::{Format, Global};
use super::context::{Findings, Overrides, confirm, site_path};
use super::error::CliError;
use super::runs::{Approvals, Prepared, RunRequest, failover, prepare, refuse, runtime};
use crate::fabric::{Call, Fabric, Intent, PreflightRequest};
use crate::model::{FailoverKind, Operation, Phase, PointChoice, format_time};
use crate::plan::Direction;
use crate::store::StateDir;

/// R37, R38: the plan's groups come back in order (downtime: each VM is shut down on the
/// recovery site before its original boots), then every VM is committed and reprotected
/// towards the recovery site again, all as one journaled run.
pub fn failback(
    global: &Global,
    plan: &Path,
    (parallel, format): (usize, Format),
    approvals: Approvals,
    outside: super::preflight::OutsideWorld,
) -> Result<String, CliError> {
    let request = RunRequest {
        kind: FailoverKind::Planned,
        point: PointChoice::Latest,
        parallel,
        format,
        direction: Direction::Failback,
        approvals,
        shut_down_source: true,
        overrides: Overrides::default(),
        outside,
    };
    failover(global, plan, request)
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

    fn intent(&self) -> Intent {
        match self {
            PlanStep::ChangePoint(point) => Intent::ChangePoint(*point),
            other => Intent::Other(other.operation()),
        }
    }
}

/// Whether a plan-wide step asks the operator first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// It changes the recovery site: ask on a terminal, unless `--yes`.
    Ask,
    /// It does not (a drill's cleanup).
    NotNeeded,
}

/// One plan-wide step for every VM of a plan; refused as a whole, before anything
/// changes, if any VM cannot take it.
pub fn each_vm(global: &Global, plan: &Path, step: PlanStep<'_>, ask: Confirm) -> Result<String, CliError> {
    let operation = step.operation();
    let site = site_path(global, Some(plan))?;
    let state = StateDir::open(&global.state(Some(plan)))?;
    let prepared: Prepared =
        prepare(plan, &site, &state, FailoverKind::Planned, &Overrides::default(), Findings::Skip)?;
    let vms: Vec<String> = prepared.resolved.groups.iter().flat_map(|g| g.vms.clone()).collect();
    let fabric: &dyn Fabric = &*prepared.opened.fabric;
    let runtime = runtime()?;
    let request = PreflightRequest { at: fabric.now(), intent: step.intent(), vms: vms.clone() };
    let checked = runtime.block_on(fabric.preflight(&request))?;
    refuse(&prepared.resolved, &checked.refusals)?;
    if let PlanStep::Commit = step {
        confirm_split_groups(global, &prepared)?;
    }
    if ask == Confirm::Ask {
        let question =
            format!("{operation} every VM of plan {:?}? This changes the recovery site.", prepared.plan.name);
        confirm(global, &question)?;
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.f");
    let mut out = String::new();
    for vm in &vms {
        let call = Call::new(format!("{}{stamp}/{operation}/{vm}", crate::store::CLI_KEY_PREFIX), fabric.now());
        let job = runtime.block_on(async {
            match &step {
                PlanStep::Commit => fabric.commit(&call, vm).await,
                PlanStep::Reprotect => fabric.reprotect(&call, vm).await,
                PlanStep::Cleanup(notes) => fabric.cleanup_test(&call, vm, notes).await,
                PlanStep::ChangePoint(point) => fabric.change_recovery_point(&call, vm, *point).await.map(|o| {
                    let loss = o.data_loss_text();
                    let mut job = o.job;
                    job.detail = format!("{}; {loss}", job.detail);
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

/// R12: a replication group's VMs fail over to one point; committing them at different
/// points makes the split final. Asked (or `--yes`), never silent.
fn confirm_split_groups(global: &Global, prepared: &Prepared) -> Result<(), CliError> {
    let protection = prepared.opened.fabric.protection();
    let mut by_group: BTreeMap<&str, Vec<(&str, String)>> = BTreeMap::new();
    for vm in prepared.resolved.groups.iter().flat_map(|g| &g.vms) {
        let (Some(group), Some(state)) = (prepared.opened.inventory.group_of(vm), protection.get(vm)) else { continue };
        if let Phase::FailedOver { point, .. } = &state.phase {
            by_group.entry(group.name.as_str()).or_default().push((vm, format_time(point.time)));
        }
    }
    for (group, members) in by_group {
        let first = &members[0].1;
        if members.iter().all(|(_, point)| point == first) {
            continue;
        }
        let points = members.iter().map(|(vm, point)| format!("{vm} at {point}")).collect::<Vec<_>>().join(", ");
        eprintln!(
            "warning: replication group {group:?} failed over to different recovery points ({points}); R12 wants one. \
             drplan change-point can move them to one point before commit"
        );
        confirm(global, &format!("Commit replication group {group:?} at different points anyway?"))?;
    }
    Ok(())
}
