//! A run as a Gantt chart: a standalone SVG document (no scripts, no external resources)
//! that a person opens in a browser. One row per group, then a row per manual wait and per
//! VM of that group, on an axis of (modelled) time from the run's start, with the RTO
//! target and the run's end marked. Hovering a bar shows its times and detail.
//!
//! Everything named comes from user files, so all text is escaped. The same report gives
//! the same bytes. Plans of thousands of VMs stay fast: the document is written into one
//! buffer, and past `MAX_VM_ROWS` VM rows only the groups are drawn.
//!
//! One file on purpose: one chart is one concept. Its rows, axis, markers and legend share
//! one layout (`Chart`: the label column, the time scale, the row positions), so apart
//! they would pass that layout around rather than be simpler. Escaping and cutting text
//! are in `report/text.rs`, plurals in `model/names.rs`.

use std::fmt::{self, Write};
use std::time::Duration;

use super::outcome::{Status, VmCounts};
use super::run::{RtoVerdict, RunReport, Span};
use super::text::{Esc, Trunc};
use crate::engine::{Event, EventKind, RunStatus};
use crate::model::names::{Count, Thousands};
use crate::model::{HumanDuration, Timestamp, format_time};

/// More VM rows than this and only the group rows are drawn.
pub const MAX_VM_ROWS: usize = 2000;

const WIDTH: f64 = 1100.0;
const PAD: f64 = 12.0;
const ROW: f64 = 20.0;
const INDENT: f64 = 16.0;
const LABEL_MIN: f64 = 120.0;
const LABEL_MAX: f64 = 300.0;
/// Room right of the axis for half a tick label.
const RIGHT: f64 = 34.0;
/// Average advance of a character, for laying out text without measuring it.
const CHAR_W: f64 = 6.6;
const BOLD_W: f64 = 7.3;
const SMALL_W: f64 = 6.0;
const MANUAL_LABEL_CHARS: usize = 40;
const DETAIL_LABEL_CHARS: usize = 60;

const TITLE_Y: f64 = 26.0;
const VERDICT_Y: f64 = 46.0;
const INFO_Y: f64 = 64.0;
const LEGEND_Y: f64 = 86.0;
const LANE_Y: [f64; 2] = [108.0, 122.0];
const AXIS_Y: f64 = 140.0;
const CHART_TOP: f64 = 148.0;

const GREEN: &str = "#2f9e44";
const RED: &str = "#e03131";
const GREY: &str = "#adb5bd";
const AMBER: &str = "#f59f00";
const MANUAL: &str = "#6741d9";
const TARGET: &str = "#c92a2a";
const FINISH: &str = "#1971c2";

const STYLE: &str = "text{font-family:sans-serif;font-size:12px;fill:#212529;\
stroke:#fff;stroke-width:3px;stroke-linejoin:round;paint-order:stroke}\
.h{font-size:16px;font-weight:bold}.v{font-size:13px}.s{font-size:11px;fill:#495057}\
.g{font-weight:bold}.m{font-style:italic;fill:#5f3dc4}.ax{font-size:11px;fill:#495057;text-anchor:middle}";

/// Writes into a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

pub fn gantt(report: &RunReport) -> String {
    let waits = manual_waits(report);
    Chart::new(report, &waits).render()
}

fn status_colour(status: Status) -> &'static str {
    match status {
        Status::Succeeded => GREEN,
        Status::Failed => RED,
        Status::Skipped => GREY,
        Status::Waiting | Status::Running | Status::Interrupted => AMBER,
    }
}

fn offset(start: Timestamp, at: Timestamp) -> Duration {
    (at - start).to_std().unwrap_or_default()
}

/// A manual step's wait, from its `manual.waiting` event to its `manual.done`.
struct Wait<'a> {
    waiting: &'a Event,
    start: Duration,
    end: Duration,
    ended: WaitEnd<'a>,
}

enum WaitEnd<'a> {
    Done,
    Failed(Option<&'a str>),
    /// Still waiting when the run stopped.
    Open,
}

fn same_step(a: &Event, b: &Event) -> bool {
    a.step == b.step && a.group == b.group && a.vm == b.vm
}

