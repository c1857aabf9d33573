//! Figure 4: script actions. The cost of N Rhai `post_each(|vm, ctx| dns::point_vm(vm))`
//! calls over the same body written as a native Rust `Action` (for each DNS name of the
//! VM, `ctx.services.dns_point(name, ip)`), per call.
//!
//! Both are measured in a dry run: the engine calls an action the same way in a dry run
//! and a real one (`invoke` → `Action::run`, the Rhai one on a blocking thread), and the
//! dry run's single thread on paused time with no journal and no pacing leaves nothing
//! between the two runs but the actions, so the difference is the Rhai call's own cost.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drplan::plan::{Action, ActionContext, ActionError, SourcePos};
use drplan::script::{ScriptOptions, load_plan};

use crate::fixture::{self, DRY_RUN_PARALLEL, Fixture, median, ms, secs};
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
        // `.map` on what `get` returns, so this compiles whether the run's VMs are a map
        // of views (`Option<&VmView>`) or a live board that hands out copies
        // (`Option<VmView>`).
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

/// The wall time of a dry run of the generated plan: with its Rhai actions, or with the
/// native action in their place.
fn dry_run(fixture: &Fixture, native: bool) -> Duration {
    let inventory = fixture.inventory();
    let checked = if native {
        let mut plan = load_plan(&fixture.bare, inventory.clone(), &ScriptOptions::default()).expect("plan");
        let action: Arc<dyn Action> = Arc::new(NativePointVm(SourcePos::new("benches/scale/actions.rs", 0, 0)));
        for group in &mut plan.groups {
            group.post_each = vec![action.clone()];
        }
        fixture::check_plan(inventory, plan)
    } else {
        fixture::check(inventory, &fixture.plan)
    };
    fixture::dry_run(checked, DRY_RUN_PARALLEL).1
}

pub fn measure(fixture: &Fixture, reps: usize, report: &mut Report) {
    let n = fixture.vms;
    let (mut rhai, mut native) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        native.push(dry_run(fixture, true));
        rhai.push(dry_run(fixture, false));
    }
    let (rhai, native) = (median(rhai), median(native));
    let per_call = (rhai.as_secs_f64() - native.as_secs_f64()) * 1e6 / n as f64;
    report.line(Line::info(format!("baseline: dry run with {n} native point_vm actions"), secs(native)));
    report.line(Line::info(format!("dry run with {n} Rhai point_vm actions"), secs(rhai)));
    let figure = Line::figure("actions", "Rhai post action call overhead", format!("{per_call:.1} µs"));
    let figure = if per_call < 0.0 {
        // The Rhai run was the faster: the difference is smaller than the noise of the
        // rest of the two runs, so it says nothing either way.
        Line { value: format!("{per_call:.1} µs (noise)"), ..figure }.target_unjudged("< 20 µs")
    } else {
        figure.target("< 20 µs", per_call < 20.0)
    };
    report.line(figure.ratio(ms(rhai) / ms(native), "the run with native actions"));
    report.column("native_actions_dry_run_ms", ms(native));
    report.column("rhai_actions_dry_run_ms", ms(rhai));
    report.column("action_overhead_us", per_call);
    report.column("action_ratio", ms(rhai) / ms(native));
}
