//! Real runs: `failover` runs a plan against the fabric with a durable journal,
//! `resume` continues a run that failed or whose process died, `runs` and `show` report
//! from the journal, `approve` completes a manual step and `cancel` stops a run, both
//! from any shell (they need not wait for the state directory's lock).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::args::{Format, Global};
use super::context::{confirm, load_inventory, site_path};
use super::error::CliError;
use super::progress::{Progress, ProgressMode};
use crate::engine::{
    Deps, Event, EventBus, EventKind, History, JournalLog, ManualGate, RunOutcome, RunSpec, RunStatus, Stop, execute,
};
use crate::fabric::Fabric;
use crate::fabric::sim::SimFabric;
use crate::model::{FailoverKind, PointChoice, format_time};
use crate::plan::validate::{ResolvedPlan, Severity, validate};
use crate::plan::{Manual, Plan};
use crate::report::run::{RunHeader, RunReport};
use crate::script::{SCRIPT_STACK_SIZE, ScriptOptions, load_plan};
use crate::store::journal::{self, JournalDb, JournalWriter, RunRecord, RunRecordStatus};
use crate::store::{StateDir, StoreError};

/// What the journal keeps of a run besides its events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRun {
    pub spec: RunSpec,
    pub header: RunHeader,
    /// R30: the operator's notes from the cleanup of a test failover.
    #[serde(default)]
    pub notes: Vec<String>,
}

type Record = RunRecord<StoredRun>;

/// How often a run looks in the journal for approvals and cancel requests.
const POLL: Duration = Duration::from_millis(200);

/// FNV-1a over what makes the plan's behaviour: the plan file, its folder's
/// `drplan.toml` and the global hook scripts it names. `resume` refuses to continue a run
/// whose plan changed under it. The site file may change (fixing the cause of a failure
/// often means editing it); it is read and checked again.
fn fingerprint(plan: &Path) -> Result<String, CliError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| CliError::Read { path: path.to_path_buf(), source });
    let mut files = vec![read(plan)?];
    let folder = plan.parent().unwrap_or(Path::new("."));
    let config = folder.join(crate::plan::config::CONFIG_FILE);
    if config.exists() {
        let text = read(&config)?;
        let parsed = crate::plan::config::parse_config(&String::from_utf8_lossy(&text), &config);
        for hook in parsed.map(|c| c.hooks).unwrap_or_default() {
            files.push(read(&folder.join(hook)).unwrap_or_default());
        }
        files.push(text);
    }
    let hash = files
        .iter()
        .flat_map(|f| f.iter().chain(&[0u8]))
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    Ok(format!("{hash:016x}"))
}

fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), std::process::id() & 0xffff)
}