fn manual_waits(report: &RunReport) -> Vec<Wait<'_>> {
    let mut waits: Vec<Wait> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for event in &report.steps {
        let at = || offset(report.started, event.at);
        match event.kind {
            EventKind::ManualWaiting => {
                open.push(waits.len());
                waits.push(Wait { waiting: event, start: at(), end: at(), ended: WaitEnd::Open });
            }
            // A real run's manual step that timed out ends with the step's action.failed.
            EventKind::ManualDone | EventKind::ActionFailed => {
                let Some(pos) = open.iter().rposition(|&i| same_step(waits[i].waiting, event)) else { continue };
                let wait = &mut waits[open.remove(pos)];
                wait.end = at().max(wait.start);
                wait.ended = match event.kind {
                    EventKind::ManualDone => WaitEnd::Done,
                    _ => WaitEnd::Failed(event.detail.as_deref()),
                };
            }
            // A stopped run stops waiting; a resumed one waits anew.
            EventKind::RunSucceeded | EventKind::RunFailed | EventKind::RunCancelled => {
                for i in open.drain(..) {
                    waits[i].end = at().max(waits[i].start);
                }
            }
            _ => {}
        }
    }
    for i in open {
        waits[i].end = report.rto.max(waits[i].start);
    }
    waits
}

struct Chart<'a> {
    report: &'a RunReport,
    /// Manual waits under each group, by index in `report.groups`.
    group_waits: Vec<Vec<&'a Wait<'a>>>,
    /// Plan-level manual waits, drawn before the first group or after the last.
    waits_before: Vec<&'a Wait<'a>>,
    waits_after: Vec<&'a Wait<'a>>,
    vm_count: usize,
    folded: bool,
    rows: usize,
    /// Left edge and right edge of the plot.
    x0: f64,
    x1: f64,
    group_chars: usize,
    vm_chars: usize,
    step_ms: u64,
    ticks: u64,
    axis_ms: u64,
    chart_bottom: f64,
    height: f64,
}

