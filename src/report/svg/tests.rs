use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};

use super::*;
use crate::engine::RunOutcome;
use crate::model::{FailoverKind, PointChoice};
use crate::report::run::{GroupTimeline, RunHeader};

const MANUAL_TEXT: &str = "Confirm the SQL listener is online and the databases are mounted";

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

fn header(plan: &str, dry_run: bool, rto_target: Option<Duration>) -> RunHeader {
    RunHeader {
        plan: plan.into(),
        source: "primary".into(),
        target: "secondary".into(),
        kind: FailoverKind::Planned,
        point: PointChoice::Latest,
        dry_run,
        rto_target,
        durations: None,
        failback: false,
    }
}

/// Builds a run's events in order.
#[derive(Default)]
struct Events(Vec<Event>);

impl Events {
    fn add(&mut self, ms: u64, kind: EventKind, group: &str, vm: &str, step: &str, detail: &str) -> &mut Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.0.push(Event {
            seq: self.0.len() as u64,
            at: t0() + TimeDelta::milliseconds(ms as i64),
            kind,
            group: some(group),
            vm: some(vm),
            step: some(step),
            detail: some(detail),
            key: None,
            data: None,
        });
        self
    }

    fn report(&self, header: RunHeader, status: RunStatus) -> RunReport {
        let outcome = RunOutcome {
            run_id: "run-1".into(),
            status,
            started: t0(),
            finished: self.0.last().map_or(t0(), |e| e.at),
            events: self.0.clone(),
        };
        RunReport::new(header, outcome)
    }
}

/// Two groups, three VMs (one failed, one skipped), one manual wait, a 30m target.
fn failed_run() -> RunReport {
    use EventKind::*;
    let mut e = Events::default();
    e.add(0, RunStarted, "", "", "crm", "")
        .add(0, GroupStarted, "database", "", "", "")
        .add(0, VmStarted, "database", "sql01", "", "")
        .add(0, VmStarted, "database", "sql02", "", "")
        .add(240_000, VmSucceeded, "database", "sql01", "", "10.2.1.10 on secondary/hv-s01")
        .add(300_000, VmFailed, "database", "sql02", "", "replica did not boot: <&> \"disk\" missing")
        .add(300_000, ManualWaiting, "database", "", MANUAL_TEXT, "timeout 30m, expected 5m")
        .add(600_000, ManualDone, "database", "", MANUAL_TEXT, "")
        .add(600_000, GroupFailed, "database", "", "", "1 of 2 VMs failed")
        .add(600_000, VmSkipped, "app", "app01", "", "")
        .add(600_000, RunFailed, "", "", "crm", "");
    e.report(header("crm & <billing>", false, Some(Duration::from_secs(1800))), RunStatus::Failed)
}

/// No target, a long name, a failure at the end of the axis, a plan-level manual step
/// and a per-VM one.
fn edge_cases() -> RunReport {
    use EventKind::*;
    let long = "a-very-long-virtual-machine-name-from-a-naming-scheme-nobody-likes-0001";
    let mut e = Events::default();
    e.add(0, RunStarted, "", "", "edge", "")
        .add(0, ManualWaiting, "", "", "Tell the service desk", "timeout 1h, expected 2m")
        .add(120_000, ManualDone, "", "", "Tell the service desk", "")
        .add(120_000, GroupStarted, "g", "", "", "")
        .add(120_000, VmStarted, "g", long, "", "")
        .add(120_000, VmStarted, "g", "b", "", "")
        .add(130_000, VmSucceeded, "g", "b", "", "10.0.0.2")
        .add(130_000, ManualWaiting, "g", "b", "Check the app on b", "timeout 10m, expected 1m")
        .add(190_000, ManualDone, "g", "b", "Check the app on b", "")
        .add(419_000, VmFailed, "g", long, "", &"the hypervisor said no; ".repeat(6))
        .add(419_000, GroupFailed, "g", "", "", "")
        .add(419_000, RunFailed, "", "", "edge", "");
    e.report(header("edge", true, None), RunStatus::Failed)
}

/// Resembles `drplan dry-run plans/contoso/failover.rhai`.
fn contoso() -> RunReport {
    use EventKind::*;
    let mut e = Events::default();
    e.add(0, RunStarted, "", "", "contoso-crm", "").add(0, GroupStarted, "database", "", "", "");
    for vm in ["sql01", "sql02"] {
        e.add(0, VmStarted, "database", vm, "", "");
    }
    e.add(240_938, VmSucceeded, "database", "sql01", "", "10.2.1.10 on secondary/hv-s01; point 2026-01-05T08:01:00Z")
        .add(240_938, VmSucceeded, "database", "sql02", "", "10.2.1.11 on secondary/hv-s02; point 2026-01-05T08:01:00Z")
        .add(240_938, ManualWaiting, "database", "", MANUAL_TEXT, "timeout 30m, expected 5m")
        .add(540_938, ManualDone, "database", "", MANUAL_TEXT, "")
        .add(540_938, GroupSucceeded, "database", "", "", "");
    for (group, vms, start, end) in
        [("app", ["app01", "app02", "app03"], 540_938, 662_288), ("web", ["web01", "web02", "web03"], 662_288, 740_748)]
    {
        e.add(start, GroupStarted, group, "", "", "");
        for vm in vms {
            e.add(start, VmStarted, group, vm, "", "");
        }
        for (i, vm) in vms.iter().enumerate() {
            e.add(end, VmSucceeded, group, vm, "", &format!("10.2.{}.{} on secondary/hv-s0{}", i + 2, i + 10, i + 1));
        }
        e.add(end, GroupSucceeded, group, "", "", "");
    }
    e.add(740_748, RunSucceeded, "", "", "contoso-crm", "");
    e.report(header("contoso-crm", true, Some(Duration::from_secs(1800))), RunStatus::Succeeded)
}

