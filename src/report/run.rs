//! The report of a run or a dry run: the ordered steps, the timeline of every group and
//! VM, and the RTO achieved (or predicted) against the plan's target. Built from the
//! run's events alone, so a journal replay gives the same report as the live run.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::outcome::Status;
use super::table::{self, keep, wrap};
use crate::engine::{Event, EventKind, RunOutcome, RunStatus};
use crate::fabric::FailoverOutcome;
use crate::model::{FailoverKind, HumanDuration, PointChoice, Timestamp, format_time};

/// What the run was asked to do, for the report's header.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunHeader {
    pub plan: String,
    pub source: String,
    pub target: String,
    pub kind: FailoverKind,
    pub point: PointChoice,
    pub dry_run: bool,
    #[serde(with = "millis_opt")]
    pub rto_target: Option<Duration>,
    /// A dry run of real sites: where its durations come from (measured or estimated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<String>,
    /// R37: a failback, a planned failover from the plan's `target` back to its `source`
    /// (then commit and reprotect). `source` and `target` stay the plan's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failback: bool,
}

impl RunHeader {
    /// What the run does, in words: "planned failover", "failback".
    pub fn what(&self) -> String {
        if self.failback { "failback".into() } else { format!("{} failover", self.kind) }
    }

    /// The sites the run moves the VMs from and to: a failback goes from the plan's
    /// target back to its source.
    pub fn direction(&self) -> (&str, &str) {
        if self.failback { (&self.target, &self.source) } else { (&self.source, &self.target) }
    }
}

/// A span on the timeline, as offsets from the run's start.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Span {
    pub name: String,
    #[serde(rename = "start_ms")]
    #[serde(with = "millis")]
    pub start: Duration,
    #[serde(rename = "end_ms")]
    #[serde(with = "millis")]
    pub end: Duration,
    pub status: Status,
    /// Where a VM landed, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A VM's recovery point (R33).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<Timestamp>,
    /// The changes lost with that point: the data-loss window, i.e. the RPO achieved (R32).
    #[serde(rename = "data_loss_ms", skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub data_loss: Option<Duration>,
    /// R32: the source was not shut down and may still be taking writes: the loss is
    /// everything since the point, with no end (and `data_loss` only its least).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub data_loss_open_ended: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupTimeline {
    #[serde(flatten)]
    pub span: Span,
    pub vms: Vec<Span>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub header: RunHeader,
    pub run_id: String,
    pub status: RunStatus,
    pub started: Timestamp,
    pub finished: Timestamp,
    /// The run's duration from its first start, failed attempts included: the RTO
    /// achieved, or predicted by a dry run.
    #[serde(rename = "rto_ms")]
    #[serde(with = "millis")]
    pub rto: Duration,
    pub rto_met: Option<bool>,
    /// Each start of the run: the first, then each `drplan resume`.
    pub attempts: Vec<Attempt>,
    pub groups: Vec<GroupTimeline>,
    #[serde(serialize_with = "steps_laid_out")]
    pub steps: Vec<Event>,
    /// R30: the operator's notes from a drill's cleanup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One start of a run and how it ended, as offsets from the run's first start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    #[serde(rename = "start_ms")]
    #[serde(with = "millis")]
    pub start: Duration,
    #[serde(rename = "end_ms")]
    #[serde(with = "millis")]
    pub end: Duration,
    /// "succeeded", "failed", "cancelled"; "running" while under way, or "interrupted"
    /// when its process stopped before it ended.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The steps with each event's data (kept as compact JSON text) laid out like the rest of
/// the report.
fn steps_laid_out<S: serde::Serializer>(steps: &[Event], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Step<'a> {
        #[serde(flatten)]
        event: Cow<'a, Event>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    }
    serializer.collect_seq(steps.iter().map(|event| match &event.data {
        None => Step { event: Cow::Borrowed(event), data: None },
        Some(data) => Step { event: Cow::Owned(Event { data: None, ..event.clone() }), data: data.parse().ok() },
    }))
}