impl<'a> Chart<'a> {
    fn new(report: &'a RunReport, waits: &'a [Wait<'a>]) -> Chart<'a> {
        let groups = &report.groups;
        let first_start = groups.iter().map(|g| g.span.start).min();
        let mut group_waits: Vec<Vec<&Wait>> = vec![Vec::new(); groups.len()];
        let (mut waits_before, mut waits_after) = (Vec::new(), Vec::new());
        for wait in waits {
            let index = wait.waiting.group.as_deref().and_then(|name| {
                groups
                    .iter()
                    .rposition(|g| g.span.name == name && g.span.start <= wait.start)
                    .or_else(|| groups.iter().position(|g| g.span.name == name))
            });
            match index {
                Some(i) => group_waits[i].push(wait),
                None if first_start.is_none_or(|s| wait.start <= s) => waits_before.push(wait),
                None => waits_after.push(wait),
            }
        }

        let vm_count: usize = groups.iter().map(|g| g.vms.len()).sum();
        let folded = vm_count > MAX_VM_ROWS;
        let rows = groups.len() + waits.len() + if folded { 0 } else { vm_count };

        // The label column fits the longest label, within bounds.
        let mut label_px = INDENT + "manual step".len() as f64 * CHAR_W;
        for group in groups {
            label_px = label_px.max(group.span.name.chars().count() as f64 * BOLD_W);
            if !folded {
                for vm in &group.vms {
                    label_px = label_px.max(INDENT + vm.name.chars().count() as f64 * CHAR_W);
                }
            }
        }
        let x0 = (PAD + label_px + 2.0 * PAD).clamp(LABEL_MIN, LABEL_MAX).round();
        let room = x0 - 2.0 * PAD;
        let group_chars = (room / BOLD_W).floor() as usize;
        let vm_chars = ((room - INDENT) / CHAR_W).floor() as usize;

        let mut end = report.rto.max(report.header.rto_target.unwrap_or_default());
        for group in groups {
            end = end.max(group.span.end);
            for vm in &group.vms {
                end = end.max(vm.end);
            }
        }
        for wait in waits {
            end = end.max(wait.end);
        }
        let (step_ms, ticks) = tick_step(end.as_millis() as u64);

        let chart_bottom = CHART_TOP + rows as f64 * ROW;
        let notes = usize::from(folded) + usize::from(groups.is_empty());
        let mut height = chart_bottom + 12.0;
        if rows > 25 {
            height += 16.0;
        }
        height += notes as f64 * 18.0;
        Chart {
            report,
            group_waits,
            waits_before,
            waits_after,
            vm_count,
            folded,
            rows,
            x0,
            x1: WIDTH - RIGHT,
            group_chars,
            vm_chars,
            step_ms,
            ticks,
            axis_ms: step_ms * ticks,
            chart_bottom,
            height: height.ceil(),
        }
    }

    fn x(&self, d: Duration) -> f64 {
        let ms = (d.as_millis() as u64).min(self.axis_ms);
        self.x0 + (self.x1 - self.x0) * ms as f64 / self.axis_ms as f64
    }

    /// Where text of `chars` characters goes beside a bar from `left` to `right`: after it, else
    /// before it, else on the roomier side cut to fit, else over the bar's end. Returns
    /// the position, the anchor and how many characters fit.
    fn beside(&self, left: f64, right: f64, chars: usize, char_w: f64) -> (f64, &'static str, usize) {
        let (after, before) = (WIDTH - 8.0 - right, left - 4.0 - self.x0);
        let w = chars as f64 * char_w;
        if w <= after {
            return (right + 4.0, "start", chars);
        }
        if w <= before {
            return (left - 4.0, "end", chars);
        }
        let (x, anchor, room) =
            if after >= before { (right + 4.0, "start", after) } else { (left - 4.0, "end", before) };
        let fit = (room / char_w).floor() as usize;
        if fit >= 12 {
            return (x, anchor, fit);
        }
        (right - 4.0, "end", chars.min(((right - 4.0 - self.x0) / char_w).floor() as usize))
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(8192 + self.rows * 420);
        w!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\">\n\
             <style>{STYLE}</style>\n\
             <defs><pattern id=\"hatch\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" \
             patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#e5dbff\"/>\
             <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"{MANUAL}\" stroke-width=\"2.5\"/></pattern></defs>\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n",
            h = self.height
        );
        self.header(&mut out);
        // Under the grid and the markers: the shading of the group rows.
        let mut y = CHART_TOP + self.waits_before.len() as f64 * ROW;
        for (index, group) in self.report.groups.iter().enumerate() {
            w!(out, "<rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{ROW}\" fill=\"#f1f3f5\"/>");
            let vms = if self.folded { 0 } else { group.vms.len() };
            y += (1 + self.group_waits[index].len() + vms) as f64 * ROW;
        }
        out.push('\n');
        self.grid(&mut out);
        self.markers(&mut out);
        self.axis_labels(&mut out, AXIS_Y);
        let mut y = CHART_TOP;
        for wait in &self.waits_before {
            self.wait_row(&mut out, wait, y, false);
            y += ROW;
        }
        for (index, group) in self.report.groups.iter().enumerate() {
            self.group_row(&mut out, index, y);
            y += ROW;
            for wait in &self.group_waits[index] {
                self.wait_row(&mut out, wait, y, true);
                y += ROW;
            }
            if !self.folded {
                for vm in &group.vms {
                    self.vm_row(&mut out, vm, y);
                    y += ROW;
                }
            }
        }
        for wait in &self.waits_after {
            self.wait_row(&mut out, wait, y, false);
            y += ROW;
        }
        self.footer(&mut out);
        out.push_str("</svg>\n");
        out
    }

    fn header(&self, out: &mut String) {
        let r = self.report;
        let h = &r.header;
        let (from, to) = h.direction();
        w!(
            out,
            "<text class=\"h\" x=\"{PAD}\" y=\"{TITLE_Y}\">{}: {} {} \u{2192} {}{}",
            Esc(&h.plan),
            h.what(),
            Esc(from),
            Esc(to),
            if h.dry_run { " (dry run)" } else { "" }
        );
        let (status, colour) = match r.status {
            RunStatus::Succeeded => ("succeeded", GREEN),
            RunStatus::Failed => ("FAILED", RED),
            RunStatus::Cancelled => ("CANCELLED", RED),
            RunStatus::Running => ("RUNNING", AMBER),
            RunStatus::Interrupted => ("INTERRUPTED", AMBER),
        };
        w!(out, " \u{2014} <tspan fill=\"{colour}\">{status}</tspan></text>\n");

        let which = if h.dry_run { "Predicted RTO" } else { "RTO" };
        w!(
            out,
            "<text class=\"v\" x=\"{PAD}\" y=\"{VERDICT_Y}\">{which} <tspan font-weight=\"bold\">{}</tspan>",
            HumanDuration(r.rto)
        );
        let colour = match r.verdict() {
            RtoVerdict::Met { .. } => GREEN,
            RtoVerdict::NoTarget => "inherit",
            _ => RED,
        };
        w!(out, ", <tspan fill=\"{colour}\" font-weight=\"bold\">{}</tspan>", Esc(&r.verdict().to_string()));
        out.push_str("</text>\n");

        let time = if h.dry_run { "modelled time" } else { "time" };
        w!(
            out,
            "<text class=\"s\" x=\"{PAD}\" y=\"{INFO_Y}\">run {}, recovery point {}; {time} from {}, {}, {}</text>\n",
            Esc(&r.run_id),
            Esc(&h.point.to_string()),
            format_time(r.started),
            Count::numbered("group", r.groups.len()),
            Count::numbered("VM", self.vm_count),
        );

        // The legend.
        let mut x = PAD;
        for (label, fill) in [
            ("succeeded", GREEN),
            ("failed", RED),
            ("skipped", GREY),
            ("running", AMBER),
            ("manual wait", "url(#hatch)"),
        ] {
            w!(
                out,
                "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{fill}\"/><text class=\"s\" x=\"{}\" y=\"{LEGEND_Y}\">{label}</text>\n",
                LEGEND_Y - 9.0,
                x + 19.0
            );
            x += 19.0 + label.len() as f64 * SMALL_W + 16.0;
        }
        for (label, colour, dash) in [("RTO target", TARGET, "6 4"), ("end of run", FINISH, "2 3")] {
            w!(
                out,
                "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\
                 <text class=\"s\" x=\"{}\" y=\"{LEGEND_Y}\">{label}</text>\n",
                x + 18.0,
                x + 23.0,
                y = LEGEND_Y - 4.0
            );
            x += 23.0 + label.len() as f64 * SMALL_W + 16.0;
        }
    }

    fn axis_labels(&self, out: &mut String, y: f64) {
        for k in 0..=self.ticks {
            let at = Duration::from_millis(k * self.step_ms);
            w!(out, "<text class=\"ax\" x=\"{:.1}\" y=\"{y}\">+{}</text>", self.x(at), HumanDuration(at));
        }
        out.push('\n');
    }

    fn grid(&self, out: &mut String) {
        for k in 0..=self.ticks {
            let x = self.x(Duration::from_millis(k * self.step_ms));
            w!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{}\"/>",
                CHART_TOP - 4.0,
                self.chart_bottom,
                if k == 0 { "#868e96" } else { "#dee2e6" }
            );
        }
        w!(out, "<line x1=\"0\" y1=\"{CHART_TOP}\" x2=\"{WIDTH}\" y2=\"{CHART_TOP}\" stroke=\"#868e96\"/>\n");
    }

