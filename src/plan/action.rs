//! Actions: the steps a plan runs around its failovers (scripts, hooks), as trait
//! objects. The script layer makes them from Rhai closures; the engine only runs them,
//! never knowing what language they were written in.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::source::SourcePos;
use crate::fabric::ReplicationStatus;
use crate::model::{FailoverKind, PointChoice, Timestamp};

/// A VM of the run as actions see it, with its replica's address once it is up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmView {
    pub name: String,
    /// The group of the plan it belongs to.
    pub group: String,
    /// The address DNS pointed at before the failover.
    pub source_ip: Option<Ipv4Addr>,
    /// The replica's address; `None` until it is up, or when not connected (R10).
    pub ip: Option<Ipv4Addr>,
    pub replica_name: String,
    pub site: Option<String>,
    pub host: Option<String>,
    pub network: Option<String>,
    pub dns: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// The TCP ports it serves once it runs (the site file's `services`).
    pub services: Vec<u16>,
    /// "pending", "running", "succeeded", "failed", "skipped".
    pub state: String,
}

/// Every VM of a run as actions see it, kept up to date by the engine as VMs move.
/// Actions share the one board rather than each getting a copy: handing a context to an
/// action then costs the same in a plan of ten VMs as in one of a hundred thousand.
#[derive(Debug, Default)]
pub struct VmBoard {
    inner: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    views: BTreeMap<String, Arc<VmView>>,
    /// The VMs that came up at each address: a service asks what answers at an address
    /// once per call, and scanning every VM for it would make a plan's worth of such
    /// calls cost the square of its size.
    up: HashMap<Ipv4Addr, Vec<String>>,
}

/// Counts `view` in or out of the addresses VMs came up at.
fn count_up(up: &mut HashMap<Ipv4Addr, Vec<String>>, view: &VmView, by: isize) {
    if let (Some(ip), "succeeded") = (view.ip, view.state.as_str()) {
        let held = up.entry(ip).or_default();
        if by > 0 {
            held.push(view.name.clone());
        } else if let Some(i) = held.iter().position(|name| *name == view.name) {
            held.swap_remove(i);
        }
        if held.is_empty() {
            up.remove(&ip);
        }
    }
}

impl VmBoard {
    pub fn new(views: BTreeMap<String, VmView>) -> Self {
        let mut board = Board::default();
        for (name, view) in views {
            count_up(&mut board.up, &view, 1);
            board.views.insert(name, Arc::new(view));
        }
        VmBoard { inner: Mutex::new(board) }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().expect("VM board lock")
    }

    /// The VM as it is now.
    pub fn get(&self, name: &str) -> Option<Arc<VmView>> {
        self.board().views.get(name).cloned()
    }

    /// Every VM as it is now, by name.
    pub fn snapshot(&self) -> BTreeMap<String, Arc<VmView>> {
        self.board().views.clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.board().views.keys().cloned().collect()
    }

    /// The names of the VMs that satisfy `keep`, in name order.
    pub fn names_where(&self, keep: impl Fn(&VmView) -> bool) -> Vec<String> {
        self.board().views.values().filter(|v| keep(v)).map(|v| v.name.clone()).collect()
    }

    /// Whether a VM of the run came up at `ip`.
    pub fn is_up_at(&self, ip: Ipv4Addr) -> bool {
        self.board().up.contains_key(&ip)
    }

    /// Whether a VM of the run that came up at `ip` serves TCP `port`.
    pub fn serves(&self, ip: Ipv4Addr, port: u16) -> bool {
        let board = self.board();
        board.up.get(&ip).is_some_and(|names| {
            names.iter().any(|name| board.views.get(name).is_some_and(|vm| vm.services.contains(&port)))
        })
    }

    pub fn update(&self, name: &str, change: impl FnOnce(&mut VmView)) {
        let mut board = self.board();
        let Board { views, up } = &mut *board;
        let Some(view) = views.get_mut(name) else { return };
        count_up(up, view, -1);
        // Actions holding the old view keep it; the board gets a new one.
        change(Arc::make_mut(view));
        count_up(up, view, 1);
    }
}

/// The event that triggered a hook (`plan.on("vm.failed", ...)`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// e.g. "vm.failed", "group.succeeded".
    pub kind: String,
    pub group: Option<String>,
    pub vm: Option<String>,
    pub error: Option<String>,
}

/// Which way a run moves a plan's VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the plan's source to its target (R30-R33).
    Failover,
    /// R37, R38: back from the recovery site to the original one.
    Failback,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Failover => "failover",
            Direction::Failback => "failback",
        }
    }
}

/// What an action sees when it runs.
#[derive(Clone)]
pub struct ActionContext {
    pub run_id: String,
    pub plan: String,
    pub kind: FailoverKind,
    /// Where the run moves the VMs from and to: the plan's source and target, swapped
    /// on the way back (a failback).
    pub source: String,
    pub target: String,
    pub direction: Direction,
    pub dry_run: bool,
    /// The group whose action this is, if any.
    pub group: Option<String>,
    /// The VM of a per-VM action.
    pub vm: Option<String>,
    /// Every VM of the plan, by name, as it is now.
    pub vms: Arc<VmBoard>,
    /// The isolated network of a test failover (R30).
    pub test_network: Option<String>,
    /// For hooks: the event that fired.
    pub event: Option<EventView>,
    /// The world the action may act on, through the engine.
    pub services: Arc<dyn Services>,
}

