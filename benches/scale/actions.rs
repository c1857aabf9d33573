//! Figure 4: script actions. The cost of N Rhai `post_each(|vm, ctx| dns::point_vm(vm))`
//! calls over the same body written as a native Rust `Action` (for each DNS name of the
//! VM, `ctx.services.dns_point(name, ip)`), per call.
//!
//! Measured in a real run: unpaced simulation (operations take no real time), recorded
//! DNS, no journal, the command line's default `--parallel`, so that nothing differs
//! between the two runs but the actions. The same pair of dry runs is printed too: a dry
//! run's engine runs on one thread, so every call's hand-over to a blocking thread is on
//! its critical path.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drplan::engine::{RunStatus, execute};
use drplan::model::Inventory;
use drplan::plan::{Action, ActionContext, ActionError, SourcePos};
use drplan::script::{ScriptOptions, load_plan};

use crate::fixture::{self, Checked, DRY_RUN_PARALLEL, Fixture, median, ms, real_runtime, secs};
use crate::report::{Line, Report};

/// `dns::point_vm(vm)` in Rust: points every DNS name of the action's VM at its
/// replica's address.
struct NativePointVm(SourcePos);

#[async_trait]
impl Action for NativePointVm {
    fn at(&self) -> &SourcePos {
        &self.0
    }

    fn label(&self) -> String {
        "native dns::point_vm".into()
    }

    async fn run(&self, ctx: ActionContext) -> Result<(), ActionError> {
        let fail = |message: String| ActionError { message, at: None };
        let name = ctx.vm.clone().ok_or_else(|| fail("not a per-VM action".into()))?;
        let (ip, names): (Option<Ipv4Addr>, Vec<String>) = ctx
            .vms
            .get(name.as_str())
            .map(|v| (v.ip, v.dns.clone()))
            .ok_or_else(|| fail(format!("{name}: no such VM")))?;
        let ip = ip.ok_or_else(|| fail(format!("dns::point_vm: {name} has no address yet")))?;
        for dns in &names {
            ctx.services.dns_point(dns, ip).await.map_err(fail)?;
        }
        Ok(())
    }
}

/// The generated plan, checked: with its Rhai actions, or with the native action in
/// their place.
fn checked(fixture: &Fixture, inventory: Arc<Inventory>, native: bool) -> Checked {
    if native {
        let mut plan = load_plan(&fixture.bare, inventory.clone(), &ScriptOptions::default()).expect("plan");
        let action: Arc<dyn Action> = Arc::new(NativePointVm(SourcePos::new("benches/scale/actions.rs", 0, 0)));
        for group in &mut plan.groups {
            group.post_each = vec![action.clone()];
        }
        fixture::check_plan(inventory, plan)
    } else {
        fixture::check(inventory, &fixture.plan)
    }
}

/// The wall time of a real run of the plan on the unpaced simulation, without a journal.
fn real_run(fixture: &Fixture, native: bool) -> Duration {
    let checked = checked(fixture, fixture.unpaced_inventory(), native);
    let ready = fixture::ready(checked, fixture::On::Simulation, None, DRY_RUN_PARALLEL);
    let runtime = real_runtime();
    let spec = fixture::spec("bench", DRY_RUN_PARALLEL, false);
    let started = Instant::now();
    let outcome = runtime.block_on(execute(ready.deps, ready.plan, ready.resolved, spec));
    let wall = started.elapsed();
    assert_eq!(outcome.status, RunStatus::Succeeded, "the real run failed");
    wall
}

fn dry_run(fixture: &Fixture, native: bool) -> Duration {
    fixture::dry_run(checked(fixture, fixture.inventory(), native), DRY_RUN_PARALLEL).1
}

pub fn measure(fixture: &Fixture, reps: usize, report: &mut Report) {
    let n = fixture.vms;
    let (mut rhai, mut native, mut rhai_dry, mut native_dry) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        native.push(real_run(fixture, true));
        rhai.push(real_run(fixture, false));
        native_dry.push(dry_run(fixture, true));
        rhai_dry.push(dry_run(fixture, false));
    }
    let per_call = |rhai: Duration, native: Duration| (rhai.as_secs_f64() - native.as_secs_f64()) * 1e6 / n as f64;
    let (rhai_dry, native_dry) = (median(rhai_dry), median(native_dry));
    report.line(Line::info(
        format!("dry runs with {n} native / Rhai point_vm actions"),
        format!("{} / {}: {:.1} µs per Rhai call", secs(native_dry), secs(rhai_dry), per_call(rhai_dry, native_dry)),
    ));
    let (rhai, native) = (median(rhai), median(native));
    let overhead = per_call(rhai, native);
    report.line(Line::info(format!("baseline: real run with {n} native point_vm actions"), secs(native)));
    report.line(Line::info(format!("real run with {n} Rhai point_vm actions"), secs(rhai)));
    let figure = Line::figure("actions", "Rhai post action call overhead", format!("{overhead:.1} µs"));
    let figure = if overhead < 0.0 {
        // The Rhai run was the faster: the difference is smaller than the noise of the
        // rest of the two runs, so it says nothing either way.
        Line { value: format!("{overhead:.1} µs (noise)"), ..figure }.target_unjudged("< 20 µs")
    } else {
        figure.target("< 20 µs", overhead < 20.0)
    };
    report.line(figure.ratio(ms(rhai) / ms(native), "the run with native actions"));
    report.column("native_actions_run_ms", ms(native));
    report.column("rhai_actions_run_ms", ms(rhai));
    report.column("action_overhead_us", overhead);
    report.column("action_ratio", ms(rhai) / ms(native));
    report.column("action_overhead_dry_run_us", per_call(rhai_dry, native_dry));
}