    fn group_row(&self, out: &mut String, index: usize, y: f64) {
        let group = &self.report.groups[index];
        let span = &group.span;
        let (left, right) = (self.x(span.start), self.x(span.end));
        w!(out, "<text class=\"g\" x=\"{PAD}\" y=\"{}\">{}</text>", y + 14.0, Trunc(&span.name, self.group_chars));
        w!(
            out,
            "<rect x=\"{left:.1}\" y=\"{}\" width=\"{:.1}\" height=\"14\" fill=\"{}\" stroke=\"#343a40\" stroke-width=\"0.6\">\
             <title>group {}: {}\n{}",
            y + 3.0,
            (right - left).max(2.0),
            status_colour(span.status),
            Esc(&span.name),
            span.status,
            Times(span)
        );
        let counts = VmCounts::of(group.vms.iter().map(|vm| vm.status));
        w!(out, "\n{}", Count::numbered("VM", group.vms.len()));
        let mut first = true;
        for (n, status) in [
            (counts.succeeded, Status::Succeeded),
            (counts.failed, Status::Failed),
            (counts.skipped, Status::Skipped),
            (counts.running, Status::Running),
            (counts.interrupted, Status::Interrupted),
        ] {
            if n > 0 {
                w!(out, "{} {} {status}", if first { ":" } else { "," }, Thousands(n));
                first = false;
            }
        }
        if self.folded && counts.failed > 0 {
            out.push_str("\nfailed:");
            for vm in group.vms.iter().filter(|v| v.status == Status::Failed).take(5) {
                w!(out, " {}", Esc(&vm.name));
            }
            if counts.failed > 5 {
                w!(out, " and {} more", Thousands(counts.failed - 5));
            }
        }
        if let Some(detail) = &span.detail {
            w!(out, "\n{}", Esc(detail));
        }
        out.push_str("</title></rect>");

        // Beside the bar: how long it took; when folded, what became of its VMs.
        let took = rounded(span.end.saturating_sub(span.start));
        let mut chars = took.to_string().len();
        if self.folded {
            chars += 24;
        }
        let (tx, anchor, _) = self.beside(left, right, chars, SMALL_W);
        w!(out, "<text class=\"s\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{took}", y + 14.0);
        if self.folded {
            w!(out, " \u{b7} {}", Count::numbered("VM", group.vms.len()));
            if counts.failed > 0 {
                w!(out, ", <tspan fill=\"{RED}\">{} failed</tspan>", Thousands(counts.failed));
            }
            if counts.skipped > 0 {
                w!(out, ", {} skipped", Thousands(counts.skipped));
            }
        }
        out.push_str("</text>\n");
    }

