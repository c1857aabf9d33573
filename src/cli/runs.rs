//! Real runs: `failover` runs a plan against the fabric with a durable journal,
//! `resume` continues a run that failed or whose process died, `runs` and `show` report
//! from the journal, `approve` completes a manual step and `cancel` stops a run, both
//! from any shell (they need not wait for the state directory's lock).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::args::{Format, Global};
use super::context::{
    Access, Findings, Opened, Overrides, confirm, load_inventory, load_plan_for_run, open_fabric, site_path,
};
use super::error::CliError;
use super::progress::{Progress, ProgressMode};
use crate::engine::operator::{JournalGate, POLL, RehearsalGate, watch_for_cancel};
use crate::engine::{
    Deps, Event, EventBus, EventKind, History, JournalLog, ManualGate, RunOutcome, RunSpec, RunStatus, Stop, execute,
    fingerprint, keys,
};
use crate::fabric::{Call, Fabric, FabricError, Replica};
use crate::model::{FailoverKind, PointChoice, format_time};
use crate::plan::Direction;
use crate::plan::Plan;
use crate::plan::validate::ResolvedPlan;
use crate::report::run::{RunHeader, RunReport};
use crate::script::SCRIPT_STACK_SIZE;
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
    /// The plan's groups and VMs as the run resolved them: what is left of it, and the
    /// plan order its report lists VMs in.
    #[serde(default)]
    pub groups: ResolvedPlan,
    /// What the command line changed of the plan; a resume runs the same.
    #[serde(default)]
    pub overrides: Overrides,
}

impl StoredRun {
    /// The header of the run's reports. Whether the run is a failback is the spec's
    /// (runs journaled before the header said so too read as failovers otherwise).
    fn header(&self) -> RunHeader {
        RunHeader { failback: self.spec.failback, ..self.header.clone() }
    }

    /// What the run is, in words: "planned failover", "failback".
    fn what(&self) -> String {
        self.header().what()
    }
}

type Record = RunRecord<StoredRun>;

fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), std::process::id() & 0xffff)
}

/// How manual steps are approved in a real run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approvals {
    /// A person approves, on the run's terminal or with `drplan approve` (R21).
    ByPeople,
    /// `--approve-manual`: each step approves itself as taking its estimate, journaled;
    /// for rehearsals. Refused for runs that are not drills on a real (not simulated) site.
    Rehearsal,
}

/// What a real run is asked to do, besides its plan.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub kind: FailoverKind,
    pub point: PointChoice,
    pub parallel: usize,
    pub format: Format,
    pub direction: Direction,
    pub approvals: Approvals,
    /// R32: an unplanned failover first tries to shut the source down, unless told not to.
    pub shut_down_source: bool,
    pub overrides: Overrides,
    pub outside: super::preflight::OutsideWorld,
}

/// A plan ready to run: loaded, validated, resolved against the site's fabric, opened
/// to act.
pub(super) struct Prepared {
    pub(super) plan: Arc<Plan>,
    pub(super) resolved: ResolvedPlan,
    pub(super) opened: Opened,
}

impl Prepared {
    /// Whether the plan changes DNS, as far as its scripts show before it runs.
    fn dns_use(&self) -> super::dns::DnsUse {
        let names = super::dns::changed_dns_names(&self.plan, &self.resolved, &self.opened.inventory);
        super::dns::DnsUse::when(!names.is_empty())
    }
}

pub(super) fn prepare(
    plan_path: &Path,
    site: &Path,
    state: &StateDir,
    kind: FailoverKind,
    overrides: &Overrides,
    findings: Findings,
) -> Result<Prepared, CliError> {
    let inventory = Arc::new(load_inventory(site)?);
    let opened = open_fabric(inventory.clone(), Access::Act(state))?;
    let (plan, validation) =
        load_plan_for_run(plan_path, &inventory, &opened.fabric.protection(), Some(kind), overrides, findings)?;
    Ok(Prepared { plan, resolved: validation.resolved, opened })
}

/// The runtime real runs and their preflights run on.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SCRIPT_STACK_SIZE)
        .build()
        .map_err(CliError::Runtime)
}

