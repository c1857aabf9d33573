//! Figure 3: makespan on the virtual clock. The generated plan (a Rhai `dns::point_vm`
//! after each VM) with two native waits added — one before the plan, one after each
//! group — so actions' modelled time counts too, run for real (not a dry run) on a fresh
//! `SimFabric::in_memory` on paused time, for several `--parallel` values. The run's
//! makespan (its outcome's finished − started) must equal the dry run's prediction and
//! the critical path computed without the engine, exactly.
//!
//! The critical path: the plan's wait, then for each group the slowest of its VMs'
//! failovers plus the group's wait (a VM's DNS update takes no modelled time). A VM's
//! failover time is what the simulation's model gives it when it starts with its group
//! (a planned failover's final sync depends on when it starts): found by making the
//! same `Fabric::failover` calls on another fresh simulation on paused time, group by
//! group, all VMs of a group at once, and reading each outcome's finished − started.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drplan::engine::{RunOutcome, RunStatus, execute};
use drplan::fabric::Fabric;
use drplan::fabric::sim::SimFabric;
use drplan::model::{HumanDuration, Inventory};
use drplan::plan::validate::ResolvedPlan;
use drplan::plan::{Action, ActionContext, ActionError, Plan, SourcePos, Step};
use drplan::script::{ScriptOptions, load_plan};

use crate::fixture::{self, DRY_RUN_PARALLEL, Fixture, paused_runtime};
use crate::report::{Line, Report};

/// Modelled time of the step before the plan's first group.
const PLAN_WAIT: Duration = Duration::from_secs(90);
/// Modelled time of the step after each group.
const GROUP_WAIT: Duration = Duration::from_secs(20);

/// A native step that lets modelled time pass, like a script's `wait("20s")`. Native,
/// because on paused time a Rhai action's wait in a real run would block the clock it
/// waits on (DESIGN.md: the paused clock holds still while a script thread runs).
struct Wait(Duration, SourcePos);

#[async_trait]
impl Action for Wait {
    fn at(&self) -> &SourcePos {
        &self.1
    }

    fn label(&self) -> String {
        format!("wait {}", HumanDuration(self.0))
    }

    async fn run(&self, ctx: ActionContext) -> Result<(), ActionError> {
        ctx.services.wait(self.0).await.map_err(|message| ActionError { message, at: None })
    }
}

fn wait_step(d: Duration) -> Step {
    Step::Action(Arc::new(Wait(d, SourcePos::new("benches/scale/makespan.rs", 0, 0))))
}

/// The generated plan with the waits.
fn plan(fixture: &Fixture, inventory: Arc<Inventory>) -> Plan {
    let mut plan = load_plan(&fixture.plan, inventory, &ScriptOptions::default()).expect("plan");
    plan.pre.push(wait_step(PLAN_WAIT));
    for group in &mut plan.groups {
        group.post.push(wait_step(GROUP_WAIT));
    }
    plan
}

fn makespan(outcome: &RunOutcome) -> Duration {
    (outcome.finished - outcome.started).to_std().expect("a run ends after it starts")
}

/// The real run on paused time, no journal: a journal's writer thread would let tokio
/// think the runtime idle and move the paused clock while events are written.
fn real_run(inventory: Arc<Inventory>, plan: Plan, parallel: usize) -> Duration {
    let checked = fixture::check_plan(inventory, plan);
    let deps = fixture::deps(checked.inventory, checked.sim, None);
    let outcome = paused_runtime().block_on(execute(
        deps,
        checked.plan,
        checked.resolved,
        fixture::spec("makespan", parallel, false),
    ));
    assert_eq!(outcome.status, RunStatus::Succeeded, "the real run failed");
    makespan(&outcome)
}

fn dry_run(inventory: Arc<Inventory>, plan: Plan, parallel: usize) -> Duration {
    makespan(&fixture::dry_run(fixture::check_plan(inventory, plan), parallel).0)
}

