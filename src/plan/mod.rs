//! The plan IR: a recovery plan as data — groups in order (R20), their members, the
//! pre/post actions and manual steps around them (R21), hooks on events, failure
//! policies — and its static validation against an inventory. Built by the script
//! layer, run by the engine; knows nothing of Rhai.

pub mod action;
pub mod config;
mod narrow;
pub mod source;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

pub use action::{Action, ActionContext, ActionError, Direction, EventView, Services, VmBoard, VmOperation, VmView};
pub use source::{AddressUse, DnsSetting, Mistake, SourcePos, UsedVms, Written, WrittenName, WrittenWait};
pub use validate::{Finding, ResolvedGroup, ResolvedPlan, Severity, Validation, validate};

/// A recovery plan.
#[derive(Clone)]
pub struct Plan {
    pub name: String,
    /// R20: the plan fails VMs over from `source` to `target`.
    pub source: String,
    pub target: String,
    /// The recovery time objective the plan is measured against.
    pub rto: Option<Duration>,
    /// R30: the isolated network test failovers use; `None` for no network.
    pub test_network: Option<String>,
    /// Where `recovery_plan(...)` was called.
    pub at: SourcePos,
    /// R21: steps before the first group and after the last.
    pub pre: Vec<Step>,
    pub post: Vec<Step>,
    /// R20: started in this order, each after the previous one's VMs are all up.
    pub groups: Vec<Group>,
    pub hooks: Vec<Hook>,
    /// The failure policy of groups that set none.
    pub policy: FailurePolicy,
    /// R50: point every VM's DNS names at its replica as soon as it is up, and verify.
    pub update_dns: bool,
    /// What the plan's files show beyond this data, for its checks.
    pub written: Written,
}

#[derive(Clone)]
pub struct Group {
    pub name: String,
    pub at: SourcePos,
    pub members: Vec<Member>,
    pub pre: Vec<Step>,
    pub post: Vec<Step>,
    /// Run for each VM of the group as soon as it is up.
    pub post_each: Vec<Arc<dyn Action>>,
    pub policy: Option<FailurePolicy>,
    /// VMs whose failure does not stop the plan.
    pub optional: Vec<String>,
}

impl Group {
    /// A group of `members`, with no step yet and the plan's failure policy.
    pub fn new(name: impl Into<String>, at: SourcePos, members: Vec<Member>) -> Group {
        Group {
            name: name.into(),
            at,
            members,
            pre: Vec::new(),
            post: Vec::new(),
            post_each: Vec::new(),
            policy: None,
            optional: Vec::new(),
        }
    }
}

/// How a group names its VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Vm(String),
    /// Every VM of the plan's source site with this tag value.
    Tag {
        key: String,
        value: String,
    },
    /// Every VM of a replication group (R12).
    ReplicationGroup(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub selector: Selector,
    pub at: SourcePos,
}

/// A step around a group or the plan (R21).
#[derive(Clone)]
pub enum Step {
    Action(Arc<dyn Action>),
    Manual(Manual),
}

/// R21: the plan pauses until an operator marks this done.
#[derive(Debug, Clone, PartialEq)]
pub struct Manual {
    pub text: String,
    /// How long to wait for the operator before the step fails.
    pub timeout: Duration,
    /// How long the operator is expected to take: what a dry run predicts.
    pub estimate: Duration,
    pub at: SourcePos,
}

/// `plan.on(event, action)`: runs the action whenever the event happens.
#[derive(Clone)]
pub struct Hook {
    /// An event kind ("vm.failed") or a prefix with a wildcard ("vm.*").
    pub event: String,
    pub action: Arc<dyn Action>,
}

impl Hook {
    /// Whether the hook runs on the event named `event` ("vm.failed").
    pub fn selects(&self, event: &str) -> bool {
        event_selected(&self.event, event)
    }
}

/// Whether `pattern` ("vm.failed", "vm.*", "*") selects the event named `event`.
pub fn event_selected(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => event == pattern,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Stop the plan after the failing group.
    Stop,
    /// Note the failure and go on with the next group.
    Continue,
}

/// What happens when a VM's failover or an action fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FailurePolicy {
    pub retries: u32,
    /// Wait before the first retry; doubles for each next one.
    pub backoff: Duration,
    pub on_failure: OnFailure,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy { retries: 0, backoff: Duration::from_secs(30), on_failure: OnFailure::Stop }
    }
}

impl Plan {
    /// A plan from `source` to `target` with nothing in it yet: no RTO target, no test
    /// network, no group, step or hook, the default failure policy.
    pub fn new(name: impl Into<String>, (source, target): (&str, &str), at: SourcePos) -> Plan {
        Plan {
            name: name.into(),
            source: source.into(),
            target: target.into(),
            rto: None,
            test_network: None,
            at,
            pre: Vec::new(),
            post: Vec::new(),
            groups: Vec::new(),
            hooks: Vec::new(),
            policy: FailurePolicy::default(),
            update_dns: false,
            written: Written::default(),
        }
    }

    pub fn policy_of(&self, group: &Group) -> FailurePolicy {
        group.policy.unwrap_or(self.policy)
    }
}