/// R21: waits for `drplan approve` from any shell, or Enter on the run's own terminal,
/// timing out on the fabric's clock.
struct JournalGate {
    db: Mutex<JournalDb>,
    /// Enter presses on the run's terminal, when it has one.
    enter: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl JournalGate {
    fn new(db: JournalDb) -> JournalGate {
        // One reader for the whole run, so steps never compete for stdin.
        let enter = std::io::stdin().is_terminal().then(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                    if tx.send(()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
            Mutex::new(rx)
        });
        JournalGate { db: Mutex::new(db), enter }
    }

    fn pressed_enter(&self) -> bool {
        self.enter.as_ref().is_some_and(|rx| rx.lock().expect("stdin lock").try_recv().is_ok())
    }
}

#[async_trait::async_trait]
impl ManualGate for JournalGate {
    async fn wait(&self, run_id: &str, key: &str, manual: &Manual, fabric: &dyn Fabric) -> Result<(), String> {
        // Enter pressed before the step began does not count for it.
        while self.pressed_enter() {}
        let how = if self.enter.is_some() { "press Enter once it is done, or " } else { "" };
        eprintln!("manual step: {} — {how}approve from any shell with: drplan approve {run_id}", manual.text);
        let started = fabric.now();
        loop {
            if self.pressed_enter() {
                let now = chrono::Utc::now().to_rfc3339();
                self.db.lock().expect("journal lock").approve(run_id, key, &now).map_err(|e| e.to_string())?;
            }
            if self.db.lock().expect("journal lock").approved(run_id, key).map_err(|e| e.to_string())? {
                return Ok(());
            }
            let waited = (fabric.now() - started).to_std().unwrap_or_default();
            if waited >= manual.timeout {
                return Err(format!(
                    "manual step {:?} was not approved within {}",
                    manual.text,
                    crate::model::HumanDuration(manual.timeout)
                ));
            }
            // Time passes on the fabric's clock (paced by its speed), so the timeout is in
            // modelled time and the simulation does not keep the operator waiting.
            fabric.wait(Duration::from_secs(10)).await;
        }
    }
}

/// A plan ready to run: loaded, validated, resolved against the live simulation.
pub(super) struct Prepared {
    pub(super) plan: Arc<Plan>,
    pub(super) resolved: ResolvedPlan,
    inventory: Arc<crate::model::Inventory>,
    pub(super) sim: Arc<SimFabric>,
}

pub(super) fn prepare(
    plan_path: &Path,
    site: &Path,
    state: &StateDir,
    kind: FailoverKind,
    strict: bool,
) -> Result<Prepared, CliError> {
    let inventory = Arc::new(load_inventory(site)?);
    let plan = Arc::new(load_plan(plan_path, inventory.clone(), &ScriptOptions::default())?);
    let sim = Arc::new(SimFabric::open(inventory.clone(), state)?);
    let validation = validate(&plan, &inventory, &sim.protection(), Some(kind));
    let errors = validation.findings.iter().filter(|f| f.severity == Severity::Error).count();
    // Not strict: a resumed run's or a failback's VMs are (partly) failed over, so the
    // failover checks do not apply; the caller checks what does.
    if strict {
        for finding in &validation.findings {
            eprintln!("{finding}");
        }
        if errors > 0 {
            return Err(CliError::InvalidPlan { errors });
        }
    }
    Ok(Prepared { plan, resolved: validation.resolved, inventory, sim })
}

/// Runs a plan: a failover, or (R37, R38) a failback of VMs reprotected on the recovery
/// site, which a planned failover back is.
pub fn failover(
    global: &Global,
    plan_path: &Path,
    kind: FailoverKind,
    point: PointChoice,
    parallel: usize,
    format: Format,
    failback: bool,
) -> Result<String, CliError> {
    let site = site_path(global, Some(plan_path))?;
    let state = StateDir::open(&global.state)?;
    let prepared = prepare(plan_path, &site, &state, kind, !failback)?;
    if failback {
        // The plan's checks are for failing over; a failback needs every VM reprotected.
        refuse_unless(&prepared, crate::model::Operation::Failback)?;
    }
    if kind != FailoverKind::Test {
        let question = format!(
            "Run a {kind} failover of plan {:?} from {} to {}? This changes the recovery site.",
            prepared.plan.name, prepared.plan.source, prepared.plan.target
        );
        confirm(global, &question)?;
    }
    let spec =
        RunSpec { run_id: new_run_id(), kind, point, parallel, dry_run: false, shut_down_source: true, failback };
    let header = RunHeader {
        plan: prepared.plan.name.clone(),
        source: prepared.plan.source.clone(),
        target: prepared.plan.target.clone(),
        kind,
        point,
        dry_run: false,
        rto_target: prepared.plan.rto,
    };
    let record = Record {
        id: spec.run_id.clone(),
        plan_path: plan_path.to_path_buf(),
        plan_hash: fingerprint(plan_path)?,
        site_path: site,
        status: RunRecordStatus::Running,
        started_wall: chrono::Utc::now().to_rfc3339(),
        spec: StoredRun { spec, header, notes: Vec::new() },
    };
    let db = journal::open(state.path())?;
    db.put_run(&record)?;
    eprintln!("run {} started", record.id);
    run_to_end(&state, db, record, prepared, History::default(), format)
}

pub fn resume(global: &Global, run_id: &str, format: Format) -> Result<String, CliError> {
    let state = StateDir::open(&global.state)?;
    let db = journal::open(state.path())?;
    let record = find_run(&db, run_id)?;
    match record.status {
        RunRecordStatus::Succeeded => {
            return Err(CliError::Usage(format!("run {run_id} already succeeded: there is nothing to resume")));
        }
        RunRecordStatus::Cancelled => {
            return Err(CliError::Usage(format!(
                "run {run_id} was cancelled; its VMs need reprotect (drplan reprotect) before another run"
            )));
        }
        _ => {}
    }
    if fingerprint(&record.plan_path)? != record.plan_hash {
        return Err(CliError::Usage(format!(
            "the plan {} (or its folder's drplan.toml and hook scripts) changed since run {run_id} started; a resumed run must run the same plan: restore it, or start a new run",
            record.plan_path.display()
        )));
    }
    let kind = record.spec.spec.kind;
    let prepared = prepare(&record.plan_path, &record.site_path, &state, kind, false)?;
    if kind != FailoverKind::Test {
        confirm(global, &format!("Resume the {kind} failover run {run_id} of plan {:?}?", prepared.plan.name))?;
    }
    let events: Vec<Event> = db.events(run_id)?;
    let history = History::from_events(&events);
    let mut record = record;
    record.status = RunRecordStatus::Running;
    db.put_run(&record)?;
    eprintln!("run {run_id} resumed");
    run_to_end(&state, db, record, prepared, history, format)
}

/// Refuses unless every VM of the plan allows `operation`, listing each refusal with what
/// to do instead.
pub(super) fn refuse_unless(prepared: &Prepared, operation: crate::model::Operation) -> Result<(), CliError> {
    let protection = prepared.sim.protection();
    let refusals: Vec<String> = prepared
        .resolved
        .groups
        .iter()
        .flat_map(|g| &g.vms)
        .filter_map(|vm| protection.get(vm).and_then(|p| p.check(vm, operation).err()))
        .map(|refusal| refusal.to_string())
        .collect();
    for refusal in &refusals {
        eprintln!("error: {refusal}");
    }
    if refusals.is_empty() { Ok(()) } else { Err(CliError::InvalidPlan { errors: refusals.len() }) }
}

/// R30: keeps the cleanup's notes with the plan's latest test run.
pub(super) fn keep_notes(state: &StateDir, plan: &Path, notes: &str) -> Result<Option<String>, CliError> {
    let db = journal::open(state.path())?;
    let same = |p: &Path| p.canonicalize().ok() == plan.canonicalize().ok();
    let records: Vec<Record> = db.runs()?;
    let Some(mut drill) =
        records.into_iter().rev().find(|r| r.spec.spec.kind == FailoverKind::Test && same(&r.plan_path))
    else {
        return Ok(None);
    };
    drill.spec.notes.push(notes.to_string());
    db.put_run(&drill)?;
    Ok(Some(drill.id))
}

fn find_run(db: &JournalDb, run_id: &str) -> Result<Record, CliError> {
    db.run(run_id)?
        .ok_or_else(|| CliError::Refused(format!("no run {run_id:?} in this state directory; see drplan runs")))
}

/// Runs the engine with the journal until the run ends, then records how it ended.
fn run_to_end(
    state: &StateDir,
    db: JournalDb,
    mut record: Record,
    prepared: Prepared,
    history: History,
    format: Format,
) -> Result<String, CliError> {
    let writer = Arc::new(JournalWriter::start(state.path())?);
    let run_id = record.id.clone();
    let bus = Arc::new(EventBus::starting_at(history.next_seq));
    let groups: Vec<(String, Vec<String>)> =
        prepared.resolved.groups.iter().map(|g| (g.name.clone(), g.vms.clone())).collect();
    let mode = ProgressMode::choose(format, std::io::stdout().is_terminal());
    let progress = Arc::new(Progress::new(mode, &prepared.plan.name, &groups).with_run_id(&run_id));
    // A resumed run's display starts from what its journal already shows.
    for event in db.events::<Event>(&run_id)? {
        progress.observe(&event);
    }
    let view = progress.clone();
    bus.subscribe(move |event| view.observe(event));
    let stop = Arc::new(Stop::default());
    let deps = Deps {
        fabric: prepared.sim.clone(),
        dns: super::dns::updater(&record.plan_path, record.spec.spec.kind)?,
        gate: Arc::new(JournalGate::new(journal::open(state.path())?)),
        inventory: prepared.inventory.clone(),
        bus,
        journal: Some(Arc::new(JournalLog { writer: writer.clone(), run: run_id.clone() })),
        history,
        stop: stop.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SCRIPT_STACK_SIZE)
        .build()
        .map_err(CliError::Runtime)?;
    let watcher_db = journal::open(state.path())?;
    let outcome = runtime.block_on(async {
        let watch_id = run_id.clone();
        let watch_stop = stop.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                if watcher_db.cancel_requested(&watch_id).unwrap_or(false) {
                    watch_stop.cancel("cancelled by the operator (drplan cancel)");
                    return;
                }
            }
        });
        let outcome = execute(deps, prepared.plan.clone(), prepared.resolved.clone(), record.spec.spec.clone()).await;
        watcher.abort();
        outcome
    });
    writer.close();
    progress.finish();
    record.status = record_status(outcome.status);
    db.put_run(&record)?;
    let events: Vec<Event> = db.events(&run_id)?;
    let report = RunReport::new(record.spec.header.clone(), outcome_of(&record, events));
    let summary = summary(&report);
    match outcome.status {
        RunStatus::Succeeded => Ok(summary),
        _ => {
            print!("{summary}");
            Err(CliError::RunFailed(match outcome.status {
                RunStatus::Cancelled => "was cancelled: the VMs whose failover was cut off need reprotect (R35)",
                _ => "failed: fix the cause, then drplan resume it",
            }))
        }
    }
}

fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

fn record_status(status: RunStatus) -> RunRecordStatus {
    match status {
        RunStatus::Succeeded => RunRecordStatus::Succeeded,
        RunStatus::Failed => RunRecordStatus::Failed,
        RunStatus::Cancelled => RunRecordStatus::Cancelled,
    }
}

/// The run as its journal tells it: what `show` reports, whether the run is live or not.
fn outcome_of(record: &Record, events: Vec<Event>) -> RunOutcome {
    let started = events.iter().find(|e| e.kind == EventKind::RunStarted).map(|e| e.at);
    let finished = events.last().map(|e| e.at);
    let status = match record.status {
        RunRecordStatus::Succeeded => RunStatus::Succeeded,
        RunRecordStatus::Cancelled => RunStatus::Cancelled,
        RunRecordStatus::Running | RunRecordStatus::Failed => RunStatus::Failed,
    };
    let epoch = chrono::DateTime::UNIX_EPOCH;
    RunOutcome {
        run_id: record.id.clone(),
        status,
        started: started.unwrap_or(epoch),
        finished: finished.or(started).unwrap_or(epoch),
        events,
    }
}

fn summary(report: &RunReport) -> String {
    format!(
        "run {} {}: RTO {} ({}). Details: drplan show {}\n",
        report.run_id,
        status_name(report.status),
        crate::model::HumanDuration(report.rto),
        report.verdict(),
        report.run_id
    )
}

