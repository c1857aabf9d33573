//! The engine against the simulated fabric on paused time, with plain Rust actions:
//! group order (R20), steps around groups and VMs (R21), failure policies and hooks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{AutoApprove, Deps, Event, EventBus, EventKind, RunOutcome, RunSpec, RunStatus, execute};
use crate::fabric::dns::RecordingDns;
use crate::fabric::sim::SimFabric;
use crate::model::site_file::parse_site;
use crate::model::{FailoverKind, Inventory, PointChoice};
use crate::plan::validate::{ResolvedGroup, ResolvedPlan};
use crate::plan::{
    Action, ActionContext, ActionError, FailurePolicy, Group, Hook, Manual, OnFailure, Plan, SourcePos, Step,
};

mod causal;

const CONTOSO: &str = include_str!("../../../plans/contoso/site.toml");

type Log = Arc<Mutex<Vec<String>>>;

/// An action that notes each call in a shared log, and can wait, point DNS or fail.
struct Probe {
    at: SourcePos,
    name: String,
    log: Log,
    failures: AtomicU32,
    wait: Option<Duration>,
    dns: bool,
}

fn probe(name: &str, log: &Log) -> Probe {
    Probe {
        at: SourcePos::new("test.rhai", 1, 1),
        name: name.into(),
        log: log.clone(),
        failures: AtomicU32::new(0),
        wait: None,
        dns: false,
    }
}

impl Probe {
    fn failing(self, times: u32) -> Self {
        self.failures.store(times, Ordering::Relaxed);
        self
    }

    fn step(self) -> Step {
        Step::Action(Arc::new(self))
    }
}

#[async_trait]
impl Action for Probe {
    fn at(&self) -> &SourcePos {
        &self.at
    }

    fn label(&self) -> String {
        self.name.clone()
    }

    async fn run(&self, ctx: ActionContext) -> Result<(), ActionError> {
        let who = ctx.vm.clone().or_else(|| ctx.event.as_ref().and_then(|e| e.vm.clone())).unwrap_or_default();
        self.log.lock().unwrap().push(format!("{} {who}", self.name).trim_end().to_string());
        if let Some(d) = self.wait {
            ctx.services.wait(d).await.unwrap();
        }
        if self.dns {
            let vm = ctx.vms.get(ctx.vm.as_deref().unwrap()).unwrap();
            ctx.services
                .dns_point(&vm.dns[0], vm.ip.unwrap())
                .await
                .map_err(|message| ActionError { message, at: None })?;
        }
        if self.failures.load(Ordering::Relaxed) > 0 {
            self.failures.fetch_sub(1, Ordering::Relaxed);
            return Err(ActionError { message: format!("{} failed", self.name), at: None });
        }
        Ok(())
    }
}

fn group(name: &str) -> Group {
    Group::new(name, SourcePos::new("test.rhai", 2, 1), vec![])
}

fn plan(groups: Vec<Group>) -> Plan {
    Plan {
        rto: Some(Duration::from_secs(1800)),
        test_network: Some("test-bubble".into()),
        groups,
        ..Plan::new("test", ("primary", "secondary"), SourcePos::new("test.rhai", 1, 1))
    }
}

/// The three contoso tiers, as the example plan resolves them.
fn tiers() -> ResolvedPlan {
    let g = |name: &str, vms: &[&str]| ResolvedGroup {
        name: name.into(),
        vms: vms.iter().map(|s| s.to_string()).collect(),
    };
    ResolvedPlan {
        groups: vec![
            g("database", &["sql01", "sql02"]),
            g("app", &["app01", "app02", "app03"]),
            g("web", &["web01", "web02", "web03"]),
        ],
    }
}

fn tier_groups() -> Vec<Group> {
    vec![group("database"), group("app"), group("web")]
}

struct Harness {
    inventory: Arc<Inventory>,
    dns: Arc<RecordingDns>,
}