/// Prints each refusal of a preflight with the VM's place in the plan; an error unless
/// there are none. Nothing was changed.
pub(super) fn refuse(resolved: &ResolvedPlan, refusals: &[FabricError]) -> Result<(), CliError> {
    let groups = resolved.groups.len();
    for refusal in refusals {
        let place = refusal.vm().and_then(|vm| {
            resolved.groups.iter().enumerate().find_map(|(index, group)| {
                let position = group.vms.iter().position(|v| v == vm)?;
                Some(format!(
                    " (group {} of {groups}, {:?}: VM {} of {})",
                    index + 1,
                    group.name,
                    position + 1,
                    group.vms.len()
                ))
            })
        });
        eprintln!("error: {refusal}{}", place.unwrap_or_default());
    }
    let cited: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    if let Some(note) = crate::report::rules::note(&cited.join(" ")) {
        eprintln!("{note}");
    }
    match refusals.len() {
        0 => Ok(()),
        refused => Err(CliError::PreflightRefused { refused }),
    }
}

/// Runs a plan: a failover, or (R37, R38) a failback of VMs reprotected on the recovery
/// site, which a planned failover back is, then commit and reprotect forward.
pub fn failover(global: &Global, plan_path: &Path, request: RunRequest) -> Result<String, CliError> {
    let RunRequest { kind, point, parallel, format, direction, approvals, shut_down_source, overrides, outside } =
        request;
    let site = site_path(global, Some(plan_path))?;
    let state = StateDir::open(&global.state(Some(plan_path)))?;
    let findings = if direction == Direction::Failover { Findings::Enforce } else { Findings::Skip };
    let prepared = prepare(plan_path, &site, &state, kind, &overrides, findings)?;
    refuse_rehearsal(approvals, kind, &*prepared.opened.fabric)?;
    // Everything that can refuse the run does so before it exists: DNS settings, the
    // preflight of every VM, then the outside world (DNS servers and keys). A refused run
    // changes nothing and leaves no record.
    let dns = super::dns::updater(plan_path, kind, prepared.dns_use())?;
    let failback = direction == Direction::Failback;
    let spec = RunSpec { run_id: new_run_id(), kind, point, parallel, dry_run: false, shut_down_source, failback };
    let runtime = runtime()?;
    let fabric: &dyn Fabric = &*prepared.opened.fabric;
    let checked = runtime.block_on(crate::engine::preflight(
        fabric,
        &prepared.plan,
        &prepared.resolved,
        &spec,
        &History::default(),
    ))?;
    refuse(&prepared.resolved, &checked.refusals)?;
    if outside == super::preflight::OutsideWorld::Check {
        let (plan, resolved) = (&prepared.plan, &prepared.resolved);
        let checks =
            runtime.block_on(super::preflight::dns_checks(plan_path, kind, plan, resolved, &prepared.opened.inventory));
        super::preflight::refuse_unready(&checks)?;
    }
    if kind != FailoverKind::Test {
        let what = if failback { "failback" } else { "failover" };
        let question = format!(
            "Run a {kind} {what} of plan {:?} between {} and {}? This changes the recovery site.",
            prepared.plan.name, prepared.plan.source, prepared.plan.target
        );
        confirm(global, &question)?;
    }
    let header = RunHeader {
        plan: prepared.plan.name.clone(),
        source: prepared.plan.source.clone(),
        target: prepared.plan.target.clone(),
        kind,
        point,
        dry_run: false,
        rto_target: prepared.plan.rto,
        durations: None,
        failback,
    };
    let record = Record {
        id: spec.run_id.clone(),
        plan_path: plan_path.to_path_buf(),
        plan_hash: fingerprint(plan_path).map_err(|e| CliError::Read { path: e.path, source: e.source })?,
        site_path: site,
        status: RunRecordStatus::Running,
        started_wall: chrono::Utc::now().to_rfc3339(),
        spec: StoredRun { spec, header, notes: Vec::new(), groups: prepared.resolved.clone(), overrides },
    };
    let db = journal::open(state.path())?;
    db.put_run(&record)?;
    eprintln!("run {} started", record.id);
    let live = LiveRun { state: &state, runtime, dns, approvals, format, placements: checked.placements };
    live.run_to_end(db, record, prepared, History::default())
}

/// `--approve-manual` outside a drill is for simulated sites only: on real ones a manual
/// step is a person's check that must not be skipped.
fn refuse_rehearsal(approvals: Approvals, kind: FailoverKind, fabric: &dyn Fabric) -> Result<(), CliError> {
    if approvals == Approvals::Rehearsal && kind != FailoverKind::Test && !fabric.is_simulated() {
        return Err(CliError::Usage(format!(
            "--approve-manual approves manual steps without a person: allowed for drills (--kind test) and simulated sites only, not a {kind} failover of real VMs"
        )));
    }
    Ok(())
}