pub fn runs(global: &Global, format: Format) -> Result<String, CliError> {
    let db = journal::open_to_look(&global.state)?;
    let records: Vec<Record> = db.runs()?;
    // A "running" run nobody holds the directory for was cut off.
    let live = StateDir::in_use(&global.state);
    let rows: Vec<(Record, String)> = records
        .into_iter()
        .map(|r| {
            let running = r.status == RunRecordStatus::Running;
            let status = if running && !live { "interrupted".to_string() } else { r.status.to_string() };
            (r, status)
        })
        .collect();
    if format == Format::Json {
        let json: Vec<_> = rows
            .iter()
            .map(|(r, status)| {
                serde_json::json!({ "id": r.id, "plan": r.spec.header.plan, "kind": r.spec.spec.kind, "status": status,
                                    "plan_path": r.plan_path, "started": r.started_wall })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&json).expect("json") + "\n");
    }
    if rows.is_empty() {
        return Ok("no runs yet\n".into());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(r, status)| {
            vec![
                r.id.clone(),
                r.spec.header.plan.clone(),
                r.spec.spec.kind.to_string(),
                status.clone(),
                r.plan_path.display().to_string(),
            ]
        })
        .collect();
    Ok(crate::report::table::render(&["RUN", "PLAN", "KIND", "STATUS", "PLAN FILE"], &table))
}

pub fn show(global: &Global, run_id: &str, format: Format, svg: Option<&PathBuf>) -> Result<String, CliError> {
    let db = journal::open_to_look(&global.state)?;
    let record = find_run(&db, run_id)?;
    let events: Vec<Event> = db.events(run_id)?;
    let mut report = RunReport::new(record.spec.header.clone(), outcome_of(&record, events));
    report.notes = record.spec.notes.clone();
    if let Some(path) = svg {
        std::fs::write(path, crate::report::svg::gantt(&report))
            .map_err(|source| CliError::Read { path: path.clone(), source })?;
    }
    Ok(match format {
        Format::Human => report.human(),
        Format::Json => report.json(),
    })
}

