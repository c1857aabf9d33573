//! What a run already did, read back from its journal: the steps it finished, the VMs it
//! brought up (with their outcomes), the failover attempts it made and the one it may
//! have been making when it stopped. A resumed run skips what is done and asks the
//! fabric about an attempt it never saw finish.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind};
use crate::fabric::FailoverOutcome;
use crate::model::Timestamp;

/// What a failover attempt's intent carries besides its key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// R12: the time its replication group's recovery point is chosen as of.
    pub points_as_of: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    /// When the run first started: the RTO counts from there.
    pub started: Option<Timestamp>,
    /// The latest modelled time any of its events reached: a resumed run goes on from
    /// there (or later), never from before.
    pub last_at: Option<Timestamp>,
    /// The next event number.
    pub next_seq: u64,
    done: HashSet<String>,
    outcomes: HashMap<String, FailoverOutcome>,
    attempts: HashMap<String, u32>,
    open_attempt: HashMap<String, String>,
    /// R12: each VM's recovery point horizon, as its attempts recorded it.
    horizons: HashMap<String, Timestamp>,
}

impl History {
    pub fn from_events(events: &[Event]) -> History {
        let mut history = History::default();
        for event in events {
            history.next_seq = history.next_seq.max(event.seq + 1);
            history.last_at = Some(history.last_at.map_or(event.at, |last| last.max(event.at)));
            let vm = event.vm.clone().unwrap_or_default();
            match event.kind {
                EventKind::RunStarted => history.started = history.started.or(Some(event.at)),
                EventKind::ActionSucceeded | EventKind::ManualDone | EventKind::GroupSucceeded => {
                    history.done.extend(event.key.clone());
                }
                EventKind::VmAttempt => {
                    *history.attempts.entry(vm.clone()).or_default() += 1;
                    if let Some(attempt) = event.data.as_ref().and_then(|d| d.parse::<Attempt>().ok()) {
                        history.horizons.insert(vm.clone(), attempt.points_as_of);
                    }
                    if let Some(key) = &event.detail {
                        history.open_attempt.insert(vm, key.clone());
                    }
                }
                EventKind::VmSucceeded => {
                    history.open_attempt.remove(&vm);
                    if let Some(outcome) = event.data.as_ref().and_then(|d| d.parse().ok()) {
                        history.outcomes.insert(vm, outcome);
                    }
                }
                EventKind::VmRetried | EventKind::VmFailed => {
                    history.open_attempt.remove(&vm);
                }
                _ => {}
            }
        }
        history
    }

    pub fn is_done(&self, key: &str) -> bool {
        self.done.contains(key)
    }

    /// The outcome of a VM the run already brought up.
    pub fn outcome(&self, vm: &str) -> Option<&FailoverOutcome> {
        self.outcomes.get(vm)
    }

    pub fn outcomes(&self) -> impl Iterator<Item = (&String, &FailoverOutcome)> {
        self.outcomes.iter()
    }

    /// How many failover attempts the run made for `vm`.
    pub fn attempts(&self, vm: &str) -> u32 {
        self.attempts.get(vm).copied().unwrap_or(0)
    }

    /// R12: the recovery point horizon each VM's attempts used.
    pub fn horizons(&self) -> impl Iterator<Item = (&String, Timestamp)> {
        self.horizons.iter().map(|(vm, at)| (vm, *at))
    }

    /// The idempotency key of an attempt journaled without a result.
    pub fn open_attempt(&self, vm: &str) -> Option<&str> {
        self.open_attempt.get(vm).map(String::as_str)
    }
}
