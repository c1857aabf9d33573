//! Figure 3: makespan on the modelled clock. The generated plan (a Rhai `dns::point_vm`
//! after each VM) with two native waits added — one before the plan, one after each
//! group — so actions' modelled time counts too, run for real (not a dry run) on a fresh
//! unpaced `SimFabric::in_memory`, for several `--parallel` values, binding ones included. The
//! run's makespan (its outcome's finished − started) must equal the dry run's prediction
//! and the critical path computed without the engine, exactly.
//!
//! The critical path: the plan's wait, then for each group the list schedule of its VMs
//! under `--parallel` (each VM, in plan order, starts when the earliest slot frees) plus
//! the group's wait (a VM's DNS update takes no modelled time). A VM's failover time is
//! what the simulation's model gives it when it starts at its slot (a planned failover's
//! final sync depends on when it starts): found by making the same `Fabric::failover`
//! calls, at those times, on another fresh simulation, one after another.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drplan::engine::{RunOutcome, RunStatus, execute};
use drplan::fabric::sim::SimFabric;
use drplan::fabric::{Call, Fabric};
use drplan::model::{HumanDuration, Inventory};
use drplan::plan::validate::ResolvedPlan;
use drplan::plan::{Action, ActionContext, ActionError, Plan, SourcePos, Step};
use drplan::script::{ScriptOptions, load_plan};

use crate::fixture::{self, DRY_RUN_PARALLEL, Fixture, runtime};
use crate::report::{Line, Report};

/// Modelled time of the step before the plan's first group.
const PLAN_WAIT: Duration = Duration::from_secs(90);
/// Modelled time of the step after each group.
const GROUP_WAIT: Duration = Duration::from_secs(20);

/// A native step that lets modelled time pass, like a script's `wait("20s")`: native, so
/// that the figure is about the engine's clock, not the cost of scripts.
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

/// The real run, no journal: the journal's cost is another figure's.
fn real_run(inventory: Arc<Inventory>, plan: Plan, parallel: usize) -> Duration {
    let checked = fixture::check_plan(inventory, plan);
    let ready = fixture::ready(checked, fixture::On::Simulation, None, parallel);
    let outcome =
        runtime().block_on(execute(ready.deps, ready.plan, ready.resolved, fixture::spec("makespan", parallel, false)));
    assert_eq!(outcome.status, RunStatus::Succeeded, "the real run failed");
    makespan(&outcome)
}

fn dry_run(inventory: Arc<Inventory>, plan: Plan, parallel: usize) -> Duration {
    makespan(&fixture::dry_run(fixture::check_plan(inventory, plan), parallel).0)
}

/// The critical path under `--parallel`, computed without the engine (see the module's doc).
fn critical_path(inventory: Arc<Inventory>, resolved: &ResolvedPlan, parallel: usize) -> Duration {
    let fabric = SimFabric::in_memory(inventory).expect("simulation");
    let request = fixture::failover_request();
    runtime().block_on(async {
        let start = fabric.now();
        let mut t = fabric.wait(start, PLAN_WAIT).await;
        for group in &resolved.groups {
            let mut free: BinaryHeap<Reverse<_>> = std::iter::repeat_n(Reverse(t), parallel.max(1)).collect();
            let mut end = t;
            for vm in &group.vms {
                let Reverse(slot) = free.pop().expect("a slot");
                let call = Call::new(format!("path/vm/{vm}/failover"), slot);
                fabric.failover(&call, vm, &request).await.unwrap_or_else(|e| panic!("{vm}: {e}"));
                free.push(Reverse(call.ended()));
                end = end.max(call.ended());
            }
            t = fabric.wait(end, GROUP_WAIT).await;
        }
        (t - start).to_std().expect("the path ends after it starts")
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
    // Unpaced: operations take no real time, and causal time makes the timeline the
    // same as a paced run's; the dry run's scratch copy is unpaced too.
    let inventory = fixture.unpaced_inventory();
    let plan = plan(fixture, inventory.clone());
    let resolved = fixture::check_plan(inventory.clone(), plan.clone()).resolved;
    let largest = resolved.groups.iter().map(|g| g.vms.len()).max().unwrap_or(1);
    let mut parallels = vec![DRY_RUN_PARALLEL, largest, 2 * largest, fixture.vms];
    parallels.sort_unstable();
    parallels.dedup();
    let mut all_exact = true;
    let mut unbound = Duration::ZERO;
    for parallel in parallels {
        let path = critical_path(inventory.clone(), &resolved, parallel);
        let real = real_run(inventory.clone(), plan.clone(), parallel);
        let dry = dry_run(inventory.clone(), plan.clone(), parallel);
        let binding =
            if parallel < largest { format!(" (binding: groups of up to {largest} VMs)") } else { String::new() };
        let exact = real == dry && real == path;
        all_exact &= exact;
        if parallel >= largest {
            unbound = path;
        }
        report.line(Line::info(
            format!("makespan, --parallel {parallel}{binding}"),
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
            "makespan = dry run = critical path (any --parallel)",
            format!("{}, {verdict}", HumanDuration(unbound)),
        )
        .target("exact", all_exact),
    );
    report.column("critical_path_ms", unbound.as_millis() as f64);
    report.column("makespan_exact", if all_exact { 1.0 } else { 0.0 });
}
