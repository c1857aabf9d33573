//! Commands on plans that change nothing: `check` (compile and validate) and `dry-run`
//! (run on a virtual clock against a scratch copy of the simulation, or for real sites a
//! simulation of their site file), and `defs`.

use std::path::Path;
use std::sync::Arc;

use super::args::{Global, Kind, RunOptions};
use super::context::{Access, Findings, Opened, Overrides, load_inventory, load_plan_for_run, open_fabric, site_path};
use super::error::CliError;
use crate::engine::{AutoApprove, Deps, EventBus, History, RunSpec, RunStatus, Stop, execute};
use crate::fabric::dns::RecordingDns;
use crate::fabric::{Fabric, Preflight};
use crate::model::names::Count;
use crate::model::{FailoverKind, PointChoice};
use crate::plan::validate::Validation;
use crate::plan::{Direction, Plan};
use crate::report::run::{RunHeader, RunReport};
use crate::script::{SCRIPT_STACK_SIZE, on_script_stack};

struct Loaded {
    plan: Arc<Plan>,
    /// A look at the site's fabric: never acted on.
    opened: Opened,
    validation: Validation,
}

/// Compiles and validates a plan; with [`Findings::Enforce`], prints the findings to
/// stderr and fails on errors.
fn load_and_validate(
    global: &Global,
    path: &Path,
    kind: Option<FailoverKind>,
    overrides: &Overrides,
    findings: Findings,
) -> Result<Loaded, CliError> {
    let inventory = Arc::new(load_inventory(&site_path(global, Some(path))?)?);
    let opened = open_fabric(inventory.clone(), Access::Look(&global.state(Some(path))))?;
    let (plan, validation) =
        load_plan_for_run(path, &inventory, &opened.fabric.protection(), kind, overrides, findings)?;
    Ok(Loaded { plan, opened, validation })
}

/// The spec of a run that only looks: a dry run, or a check's preflight.
pub(super) fn looking_spec(kind: FailoverKind, point: PointChoice, parallel: usize) -> RunSpec {
    RunSpec { run_id: "dry-run".into(), kind, point, parallel, dry_run: true, shut_down_source: true, failback: false }
}

/// The runtime dry runs and checks run on. One thread: with causal time nothing needs a
/// paused clock, and one thread keeps the order fabric calls are made in (job numbers)
/// the same from run to run.
pub(super) fn looking_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_stack_size(SCRIPT_STACK_SIZE)
        .build()
        .map_err(CliError::Runtime)
}

/// The preflight of a new run of `plan` (no history) as `spec` asks, against `fabric`.
pub(super) async fn new_run_preflight(
    fabric: &dyn Fabric,
    plan: &Plan,
    validation: &Validation,
    spec: &RunSpec,
) -> Result<Preflight, CliError> {
    Ok(crate::engine::preflight(fabric, plan, &validation.resolved, spec, &History::default()).await?)
}

pub fn check(global: &Global, path: &Path, kind: Option<Kind>, point: Option<PointChoice>) -> Result<String, CliError> {
    let loaded = load_and_validate(global, path, None, &Overrides::default(), Findings::Enforce)?;
    // With a kind or a point, every VM is checked as that failover would check it.
    if kind.is_some() || point.is_some() {
        let kind = kind.map_or(FailoverKind::Unplanned, FailoverKind::from);
        let spec = looking_spec(kind, point.unwrap_or_default(), 1);
        let fabric = loaded.opened.to_preflight()?;
        let checked =
            looking_runtime()?.block_on(new_run_preflight(&*fabric, &loaded.plan, &loaded.validation, &spec))?;
        super::runs::refuse(&loaded.validation.resolved, &checked.refusals)?;
    }
    let vms: usize = loaded.validation.resolved.groups.iter().map(|g| g.vms.len()).sum();
    let warnings = loaded.validation.findings.len();
    Ok(format!(
        "{}: plan {:?} is sound: {}, {}, {}\n",
        path.display(),
        loaded.plan.name,
        Count::numbered("group", loaded.plan.groups.len()),
        Count::numbered("VM", vms),
        Count::numbered("warning", warnings)
    ))
}

/// The run `drplan failover` (or, going back, `drplan failback`) would make, on the
/// site's rehearsal: the same checks, then the same engine on a virtual clock. Its report
/// is printed as it is made; nothing is left to print.
pub fn dry_run(
    global: &Global,
    path: &Path,
    (kind, direction, point): (Kind, Direction, PointChoice),
    run: &RunOptions,
    overrides: &Overrides,
    svg: Option<&Path>,
) -> Result<String, CliError> {
    let kind = FailoverKind::from(kind);
    let format = run.format;
    let failback = direction == Direction::Failback;
    // As the real runs: a failback's VMs are failed over, so the failover checks do not
    // apply to them; the preflight checks what does.
    let findings = if failback { Findings::Skip } else { Findings::Enforce };
    let loaded = load_and_validate(global, path, Some(kind), overrides, findings)?;
    let rehearsal = loaded.opened.rehearsal()?;
    let scratch = Arc::new(rehearsal.fabric);
    let inventory = loaded.opened.inventory.clone();
    drop(loaded.opened); // releases the state directory: nothing below touches it
    let spec = RunSpec { shut_down_source: !run.no_shutdown, failback, ..looking_spec(kind, point, run.parallel) };
    let runtime = looking_runtime()?;
    let checked = runtime.block_on(new_run_preflight(&*scratch, &loaded.plan, &loaded.validation, &spec))?;
    super::runs::refuse(&loaded.validation.resolved, &checked.refusals)?;
    let deps = Deps {
        fabric: scratch,
        dns: Arc::new(RecordingDns::default()),
        gate: Arc::new(AutoApprove),
        inventory,
        bus: Arc::new(EventBus::default()),
        journal: None,
        history: History::default(),
        stop: Arc::new(Stop::default()),
        placements: checked.placements,
    };
    let plan = loaded.plan.clone();
    // On a script's stack, so that the run's script actions can run on its thread.
    let outcome = on_script_stack(|| runtime.block_on(execute(deps, plan, loaded.validation.resolved, spec)));
    let header = RunHeader {
        plan: loaded.plan.name.clone(),
        source: loaded.plan.source.clone(),
        target: loaded.plan.target.clone(),
        kind,
        point,
        dry_run: true,
        rto_target: loaded.plan.rto,
        durations: rehearsal.durations,
        failback,
    };
    let status = outcome.status;
    let report = RunReport::new(header, outcome);
    if let Some(path) = svg {
        std::fs::write(path, crate::report::svg::gantt(&report))
            .map_err(|source| CliError::Write { path: path.to_path_buf(), source })?;
    }
    let printed = super::print_report(&report, format, global.width());
    match status {
        RunStatus::Succeeded => printed.map(|()| String::new()),
        // The command fails here; an output nobody reads adds no failure to it.
        _ => Err(CliError::RunFailed("would fail: see the steps above")),
    }
}

pub fn defs() -> String {
    crate::script::definitions()
}
