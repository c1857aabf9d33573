//! Scale figures of issue 7, each with a ratio against a baseline measured in the same run:
//!
//! 1. check + dry-run of N VMs, against the time to read and parse the site file alone;
//!    peak memory (VmHWM, reset before the measure through /proc/self/clear_refs).
//! 2. execution overhead: a real (not paused) run of a bare plan (one group per tier, no
//!    per-VM actions) against the simulated fabric at the highest speed the site format
//!    allows, with the durable journal on, against the same `Fabric::failover` calls made
//!    with a bare `tokio` `JoinSet` per group, in group order, no engine, no journal.
//! 3. script actions: the cost of one Rhai `post_each(|vm, ctx| dns::point_vm(vm))` call,
//!    as (dry run with it − dry run without) / N.
//!
//! Sites and plans come from `examples/generate.rs`, run as a process.
//!
//! `cargo bench --bench scale` runs 1,000 and 10,000 VMs; `DRPLAN_BENCH_BIG=1` adds
//! 100,000 VMs (minutes).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan::engine::{AutoApprove, Deps, EventBus, History, JournalLog, RunSpec, RunStatus, Stop, execute};
use drplan::fabric::dns::RecordingDns;
use drplan::fabric::sim::SimFabric;
use drplan::fabric::{Fabric, FailoverRequest};
use drplan::model::{FailoverKind, Inventory, PointChoice, parse_site};
use drplan::plan::Plan;
use drplan::plan::validate::{ResolvedPlan, Severity, validate};
use drplan::script::{ScriptOptions, load_plan};
use drplan::store::journal::JournalWriter;

/// The failover kind measured (the dry run's default).
const KIND: FailoverKind = FailoverKind::Planned;
/// The dry run's default `--parallel`.
const DRY_RUN_PARALLEL: usize = 8;
/// The highest `[simulation] speed` the site format allows.
const FAST: &str = "[simulation]\nspeed = 1000000\n";