/// `groups` groups of `per_group` VMs, every 997th VM failed.
fn large(groups: usize, per_group: usize) -> RunReport {
    let mut report = contoso();
    report.groups.clear();
    report.steps.clear();
    let mut seq = 0;
    let mut event = |at: Duration, kind: EventKind, group: &str, vm: Option<String>| {
        seq += 1;
        Event {
            seq,
            at: t0() + TimeDelta::from_std(at).unwrap(),
            kind,
            group: Some(group.to_string()),
            vm,
            step: None,
            detail: None,
            key: None,
            data: None,
        }
    };
    for g in 0..groups {
        let name = format!("tier-{g:02}");
        let start = Duration::from_secs(120 * g as u64);
        let end = start + Duration::from_secs(110);
        let mut vms = Vec::with_capacity(per_group);
        for v in 0..per_group {
            let n = g * per_group + v;
            let failed = n % 997 == 996;
            let vm = Span {
                name: format!("vm-{n:05}"),
                start,
                end: start + Duration::from_millis(60_000 + (n as u64 % 50) * 1000),
                status: if failed { Status::Failed } else { Status::Succeeded },
                detail: Some(if failed { "boot timed out".into() } else { format!("10.9.{}.{}", n / 250, n % 250) }),
                ..Span::default()
            };
            report.steps.push(event(vm.start, EventKind::VmStarted, &name, Some(vm.name.clone())));
            report.steps.push(event(vm.end, EventKind::VmSucceeded, &name, Some(vm.name.clone())));
            vms.push(vm);
        }
        let span = Span { name, start, end, status: Status::Succeeded, ..Span::default() };
        report.groups.push(GroupTimeline { span, vms });
    }
    report.rto = Duration::from_secs(120 * groups as u64);
    report.rto_met = Some(report.rto <= Duration::from_secs(1800));
    report
}

/// Parses the chart with a real XML parser: well-formed, one `svg` root in the SVG
/// namespace, and every text as written once unescaped.
fn check_xml(doc: &str) -> Result<roxmltree::Document<'_>, String> {
    let parsed = roxmltree::Document::parse(doc).map_err(|e| e.to_string())?;
    let root = parsed.root_element();
    if root.tag_name().name() != "svg" || root.tag_name().namespace() != Some("http://www.w3.org/2000/svg") {
        return Err(format!("the root is {:?}", root.tag_name()));
    }
    Ok(parsed)
}

/// The tooltips of the chart, as a browser shows them.
fn tooltips(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants().filter(|n| n.has_tag_name("title")).map(|n| n.text().unwrap_or("").to_string()).collect()
}

#[test]
fn draws_groups_vms_manual_waits_and_the_target() {
    let report = failed_run();
    let svg = gantt(&report);
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.ends_with("</svg>\n"));
    let doc = check_xml(&svg).unwrap();
    assert!(!svg.contains("<&>") && !svg.contains("<billing>"));
    // Escaped in the bytes, as written once parsed.
    let tips = tooltips(&doc);
    assert!(tips.iter().any(|t| t.ends_with("replica did not boot: <&> \"disk\" missing")), "{tips:#?}");
    let title = doc.descendants().find(|n| n.has_attribute("class") && n.attribute("class") == Some("h")).unwrap();
    assert!(title.descendants().filter_map(|n| n.text()).collect::<String>().starts_with("crm & <billing>: "));
    assert!(svg.contains("replica did not boot: &lt;&amp;&gt; &quot;disk&quot; missing"));
    assert!(svg.contains("crm &amp; &lt;billing&gt;"));
    for name in ["database", "app", "sql01", "sql02", "app01"] {
        assert!(svg.contains(&format!(">{name}</text>")), "{name}");
    }
    // The failed VM's bar is red with its detail in the tooltip; the skipped one grey.
    assert!(svg.contains(&format!("fill=\"{RED}\"><title>sql02: failed\n+0s \u{2192} +5m, took 5m\nreplica")));
    assert!(svg.contains(&format!("fill=\"{GREY}\"><title>app01: skipped")));
    assert!(svg.contains(&format!("fill=\"{GREEN}\"><title>sql01: succeeded")));
    // The manual wait: a hatched band, its label cut to 40 characters, the full text on hover.
    let cut: String = MANUAL_TEXT.chars().take(MANUAL_LABEL_CHARS - 1).collect();
    assert!(svg.contains(&format!(">{cut}\u{2026}</text>")));
    assert!(svg.contains(&format!(
        "fill=\"url(#hatch)\" stroke=\"{MANUAL}\"><title>manual step: {MANUAL_TEXT}\n+5m \u{2192} +10m, waited 5m"
    )));
    assert!(svg.contains("RTO target 30m</text>"));
    assert!(svg.contains(&format!("stroke=\"{TARGET}\" stroke-width=\"2\" stroke-dasharray=\"6 4\"")));
    // A failed run recovered nothing: its RTO is not judged against the target.
    assert!(svg.contains(">target 30m: not reached, the run did not succeed</tspan>"));
    assert!(!svg.contains("MISSED") && !svg.contains(": met<") && svg.contains(">FAILED</tspan>"));
    // Ticks every 5 minutes up to the target.
    for tick in ["+0s", "+5m", "+30m"] {
        assert!(svg.contains(&format!(">{tick}</text>")), "{tick}");
    }
    assert_eq!(gantt(&report), svg);
}

