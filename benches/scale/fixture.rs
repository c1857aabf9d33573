//! What every figure of the scale bench starts from: a generated site and plans in a
//! temporary directory, the check that `drplan check` does, the run the engine makes
//! (dry or real), and the small measuring helpers (medians, peak memory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan::engine::{AutoApprove, Deps, EventBus, EventLog, History, RunOutcome, RunSpec, RunStatus, Stop, execute};
use drplan::fabric::dns::RecordingDns;
use drplan::fabric::sim::SimFabric;
use drplan::fabric::{Fabric, FailoverRequest};
use drplan::model::{FailoverKind, Inventory, PointChoice, parse_site};
use drplan::plan::Plan;
use drplan::plan::validate::{ResolvedPlan, Severity, validate};
use drplan::script::{SCRIPT_STACK_SIZE, ScriptOptions, load_plan, on_script_stack};

use crate::generator;

/// The failover kind measured (the dry run's default).
pub const KIND: FailoverKind = FailoverKind::Planned;
/// The dry run's default `--parallel`.
pub const DRY_RUN_PARALLEL: usize = 8;
/// Prepended to the site file to make operations take no real time while the modelled
/// clock still advances (docs/site-file.md, `pace`).
pub const ZERO_DURATION: &str = "[simulation]\npace = false\n";

/// A generated site and its plans.
pub struct Fixture {
    pub vms: usize,
    /// Keeps the files until the size is measured.
    _dir: tempfile::TempDir,
    pub site: PathBuf,
    /// The generated plan: a `post_each(|vm, ctx| dns::point_vm(vm))` on every group.
    pub plan: PathBuf,
    /// The same groups with no actions and no hooks: failovers only.
    pub bare: PathBuf,
    pub site_bytes: u64,
    pub generated_in: Duration,
}

impl Fixture {
    pub fn new(vms: usize, groups: usize) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let started = Instant::now();
        let spec = generator::Spec { vms, groups, out: dir.path().into(), seed: 1, faults: false };
        generator::write(&spec).unwrap_or_else(|e| panic!("generator: {e}"));
        let bare = dir.path().join("bare.rhai");
        write_bare_plan(groups, &bare);
        let site = dir.path().join("site.toml");
        Fixture {
            vms,
            site_bytes: std::fs::metadata(&site).map(|m| m.len()).unwrap_or(0),
            plan: dir.path().join("plan.rhai"),
            bare,
            site,
            _dir: dir,
            generated_in: started.elapsed(),
        }
    }

    /// The site as generated: modelled durations, paced at the site's default speed.
    pub fn inventory(&self) -> Arc<Inventory> {
        Arc::new(parse_text(&std::fs::read_to_string(&self.site).expect("site file"), &self.site))
    }

    /// The site with operations that take no real time (see `ZERO_DURATION`).
    pub fn unpaced_inventory(&self) -> Arc<Inventory> {
        let text = std::fs::read_to_string(&self.site).expect("site file");
        Arc::new(parse_text(&format!("{ZERO_DURATION}{text}"), &self.site))
    }
}

/// The bare plan: one group per tier, no per-VM actions, no hooks.
fn write_bare_plan(groups: usize, path: &Path) {
    let mut text = String::from(
        "let plan = recovery_plan(\"bare\", #{ source: \"primary\", target: \"secondary\", rto: \"4h\", \
         test_network: \"test-bubble\" });\n",
    );
    for g in 0..groups {
        text.push_str(&format!("plan.group(\"tier{g}\", vms_tagged(\"tier\", \"tier{g}\"));\n"));
    }
    text.push_str("plan\n");
    std::fs::write(path, text).expect("bare plan");
}