fn offset(start: Timestamp, at: Timestamp) -> Duration {
    (at - start).to_std().unwrap_or_default()
}

/// Each start of the run, from its events in the order they were published: a start or
/// resume opens one, the run's end closes it; one left open ended as the run's status says.
fn attempts(start: Timestamp, events: &[Event], status: RunStatus) -> Vec<Attempt> {
    let mut by_seq: Vec<&Event> = events.iter().collect();
    by_seq.sort_by_key(|e| e.seq);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut open = false;
    for event in by_seq {
        let at = offset(start, event.at);
        match event.kind {
            EventKind::RunStarted | EventKind::RunResumed => {
                if open && let Some(last) = attempts.last_mut() {
                    last.status = "interrupted".into();
                }
                attempts.push(Attempt { start: at, end: at, status: String::new(), detail: None });
                open = true;
            }
            kind if kind.ends_run() => {
                if let Some(last) = attempts.last_mut() {
                    last.end = last.end.max(at);
                    last.status = match kind {
                        EventKind::RunSucceeded => "succeeded",
                        EventKind::RunCancelled => "cancelled",
                        _ => "failed",
                    }
                    .into();
                    last.detail = event.detail.clone();
                }
                open = false;
            }
            _ => {
                if let Some(last) = attempts.last_mut().filter(|_| open) {
                    last.end = last.end.max(at);
                }
            }
        }
    }
    if open && let Some(last) = attempts.last_mut() {
        last.status = status.as_str().into();
    }
    attempts
}

impl RunReport {
    /// The report of a run from its events. A resumed run's groups and VMs are one span
    /// each, from their first event to their last, with their latest status.
    pub fn new(header: RunHeader, outcome: RunOutcome) -> RunReport {
        let start = outcome.started;
        let rto = offset(start, outcome.finished);
        let mut groups: Vec<GroupTimeline> = Vec::new();
        let mut group_spans: HashMap<&str, usize> = HashMap::new();
        let mut vm_spans: HashMap<(usize, &str), usize> = HashMap::new();
        for event in &outcome.events {
            let at = offset(start, event.at);
            let Some(group_name) = &event.group else { continue };
            let group_index = *group_spans.entry(group_name).or_insert_with(|| {
                let span =
                    Span { name: group_name.clone(), start: at, end: at, status: Status::Running, ..Span::default() };
                groups.push(GroupTimeline { span, vms: Vec::new() });
                groups.len() - 1
            });
            let group = &mut groups[group_index];
            group.span.start = group.span.start.min(at);
            group.span.end = group.span.end.max(at);
            match event.kind {
                EventKind::GroupStarted if group.span.status == Status::Failed => {
                    group.span.status = Status::Running;
                    group.span.detail = None;
                }
                EventKind::GroupSucceeded => group.span.status = Status::Succeeded,
                EventKind::GroupFailed => {
                    group.span.status = Status::Failed;
                    group.span.detail = event.detail.clone();
                }
                _ => {}
            }
            let Some(vm_name) = &event.vm else { continue };
            let vm_index = *vm_spans.entry((group_index, vm_name)).or_insert_with(|| {
                let span =
                    Span { name: vm_name.clone(), start: at, end: at, status: Status::Running, ..Span::default() };
                group.vms.push(span);
                group.vms.len() - 1
            });
            let vm = &mut group.vms[vm_index];
            vm.start = vm.start.min(at);
            vm.end = vm.end.max(at);
            match event.kind {
                EventKind::VmStarted if vm.status != Status::Succeeded => vm.status = Status::Running,
                EventKind::VmSucceeded => {
                    vm.status = Status::Succeeded;
                    vm.detail = event.detail.clone();
                    let outcome = event.data.as_ref().and_then(|d| d.parse::<FailoverOutcome>().ok());
                    if let Some(outcome) = outcome {
                        vm.point = Some(outcome.point.time);
                        vm.data_loss = Some(outcome.data_loss);
                        vm.data_loss_open_ended = outcome.source_may_run();
                    }
                }
                EventKind::VmFailed => {
                    vm.status = Status::Failed;
                    vm.detail = event.detail.clone();
                }
                EventKind::VmSkipped if vm.status != Status::Succeeded => vm.status = Status::Skipped,
                _ => {}
            }
        }
        // A run that is not under way leaves nothing running: what was is cut off.
        let live = outcome.status == RunStatus::Running;
        for group in &mut groups {
            if group.span.status == Status::Running
                && !group.vms.is_empty()
                && group.vms.iter().all(|v| v.status == Status::Skipped)
            {
                group.span.status = Status::Skipped;
            }
            for span in std::iter::once(&mut group.span).chain(group.vms.iter_mut()) {
                if span.status == Status::Running && !live {
                    span.status = Status::Interrupted;
                }
            }
        }
        RunReport {
            // A run that did not succeed recovered nothing: its RTO is not judged.
            rto_met: header.rto_target.filter(|_| outcome.status == RunStatus::Succeeded).map(|target| rto <= target),
            attempts: attempts(start, &outcome.events, outcome.status),
            header,
            run_id: outcome.run_id,
            status: outcome.status,
            started: outcome.started,
            finished: outcome.finished,
            rto,
            groups,
            steps: outcome.events,
            notes: Vec::new(),
        }
    }