#[test]
fn a_missed_target_and_an_open_wait_are_shown() {
    let mut report = failed_run();
    report.header.rto_target = Some(Duration::from_secs(240));
    report.rto_met = Some(false);
    report.steps.retain(|e| e.kind != EventKind::ManualDone);
    let svg = gantt(&report);
    check_xml(&svg).unwrap();
    assert!(svg.contains("MISSED by 6m</tspan>"));
    assert!(svg.contains("(still waiting)</text>"));
    assert!(svg.contains("+5m \u{2192} +10m, waited 5m\ntimeout 30m, expected 5m\nstill waiting when the run stopped"));
}

#[test]
fn the_same_contoso_run_gives_the_same_bytes() {
    let svg = gantt(&contoso());
    check_xml(&svg).unwrap();
    assert_eq!(svg, gantt(&contoso()));
    assert!(svg.contains("predicted RTO 12m20.748s</text>"));
    // Set DRPLAN_SVG_OUT to a directory to look at the charts.
    if let Some(dir) = std::env::var_os("DRPLAN_SVG_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("contoso.svg"), &svg).unwrap();
        std::fs::write(dir.join("failed.svg"), gantt(&failed_run())).unwrap();
        std::fs::write(dir.join("large.svg"), gantt(&large(10, 1000))).unwrap();
        std::fs::write(dir.join("medium.svg"), gantt(&large(4, 100))).unwrap();
        std::fs::write(dir.join("edge.svg"), gantt(&edge_cases())).unwrap();
    }
}

#[test]
fn long_names_are_cut_and_late_labels_stay_inside() {
    let svg = gantt(&edge_cases());
    check_xml(&svg).unwrap();
    assert!(svg.contains(">the plan sets no RTO target</tspan>") && !svg.contains("RTO target "));
    assert!(svg.contains(">a-very-long-virtual-machine-name-from-\u{2026}</text>"));
    assert!(svg.contains(">plan manual step</text>") && svg.contains(">b: Check the app on b</text>"));
    // The failure ends at the axis's end: its label goes before the bar, cut to fit.
    assert!(
        svg.contains("text-anchor=\"end\" style=\"fill:#e03131\">failed: the hypervisor said no; th\u{2026}</text>")
    );
}

#[test]
fn ten_thousand_vms_render_fast_with_vm_rows_folded() {
    let report = large(10, 1000);
    let started = Instant::now();
    let svg = gantt(&report);
    let took = started.elapsed();
    eprintln!("10,000 VMs drawn in {took:?}, {} bytes", svg.len());
    let limit = if cfg!(debug_assertions) { 3 } else { 1 };
    assert!(took < Duration::from_secs(limit), "{took:?}");
    let doc = check_xml(&svg).unwrap();
    assert!(svg.contains("10,000 VM rows folded"));
    assert_eq!(tooltips(&doc).iter().filter(|t| t.starts_with("group ")).count(), 10);
    assert!(!svg.contains("vm-00001"));
    // Failed VMs are still named in their group's tooltip.
    assert!(svg.contains("failed: vm-00996"));

    // At the limit, every VM has its row.
    let report = large(2, MAX_VM_ROWS / 2);
    let started = Instant::now();
    let svg = gantt(&report);
    let took = started.elapsed();
    eprintln!("{} VMs drawn in {took:?}, {} bytes", MAX_VM_ROWS, svg.len());
    assert!(took < Duration::from_secs(limit), "{took:?}");
    check_xml(&svg).unwrap();
    assert!(!svg.contains("folded") && svg.contains(">vm-01999</text>"));
}

#[test]
fn ticks_are_round_and_few() {
    assert_eq!(tick_step(30 * 60_000), (5 * 60_000, 6));
    assert_eq!(tick_step(740_748), (2 * 60_000, 7));
    assert_eq!(tick_step(90 * 60_000), (10 * 60_000, 9));
    assert_eq!(tick_step(5_000), (1_000, 5));
    assert_eq!(tick_step(0), (1_000, 1));
    assert_eq!(tick_step(30 * 86_400_000), (3 * 86_400_000, 10));
}