fn harness(extra: &str) -> Harness {
    let inventory = parse_site(&format!("{CONTOSO}{extra}"), "site.toml".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    Harness { inventory: Arc::new(inventory), dns: Arc::new(RecordingDns::default()) }
}

impl Harness {
    async fn run(&self, plan: Plan, parallel: usize) -> RunOutcome {
        self.run_journaled(plan, parallel, None).await
    }

    async fn run_journaled(
        &self,
        plan: Plan,
        parallel: usize,
        journal: Option<Arc<dyn super::EventLog>>,
    ) -> RunOutcome {
        let fabric = Arc::new(SimFabric::in_memory(self.inventory.clone()).unwrap().scratch_copy().unwrap());
        let deps = Deps {
            fabric,
            dns: self.dns.clone(),
            gate: Arc::new(AutoApprove),
            inventory: self.inventory.clone(),
            bus: Arc::new(EventBus::default()),
            journal,
            history: super::History::default(),
            stop: Arc::new(super::Stop::default()),
            placements: Default::default(),
        };
        let spec = RunSpec {
            run_id: "run-1".into(),
            kind: FailoverKind::Planned,
            point: PointChoice::Latest,
            parallel,
            dry_run: true,
            shut_down_source: true,
            failback: false,
        };
        execute(deps, Arc::new(plan), tiers(), spec).await
    }
}

fn of(events: &[Event], kind: EventKind) -> Vec<&Event> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn in_group<'a>(events: &'a [Event], kind: EventKind, group: &str) -> Vec<&'a Event> {
    of(events, kind).into_iter().filter(|e| e.group.as_deref() == Some(group)).collect()
}

#[tokio::test(start_paused = true)]
async fn r20_groups_start_in_order_each_after_every_vm_of_the_previous_is_up() {
    let out = harness("").run(plan(tier_groups()), 8).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    for (previous, next) in [("database", "app"), ("app", "web")] {
        let last_up =
            in_group(&out.events, EventKind::VmSucceeded, previous).iter().map(|e| (e.at, e.seq)).max().unwrap();
        for start in in_group(&out.events, EventKind::VmStarted, next) {
            assert!((start.at, start.seq) > last_up, "{} started before {previous} was up", start.vm.as_ref().unwrap());
        }
    }
    // VMs within a group start together.
    let starts: Vec<_> = in_group(&out.events, EventKind::VmStarted, "app").iter().map(|e| e.at).collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{starts:?}");
    assert_eq!(of(&out.events, EventKind::VmSucceeded).len(), 8);
}

#[tokio::test(start_paused = true)]
async fn r21_steps_run_around_groups_and_each_vm_as_it_comes_up() {
    let log = Log::default();
    let mut groups = tier_groups();
    groups[0].pre.push(probe("db-pre", &log).step());
    groups[0].post.push(probe("db-post", &log).step());
    groups[2].post_each.push(Arc::new(probe("web-each", &log)));
    let mut plan = plan(groups);
    plan.pre.push(probe("plan-pre", &log).step());
    plan.post.push(probe("plan-post", &log).step());
    let out = harness("").run(plan, 8).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.first().unwrap(), "plan-pre");
    assert_eq!(&log[1..3], ["db-pre", "db-post"]);
    let mut each = log[3..6].to_vec();
    each.sort();
    assert_eq!(each, ["web-each web01", "web-each web02", "web-each web03"]);
    assert_eq!(log.last().unwrap(), "plan-post");
    // Each web VM's post action runs after that VM is up.
    for vm in ["web01", "web02", "web03"] {
        let up = out.events.iter().find(|e| e.kind == EventKind::VmSucceeded && e.vm.as_deref() == Some(vm)).unwrap();
        let action =
            out.events.iter().find(|e| e.kind == EventKind::ActionStarted && e.vm.as_deref() == Some(vm)).unwrap();
        assert!(action.seq > up.seq);
    }
}

#[tokio::test(start_paused = true)]
async fn r21_a_manual_step_pauses_the_plan_for_its_expected_time_in_a_dry_run() {
    let mut groups = tier_groups();
    groups[0].post.push(Step::Manual(Manual {
        text: "Confirm the listener".into(),
        timeout: Duration::from_secs(1800),
        estimate: Duration::from_secs(300),
        at: SourcePos::new("test.rhai", 5, 1),
    }));
    let out = harness("").run(plan(groups), 8).await;
    let waiting = of(&out.events, EventKind::ManualWaiting)[0];
    let done = of(&out.events, EventKind::ManualDone)[0];
    assert_eq!(done.at - waiting.at, chrono::TimeDelta::seconds(300));
    let app_start = in_group(&out.events, EventKind::VmStarted, "app")[0];
    assert!(app_start.seq > done.seq);
}

