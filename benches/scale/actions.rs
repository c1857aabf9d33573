//! Figure 4: script actions. The cost of N Rhai `post_each(|vm, ctx| dns::point_vm(vm))`
//! calls over the same body written as a native Rust `Action` (for each DNS name of the
//! VM, `ctx.services.dns_point(name, ip)`), per call.
//!
//! Measured in real runs: unpaced simulation (operations take no real time), recorded
//! DNS, no journal, the command line's default `--parallel`, so that nothing differs
//! between the two runs but the actions. The figure is a difference of two runs of
//! about a second each on a shared machine, so one pair says little: the bench runs
//! pairs (native, Rhai), interleaved and taking turns at going first, and keeps the
//! median of the pairs' differences, printed with their quartiles and extremes
//! (`DRPLAN_BENCH_PAIRS` sets how many pairs). A pair of dry runs is printed too, for
//! information.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drplan::engine::{RunStatus, execute};
use drplan::model::Inventory;
use drplan::plan::{Action, ActionContext, ActionError, SourcePos};
use drplan::script::{ScriptOptions, load_plan};

use crate::fixture::{self, Checked, DRY_RUN_PARALLEL, Fixture, cpu_time, median, ms, real_runtime, secs};
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

/// What a run took: wall time and the process's CPU time.
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

/// A real run of the plan on the unpaced simulation, without a journal.
fn real_run(fixture: &Fixture, native: bool) -> Took {
    let checked = checked(fixture, fixture.unpaced_inventory(), native);
    let ready = fixture::ready(checked, fixture::On::Simulation, None, DRY_RUN_PARALLEL);
    let runtime = real_runtime();
    let spec = fixture::spec("bench", DRY_RUN_PARALLEL, false);
    let (started, cpu) = (Instant::now(), cpu_time());
    let outcome = runtime.block_on(execute(ready.deps, ready.plan, ready.resolved, spec));
    let took = Took { wall: started.elapsed(), cpu: cpu_time() - cpu };
    assert_eq!(outcome.status, RunStatus::Succeeded, "the real run failed");
    took
}

fn dry_run(fixture: &Fixture, native: bool) -> Duration {
    fixture::dry_run(checked(fixture, fixture.inventory(), native), DRY_RUN_PARALLEL).1
}

/// How many (native, Rhai) pairs of real runs a size gets: more where runs are short.
/// `DRPLAN_BENCH_PAIRS` sets it for every size.
fn pairs_for(vms: usize) -> usize {
    if let Ok(text) = std::env::var("DRPLAN_BENCH_PAIRS") {
        return text.trim().parse::<usize>().ok().filter(|&n| n > 0).expect("DRPLAN_BENCH_PAIRS: a count of pairs");
    }
    match vms {
        0..=1_000 => 15,
        1_001..=10_000 => 9,
        _ => 5,
    }
}

/// The spread of a sample: median, quartiles, extremes.
struct Spread {
    min: f64,
    q1: f64,
    median: f64,
    q3: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        // Linear interpolation between the closest ranks.
        let at = |p: f64| {
            let rank = p * (values.len() - 1) as f64;
            let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
            values[low] + (values[high] - values[low]) * (rank - low as f64)
        };
        Spread { min: values[0], q1: at(0.25), median: at(0.5), q3: at(0.75), max: values[values.len() - 1] }
    }
}

pub fn measure(fixture: &Fixture, reps: usize, report: &mut Report) {
    let n = fixture.vms;
    let per_call = |rhai: Duration, native: Duration| (rhai.as_secs_f64() - native.as_secs_f64()) * 1e6 / n as f64;
    let (mut rhai_dry, mut native_dry) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        native_dry.push(dry_run(fixture, true));
        rhai_dry.push(dry_run(fixture, false));
    }
    let (rhai_dry, native_dry) = (median(rhai_dry), median(native_dry));
    report.line(Line::info(
        format!("dry runs with {n} native / Rhai point_vm actions"),
        format!("{} / {}: {:.1} µs per Rhai call", secs(native_dry), secs(rhai_dry), per_call(rhai_dry, native_dry)),
    ));

    let pairs = pairs_for(n);
    let (mut natives, mut rhais, mut overheads, mut ratios, mut cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        // Which side runs first alternates, so that a change in the machine's load (a
        // compile starting or ending beside the bench) weighs on both sides alike.
        let (native, rhai) = if pair % 2 == 0 {
            let native = real_run(fixture, true);
            (native, real_run(fixture, false))
        } else {
            let rhai = real_run(fixture, false);
            (real_run(fixture, true), rhai)
        };
        overheads.push(per_call(rhai.wall, native.wall));
        cpus.push(per_call(rhai.cpu, native.cpu));
        ratios.push(ms(rhai.wall) / ms(native.wall));
        natives.push(native.wall);
        rhais.push(rhai.wall);
    }
    let (native, rhai) = (median(natives), median(rhais));
    let (overhead, cpu) = (Spread::of(overheads), Spread::of(cpus));
    let ratio = Spread::of(ratios).median;
    report.line(Line::info(format!("baseline: real run with {n} native point_vm actions"), secs(native)));
    report.line(Line::info(format!("real run with {n} Rhai point_vm actions"), secs(rhai)));
    // Steadier than wall time on a shared machine, and what a call costs the cores.
    report.line(Line::info(
        "CPU time per Rhai call, all threads",
        format!("{:.1} µs (IQR {:.1} to {:.1}, range {:.1} to {:.1})", cpu.median, cpu.q1, cpu.q3, cpu.min, cpu.max),
    ));
    let value = format!(
        "{:.1} µs (IQR {:.1} to {:.1}, range {:.1} to {:.1}, {pairs} pairs)",
        overhead.median, overhead.q1, overhead.q3, overhead.min, overhead.max
    );
    let figure = Line::figure("actions", "Rhai post action call overhead", value);
    let figure = if overhead.median < 0.0 {
        // The Rhai runs were the faster more often than not: the difference is smaller
        // than the noise of the rest of the runs, so it says nothing either way.
        Line { value: format!("{} (noise)", figure.value), ..figure }.target_unjudged("< 20 µs")
    } else {
        figure.target("< 20 µs", overhead.median < 20.0)
    };
    report.line(figure.ratio(ratio, "the run with native actions (median of the pairs' ratios)"));
    report.column("native_actions_run_ms", ms(native));
    report.column("rhai_actions_run_ms", ms(rhai));
    report.column("action_overhead_us", overhead.median);
    report.column("action_overhead_q1_us", overhead.q1);
    report.column("action_overhead_q3_us", overhead.q3);
    report.column("action_overhead_min_us", overhead.min);
    report.column("action_overhead_max_us", overhead.max);
    report.column("action_pairs", pairs as f64);
    report.column("action_cpu_us", cpu.median);
    report.column("action_cpu_q1_us", cpu.q1);
    report.column("action_cpu_q3_us", cpu.q3);
    report.column("action_ratio", ratio);
    report.column("action_overhead_dry_run_us", per_call(rhai_dry, native_dry));
}