pub fn resume(
    global: &Global,
    run_id: &str,
    format: Format,
    as_kind: Option<FailoverKind>,
    approvals: Approvals,
) -> Result<String, CliError> {
    let state = StateDir::open(&global.state(None))?;
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
    if fingerprint(&record.plan_path).map_err(|e| CliError::Read { path: e.path, source: e.source })?
        != record.plan_hash
    {
        return Err(CliError::Usage(format!(
            "the plan {} (or its folder's drplan.toml and hook scripts) changed since run {run_id} started; a resumed run must run the same plan: restore it, or start a new run",
            record.plan_path.display()
        )));
    }
    let mut record = record;
    if let Some(kind) = as_kind.filter(|kind| *kind != record.spec.spec.kind) {
        let spec = &record.spec.spec;
        if !(spec.kind == FailoverKind::Planned && kind == FailoverKind::Unplanned) {
            return Err(CliError::Usage(format!(
                "run {run_id} is a {}: the only change of kind a resume makes is a planned failover or failback going on as unplanned (R32)",
                record.spec.what()
            )));
        }
        // R32: the VMs left fail over without the final sync; those done stay as they are.
        record.spec.spec.kind = kind;
        record.spec.header.kind = kind;
    }
    let spec = record.spec.spec.clone();
    let overrides = record.spec.overrides.clone();
    let prepared = prepare(&record.plan_path, &record.site_path, &state, spec.kind, &overrides, Findings::Skip)?;
    refuse_rehearsal(approvals, spec.kind, &*prepared.opened.fabric)?;
    let dns = super::dns::updater(&record.plan_path, spec.kind, prepared.dns_use())?;
    let events: Vec<Event> = db.events(run_id)?;
    let history = History::from_events(&events);
    let runtime = runtime()?;
    let fabric: &dyn Fabric = &*prepared.opened.fabric;
    let checked =
        runtime.block_on(crate::engine::preflight(fabric, &prepared.plan, &prepared.resolved, &spec, &history))?;
    refuse(&prepared.resolved, &checked.refusals)?;
    if spec.kind != FailoverKind::Test {
        confirm(global, &format!("Resume the {} run {run_id} of plan {:?}?", record.spec.what(), prepared.plan.name))?;
    }
    record.status = RunRecordStatus::Running;
    db.put_run(&record)?;
    eprintln!("run {run_id} resumed as a {}", record.spec.what());
    let live = LiveRun { state: &state, runtime, dns, approvals, format, placements: checked.placements };
    live.run_to_end(db, record, prepared, history)
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

/// Everything a real run needs besides its plan and journal.
struct LiveRun<'a> {
    state: &'a StateDir,
    runtime: tokio::runtime::Runtime,
    dns: Arc<dyn crate::fabric::dns::DnsUpdater>,
    approvals: Approvals,
    format: Format,
    placements: std::collections::HashMap<String, Replica>,
}