    fn vm_row(&self, out: &mut String, vm: &Span, y: f64) {
        let (left, right) = (self.x(vm.start), self.x(vm.end));
        let colour = status_colour(vm.status);
        w!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text><rect x=\"{left:.1}\" y=\"{}\" width=\"{:.1}\" height=\"10\" fill=\"{colour}\">\
             <title>{}: {}\n{}",
            PAD + INDENT,
            y + 14.0,
            Trunc(&vm.name, self.vm_chars),
            y + 5.0,
            (right - left).max(2.0),
            Esc(&vm.name),
            vm.status,
            Times(vm)
        );
        if let Some(detail) = &vm.detail {
            w!(out, "\n{}", Esc(detail));
        }
        out.push_str("</title></rect>");
        let took = rounded(vm.end.saturating_sub(vm.start));
        match (vm.status, &vm.detail) {
            (Status::Failed, Some(detail)) => {
                let chars = detail.chars().count().min(DETAIL_LABEL_CHARS) + 8;
                let (tx, anchor, fit) = self.beside(left, right, chars, SMALL_W);
                w!(
                    out,
                    "<text class=\"s\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\" style=\"fill:{RED}\">failed: {}</text>\n",
                    y + 14.0,
                    Trunc(detail, fit.saturating_sub(8).clamp(4, DETAIL_LABEL_CHARS))
                );
            }
            (Status::Succeeded, _) => {
                let (tx, anchor, _) = self.beside(left, right, took.to_string().len(), SMALL_W);
                w!(out, "<text class=\"s\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{took}</text>\n", y + 14.0);
            }
            (status, _) => {
                let status = status.name();
                let (tx, anchor, _) = self.beside(left, right, status.chars().count().min(20), SMALL_W);
                w!(
                    out,
                    "<text class=\"s\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>\n",
                    y + 14.0,
                    Trunc(status, 20)
                );
            }
        }
    }

    fn wait_row(&self, out: &mut String, wait: &Wait, y: f64, in_group: bool) {
        let e = wait.waiting;
        let step = e.step.as_deref().unwrap_or("manual step");
        let (left, right) = (self.x(wait.start), self.x(wait.end));
        let label = if in_group { "manual step" } else { "plan manual step" };
        let lx = if in_group { PAD + INDENT } else { PAD };
        w!(out, "<text class=\"m\" x=\"{lx}\" y=\"{}\">{label}</text>", y + 14.0);
        w!(
            out,
            "<rect x=\"{left:.1}\" y=\"{}\" width=\"{:.1}\" height=\"14\" fill=\"url(#hatch)\" stroke=\"{MANUAL}\">\
             <title>manual step{}{}: {}\n+{} \u{2192} +{}, waited {}",
            y + 3.0,
            (right - left).max(3.0),
            if e.vm.is_some() { " for " } else { "" },
            Esc(e.vm.as_deref().unwrap_or("")),
            Esc(step),
            HumanDuration(wait.start),
            HumanDuration(wait.end),
            HumanDuration(wait.end.saturating_sub(wait.start))
        );
        if let Some(detail) = &e.detail {
            w!(out, "\n{}", Esc(detail));
        }
        match wait.ended {
            WaitEnd::Done => out.push_str("\nmarked done"),
            WaitEnd::Failed(detail) => {
                w!(out, "\nnot done: {}", Esc(detail.unwrap_or("failed")));
            }
            WaitEnd::Open => out.push_str("\nstill waiting when the run stopped"),
        }
        out.push_str("</title></rect>");
        let step_chars = step.chars().count().min(MANUAL_LABEL_CHARS);
        let vm_chars = e.vm.as_ref().map_or(0, |vm| vm.chars().count().min(20) + 2);
        let suffix = match wait.ended {
            WaitEnd::Done => 0,
            WaitEnd::Failed(_) => " (not done)".len(),
            WaitEnd::Open => " (still waiting)".len(),
        };
        let (tx, anchor, fit) = self.beside(left, right, vm_chars + step_chars + suffix, CHAR_W);
        w!(out, "<text class=\"m\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\">", y + 14.0);
        if let Some(vm) = &e.vm {
            w!(out, "{}: ", Trunc(vm, 20));
        }
        w!(out, "{}", Trunc(step, fit.saturating_sub(vm_chars + suffix).clamp(8, MANUAL_LABEL_CHARS)));
        match wait.ended {
            WaitEnd::Done => {}
            WaitEnd::Failed(_) => w!(out, " <tspan fill=\"{RED}\">(not done)</tspan>"),
            WaitEnd::Open => out.push_str(" (still waiting)"),
        }
        out.push_str("</text>\n");
    }

    /// The RTO target and the end of the run: vertical lines across the rows, labelled
    /// above the axis (with a gap for the tick labels), on a second lane when the labels
    /// would overlap.
    fn markers(&self, out: &mut String) {
        let r = self.report;
        let mut taken: Option<(f64, f64)> = None;
        let mut marker = |out: &mut String, at: Duration, colour: &str, dash: &str, label: fmt::Arguments| {
            let label = label.to_string();
            let x = self.x(at);
            let w = label.len() as f64 * SMALL_W;
            let (tx, anchor, span) = if x + 4.0 + w <= WIDTH - 4.0 {
                (x + 4.0, "start", (x, x + 4.0 + w))
            } else {
                (x - 4.0, "end", (x - 4.0 - w, x))
            };
            let lane = match taken {
                Some((left, right)) if span.0 < right + 8.0 && left < span.1 + 8.0 => 1,
                _ => 0,
            };
            taken = Some(span);
            let ly = LANE_Y[lane];
            w!(
                out,
                "<path d=\"M{x:.1} {}V{}M{x:.1} {}V{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\
                 <text class=\"s\" x=\"{tx:.1}\" y=\"{ly}\" text-anchor=\"{anchor}\" style=\"fill:{colour}\">{}</text>\n",
                ly - 10.0,
                AXIS_Y - 13.0,
                CHART_TOP - 4.0,
                self.chart_bottom,
                Esc(&label)
            );
        };
        if let Some(target) = r.header.rto_target {
            marker(out, target, TARGET, "6 4", format_args!("RTO target {}", HumanDuration(target)));
        }
        let which = if r.header.dry_run { "predicted RTO" } else { "RTO" };
        marker(out, r.rto, FINISH, "2 3", format_args!("{which} {}", HumanDuration(r.rto)));
    }

    fn footer(&self, out: &mut String) {
        let mut y = self.chart_bottom;
        if self.rows > 25 {
            y += 16.0;
            self.axis_labels(out, y);
        }
        if self.report.groups.is_empty() {
            y += 18.0;
            w!(out, "<text class=\"s\" x=\"{PAD}\" y=\"{y}\">No group ran.</text>\n");
        }
        if self.folded {
            y += 18.0;
            w!(
                out,
                "<text class=\"s\" x=\"{PAD}\" y=\"{y}\">{} VM rows folded into their groups (more than {} to draw): \
                 hover a group's bar for its VMs; the text or JSON report lists each VM.</text>\n",
                Thousands(self.vm_count as u64),
                Thousands(MAX_VM_ROWS as u64)
            );
        }
    }
}

