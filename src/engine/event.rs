//! Events: everything that happens in a run, on one bus that hooks, logs, displays and
//! (later) the journal subscribe to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Serialize, Serializer};

use crate::model::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    RunStarted,
    RunSucceeded,
    RunFailed,
    GroupStarted,
    GroupSucceeded,
    GroupFailed,
    VmStarted,
    VmSucceeded,
    VmRetried,
    VmFailed,
    /// Not attempted: an earlier group failed and the plan stopped.
    VmSkipped,
    ActionStarted,
    ActionSucceeded,
    ActionRetried,
    ActionFailed,
    ManualWaiting,
    ManualDone,
    /// What an action asked of the world (a DNS update, a wait...).
    Call,
    Log,
    HookFailed,
}

impl EventKind {
    /// The name hooks match on (`plan.on("vm.failed", ...)`).
    pub fn name(self) -> &'static str {
        use EventKind::*;
        match self {
            RunStarted => "run.started",
            RunSucceeded => "run.succeeded",
            RunFailed => "run.failed",
            GroupStarted => "group.started",
            GroupSucceeded => "group.succeeded",
            GroupFailed => "group.failed",
            VmStarted => "vm.started",
            VmSucceeded => "vm.succeeded",
            VmRetried => "vm.retried",
            VmFailed => "vm.failed",
            VmSkipped => "vm.skipped",
            ActionStarted => "action.started",
            ActionSucceeded => "action.succeeded",
            ActionRetried => "action.retried",
            ActionFailed => "action.failed",
            ManualWaiting => "manual.waiting",
            ManualDone => "manual.done",
            Call => "call",
            Log => "log",
            HookFailed => "hook.failed",
        }
    }

    /// Whether `pattern` ("vm.failed", "vm.*", "*") selects this kind.
    pub fn matches(self, pattern: &str) -> bool {
        let name = self.name();
        match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        }
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Order of publication within the run.
    pub seq: u64,
    pub at: Timestamp,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// The action, manual step or call the event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// An error, an address, a recovery point: what the event reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where the event happened, with what it reports.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub group: Option<String>,
    pub vm: Option<String>,
}

type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// Publishes events in order to every subscriber and keeps them for the run's report.
#[derive(Default)]
pub struct EventBus {
    seq: AtomicU64,
    subscribers: Mutex<Vec<Subscriber>>,
    events: Mutex<Vec<Event>>,
}

impl EventBus {
    pub fn subscribe(&self, subscriber: impl Fn(&Event) + Send + Sync + 'static) {
        self.subscribers.lock().expect("bus lock").push(Arc::new(subscriber));
    }

    pub fn publish(
        &self,
        at: Timestamp,
        kind: EventKind,
        scope: &Scope,
        step: Option<String>,
        detail: Option<String>,
    ) -> Event {
        // One lock for numbering and recording, so the kept order is the seq order.
        let mut events = self.events.lock().expect("bus lock");
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at,
            kind,
            group: scope.group.clone(),
            vm: scope.vm.clone(),
            step,
            detail,
        };
        events.push(event.clone());
        drop(events);
        let subscribers = self.subscribers.lock().expect("bus lock").clone();
        for subscriber in subscribers {
            subscriber(&event);
        }
        event
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("bus lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_patterns_match_exact_names_and_prefixes() {
        assert!(EventKind::VmFailed.matches("vm.failed"));
        assert!(EventKind::VmFailed.matches("vm.*"));
        assert!(EventKind::VmFailed.matches("*"));
        assert!(!EventKind::VmFailed.matches("vm.succeeded"));
        assert!(!EventKind::GroupFailed.matches("vm.*"));
    }
}