impl LiveRun<'_> {
    /// Runs the engine with the journal until the run ends, then records how it ended.
    fn run_to_end(
        self,
        db: JournalDb,
        mut record: Record,
        prepared: Prepared,
        history: History,
    ) -> Result<String, CliError> {
        let state = self.state;
        let writer = Arc::new(JournalWriter::start(state.path())?);
        let run_id = record.id.clone();
        let bus = Arc::new(EventBus::starting_at(history.next_seq));
        let groups: Vec<(String, Vec<String>)> =
            prepared.resolved.groups.iter().map(|g| (g.name.clone(), g.vms.clone())).collect();
        let mode = ProgressMode::choose(self.format, std::io::stdout().is_terminal());
        let progress = Arc::new(Progress::new(mode, &prepared.plan.name, &groups).with_run_id(&run_id));
        // A resumed run's display starts from what its journal already shows.
        for event in db.events::<Event>(&run_id)? {
            progress.observe(&event);
        }
        let view = progress.clone();
        bus.subscribe(move |event| view.observe(event));
        let stop = Arc::new(Stop::default());
        let gate: Arc<dyn ManualGate> = match self.approvals {
            Approvals::ByPeople => Arc::new(JournalGate::open(state.path())?),
            Approvals::Rehearsal => Arc::new(RehearsalGate::open(state.path())?),
        };
        let deps = Deps {
            fabric: prepared.opened.fabric.clone(),
            dns: self.dns,
            gate,
            inventory: prepared.opened.inventory.clone(),
            bus,
            journal: Some(Arc::new(JournalLog { writer: writer.clone(), run: run_id.clone() })),
            history,
            stop: stop.clone(),
            placements: self.placements,
        };
        let watcher = self.runtime.spawn(watch_for_cancel(state.path().to_path_buf(), run_id.clone(), stop));
        let outcome = self.runtime.block_on(execute(
            deps,
            prepared.plan.clone(),
            prepared.resolved.clone(),
            record.spec.spec.clone(),
        ));
        watcher.abort();
        writer.close();
        progress.finish();
        record.status = record_status(outcome.status);
        db.put_run(&record)?;
        let events: Vec<Event> = db.events(&run_id)?;
        let report = RunReport::new(record.spec.header(), outcome_of(&record, events, Liveness::Ended));
        let summary = summary(&report);
        match outcome.status {
            RunStatus::Succeeded => Ok(summary),
            _ => {
                // The command fails below; an output nobody reads adds no failure to it.
                let _ = super::print_output(&summary);
                Err(CliError::RunFailed(match outcome.status {
                    RunStatus::Cancelled => "was cancelled: the VMs whose failover was cut off need reprotect (R35)",
                    _ => "failed: fix the cause, then drplan resume it",
                }))
            }
        }
    }
}

/// How a run the engine ran to its end is recorded.
fn record_status(status: RunStatus) -> RunRecordStatus {
    match status {
        RunStatus::Succeeded => RunRecordStatus::Succeeded,
        RunStatus::Cancelled => RunRecordStatus::Cancelled,
        RunStatus::Failed | RunStatus::Running | RunStatus::Interrupted => RunRecordStatus::Failed,
    }
}

/// Whether a drplan process is running a run recorded as running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// This process ran it to its end.
    Ended,
    /// Another process holds the state directory: it is under way.
    Live,
    /// Nobody holds it: a run still recorded as running was cut off.
    Idle,
}

impl Liveness {
    fn of(state: &Path) -> Liveness {
        if StateDir::in_use(state) { Liveness::Live } else { Liveness::Idle }
    }
}

/// The run as its journal tells it: what `show` reports, live or not. Events are put in
/// reading order: time, then plan order.
fn outcome_of(record: &Record, mut events: Vec<Event>, liveness: Liveness) -> RunOutcome {
    crate::engine::sort_events(&mut events, &record.spec.groups);
    let started = events.iter().filter(|e| e.kind == EventKind::RunStarted).map(|e| e.at).min();
    let finished = events.iter().map(|e| e.at).max();
    let status = match (record.status, liveness) {
        (RunRecordStatus::Succeeded, _) => RunStatus::Succeeded,
        (RunRecordStatus::Cancelled, _) => RunStatus::Cancelled,
        (RunRecordStatus::Running, Liveness::Live) => RunStatus::Running,
        (RunRecordStatus::Running, Liveness::Idle) => RunStatus::Interrupted,
        _ => RunStatus::Failed,
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
        report.status.as_str(),
        crate::model::HumanDuration(report.rto),
        report.verdict(),
        report.run_id
    )
}

pub fn runs(global: &Global, format: Format) -> Result<String, CliError> {
    let db = journal::open_to_look(&global.state(None))?;
    let records: Vec<Record> = db.runs()?;
    // A "running" run nobody holds the directory for was cut off.
    let liveness = Liveness::of(&global.state(None));
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        let status = match (r.status, liveness) {
            (RunRecordStatus::Running, Liveness::Idle) => "interrupted".to_string(),
            (status, _) => status.to_string(),
        };
        let left = if r.status == RunRecordStatus::Succeeded { String::new() } else { left_of(&r, &db.events(&r.id)?) };
        rows.push((r, status, left));
    }
    if format == Format::Json {
        let json: Vec<_> = rows
            .iter()
            .map(|(r, status, left)| {
                serde_json::json!({ "id": r.id, "plan": r.spec.header.plan, "kind": r.spec.what(),
                                    "status": status, "left": left, "plan_path": r.plan_path,
                                    "started": r.started_wall })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&json).expect("json") + "\n");
    }
    if rows.is_empty() {
        return Ok("no runs yet\n".into());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(r, status, left)| {
            vec![
                r.id.clone(),
                r.spec.header.plan.clone(),
                r.spec.what(),
                status.clone(),
                left.clone(),
                r.plan_path.display().to_string(),
            ]
        })
        .collect();
    Ok({
        use crate::report::table::{keep, wrap};
        let header = [keep("RUN"), keep("PLAN"), keep("KIND"), keep("STATUS"), keep("LEFT"), wrap("PLAN FILE")];
        crate::report::table::render(&header, &table, global.width())
    })
}