/// The manual steps of a run waiting for an operator: (key, text).
fn waiting_steps(events: &[Event]) -> Vec<(String, String)> {
    let mut waiting: Vec<(String, String)> = Vec::new();
    for event in events {
        let Some(key) = &event.key else { continue };
        match event.kind {
            EventKind::ManualWaiting => waiting.push((key.clone(), event.step.clone().unwrap_or_default())),
            EventKind::ManualDone => waiting.retain(|(k, _)| k != key),
            _ => {}
        }
    }
    waiting
}

/// Completes the manual steps a live run waits on. Anything else is refused with nothing
/// stored: an approval kept for a run that is not waiting would pass a step nobody has
/// seen yet when the run is resumed.
pub fn approve(global: &Global, run_id: &str) -> Result<String, CliError> {
    let record = find_run(&journal::open_to_look(&global.state)?, run_id)?;
    if record.status != RunRecordStatus::Running {
        return Err(CliError::Refused(format!(
            "run {run_id} is {}: only a live run waiting on a manual step can be approved",
            record.status
        )));
    }
    if !StateDir::in_use(&global.state) {
        return Err(CliError::Refused(format!(
            "run {run_id} was interrupted (no drplan process is running it): resume it with drplan resume {run_id}, and approve its manual step when it waits again"
        )));
    }
    let db = journal::open(&global.state)?;
    let events: Vec<Event> = db.events(run_id)?;
    let waiting = waiting_steps(&events);
    if waiting.is_empty() {
        return Err(CliError::Refused(format!("run {run_id} has no manual step waiting for approval")));
    }
    let now = chrono::Utc::now().to_rfc3339();
    let mut out = String::new();
    for (key, text) in waiting {
        db.approve(run_id, &key, &now)?;
        out.push_str(&format!("approved: {text}\n"));
    }
    Ok(out)
}

pub fn cancel(global: &Global, run_id: &str, force: bool) -> Result<String, CliError> {
    if !force {
        return Err(CliError::Usage(
            "cancel stops the failovers under way, and their VMs will not replicate until reprotected (R35): pass --force".into(),
        ));
    }
    let mut record = find_run(&journal::open_to_look(&global.state)?, run_id)?;
    if !matches!(record.status, RunRecordStatus::Running | RunRecordStatus::Failed) {
        return Err(CliError::Refused(format!("run {run_id} is {}: there is nothing to cancel", record.status)));
    }
    let db = journal::open(&global.state)?;
    db.request_cancel(run_id, &chrono::Utc::now().to_rfc3339())?;
    match StateDir::open(&global.state) {
        Err(StoreError::InUse { .. }) => {
            // The run is live: it sees the request at its next step and stops.
            for _ in 0..300 {
                std::thread::sleep(POLL);
                if find_run(&db, run_id)?.status != RunRecordStatus::Running {
                    return Ok(format!("run {run_id} cancelled; see drplan status for the VMs that need reprotect\n"));
                }
            }
            Ok(format!("cancel of run {run_id} requested; it stops at its next step\n"))
        }
        Err(e) => Err(e.into()),
        Ok(state) => {
            // Nobody runs it: cancel what its process left cut off, here.
            let inventory = Arc::new(load_inventory(&record.site_path)?);
            let sim = SimFabric::open(inventory, &state)?;
            let history = History::from_events(&db.events::<Event>(run_id)?);
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CliError::Runtime)?;
            let mut out = String::new();
            for vm in sim.inventory().vms.iter().map(|v| v.name.clone()) {
                if history.attempts(&vm) == 0 || history.outcome(&vm).is_some() {
                    continue;
                }
                let key = format!("{run_id}/vm/{vm}/cancel");
                if runtime.block_on(sim.cancel(&key, &vm)).is_ok() {
                    out.push_str(&format!("{vm}: failover cancelled; it needs reprotect (R35)\n"));
                }
            }
            record.status = RunRecordStatus::Cancelled;
            db.put_run(&record)?;
            out.push_str(&format!("run {run_id} cancelled at {}\n", format_time(sim.now())));
            Ok(out)
        }
    }
}
