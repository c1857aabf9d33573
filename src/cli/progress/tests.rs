use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};

use super::*;

/// A writer tests can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(lock(&self.0).clone()).unwrap()
    }
}

fn at(seconds: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap() + TimeDelta::seconds(seconds)
}

fn ev(
    seconds: i64,
    kind: EventKind,
    group: Option<&str>,
    vm: Option<&str>,
    step: Option<&str>,
    detail: Option<&str>,
) -> Event {
    // Through JSON, so the fields tests leave out take their defaults.
    let mut event = serde_json::json!({ "seq": 0, "at": at(seconds), "kind": kind });
    for (field, value) in [("group", group), ("vm", vm), ("step", step), ("detail", detail)] {
        if let Some(value) = value {
            event[field] = value.into();
        }
    }
    serde_json::from_value(event).expect("an event")
}

fn groups() -> Vec<(String, Vec<String>)> {
    vec![
        ("database".into(), vec!["sql01".into(), "sql02".into()]),
        ("web".into(), vec!["web01".into(), "web02".into(), "web03".into()]),
        ("report".into(), vec!["report01".into()]),
    ]
}

/// A hidden live view whose lines above the bars go to the returned writer.
fn live(groups: &[(String, Vec<String>)]) -> (Progress, Shared) {
    let above = Shared::default();
    let live = Live::new("contoso-crm", groups, ProgressDrawTarget::hidden(), Box::new(above.clone()));
    (Progress { sink: Sink::Live(live), approve: None }.with_run_id("r-1"), above)
}

fn message(progress: &Progress, group: &str) -> String {
    let Sink::Live(live) = &progress.sink else { panic!("not live") };
    let board = lock(&live.shared.board);
    let view = &board.groups[board.index[group]];
    view.message(board.approve.as_deref())
}

#[test]
fn progress_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Progress>();
    // Without events, the line modes print nothing.
    let progress = Progress::new(ProgressMode::JsonLines, "p", &groups());
    progress.finish();
    assert!(progress.snapshot().is_empty());
}

#[test]
fn choose_picks_json_then_terminal() {
    assert_eq!(ProgressMode::choose(Format::Json, true), ProgressMode::JsonLines);
    assert_eq!(ProgressMode::choose(Format::Json, false), ProgressMode::JsonLines);
    assert_eq!(ProgressMode::choose(Format::Human, true), ProgressMode::Live);
    assert_eq!(ProgressMode::choose(Format::Human, false), ProgressMode::Lines);
}

#[test]
fn every_event_name_fits_the_name_column() {
    assert_eq!(EventKind::ALL.iter().map(|k| k.name().len()).max(), Some(NAME_WIDTH));
}

#[test]
fn lines_show_time_name_scope_step_and_detail() {
    use EventKind::*;
    let detail = "10.2.3.21 on secondary/hv-s03; point 2026-01-05T08:11:32Z; data loss 0s";
    assert_eq!(
        line(&ev(740, VmSucceeded, Some("web"), Some("web01"), None, Some(detail))),
        format!("08:12:20 vm.succeeded      web/web01  {detail}")
    );
    assert_eq!(
        line(&ev(0, RunStarted, None, None, Some("contoso-crm"), None)),
        "08:00:00 run.started       contoso-crm"
    );
    assert_eq!(
        line(&ev(
            296,
            ManualWaiting,
            Some("database"),
            None,
            Some("Confirm the SQL listener is online"),
            Some("timeout 30m, expected 5m")
        )),
        "08:04:56 manual.waiting    database  Confirm the SQL listener is online  timeout 30m, expected 5m"
    );
    assert_eq!(
        line(&ev(
            3599,
            ActionFailed,
            Some("web"),
            Some("web02"),
            Some("post_each action of group web"),
            Some("failover.rhai:40:5: dns failed\nweb02.contoso.test resolves to nothing\n")
        )),
        "08:59:59 action.failed     web/web02  post_each action of group web  \
         failover.rhai:40:5: dns failed | web02.contoso.test resolves to nothing"
    );
    assert_eq!(line(&ev(61, GroupStarted, Some("app"), None, None, None)), "08:01:01 group.started     app");
}