/// What a run that did not succeed has left to do, in a few words.
fn left_of(record: &Record, events: &[Event]) -> String {
    let history = History::from_events(events);
    let vms: Vec<&String> = record.spec.groups.groups.iter().flat_map(|g| &g.vms).collect();
    if vms.is_empty() {
        return "?".into();
    }
    let to_move = vms.iter().filter(|vm| history.outcome(vm).is_none()).count();
    let what = if record.spec.spec.failback { "to fail back" } else { "to fail over" };
    if to_move > 0 {
        return format!("{to_move} of {} VMs {what}", vms.len());
    }
    if record.spec.spec.failback {
        let steps = ["commit", "reprotect"];
        let unfinished =
            vms.iter().filter(|vm| steps.iter().any(|op| !history.is_done(&keys::vm_cycle(vm, op)))).count();
        if unfinished > 0 {
            return format!("commit and reprotect of {unfinished} VMs");
        }
    }
    "the plan's last steps".into()
}

/// A run's report, printed as it is made; nothing is left to print.
pub fn show(global: &Global, run_id: &str, format: Format, svg: Option<&PathBuf>) -> Result<String, CliError> {
    let db = journal::open_to_look(&global.state(None))?;
    let record = find_run(&db, run_id)?;
    let events: Vec<Event> = db.events(run_id)?;
    let outcome = outcome_of(&record, events, Liveness::of(&global.state(None)));
    let mut report = RunReport::new(record.spec.header(), outcome);
    report.notes = record.spec.notes.clone();
    if let Some(path) = svg {
        std::fs::write(path, crate::report::svg::gantt(&report))
            .map_err(|source| CliError::Write { path: path.clone(), source })?;
    }
    super::print_report(&report, format, global.width()).map(|()| String::new())
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
    let record = find_run(&journal::open_to_look(&global.state(None))?, run_id)?;
    if record.status != RunRecordStatus::Running {
        return Err(CliError::Refused(format!(
            "run {run_id} is {}: only a live run waiting on a manual step can be approved",
            record.status
        )));
    }
    if !StateDir::in_use(&global.state(None)) {
        return Err(CliError::Refused(format!(
            "run {run_id} was interrupted (no drplan process is running it): resume it with drplan resume {run_id}, and approve its manual step when it waits again"
        )));
    }
    let db = journal::open(&global.state(None))?;
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
    let mut record = find_run(&journal::open_to_look(&global.state(None))?, run_id)?;
    if !matches!(record.status, RunRecordStatus::Running | RunRecordStatus::Failed) {
        return Err(CliError::Refused(format!("run {run_id} is {}: there is nothing to cancel", record.status)));
    }
    let db = journal::open(&global.state(None))?;
    db.request_cancel(run_id, &chrono::Utc::now().to_rfc3339())?;
    match StateDir::open(&global.state(None)) {
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
            let opened = open_fabric(inventory, Access::Act(&state))?;
            let fabric = &*opened.fabric;
            let history = History::from_events(&db.events::<Event>(run_id)?);
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CliError::Runtime)?;
            let mut out = String::new();
            for vm in opened.inventory.vms.iter().map(|v| v.name.clone()) {
                if history.attempts(&vm) == 0 || history.outcome(&vm).is_some() {
                    continue;
                }
                let call = Call::new(keys::vm_call(run_id, &vm, "cancel"), fabric.now());
                if runtime.block_on(fabric.cancel(&call, &vm)).is_ok() {
                    out.push_str(&format!("{vm}: failover cancelled; it needs reprotect (R35)\n"));
                }
            }
            record.status = RunRecordStatus::Cancelled;
            db.put_run(&record)?;
            out.push_str(&format!("run {run_id} cancelled at {}\n", format_time(fabric.now())));
            Ok(out)
        }
    }
}