/// Picks a tick step among round durations giving at most 12 intervals over `max_ms`.
/// Returns the step and the number of intervals; the axis ends at their product.
fn tick_step(max_ms: u64) -> (u64, u64) {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let max = max_ms.max(1);
    for step in [S, 5 * S, 10 * S, 30 * S, M, 2 * M, 5 * M, 10 * M, 15 * M, 30 * M, H, 2 * H, 3 * H, 6 * H, 12 * H, D] {
        let n = max.div_ceil(step);
        if n <= 12 {
            return (step, n);
        }
    }
    let step = max.div_ceil(12 * D) * D;
    (step, max.div_ceil(step))
}

/// A duration for a label beside a bar: to the second from ten seconds up (the tooltip
/// has it to the millisecond).
fn rounded(d: Duration) -> HumanDuration {
    if d < Duration::from_secs(10) {
        HumanDuration(d)
    } else {
        HumanDuration(Duration::from_secs((d.as_millis() as u64 + 500) / 1000))
    }
}

/// `+start → +end, took duration`.
struct Times<'a>(&'a Span);

impl fmt::Display for Times<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "+{} \u{2192} +{}, took {}",
            HumanDuration(s.start),
            HumanDuration(s.end),
            HumanDuration(s.end.saturating_sub(s.start))
        )
    }
}

#[cfg(test)]
mod tests;