    pub fn json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out).expect("reports serialize");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The report as JSON, written as it is made: a plan of 100,000 VMs makes hundreds of
    /// megabytes of it, which need not be held twice.
    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        out.write_all(b"\n")
    }

    pub fn human(&self, width: table::Width) -> String {
        let mut out = Vec::new();
        self.write_human(&mut out, width).expect("writing into memory");
        String::from_utf8(out).expect("the report is UTF-8")
    }

    /// The report for people, written a section at a time, as [`Self::write_json`].
    pub fn write_human(&self, out: &mut impl Write, width: table::Width) -> std::io::Result<()> {
        let h = &self.header;
        let what = if h.dry_run { "Dry run" } else { "Run" };
        let (from, to) = h.direction();
        writeln!(out, "{what} of plan {:?}: {} from {from} to {to}, recovery point {}", h.plan, h.what(), h.point)?;
        if h.dry_run {
            writeln!(out, "Nothing was changed: the fabric, DNS and the clock were simulated.")?;
        }
        if let Some(durations) = &h.durations {
            writeln!(out, "Durations: {durations}.")?;
        }
        writeln!(out, "\nSteps (modelled time from {}):", format_time(self.started))?;
        // Tables here are indented, which the width must leave room for.
        let width = width.less(INDENT.len());
        let rows: Vec<Vec<String>> = self.steps.iter().map(|e| step_row(self.started, e)).collect();
        let header = [keep("AT"), keep("EVENT"), keep("GROUP"), keep("VM"), wrap("STEP — DETAIL")];
        table::write(out, INDENT, &header, &rows, width)?;
        drop(rows);
        writeln!(out, "\nTimeline:")?;
        let mut rows = Vec::new();
        for group in &self.groups {
            rows.push(span_row(&group.span, ""));
            for vm in &group.vms {
                rows.push(span_row(vm, "  "));
            }
        }
        table::write(
            out,
            INDENT,
            &[keep("GROUP / VM"), keep("START"), keep("END"), keep("TOOK"), keep("STATUS"), wrap("DETAIL")],
            &rows,
            width,
        )?;
        if self.attempts.len() > 1 {
            writeln!(out, "\nAttempts (the RTO counts from the first):")?;
            let rows: Vec<Vec<String>> = self
                .attempts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let what = if i == 0 { "started" } else { "resumed" };
                    vec![
                        format!("{}", i + 1),
                        what.into(),
                        plus(a.start),
                        plus(a.end),
                        a.status.clone(),
                        a.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table::write(
                out,
                INDENT,
                &[keep("#"), keep(""), keep("FROM"), keep("TO"), keep("ENDED"), wrap("DETAIL")],
                &rows,
                width,
            )?;
        }
        let verdict = format!(" ({})", self.verdict());
        let which = if h.dry_run { "Predicted RTO" } else { "RTO" };
        let status = match self.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "was CANCELLED",
            RunStatus::Running => "is still RUNNING (so far)",
            RunStatus::Interrupted => "was INTERRUPTED: its process stopped; drplan resume goes on",
        };
        writeln!(
            out,
            "\n{which}: {} = {} ms{verdict}; the run {status}.",
            HumanDuration(self.rto),
            self.rto.as_millis()
        )?;
        for note in &self.notes {
            writeln!(out, "Notes: {note}")?;
        }
        Ok(())
    }
}