#[tokio::test(start_paused = true)]
async fn a_failing_vm_is_retried_then_stops_the_plan() {
    let h = harness("[[faults]]\nkind = \"boot-failure\"\nvm = \"app02\"\n");
    let mut groups = tier_groups();
    groups[1].policy =
        Some(FailurePolicy { retries: 2, backoff: Duration::from_secs(10), on_failure: OnFailure::Stop });
    let out = h.run(plan(groups), 8).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(of(&out.events, EventKind::VmRetried).len(), 2);
    let failed = of(&out.events, EventKind::VmFailed);
    assert_eq!(failed.len(), 1);
    assert!(failed[0].detail.as_ref().unwrap().contains("did not boot"));
    assert_eq!(in_group(&out.events, EventKind::GroupFailed, "app").len(), 1);
    assert_eq!(in_group(&out.events, EventKind::VmSkipped, "web").len(), 3, "the plan stopped");
    assert!(of(&out.events, EventKind::RunFailed).len() == 1);
}

#[tokio::test(start_paused = true)]
async fn on_failure_continue_goes_on_and_an_optional_vm_never_fails_its_group() {
    let h = harness("[[faults]]\nkind = \"boot-failure\"\nvm = \"app02\"\n");
    let mut groups = tier_groups();
    groups[1].policy = Some(FailurePolicy { on_failure: OnFailure::Continue, ..FailurePolicy::default() });
    let out = h.run(plan(groups), 8).await;
    assert_eq!(out.status, RunStatus::Failed, "a required VM failed");
    assert_eq!(in_group(&out.events, EventKind::VmSucceeded, "web").len(), 3, "but the plan went on");

    let mut groups = tier_groups();
    groups[1].optional.push("app02".into());
    let out = h.run(plan(groups), 8).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    assert_eq!(in_group(&out.events, EventKind::GroupSucceeded, "app").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn hooks_see_the_event_that_fired_them() {
    let log = Log::default();
    let h = harness("[[faults]]\nkind = \"boot-failure\"\nvm = \"web03\"\n");
    let mut plan = plan(tier_groups());
    plan.hooks.push(Hook { event: "vm.failed".into(), action: Arc::new(probe("on-failed", &log)) });
    plan.hooks.push(Hook { event: "group.*".into(), action: Arc::new(probe("on-group", &log)) });
    plan.hooks.push(Hook { event: "run.failed".into(), action: Arc::new(probe("broken-hook", &log).failing(1)) });
    let out = h.run(plan, 8).await;
    let log = log.lock().unwrap().clone();
    assert!(log.contains(&"on-failed web03".to_string()), "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "on-group").count(), 6, "3 groups started and ended: {log:?}");
    let hook_failed = of(&out.events, EventKind::HookFailed);
    assert_eq!(hook_failed.len(), 1, "a failing hook is reported, and does not loop");
}

#[tokio::test(start_paused = true)]
async fn a_failing_action_is_retried_by_the_policy() {
    let log = Log::default();
    let mut groups = tier_groups();
    groups[0].policy =
        Some(FailurePolicy { retries: 1, backoff: Duration::from_secs(60), on_failure: OnFailure::Stop });
    groups[0].post.push(probe("flaky", &log).failing(1).step());
    let out = harness("").run(plan(groups), 8).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    let retried = of(&out.events, EventKind::ActionRetried)[0];
    let second = of(&out.events, EventKind::ActionStarted).into_iter().find(|e| e.seq > retried.seq).unwrap();
    assert_eq!(second.at - retried.at, chrono::TimeDelta::seconds(60), "the backoff");
}

#[tokio::test(start_paused = true)]
async fn parallelism_bounds_how_many_vms_fail_over_at_once() {
    let out = harness("").run(plan(tier_groups()), 1).await;
    let web: Vec<_> = out.events.iter().filter(|e| e.group.as_deref() == Some("web")).collect();
    let mut running = 0;
    for e in web {
        match e.kind {
            EventKind::VmStarted => running += 1,
            EventKind::VmSucceeded => running -= 1,
            _ => {}
        }
        assert!(running <= 1, "two VMs at once with --parallel 1");
    }
}

#[tokio::test(start_paused = true)]
async fn dry_run_actions_record_their_calls_and_their_waits_take_modelled_time() {
    let log = Log::default();
    let mut groups = tier_groups();
    let mut each = probe("dns", &log);
    each.dns = true;
    groups[2].post_each.push(Arc::new(each));
    let mut wait = probe("settle", &log);
    wait.wait = Some(Duration::from_secs(120));
    groups[2].post.push(wait.step());
    let h = harness("");
    let out = h.run(plan(groups), 8).await;
    let calls: Vec<_> = of(&out.events, EventKind::Call).iter().map(|e| e.step.clone().unwrap()).collect();
    assert!(calls.contains(&"dns.point web01.contoso.test A 10.2.3.21".to_string()), "{calls:?}");
    assert!(calls.contains(&"wait 2m".to_string()));
    assert_eq!(h.dns.records()["web01.contoso.test"], vec!["10.2.3.21".parse::<std::net::Ipv4Addr>().unwrap()]);
    let started =
        of(&out.events, EventKind::ActionStarted).into_iter().find(|e| e.step.as_deref() == Some("settle")).unwrap();
    let done =
        of(&out.events, EventKind::ActionSucceeded).into_iter().find(|e| e.step.as_deref() == Some("settle")).unwrap();
    assert_eq!(done.at - started.at, chrono::TimeDelta::seconds(120));
}

#[tokio::test(start_paused = true)]
async fn the_same_plan_gives_the_same_events_every_time() {
    let h = harness("");
    let strip = |o: RunOutcome| o.events.into_iter().map(|e| format!("{:?}", e)).collect::<Vec<_>>();
    let log = Log::default();
    let build = || {
        let mut groups = tier_groups();
        let mut each = probe("dns", &log);
        each.dns = true;
        groups[2].post_each.push(Arc::new(each));
        plan(groups)
    };
    let first = strip(h.run(build(), 2).await);
    let second = strip(h.run(build(), 2).await);
    assert_eq!(first, second);
}

/// A journal whose disk fills up after `room` events.
struct FullDisk {
    room: AtomicU32,
}

impl super::EventLog for FullDisk {
    fn record(&self, _event: &Event) -> super::Durable {
        let full = self.room.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err();
        Box::pin(async move { if full { Err("journal write failed: disk full".into()) } else { Ok(()) } })
    }
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_be_written_stops_the_run_loudly() {
    let journal = Arc::new(FullDisk { room: AtomicU32::new(12) });
    let out = harness("").run_journaled(plan(tier_groups()), 8, Some(journal)).await;
    assert_eq!(out.status, RunStatus::Failed);
    let last = out.events.last().unwrap();
    assert_eq!(last.kind, EventKind::RunFailed);
    assert!(last.detail.as_deref().unwrap_or("").contains("disk full"), "{last:?}");
    // Nothing was started once the journal failed: the web tier never began.
    assert!(in_group(&out.events, EventKind::VmStarted, "web").is_empty());
    assert_eq!(in_group(&out.events, EventKind::VmSkipped, "web").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn r50_update_dns_points_and_verifies_every_vm_as_it_comes_up() {
    let h = harness("");
    let mut plan = plan(tier_groups());
    plan.update_dns = true;
    let out = h.run(plan, 8).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    let records = h.dns.records();
    assert_eq!(records.len(), 8, "{records:?}");
    assert_eq!(records["sql01.contoso.test"], vec!["10.2.1.10".parse::<std::net::Ipv4Addr>().unwrap()]);
    // Each VM's DNS step runs after that VM is up, and is verified.
    for vm in ["sql01", "web03"] {
        let up = out.events.iter().find(|e| e.kind == EventKind::VmSucceeded && e.vm.as_deref() == Some(vm)).unwrap();
        let verify = out
            .events
            .iter()
            .find(|e| {
                e.kind == EventKind::Call
                    && e.vm.as_deref() == Some(vm)
                    && e.step.as_deref().unwrap().starts_with("dns.verify")
            })
            .unwrap();
        assert!(verify.seq > up.seq);
        let done = out
            .events
            .iter()
            .find(|e| e.key.as_deref() == Some(&format!("vm/{vm}/dns")) && e.kind == EventKind::ActionSucceeded);
        assert!(done.is_some(), "the step is journaled under its key, for resume");
    }
}