#[test]
fn lines_mode_writes_one_line_per_event() {
    let out = Shared::default();
    let progress = Progress::with_writer(ProgressMode::Lines, "p", &groups(), Box::new(out.clone()));
    progress.observe(&ev(0, EventKind::RunStarted, None, None, Some("p"), None));
    progress.observe(&ev(1, EventKind::GroupStarted, Some("web"), None, None, None));
    progress.finish();
    assert_eq!(out.text(), "08:00:00 run.started       p\n08:00:01 group.started     web\n");
    // Once the run is named, a manual step says how to approve it.
    let out = Shared::default();
    let progress = Progress::with_writer(ProgressMode::Lines, "p", &groups(), Box::new(out.clone())).with_run_id("r-7");
    progress.observe(&ev(2, EventKind::ManualWaiting, None, None, Some("Call the DBA"), Some("timeout 1h")));
    assert_eq!(out.text(), "08:00:02 manual.waiting    Call the DBA  timeout 1h; approve with: drplan approve r-7\n");
    assert!(progress.snapshot().is_empty());
}

#[test]
fn json_lines_round_trip_with_the_event_name_as_kind() {
    let out = Shared::default();
    let progress = Progress::with_writer(ProgressMode::JsonLines, "p", &groups(), Box::new(out.clone()));
    let events = [
        ev(0, EventKind::RunStarted, None, None, Some("p"), None),
        ev(9, EventKind::VmFailed, Some("web"), Some("web01"), None, Some("boot failed\n\"quoted\"")),
    ];
    for event in &events {
        progress.observe(event);
    }
    progress.finish();
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["kind"], "run.started");
    assert_eq!(first["at"], "2026-01-05T08:00:00Z");
    assert_eq!(first["step"], "p");
    assert!(first.get("group").is_none());
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["kind"], "vm.failed");
    assert_eq!(second["group"], "web");
    assert_eq!(second["vm"], "web01");
    assert_eq!(second["detail"], "boot failed\n\"quoted\"");
    assert_eq!(second, serde_json::to_value(&events[1]).unwrap());
}