/// How a run's RTO compares with the plan's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtoVerdict {
    NoTarget,
    Met {
        target: Duration,
    },
    Missed {
        target: Duration,
        by: Duration,
    },
    /// The run did not succeed: nothing was recovered to time.
    NotReached {
        target: Duration,
    },
}

impl std::fmt::Display for RtoVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtoVerdict::NoTarget => f.write_str("the plan sets no RTO target"),
            RtoVerdict::Met { target } => write!(f, "target {}: met", HumanDuration(*target)),
            RtoVerdict::Missed { target, by } => {
                write!(f, "target {}: MISSED by {}", HumanDuration(*target), HumanDuration(*by))
            }
            RtoVerdict::NotReached { target } => {
                write!(f, "target {}: not reached, the run did not succeed", HumanDuration(*target))
            }
        }
    }
}

impl RunReport {
    pub fn verdict(&self) -> RtoVerdict {
        match (self.header.rto_target, self.rto_met) {
            (None, _) => RtoVerdict::NoTarget,
            (Some(target), Some(true)) => RtoVerdict::Met { target },
            (Some(target), Some(false)) => RtoVerdict::Missed { target, by: self.rto.saturating_sub(target) },
            (Some(target), None) => RtoVerdict::NotReached { target },
        }
    }
}

fn plus(d: Duration) -> String {
    format!("+{}", HumanDuration(d))
}

fn step_row(start: Timestamp, e: &Event) -> Vec<String> {
    vec![
        plus(offset(start, e.at)),
        e.kind.name().into(),
        e.group.clone().unwrap_or_default(),
        e.vm.clone().unwrap_or_default(),
        // Few events have both, so one column serves them and leaves room for the text.
        match (&e.step, &e.detail) {
            (Some(step), Some(detail)) => format!("{step} — {detail}"),
            (step, detail) => step.clone().or_else(|| detail.clone()).unwrap_or_default(),
        },
    ]
}

fn span_row(span: &Span, prefix: &str) -> Vec<String> {
    vec![
        format!("{prefix}{}", span.name),
        plus(span.start),
        plus(span.end),
        HumanDuration(span.end - span.start).to_string(),
        span.status.to_string(),
        span.detail.clone().unwrap_or_default(),
    ]
}

const INDENT: &str = "  ";

/// Durations as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod millis_opt {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(failback: bool) -> RunHeader {
        RunHeader {
            plan: "app".into(),
            source: "a".into(),
            target: "b".into(),
            kind: FailoverKind::Planned,
            point: PointChoice::Latest,
            dry_run: false,
            rto_target: None,
            durations: None,
            failback,
        }
    }

    #[test]
    fn r37_a_failback_is_named_so_and_goes_from_the_plans_target_home() {
        assert_eq!((header(false).what(), header(false).direction()), ("planned failover".into(), ("a", "b")));
        assert_eq!((header(true).what(), header(true).direction()), ("failback".into(), ("b", "a")));
    }

    #[test]
    fn a_header_journaled_before_it_carried_failback_reads_as_a_failover() {
        let mut stored = serde_json::to_value(header(false)).unwrap();
        assert!(stored.get("failback").is_none(), "left out when false: {stored}");
        stored.as_object_mut().unwrap().remove("failback");
        let read: RunHeader = serde_json::from_value(stored).unwrap();
        assert!(!read.failback);
    }
}
