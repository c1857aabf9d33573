//! Events: everything that happens in a run, on one bus that hooks, logs, displays and
//! (later) the journal subscribe to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::model::Timestamp;

/// Declares the event kinds once: the enum, the list of all of them, and the names
/// hooks match on.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $kind,)*
        }

        impl EventKind {
            pub const ALL: &[EventKind] = &[$(EventKind::$kind,)*];

            /// The name hooks match on (`plan.on("vm.failed", ...)`).
            pub fn name(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    RunStarted => "run.started",
    /// A stopped run continues (`drplan resume`).
    RunResumed => "run.resumed",
    RunSucceeded => "run.succeeded",
    RunFailed => "run.failed",
    RunCancelled => "run.cancelled",
    GroupStarted => "group.started",
    GroupSucceeded => "group.succeeded",
    GroupFailed => "group.failed",
    VmStarted => "vm.started",
    /// A failover call is about to be made; `detail` is its idempotency key. Journaled
    /// before the call, so a resumed run knows to ask the fabric what became of it.
    VmAttempt => "vm.attempt",
    VmSucceeded => "vm.succeeded",
    VmRetried => "vm.retried",
    VmFailed => "vm.failed",
    /// Not attempted: an earlier group failed and the plan stopped.
    VmSkipped => "vm.skipped",
    ActionStarted => "action.started",
    ActionSucceeded => "action.succeeded",
    ActionRetried => "action.retried",
    ActionFailed => "action.failed",
    ManualWaiting => "manual.waiting",
    ManualDone => "manual.done",
    /// What an action asked of the world (a DNS update, a wait...).
    Call => "call",
    Log => "log",
    HookFailed => "hook.failed",
}

impl EventKind {
    /// Whether the engine acts on this event once published (a failover call after its
    /// attempt, a step after its start, the caller after the run's end), and so must
    /// know it is on disk first.
    pub fn is_acted_on(self) -> bool {
        matches!(
            self,
            EventKind::VmAttempt
                | EventKind::ActionStarted
                | EventKind::ManualWaiting
                | EventKind::RunSucceeded
                | EventKind::RunFailed
                | EventKind::RunCancelled
        )
    }

    /// Whether this is the last event of a run (or of one process's part of it).
    pub fn ends_run(self) -> bool {
        matches!(self, EventKind::RunSucceeded | EventKind::RunFailed | EventKind::RunCancelled)
    }

    /// Whether `pattern` ("vm.failed", "vm.*", "*") selects this kind.
    pub fn matches(self, pattern: &str) -> bool {
        crate::plan::event_selected(pattern, self.name())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event kind {name:?}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Order of publication within the run.
    pub seq: u64,
    pub at: Timestamp,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// The action, manual step or call the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// An error, an address, a recovery point: what the event reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The step's stable name within the plan (`group/database/post/0`, `vm/web01/failover`):
    /// what a resumed run matches to know what is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What a resumed run needs back: a VM's failover outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<EventData>,
}

/// Structured data an event carries (a VM's failover outcome), kept as the JSON text it
/// is journaled as: tens of thousands of events hold it, and only the few readers that
/// need a field parse it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventData(Box<RawValue>);

impl EventData {
    pub fn of<T: Serialize>(value: &T) -> Option<EventData> {
        serde_json::value::to_raw_value(value).ok().map(EventData)
    }

    pub fn parse<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// An event about to be published.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub step: Option<String>,
    pub detail: Option<String>,
    pub key: Option<String>,
    pub data: Option<EventData>,
}

/// Where the event happened, with what it reports.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub group: Option<String>,
    pub vm: Option<String>,
}

type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// Publishes events in order to every subscriber and keeps them for the run's report.
/// A resumed run's bus numbers on from where the journal stopped.
#[derive(Default)]
pub struct EventBus {
    seq: AtomicU64,
    subscribers: Mutex<Vec<Subscriber>>,
    events: Mutex<Vec<Event>>,
}

impl EventBus {
    pub fn starting_at(seq: u64) -> EventBus {
        EventBus { seq: AtomicU64::new(seq), ..EventBus::default() }
    }

    pub fn subscribe(&self, subscriber: impl Fn(&Event) + Send + Sync + 'static) {
        self.subscribers.lock().expect("bus lock").push(Arc::new(subscriber));
    }

    /// Numbers an event, shows it to `with` (what its publisher does with it: journal
    /// it), keeps it, and shows it to every subscriber. The bus keeps the one copy: a
    /// run publishes hundreds of thousands of events, and the subscribers, if any, see a
    /// clone.
    pub fn publish<R>(
        &self,
        at: Timestamp,
        kind: EventKind,
        scope: &Scope,
        draft: Draft,
        with: impl FnOnce(&Event) -> R,
    ) -> R {
        let subscribers = self.subscribers.lock().expect("bus lock").clone();
        // One lock for numbering and recording, so the kept order is the seq order.
        let mut events = self.events.lock().expect("bus lock");
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at,
            kind,
            group: scope.group.clone(),
            vm: scope.vm.clone(),
            step: draft.step,
            detail: draft.detail,
            key: draft.key,
            data: draft.data,
        };
        let result = with(&event);
        let seen = (!subscribers.is_empty()).then(|| event.clone());
        events.push(event);
        drop(events);
        if let Some(event) = seen {
            for subscriber in subscribers {
                subscriber(&event);
            }
        }
        result
    }

    /// The events published so far, leaving the bus empty: a run hands them over once,
    /// when it ends, rather than copying tens of thousands of them.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().expect("bus lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_read_back_by_name() {
        for &kind in EventKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<EventKind>("\"vm.exploded\"").is_err());
    }

    #[test]
    fn hook_patterns_match_exact_names_and_prefixes() {
        assert!(EventKind::VmFailed.matches("vm.failed"));
        assert!(EventKind::VmFailed.matches("vm.*"));
        assert!(EventKind::VmFailed.matches("*"));
        assert!(!EventKind::VmFailed.matches("vm.succeeded"));
        assert!(!EventKind::GroupFailed.matches("vm.*"));
    }
}