/// The critical path, computed without the engine (see the module's doc). Also says
/// whether every VM started with its group, which the path assumes.
fn critical_path(inventory: Arc<Inventory>, resolved: &ResolvedPlan) -> (Duration, bool) {
    let fabric: Arc<dyn Fabric> = Arc::new(SimFabric::in_memory(inventory).expect("simulation"));
    let request = Arc::new(fixture::failover_request());
    paused_runtime().block_on(async {
        let mut path = PLAN_WAIT;
        let mut together = true;
        fabric.wait(PLAN_WAIT).await;
        for group in &resolved.groups {
            let start = fabric.now();
            let mut all = tokio::task::JoinSet::new();
            for vm in &group.vms {
                let (fabric, request, vm) = (fabric.clone(), request.clone(), vm.clone());
                all.spawn(async move {
                    let key = format!("path/vm/{vm}/failover");
                    fabric.failover(&key, &vm, &request).await.unwrap_or_else(|e| panic!("{vm}: {e}"))
                });
            }
            let mut slowest = Duration::ZERO;
            while let Some(done) = all.join_next().await {
                let outcome = done.expect("task");
                together &= outcome.started == start;
                slowest = slowest.max((outcome.finished - outcome.started).to_std().unwrap_or_default());
            }
            path += slowest + GROUP_WAIT;
            fabric.wait(GROUP_WAIT).await;
        }
        (path, together)
    })
}

fn exactly(run: Duration, other: Duration) -> String {
    if run == other {
        "exact".into()
    } else {
        let diff = run.as_millis() as i128 - other.as_millis() as i128;
        format!("off by {diff:+} ms")
    }
}

pub fn measure(fixture: &Fixture, report: &mut Report) {
    let inventory = fixture.inventory();
    let plan = plan(fixture, inventory.clone());
    let resolved = fixture::check_plan(inventory.clone(), plan.clone()).resolved;
    let largest = resolved.groups.iter().map(|g| g.vms.len()).max().unwrap_or(1);
    let (path, together) = critical_path(inventory.clone(), &resolved);
    report.line(Line::info(
        "critical path without the engine",
        format!(
            "{} = {} ms ({}; largest group {largest} VMs)",
            HumanDuration(path),
            path.as_millis(),
            if together { "every VM started with its group" } else { "NOT every VM started with its group" }
        ),
    ));
    let mut parallels = vec![DRY_RUN_PARALLEL, largest, 2 * largest, fixture.vms];
    parallels.sort_unstable();
    parallels.dedup();
    let mut all_exact = together;
    for parallel in parallels {
        let real = real_run(inventory.clone(), plan.clone(), parallel);
        let dry = dry_run(inventory.clone(), plan.clone(), parallel);
        let label = format!("makespan, --parallel {parallel}");
        if parallel < largest {
            // The bound, not the plan, sets the pace: no critical-path claim to check.
            report.line(Line::info(
                format!("{label} (binding: groups of up to {largest} VMs)"),
                format!("{} ms; the dry run's: {}", real.as_millis(), exactly(real, dry)),
            ));
            continue;
        }
        let exact = real == dry && real == path;
        all_exact &= exact;
        report.line(Line::info(
            label,
            format!(
                "{} ms — dry run: {}; critical path: {}{}",
                real.as_millis(),
                exactly(real, dry),
                exactly(real, path),
                if exact { "" } else { " MISMATCH" }
            ),
        ));
    }
    let verdict = if all_exact { "exact" } else { "MISMATCH" };
    report.line(
        Line::figure(
            "makespan",
            "makespan = dry run = critical path (non-binding --parallel)",
            format!("{}, {verdict}", HumanDuration(path)),
        )
        .target("exact", all_exact),
    );
    report.column("critical_path_ms", path.as_millis() as f64);
    report.column("makespan_exact", if all_exact { 1.0 } else { 0.0 });
}