/// A primitive of the recovery cycle a script may call on one VM (R22, R30-R38), with
/// the same checks as the commands: a refusal says what to do instead.
#[derive(Debug, Clone, PartialEq)]
pub enum VmOperation {
    Failover { kind: FailoverKind, point: PointChoice },
    ChangePoint(PointChoice),
    Commit,
    Cancel,
    Cleanup(String),
    Reprotect,
    Failback,
    Shutdown,
    Start,
}

impl VmOperation {
    /// A short name for keys and event lines.
    pub fn name(&self) -> String {
        match self {
            VmOperation::Failover { kind, .. } => format!("{kind}-failover"),
            VmOperation::ChangePoint(_) => "change-point".into(),
            VmOperation::Commit => "commit".into(),
            VmOperation::Cancel => "cancel".into(),
            VmOperation::Cleanup(_) => "cleanup".into(),
            VmOperation::Reprotect => "reprotect".into(),
            VmOperation::Failback => "failback".into(),
            VmOperation::Shutdown => "shutdown".into(),
            VmOperation::Start => "start".into(),
        }
    }
}

/// What actions may do outside themselves. The engine provides it: in a dry run it
/// records the calls and does nothing (DESIGN.md: no side effect anywhere).
#[async_trait]
pub trait Services: Send + Sync {
    /// The run's clock (modelled time on the simulated fabric).
    fn now(&self) -> Timestamp;
    /// A line for the run's log and event stream.
    fn log(&self, message: &str);
    /// R50: points `name`'s A record at `ip`.
    async fn dns_point(&self, name: &str, ip: Ipv4Addr) -> Result<(), String>;
    /// R50: checks, by asking the authoritative server, that `name` resolves to `ip`.
    async fn dns_verify(&self, name: &str, ip: Ipv4Addr) -> Result<(), String>;
    /// R50: makes `name` a CNAME to `target` (a load balancer flip), replacing its CNAME.
    async fn dns_cname(&self, name: &str, target: &str) -> Result<(), String>;
    /// R50: checks, by asking the authoritative server, that `name` is a CNAME to `target`.
    async fn dns_verify_cname(&self, name: &str, target: &str) -> Result<(), String>;
    /// R15: a VM's replication state, points, RPO and health.
    async fn replication_status(&self, vm: &str) -> Result<ReplicationStatus, String>;
    /// A recovery-cycle primitive on one VM; returns what it did, in one line.
    async fn operate(&self, vm: &str, operation: VmOperation) -> Result<String, String>;
    /// Lets time pass (modelled time on the simulated fabric).
    async fn wait(&self, duration: Duration) -> Result<(), String>;
    /// Whether a replica answers on a TCP port, trying until `timeout`.
    async fn wait_port(&self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<(), String>;

    /// Whether every call above completes at its first poll, never waiting on a timer, a
    /// socket or another task, and nobody needs the engine to stay responsive meanwhile:
    /// a dry run's. An action whose code is synchronous may then run on the engine's own
    /// thread rather than be handed to another one and back.
    fn completes_at_once(&self) -> bool {
        false
    }
}

/// An action failed; `at` points at the script line that failed, when known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub message: String,
    pub at: Option<SourcePos>,
}

#[async_trait]
pub trait Action: Send + Sync {
    /// Where the action was written; listings and errors show it.
    fn at(&self) -> &SourcePos;
    /// A short description for step lists, e.g. "post action" or the closure's text.
    fn label(&self) -> String;
    async fn run(&self, ctx: ActionContext) -> Result<(), ActionError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, ip: Option<&str>, state: &str) -> VmView {
        VmView {
            name: name.into(),
            group: "web".into(),
            source_ip: None,
            ip: ip.map(|ip| ip.parse().unwrap()),
            replica_name: name.into(),
            site: None,
            host: None,
            network: None,
            dns: vec![],
            tags: BTreeMap::new(),
            services: vec![443],
            state: state.into(),
        }
    }

    #[test]
    fn an_address_is_up_while_a_vm_that_came_up_holds_it() {
        let ip: Ipv4Addr = "10.2.3.21".parse().unwrap();
        let board = VmBoard::new(BTreeMap::from([
            ("web01".to_string(), view("web01", Some("10.2.3.21"), "succeeded")),
            ("web02".to_string(), view("web02", None, "pending")),
        ]));
        assert!(board.is_up_at(ip), "a resumed run's VM already up");
        let before = board.get("web01").unwrap();
        board.update("web01", |v| v.state = "failed".into());
        assert!(!board.is_up_at(ip));
        assert_eq!(before.state, "succeeded", "an action's view does not change under it");
        board.update("web02", |v| {
            v.ip = Some(ip);
            v.state = "succeeded".into();
        });
        assert!(board.is_up_at(ip));
        assert!(board.serves(ip, 443) && !board.serves(ip, 22), "what web02 serves, up at that address");
        assert!(!board.is_up_at("10.2.3.22".parse().unwrap()));
        assert_eq!(board.names_where(|v| v.state == "succeeded"), ["web02"]);
    }
}
