//! The live view of a run: a subscriber to the run's event bus that shows what the run
//! is doing as it happens. Three modes (`ProgressMode::choose`):
//!
//! - `Live`, on a terminal: one bar per group (VMs finished out of the group's VMs, and
//!   what the group is doing) under a spinner for the plan's own steps, drawn on stderr
//!   so stdout stays clean for the report; errors, retries, manual steps and script logs
//!   are printed above the bars and stay in the scrollback.
//! - `Lines`, without a terminal (CI logs, pipes): one plain line per event on stdout.
//! - `JsonLines`, with `--format json`: one JSON object per event on stdout.
//!
//! `observe` is called for every event, from whichever task published it, so it stays
//! cheap: the live view only updates counters there, and a ticker thread pushes them to
//! the bars ten times a second.
//!
//! The run commands (`failover`, `failback`, `resume`, in `cli/runs.rs`) subscribe it to
//! their run's event bus.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use chrono::Timelike;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::Format;
use crate::engine::{Event, EventKind};
use crate::model::Timestamp;
use crate::report::outcome::{Status, VmCounts};
use crate::report::table::one_line;

/// How often the live view redraws at most.
const REDRAW_HZ: u8 = 10;
/// How often the ticker pushes counters to the bars and turns the spinner.
const TICK: Duration = Duration::from_millis(100);
/// The longest event name ("action.succeeded"): the width of the name column.
const NAME_WIDTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on stderr, for a person at a terminal.
    Live,
    /// One plain line per event on stdout.
    Lines,
    /// One JSON object per event on stdout.
    JsonLines,
}

impl ProgressMode {
    pub fn choose(format: Format, stdout_is_terminal: bool) -> ProgressMode {
        match (format, stdout_is_terminal) {
            (Format::Json, _) => ProgressMode::JsonLines,
            (Format::Human, true) => ProgressMode::Live,
            (Format::Human, false) => ProgressMode::Lines,
        }
    }
}

/// The view of one run. Created once per run, shared with the bus through an `Arc`.
pub struct Progress {
    sink: Sink,
    /// How to approve a manual step, once the run is named: `drplan approve RUN`.
    approve: Option<String>,
}

enum Sink {
    Lines(Mutex<Box<dyn Write + Send>>),
    JsonLines(Mutex<Box<dyn Write + Send>>),
    Live(Live),
}

impl Progress {
    /// A view writing lines to stdout, or drawing on stderr in `Live` mode.
    /// `groups` are the plan's groups and their VMs, in order.
    pub fn new(mode: ProgressMode, plan_name: &str, groups: &[(String, Vec<String>)]) -> Progress {
        Progress::with_writer(mode, plan_name, groups, Box::new(io::stdout()))
    }

    /// As `new`, with `Lines` and `JsonLines` written to `out` instead of stdout. The live
    /// view draws on stderr whatever `out` is.
    pub fn with_writer(
        mode: ProgressMode,
        plan_name: &str,
        groups: &[(String, Vec<String>)],
        out: Box<dyn Write + Send>,
    ) -> Progress {
        let sink = match mode {
            ProgressMode::Lines => Sink::Lines(Mutex::new(out)),
            ProgressMode::JsonLines => Sink::JsonLines(Mutex::new(out)),
            ProgressMode::Live => Sink::Live(Live::new(
                plan_name,
                groups,
                ProgressDrawTarget::stderr_with_hz(REDRAW_HZ),
                Box::new(io::stderr()),
            )),
        };
        Progress { sink, approve: None }
    }

    /// Names the run, so a manual step shows how to approve it (`drplan approve RUN`).
    pub fn with_run_id(mut self, run_id: &str) -> Progress {
        let approve = format!("drplan approve {run_id}");
        if let Sink::Live(live) = &self.sink {
            lock(&live.shared.board).approve = Some(approve.clone());
        }
        self.approve = Some(approve);
        self
    }

    pub fn observe(&self, event: &Event) {
        match &self.sink {
            Sink::Lines(out) => {
                let mut text = line(event);
                approve_hint(&mut text, event, self.approve.as_deref());
                text.push('\n');
                let mut out = lock(out);
                // A closed pipe must not stop the run: output errors are dropped.
                let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            }
            Sink::JsonLines(out) => {
                let Ok(mut json) = serde_json::to_vec(event) else { return };
                json.push(b'\n');
                let mut out = lock(out);
                let _ = out.write_all(&json).and_then(|()| out.flush());
            }
            Sink::Live(live) => live.observe(event),
        }
    }

    /// Ends the view: the live view stops and clears its bars (what it printed above them
    /// stays); the line modes flush. Calling it again does nothing.
    pub fn finish(&self) {
        match &self.sink {
            Sink::Lines(out) | Sink::JsonLines(out) => {
                let _ = lock(out).flush();
            }
            Sink::Live(live) => live.finish(),
        }
    }