pub fn parse_text(text: &str, path: &Path) -> Inventory {
    parse_site(text, path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// A compiled, validated plan with the simulation it was validated against.
pub struct Checked {
    pub inventory: Arc<Inventory>,
    pub plan: Arc<Plan>,
    pub sim: SimFabric,
    pub resolved: ResolvedPlan,
}

/// What `drplan check` does after reading the site: compile the plan, open the
/// simulation, validate. Panics on an error finding: a bench of a broken plan measures
/// nothing.
pub fn check(inventory: Arc<Inventory>, plan: &Path) -> Checked {
    let compiled = load_plan(plan, inventory.clone(), &ScriptOptions::default()).expect("plan");
    check_plan(inventory, compiled)
}

/// `check` of a plan already compiled (or changed after compiling).
pub fn check_plan(inventory: Arc<Inventory>, plan: Plan) -> Checked {
    let sim = SimFabric::in_memory(inventory.clone()).expect("simulation");
    let validation = validate(&plan, &inventory, &sim.protection(), Some(KIND));
    let errors: Vec<_> = validation.findings.iter().filter(|f| f.severity == Severity::Error).collect();
    assert!(errors.is_empty(), "{} errors, the first: {}", errors.len(), errors[0]);
    Checked { inventory, plan: Arc::new(plan), sim, resolved: validation.resolved }
}

/// The failover every VM gets, in the run and in the baselines that make its calls bare.
pub fn failover_request() -> FailoverRequest {
    FailoverRequest::new(KIND, PointChoice::Latest)
}

pub fn spec(run_id: &str, parallel: usize, dry_run: bool) -> RunSpec {
    RunSpec {
        run_id: run_id.into(),
        kind: KIND,
        point: PointChoice::Latest,
        parallel,
        dry_run,
        shut_down_source: true,
        failback: false,
    }
}

/// Which simulation a run acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The checked simulation itself: a real run.
    Simulation,
    /// A scratch copy of it: a dry run.
    ScratchCopy,
}

/// A run ready to execute: its dependencies, plan and groups.
pub struct Ready {
    pub deps: Deps,
    pub plan: Arc<Plan>,
    pub resolved: ResolvedPlan,
}

/// The run's dependencies: auto-approved gates, recorded DNS, `journal` if any, and the
/// placements of the preflight every run starts with (as the command line's do).
pub fn ready(checked: Checked, on: On, journal: Option<Arc<dyn EventLog>>, parallel: usize) -> Ready {
    let fabric = match on {
        On::Simulation => checked.sim,
        On::ScratchCopy => checked.sim.scratch_copy().expect("scratch copy"),
    };
    let spec = spec("preflight", parallel, on == On::ScratchCopy);
    let preflight = runtime()
        .block_on(drplan::engine::preflight(&fabric, &checked.plan, &checked.resolved, &spec, &History::default()))
        .expect("preflight");
    assert!(preflight.refusals.is_empty(), "the preflight refused: {:?}", preflight.refusals.first());
    let deps = Deps {
        fabric: Arc::new(fabric),
        placements: preflight.placements,
        dns: Arc::new(RecordingDns::default()),
        gate: Arc::new(AutoApprove),
        inventory: checked.inventory,
        bus: Arc::new(EventBus::default()),
        journal,
        history: History::default(),
        stop: Arc::new(Stop::default()),
    };
    Ready { deps, plan: checked.plan, resolved: checked.resolved }
}

/// The runtime of a dry run and of the measures on modelled time: current-thread, as
/// `drplan dry-run`'s. Its threads have the stack scripts need, as the command line's do.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_stack_size(SCRIPT_STACK_SIZE)
        .build()
        .expect("runtime")
}

pub fn real_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SCRIPT_STACK_SIZE)
        .build()
        .expect("runtime")
}

/// What `drplan dry-run` does after the check: a preflight and a run on a scratch copy
/// of the simulation, unpaced, on a thread with a script's stack as the command's.
/// Returns the outcome and the wall time of the run alone.
pub fn dry_run(checked: Checked, parallel: usize) -> (RunOutcome, Duration) {
    let started = Instant::now();
    let ready = ready(checked, On::ScratchCopy, None, parallel);
    let runtime = runtime();
    let spec = spec("dry-run", parallel, true);
    let outcome = on_script_stack(|| runtime.block_on(execute(ready.deps, ready.plan, ready.resolved, spec)));
    let elapsed = started.elapsed();
    assert_eq!(outcome.status, RunStatus::Succeeded, "the dry run failed");
    (outcome, elapsed)
}

/// Peak resident memory of this process since the last reset, in MiB.
pub fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets VmHWM to the current RSS (Linux 4.0+); false if it cannot.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time this process has used so far, all its threads (those that have ended too).
/// Other programs on the machine lengthen a run's wall time, much less its CPU time.
pub fn cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to write.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `reps` measures of `f`, median.
pub fn median_of(reps: usize, mut f: impl FnMut() -> Duration) -> Duration {
    median((0..reps).map(|_| f()).collect())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// "412.3 ms" under a second, "2.41 s" from there.
pub fn secs(d: Duration) -> String {
    if d >= Duration::from_secs(1) { format!("{:.2} s", d.as_secs_f64()) } else { format!("{:.1} ms", ms(d)) }
}