#[test]
fn live_view_follows_a_run_with_a_manual_wait_and_a_failure() {
    use EventKind::*;
    let (progress, above) = live(&groups());
    let observe = |e: Event| progress.observe(&e);
    assert_eq!(progress.snapshot(), vec![("database".into(), 0, 2), ("web".into(), 0, 3), ("report".into(), 0, 1)]);

    observe(ev(0, RunStarted, None, None, Some("contoso-crm"), None));
    observe(ev(0, ActionStarted, None, None, Some("pre action of plan contoso-crm"), None));
    observe(ev(0, Log, None, None, Some("planned failover starting"), None));
    observe(ev(0, ActionSucceeded, None, None, Some("pre action of plan contoso-crm"), None));
    observe(ev(0, GroupStarted, Some("database"), None, None, None));
    assert_eq!(message(&progress, "database"), "waiting");
    observe(ev(0, ActionStarted, Some("database"), None, Some("stop the apps"), None));
    assert_eq!(message(&progress, "database"), "pre-steps: stop the apps");
    observe(ev(0, ActionSucceeded, Some("database"), None, Some("stop the apps"), None));
    observe(ev(0, VmStarted, Some("database"), Some("sql01"), None, None));
    observe(ev(0, VmStarted, Some("database"), Some("sql02"), None, None));
    observe(ev(5, VmRetried, Some("database"), Some("sql02"), None, Some("boot timed out")));
    observe(ev(240, VmSucceeded, Some("database"), Some("sql01"), None, Some("10.2.1.10 on secondary/hv-s01")));
    assert_eq!(message(&progress, "database"), "1/2 up");
    assert_eq!(progress.snapshot()[0], ("database".into(), 1, 2));
    observe(ev(290, VmSucceeded, Some("database"), Some("sql02"), None, Some("10.2.1.11 on secondary/hv-s02")));
    observe(ev(296, ManualWaiting, Some("database"), None, Some("Confirm the SQL listener"), Some("timeout 30m")));
    assert_eq!(message(&progress, "database"), "manual: Confirm the SQL listener (approve with: drplan approve r-1)");
    observe(ev(596, ManualDone, Some("database"), None, Some("Confirm the SQL listener"), None));
    assert_eq!(message(&progress, "database"), "2/2 up");
    observe(ev(596, GroupSucceeded, Some("database"), None, None, None));
    assert_eq!(message(&progress, "database"), "done");

    observe(ev(596, GroupStarted, Some("web"), None, None, None));
    for vm in ["web01", "web02", "web03"] {
        observe(ev(596, VmStarted, Some("web"), Some(vm), None, None));
    }
    observe(ev(670, VmSucceeded, Some("web"), Some("web01"), None, Some("10.2.3.21")));
    observe(ev(670, VmSucceeded, Some("web"), Some("web02"), None, Some("10.2.3.22")));
    assert_eq!(message(&progress, "web"), "2/3 up");
    // web02 was up, then its post action failed: still one finished VM, now failed.
    observe(ev(670, ActionStarted, Some("web"), Some("web02"), Some("post_each action of group web"), None));
    observe(ev(671, ActionFailed, Some("web"), Some("web02"), Some("post_each action of group web"), Some("dns")));
    observe(ev(671, VmFailed, Some("web"), Some("web02"), None, Some("dns")));
    assert_eq!(message(&progress, "web"), "1/3 up, 1 failed");
    observe(ev(700, VmFailed, Some("web"), Some("web03"), None, Some("no capacity on secondary")));
    assert_eq!(progress.snapshot()[1], ("web".into(), 3, 3));
    observe(ev(700, GroupFailed, Some("web"), None, None, Some("failed: web02, web03")));
    assert_eq!(message(&progress, "web"), "failed: web02, web03");
    observe(ev(700, VmSkipped, Some("report"), Some("report01"), None, None));
    assert_eq!(message(&progress, "report"), "skipped");
    // Out of place: a group the plan does not have, a VM the group did not list.
    observe(ev(700, VmSucceeded, Some("ghost"), Some("g1"), None, None));
    observe(ev(700, VmSkipped, Some("web"), Some("web99"), None, None));
    observe(ev(700, ManualDone, Some("web"), None, Some("never waited"), None));
    observe(ev(700, GroupSucceeded, None, None, None, None));
    observe(ev(700, RunFailed, None, None, Some("contoso-crm"), None));
    progress.finish();
    progress.finish();
    // After the end, events are only printed.
    observe(ev(701, Log, None, None, Some("late"), None));

    assert_eq!(progress.snapshot(), vec![("database".into(), 2, 2), ("web".into(), 4, 4), ("report".into(), 1, 1)]);
    let printed = above.text();
    let expected = [
        "08:00:00 log               planned failover starting",
        "08:00:05 vm.retried        database/sql02  boot timed out",
        "08:04:56 manual.waiting    database  Confirm the SQL listener  timeout 30m; approve with: drplan approve r-1",
        "08:11:11 action.failed     web/web02  post_each action of group web  dns",
        "08:11:11 vm.failed         web/web02  dns",
        "08:11:40 vm.failed         web/web03  no capacity on secondary",
        "08:11:40 group.failed      web  failed: web02, web03",
        "08:11:40 vm.succeeded      ghost/g1",
        "08:11:40 run.failed        contoso-crm",
        "08:11:41 log               late",
    ];
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn live_view_counts_a_vm_once_whatever_the_order() {
    use EventKind::*;
    let (progress, _) = live(&groups());
    // Success before start, twice, then failure and skip: one finished VM throughout.
    for kind in [VmSucceeded, VmStarted, VmSucceeded, VmFailed, VmSkipped, VmStarted] {
        progress.observe(&ev(1, kind, Some("database"), Some("sql01"), None, None));
    }
    assert_eq!(progress.snapshot()[0], ("database".into(), 0, 2));
    progress.observe(&ev(1, VmFailed, Some("database"), Some("sql01"), None, None));
    assert_eq!(progress.snapshot()[0], ("database".into(), 1, 2));
    // Events with no group or an empty plan do no harm.
    progress.observe(&ev(1, VmFailed, None, Some("lost"), None, None));
    let (empty, _) = live(&[]);
    empty.observe(&ev(1, GroupStarted, Some("x"), None, None, None));
    empty.finish();
    assert!(empty.snapshot().is_empty());
}

#[test]
fn live_view_takes_events_from_many_threads() {
    use EventKind::*;
    let plan: Vec<(String, Vec<String>)> = vec![("g".into(), (0..800).map(|v| format!("vm{v:03}")).collect())];
    let (progress, _) = live(&plan);
    let progress = Arc::new(progress);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let progress = progress.clone();
            thread::spawn(move || {
                for v in (t..800).step_by(8) {
                    let vm = format!("vm{v:03}");
                    for kind in [VmStarted, VmSucceeded, Call] {
                        progress.observe(&ev(v, kind, Some("g"), Some(&vm), None, None));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    progress.finish();
    assert_eq!(progress.snapshot(), vec![("g".into(), 800, 800)]);
}

/// A plan of `groups` groups of `per` VMs: the events a run publishes, about ten a VM.
fn big_run(groups: usize, per: usize) -> (Vec<(String, Vec<String>)>, Vec<Event>) {
    use EventKind::*;
    let plan: Vec<(String, Vec<String>)> =
        (0..groups).map(|g| (format!("group{g:02}"), (0..per).map(|v| format!("vm{g:02}-{v:05}")).collect())).collect();
    let mut events = vec![ev(0, RunStarted, None, None, Some("big"), None)];
    for (g, (group, vms)) in plan.iter().enumerate() {
        let t = g as i64 * 600;
        let group = Some(group.as_str());
        events.push(ev(t, GroupStarted, group, None, None, None));
        for vm in vms {
            let vm = Some(vm.as_str());
            let label = Some("post_each action of group");
            events.push(ev(t, VmStarted, group, vm, None, None));
            events.push(ev(t + 90, VmSucceeded, group, vm, None, Some("10.2.3.21 on secondary/hv-s03")));
            events.push(ev(t + 90, ActionStarted, group, vm, label, None));
            events.push(ev(t + 90, Call, group, vm, Some("dns.point web.contoso.test A 10.2.3.21"), None));
            events.push(ev(t + 91, Call, group, vm, Some("dns.verify web.contoso.test A 10.2.3.21"), None));
            events.push(ev(t + 91, Call, group, vm, Some("wait 5s"), None));
            events.push(ev(t + 96, Call, group, vm, Some("wait_port 10.2.3.21:443"), None));
            events.push(ev(t + 96, Log, group, vm, Some("web tier answering"), None));
            events.push(ev(t + 96, ActionSucceeded, group, vm, label, None));
        }
        events.push(ev(t + 100, GroupSucceeded, group, None, None, None));
    }
    events.push(ev(10_000, RunSucceeded, None, None, Some("big"), None));
    (plan, events)
}

#[test]
fn a_hundred_thousand_events_are_cheap() {
    let (plan, events) = big_run(10, 1_112);
    assert!(events.len() >= 100_000, "{}", events.len());
    let mut timings = Vec::new();
    for mode in [ProgressMode::Lines, ProgressMode::JsonLines] {
        let progress = Progress::with_writer(mode, "big", &plan, Box::new(io::sink()));
        let start = Instant::now();
        for event in &events {
            progress.observe(event);
        }
        progress.finish();
        timings.push((format!("{mode:?}"), start.elapsed()));
    }
    let (progress, _) = live(&plan);
    let start = Instant::now();
    for event in &events {
        progress.observe(event);
    }
    progress.finish();
    timings.push(("Live (hidden)".into(), start.elapsed()));
    assert!(progress.snapshot().iter().all(|(_, finished, total)| finished == total && *total == 1_112));
    for (mode, took) in &timings {
        println!("{} events, {mode}: {took:?}", events.len());
    }
    assert!(timings[0].1 < Duration::from_secs(3), "{timings:?}");
}

#[test]
fn the_group_column_is_as_wide_as_the_widest_name_in_terminal_columns() {
    let board = |names: &[&str]| Board::new(&names.iter().map(|n| (n.to_string(), vec![])).collect::<Vec<_>>());
    assert!(board(&["web", "database"]).bar_template.contains("{prefix:<8}"));
    // Three CJK characters take six columns; bounds 4 and 24.
    assert!(board(&["数据库", "web"]).bar_template.contains("{prefix:<6}"));
    assert!(board(&["db"]).bar_template.contains("{prefix:<4}"));
    assert!(board(&[&"x".repeat(40)]).bar_template.contains("{prefix:<24}"));
}