    /// Each group with its VMs finished (succeeded, failed or skipped) and its VMs, in
    /// plan order; empty outside the live view, which is the only one that counts.
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        match &self.sink {
            Sink::Live(live) => {
                lock(&live.shared.board).groups.iter().map(|g| (g.name.clone(), g.finished(), g.total())).collect()
            }
            Sink::Lines(_) | Sink::JsonLines(_) => Vec::new(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One event as a plain line: modelled time, event name, group/vm, step, detail.
/// `08:12:20 vm.succeeded      web/web01  10.2.3.21 on secondary/hv-s03; point ...`
pub fn line(event: &Event) -> String {
    let mut out = String::with_capacity(128);
    let at = event.at;
    let _ = write!(out, "{:02}:{:02}:{:02} {:<NAME_WIDTH$}", at.hour(), at.minute(), at.second(), event.kind.name());
    match (&event.group, &event.vm) {
        (Some(group), Some(vm)) => {
            out.push_str("  ");
            out.push_str(&one_line(group));
            out.push('/');
            out.push_str(&one_line(vm));
        }
        (Some(one), None) | (None, Some(one)) => {
            out.push_str("  ");
            out.push_str(&one_line(one));
        }
        (None, None) => {}
    }
    for part in [&event.step, &event.detail].into_iter().flatten() {
        out.push_str("  ");
        out.push_str(&one_line(part));
    }
    out.truncate(out.trim_end().len());
    out
}

/// After a manual step's line: how to approve it, when the run is named.
fn approve_hint(text: &mut String, event: &Event, approve: Option<&str>) {
    if let (EventKind::ManualWaiting, Some(approve)) = (event.kind, approve) {
        let _ = write!(text, "; approve with: {approve}");
    }
}

/// What a group or the plan shows while a manual step waits.
fn manual_status(text: &str, approve: Option<&str>) -> String {
    match approve {
        Some(approve) => format!("manual: {text} (approve with: {approve})"),
        None => format!("manual: {text}"),
    }
}

/// A lock that a panicked holder does not make unusable: the view never panics.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Live {
    shared: Arc<Shared>,
    /// Pushes counters to the bars; `None` if it could not start, and then every event
    /// redraws.
    ticker: Mutex<Option<JoinHandle<()>>>,
    ticking: bool,
}

struct Shared {
    multi: MultiProgress,
    spinner: ProgressBar,
    board: Mutex<Board>,
    /// Where lines meant above the bars go when the bars are hidden (stderr is not a
    /// terminal, or TERM=dumb).
    fallback: Mutex<Box<dyn Write + Send>>,
    done: AtomicBool,
}

impl Live {
    fn new(
        plan_name: &str,
        groups: &[(String, Vec<String>)],
        target: ProgressDrawTarget,
        fallback: Box<dyn Write + Send>,
    ) -> Live {
        let multi = MultiProgress::with_draw_target(target);
        let spinner = multi.add(ProgressBar::new_spinner());
        spinner.set_style(style("{spinner:.cyan} {prefix:.bold}  {wide_msg}", ProgressStyle::default_spinner));
        spinner.set_prefix(plan_name.to_string());
        spinner.set_message("starting");
        let board = Board::new(groups);
        let shared = Arc::new(Shared {
            multi,
            spinner,
            board: Mutex::new(board),
            fallback: Mutex::new(fallback),
            done: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        let ticker = thread::Builder::new().name("drplan-progress".into()).spawn(move || tick(weak)).ok();
        Live { shared, ticking: ticker.is_some(), ticker: Mutex::new(ticker) }
    }

    fn observe(&self, event: &Event) {
        let above = lock(&self.shared.board).apply(event);
        // The ticker shows a VM's progress; what the plan or a group does, and anything
        // printed (the bars are redrawn under it), is shown at once.
        // After `finish`, events are only printed.
        let done = self.shared.done.load(Ordering::Acquire);
        if !done && (!self.ticking || event.vm.is_none() || above.is_some()) {
            self.shared.flush();
        }
        if let Some(text) = above {
            self.shared.above(&text);
        }
    }

    fn finish(&self) {
        if self.shared.done.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(ticker) = lock(&self.ticker).take() {
            ticker.thread().unpark();
            let _ = ticker.join();
        }
        self.shared.flush();
        for bar in lock(&self.shared.board).groups.iter().filter_map(|g| g.bar.as_ref()) {
            bar.finish_and_clear();
        }
        self.shared.spinner.finish_and_clear();
        let _ = self.shared.multi.clear();
    }
}

/// The ticker thread: ends when the view finishes or is dropped.
fn tick(shared: Weak<Shared>) {
    loop {
        thread::park_timeout(TICK);
        let Some(shared) = shared.upgrade() else { return };
        if shared.done.load(Ordering::Acquire) {
            return;
        }
        shared.flush();
        shared.spinner.tick();
    }
}

fn style(template: &str, fallback: fn() -> ProgressStyle) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| fallback())
}

impl Shared {
    /// A line above the bars, kept in the scrollback.
    fn above(&self, text: &str) {
        if self.multi.is_hidden() {
            let mut out = lock(&self.fallback);
            let _ = writeln!(out, "{text}").and_then(|()| out.flush());
        } else {
            let _ = self.multi.println(text);
        }
    }

    /// Pushes what changed since the last flush to the spinner and the bars.
    fn flush(&self) {
        let mut board = lock(&self.board);
        let board = &mut *board;
        if board.plan_dirty {
            board.plan_dirty = false;
            let at = board.at.map(|t| format!("{:02}:{:02}:{:02}  ", t.hour(), t.minute(), t.second()));
            self.spinner.set_message(format!("{}{}", at.unwrap_or_default(), board.plan_status));
        }
        let mut shown = 0;
        for group in &mut board.groups {
            if !group.seen {
                continue;
            }
            // The spinner first, then the bars in plan order, whatever order they appear in.
            shown += 1;
            if !group.dirty {
                continue;
            }
            group.dirty = false;
            let (total, finished) = (group.total(), group.finished());
            let message = group.message(board.approve.as_deref());
            let bar = group.bar.get_or_insert_with(|| {
                // Hidden until it joins the view: a bar drawn on its own would leave a line
                // the view does not know to clear.
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
                    .with_style(style(&board.bar_template, ProgressStyle::default_bar).progress_chars("=> "))
                    .with_prefix(group.name.clone());
                self.multi.insert(shown, bar)
            });
            bar.set_length(total);
            bar.set_position(finished);
            bar.set_message(message);
        }
    }
}

/// What the live view knows of the run, updated on every event.
struct Board {
    groups: Vec<GroupView>,
    index: HashMap<String, usize>,
    /// The spinner's text: what the plan is doing.
    plan_status: String,
    plan_dirty: bool,
    /// The modelled time of the latest event.
    at: Option<Timestamp>,
    /// How to approve a manual step, once the run is named.
    approve: Option<String>,
    bar_template: String,
}

impl Board {
    fn new(groups: &[(String, Vec<String>)]) -> Board {
        let views: Vec<GroupView> = groups.iter().map(|(name, vms)| GroupView::new(name, vms)).collect();
        let index = views.iter().enumerate().map(|(i, g)| (g.name.clone(), i)).collect();
        // In terminal columns, as indicatif pads `{prefix}`: a CJK character takes two.
        let name_width = views.iter().map(|g| console::measure_text_width(&g.name)).max().unwrap_or(0).clamp(4, 24);
        let count_width = views.iter().map(|g| g.total().to_string().len()).max().unwrap_or(1);
        let bar_template = format!(
            "  {{prefix:<{name_width}}} [{{bar:30.cyan/blue}}] {{pos:>{count_width}}}/{{len:<{count_width}}}  {{wide_msg}}"
        );
        Board {
            groups: views,
            index,
            plan_status: "starting".into(),
            plan_dirty: true,
            at: None,
            approve: None,
            bar_template,
        }
    }

    /// The line printed above the bars for `event`: a manual step says how to approve it.
    fn above(&self, event: &Event) -> String {
        let mut text = line(event);
        approve_hint(&mut text, event, self.approve.as_deref());
        text
    }

    /// Takes an event in; returns the line to print above the bars, if any.
    fn apply(&mut self, event: &Event) -> Option<String> {
        use EventKind::*;
        self.at = Some(event.at);
        self.plan_dirty = true;
        let above = matches!(
            event.kind,
            VmFailed
                | VmRetried
                | ActionFailed
                | ActionRetried
                | HookFailed
                | GroupFailed
                | RunFailed
                | RunCancelled
                | Log
        ) || (event.kind == ManualWaiting && event.vm.is_none());
        let step = event.step.as_deref().unwrap_or("");
        let Some(group) = &event.group else {
            // The plan's own steps, and the run's start and end.
            match event.kind {
                RunStarted | ActionSucceeded | ManualDone => self.plan_status = "running".into(),
                RunResumed => self.plan_status = "resumed".into(),
                ActionStarted => self.plan_status = step.to_string(),
                ActionRetried => self.plan_status = format!("retrying: {step}"),
                ActionFailed => self.plan_status = format!("failed: {step}"),
                ManualWaiting => self.plan_status = manual_status(step, self.approve.as_deref()),
                RunSucceeded => self.plan_status = "succeeded".into(),
                RunFailed => self.plan_status = "FAILED".into(),
                RunCancelled => self.plan_status = "cancelled".into(),
                _ => {}
            }
            return above.then(|| self.above(event));
        };
        let Some(&index) = self.index.get(group.as_str()) else {
            // Not a group of the plan: shown as it is.
            return Some(line(event));
        };
        if event.kind == GroupStarted {
            self.plan_status = format!("group {group} ({} of {})", index + 1, self.groups.len());
        }
        self.groups[index].apply(event);
        above.then(|| self.above(event))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Between steps: "waiting" before any VM started, the counts after.
    Idle,
    Pre(String),
    Post(String),
    Manual(String),
    Done,
    Failed(String),
}

struct GroupView {
    name: String,
    /// Where each VM stands.
    vms: HashMap<String, Status>,
    counts: VmCounts,
    phase: Phase,
    started: bool,
    /// Any event seen: the group has a bar.
    seen: bool,
    dirty: bool,
    bar: Option<ProgressBar>,
}

impl GroupView {
    fn new(name: &str, vms: &[String]) -> GroupView {
        let vms: HashMap<String, Status> = vms.iter().map(|vm| (vm.clone(), Status::Waiting)).collect();
        let counts = VmCounts { waiting: vms.len() as u64, ..VmCounts::default() };
        GroupView {
            name: name.into(),
            vms,
            counts,
            phase: Phase::Idle,
            started: false,
            seen: false,
            dirty: false,
            bar: None,
        }
    }

    fn total(&self) -> u64 {
        self.counts.total()
    }

    fn finished(&self) -> u64 {
        self.counts.finished()
    }

    /// Moves a VM to `status`, whatever it was (a VM up can still fail in its post
    /// actions); a VM the plan did not list joins the group.
    fn mark(&mut self, vm: &str, status: Status) {
        let old = match self.vms.get_mut(vm) {
            Some(slot) => std::mem::replace(slot, status),
            None => {
                self.vms.insert(vm.to_string(), status);
                *self.counts.at(status) += 1;
                return;
            }
        };
        *self.counts.at(old) -= 1;
        *self.counts.at(status) += 1;
    }

    fn apply(&mut self, event: &Event) {
        use EventKind::*;
        self.seen = true;
        self.dirty = true;
        let step = || event.step.clone().unwrap_or_default();
        if let Some(vm) = &event.vm {
            match event.kind {
                VmStarted | VmAttempt => self.mark(vm, Status::Running),
                VmSucceeded => self.mark(vm, Status::Succeeded),
                VmFailed => self.mark(vm, Status::Failed),
                VmSkipped => self.mark(vm, Status::Skipped),
                _ => {}
            }
            return;
        }
        match event.kind {
            GroupStarted => {
                self.started = true;
                self.phase = Phase::Idle;
            }
            ActionStarted | ActionRetried if self.vms_started() == 0 => self.phase = Phase::Pre(step()),
            ActionStarted | ActionRetried => self.phase = Phase::Post(step()),
            ActionSucceeded | ActionFailed | ManualDone => self.phase = Phase::Idle,
            ManualWaiting => self.phase = Phase::Manual(step()),
            GroupSucceeded => self.phase = Phase::Done,
            GroupFailed => {
                let detail = event.detail.as_deref().unwrap_or("");
                self.phase = Phase::Failed(detail.strip_prefix("failed: ").unwrap_or(detail).to_string());
            }
            _ => {}
        }
    }

    fn vms_started(&self) -> u64 {
        self.counts.started()
    }

    fn counts_text(&self) -> String {
        let mut text = format!("{}/{} up", self.counts.succeeded, self.total());
        for (n, what) in [(self.counts.failed, "failed"), (self.counts.skipped, "skipped")] {
            if n > 0 {
                let _ = write!(text, ", {n} {what}");
            }
        }
        text
    }

    fn message(&self, approve: Option<&str>) -> String {
        match &self.phase {
            Phase::Idle if !self.started && self.counts.skipped > 0 => "skipped".into(),
            Phase::Idle if self.vms_started() == 0 => "waiting".into(),
            Phase::Idle => self.counts_text(),
            Phase::Pre(step) => format!("pre-steps: {step}"),
            Phase::Post(step) => format!("{}; post-steps: {step}", self.counts_text()),
            Phase::Manual(text) => manual_status(text, approve),
            Phase::Done if self.counts.succeeded == self.total() => "done".into(),
            Phase::Done => format!("done: {}", self.counts_text()),
            Phase::Failed(detail) => format!("failed: {detail}"),
        }
    }
}

#[cfg(test)]
mod tests;