/// Writes `DIR/site.toml` and `DIR/plan.rhai` with the generator example.
fn generate(vms: usize, groups: usize, dir: &Path) {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let args = ["--vms", &vms.to_string(), "--groups", &groups.to_string(), "--out", &dir.display().to_string()];
    let status = Command::new(env!("CARGO"))
        .current_dir(manifest)
        .args(["run", "--quiet", "--release", "--example", "generate", "--"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "the generator failed");
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
    std::fs::write(path, text).unwrap();
}

fn parse_text(text: &str, path: &Path) -> Inventory {
    parse_site(text, path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// The baseline of figure 1: read and parse the site file.
fn site_parse(site: &Path) -> Duration {
    let started = Instant::now();
    let text = std::fs::read_to_string(site).unwrap();
    let inventory = parse_text(&text, site);
    let elapsed = started.elapsed();
    drop(inventory);
    elapsed
}

struct Checked {
    inventory: Arc<Inventory>,
    plan: Arc<Plan>,
    sim: SimFabric,
    resolved: ResolvedPlan,
}

/// What `drplan check` does: read and parse the site, compile the plan, open the
/// simulation, validate.
fn check(inventory: Arc<Inventory>, plan: &Path) -> Checked {
    let compiled = Arc::new(load_plan(plan, inventory.clone(), &ScriptOptions::default()).expect("plan"));
    let sim = SimFabric::in_memory(inventory.clone()).unwrap();
    let validation = validate(&compiled, &inventory, &sim.protection(), Some(KIND));
    let errors: Vec<_> = validation.findings.iter().filter(|f| f.severity == Severity::Error).collect();
    assert!(errors.is_empty(), "{}: {} errors, the first: {}", plan.display(), errors.len(), errors[0]);
    Checked { inventory, plan: compiled, sim, resolved: validation.resolved }
}

fn spec(run_id: &str, parallel: usize, dry_run: bool) -> RunSpec {
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

/// What `drplan dry-run` does after the check: a scratch copy on paused time.
fn dry_run(checked: Checked) {
    let scratch = Arc::new(checked.sim.scratch_copy(1).unwrap());
    drop(checked.sim);
    let deps = Deps {
        fabric: scratch,
        dns: Arc::new(RecordingDns::default()),
        gate: Arc::new(AutoApprove),
        inventory: checked.inventory,
        bus: Arc::new(EventBus::default()),
        journal: None,
        history: History::default(),
        stop: Arc::new(Stop::default()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let outcome =
        runtime.block_on(execute(deps, checked.plan, checked.resolved, spec("dry-run", DRY_RUN_PARALLEL, true)));
    assert_eq!(outcome.status, RunStatus::Succeeded, "the dry run failed");
}

/// Times read + parse + check + dry run of `plan`: (check, dry run).
fn check_and_dry_run(site: &Path, plan: &Path) -> (Duration, Duration) {
    let started = Instant::now();
    let text = std::fs::read_to_string(site).unwrap();
    let inventory = Arc::new(parse_text(&text, site));
    drop(text);
    let checked = check(inventory, plan);
    let checked_at = started.elapsed();
    dry_run(checked);
    (checked_at, started.elapsed() - checked_at)
}

/// The engine's real run of `checked` with the journal on: wall time of `execute`.
fn engine_run(checked: Checked, parallel: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let writer = Arc::new(JournalWriter::start(dir.path()).unwrap());
    let deps = Deps {
        fabric: Arc::new(checked.sim),
        dns: Arc::new(RecordingDns::default()),
        gate: Arc::new(AutoApprove),
        inventory: checked.inventory,
        bus: Arc::new(EventBus::default()),
        journal: Some(Arc::new(JournalLog { writer: writer.clone(), run: "bench".into() })),
        history: History::default(),
        stop: Arc::new(Stop::default()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let outcome = runtime.block_on(execute(deps, checked.plan, checked.resolved, spec("bench", parallel, false)));
    let elapsed = started.elapsed();
    assert_eq!(outcome.status, RunStatus::Succeeded, "the real run failed");
    writer.close();
    elapsed
}

/// The baseline of figure 2: the same failover calls, group by group, each group's VMs
/// joined with a bare `JoinSet`; no engine, no journal.
fn bare_run(inventory: Arc<Inventory>, resolved: &ResolvedPlan) -> Duration {
    let fabric: Arc<dyn Fabric> = Arc::new(SimFabric::in_memory(inventory).unwrap());
    let request = Arc::new(FailoverRequest {
        kind: KIND,
        point: PointChoice::Latest,
        test_network: None,
        shut_down_source: true,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        for group in &resolved.groups {
            let mut all = tokio::task::JoinSet::new();
            for vm in &group.vms {
                let (fabric, request, vm) = (fabric.clone(), request.clone(), vm.clone());
                all.spawn(async move {
                    let key = format!("bench/vm/{vm}/failover");
                    fabric.failover(&key, &vm, &request).await.map(|_| ()).map_err(|e| format!("{vm}: {e}"))
                });
            }
            while let Some(done) = all.join_next().await {
                done.unwrap().unwrap();
            }
        }
    });
    started.elapsed()
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets VmHWM to the current RSS (Linux 4.0+); false if it cannot.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn us_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn measure(vms: usize, groups: usize, reps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    generate(vms, groups, dir.path());
    let site = dir.path().join("site.toml");
    let plan = dir.path().join("plan.rhai");
    let bare = dir.path().join("bare.rhai");
    write_bare_plan(groups, &bare);
    let site_bytes = std::fs::metadata(&site).unwrap().len();
    println!();
    println!(
        "{vms} VMs in {groups} groups (site {:.1} MiB, generated in {}), median of {reps}:",
        site_bytes as f64 / (1u64 << 20) as f64,
        secs(started.elapsed())
    );

    // 1. check + dry-run.
    let parse = median((0..reps).map(|_| site_parse(&site)).collect());
    println!("  baseline: read + parse the site file: {}", secs(parse));
    let (target_s, target_mb) = if vms >= 100_000 { (10.0, None) } else { (1.0, Some(300.0)) };
    let resettable = reset_peak();
    let mut checks = Vec::new();
    let mut dries = Vec::new();
    let mut peak = None;
    for _ in 0..reps {
        reset_peak();
        let (c, d) = check_and_dry_run(&site, &plan);
        peak = peak_mib();
        checks.push(c);
        dries.push(d);
    }
    let (c, d) = (median(checks), median(dries));
    println!(
        "  check {vms} VMs (read + parse + compile + simulation + validate): {} — {:.1}x the site parse",
        secs(c),
        c.as_secs_f64() / parse.as_secs_f64()
    );
    println!("  dry run alone (paused time, --parallel {DRY_RUN_PARALLEL}) {vms} VMs: {}", secs(d));
    println!(
        "  check+dry-run {vms} VMs: {} (target < {target_s} s) — {:.1}x the site parse",
        secs(c + d),
        (c + d).as_secs_f64() / parse.as_secs_f64()
    );
    match (peak, target_mb) {
        (Some(mb), Some(t)) => println!(
            "  peak memory, check+dry-run {vms} VMs: {mb:.0} MiB (target < {t} MB){}",
            if resettable { "" } else { " — VmHWM of the whole process: an upper bound" }
        ),
        (Some(mb), None) => println!(
            "  peak memory, check+dry-run {vms} VMs: {mb:.0} MiB (no target){}",
            if resettable { "" } else { " — VmHWM of the whole process: an upper bound" }
        ),
        (None, _) => println!("  peak memory: /proc/self/status unreadable"),
    }

    // 2. execution overhead: engine + journal against bare fabric calls, both at the
    // highest speed, both unbounded within a group.
    let text = std::fs::read_to_string(&site).unwrap();
    let fast = Arc::new(parse_text(&format!("{FAST}{text}"), &site));
    drop(text);
    let mut bares = Vec::new();
    let mut engines = Vec::new();
    for _ in 0..reps {
        let checked = check(fast.clone(), &bare);
        bares.push(bare_run(fast.clone(), &checked.resolved));
        engines.push(engine_run(checked, vms));
    }
    let (b, e) = (median(bares), median(engines));
    println!(
        "  baseline: bare fabric calls (JoinSet per group, speed 1000000) {vms} VMs: {} = {:.1} µs per VM",
        secs(b),
        us_per(b, vms)
    );
    println!(
        "  execution, engine+journal {vms} VMs (bare plan, --parallel {vms}, speed 1000000): {} = {:.1} µs per VM \
         (target < 100 µs) — {:.2}x the bare fabric calls (target < 1.5x); engine+journal over the baseline: \
         {:.1} µs per VM",
        secs(e),
        us_per(e, vms),
        e.as_secs_f64() / b.as_secs_f64(),
        us_per(e.saturating_sub(b), vms)
    );

    // 3. script actions: dry runs with and without the per-VM post action.
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..reps {
        let inventory = Arc::new(parse_text(&std::fs::read_to_string(&site).unwrap(), &site));
        let checked = check(inventory.clone(), &plan);
        let started = Instant::now();
        dry_run(checked);
        with.push(started.elapsed());
        let checked = check(inventory, &bare);
        let started = Instant::now();
        dry_run(checked);
        without.push(started.elapsed());
    }
    let (w, wo) = (median(with), median(without));
    let per_action = (w.as_secs_f64() - wo.as_secs_f64()) * 1e6 / vms as f64;
    println!("  baseline: dry run without per-VM actions {vms} VMs: {}", secs(wo));
    println!(
        "  script actions, {vms} Rhai post_each calls (dns::point_vm): {per_action:.1} µs per action (target < 20 µs) \
         — dry run with them {}, {:.2}x the dry run without",
        secs(w),
        w.as_secs_f64() / wo.as_secs_f64()
    );
}

fn main() {
    let big = std::env::var("DRPLAN_BENCH_BIG").is_ok_and(|v| v == "1");
    let mut sizes = vec![(1_000, 10, 3), (10_000, 20, 1)];
    if big {
        sizes.push((100_000, 100, 1));
    } else {
        println!("scale: 100,000 VMs skipped (set DRPLAN_BENCH_BIG=1)");
    }
    println!("scale: {} CPUs", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for (vms, groups, reps) in sizes {
        measure(vms, groups, reps);
    }
}
