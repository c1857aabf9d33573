//! The slots of `--parallel`, handed out in modelled time.
//!
//! A group's VMs take slots in plan order, and each starts when the earliest slot comes
//! free in modelled time: list scheduling, what a dry run predicts and a critical path
//! computes. The slot that frees first in modelled time is not always the task that
//! finishes first in real time, so a VM waits for its turn until every running holder
//! has reported progress up to the earliest free time: then no holder can free a slot
//! earlier, and the choice cannot depend on how tokio happened to run the tasks. Holders
//! report progress as they go, so the wait is short and slots that never bind cost none.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::model::Timestamp;

pub struct Slots {
    state: Mutex<SlotState>,
    /// One per ticket: only the ticket whose turn it is is woken, so a grant costs the
    /// same in a group of ten VMs as in one of a hundred thousand.
    turns: Vec<Notify>,
}

struct SlotState {
    /// When each free slot came free.
    free: BinaryHeap<Reverse<Timestamp>>,
    /// How many holders have got as far as each time: none of them frees its slot before.
    holders: BTreeMap<Timestamp, usize>,
    /// The ticket served next.
    next: usize,
}

impl SlotState {
    /// When the next ticket can start, if that is known yet.
    fn earliest(&self) -> Option<Timestamp> {
        let Reverse(earliest) = *self.free.peek()?;
        let slowest = self.holders.keys().next();
        slowest.is_none_or(|held| *held >= earliest).then_some(earliest)
    }

    fn hold(&mut self, at: Timestamp) {
        *self.holders.entry(at).or_default() += 1;
    }

    fn unhold(&mut self, at: Timestamp) {
        if let Some(count) = self.holders.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                self.holders.remove(&at);
            }
        }
    }
}

impl Slots {
    /// `count` slots, free from `from`, for `tickets` VMs that take them in order.
    pub fn new(count: usize, from: Timestamp, tickets: usize) -> Arc<Slots> {
        let free = std::iter::repeat_n(Reverse(from), count.max(1)).collect();
        let state = SlotState { free, holders: BTreeMap::new(), next: 0 };
        Arc::new(Slots { state: Mutex::new(state), turns: (0..tickets).map(|_| Notify::new()).collect() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().expect("slots lock")
    }

    /// Tells the ticket whose turn it is to look again (a permit is kept if it is not
    /// waiting yet).
    fn wake_next(&self, state: &SlotState) {
        if let Some(turn) = self.turns.get(state.next) {
            turn.notify_one();
        }
    }

    /// Waits for `ticket`'s turn and a slot; returns the slot and when the VM starts.
    pub async fn take(self: &Arc<Self>, ticket: usize) -> (Hold, Timestamp) {
        loop {
            {
                let mut state = self.lock();
                if state.next == ticket
                    && let Some(start) = state.earliest()
                {
                    state.free.pop();
                    state.hold(start);
                    state.next += 1;
                    self.wake_next(&state);
                    return (Hold { slots: self.clone(), at: start }, start);
                }
            }
            self.turns[ticket].notified().await;
        }
    }
}

/// A slot held by a running VM. Dropping it frees the slot at the last time reported.
pub struct Hold {
    slots: Arc<Slots>,
    at: Timestamp,
}

impl Hold {
    /// The holder got as far as `t`: it will not free its slot before.
    pub fn progress(&mut self, t: Timestamp) {
        if t <= self.at {
            return;
        }
        let mut state = self.slots.lock();
        state.unhold(self.at);
        state.hold(t);
        self.at = t;
        self.slots.wake_next(&state);
    }

    /// Frees the slot at `t`.
    pub fn release(mut self, t: Timestamp) {
        self.progress(t);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.unhold(self.at);
        state.free.push(Reverse(self.at));
        self.slots.wake_next(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(0, 0).unwrap() + TimeDelta::seconds(s)
    }

    #[tokio::test]
    async fn a_vm_starts_when_the_earliest_slot_frees_in_modelled_time_not_in_real_time() {
        let slots = Slots::new(2, t(0), 3);
        let (slow, s0) = slots.take(0).await;
        let (fast, s1) = slots.take(1).await;
        assert_eq!((s0, s1), (t(0), t(0)));
        let third = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take(2).await.1 }
        });
        // The slow one ends first in real time, at 300 s; the fast one is still running
        // (in real time) but has reached 60 s: nobody can start yet, as it may free sooner.
        let mut fast = fast;
        fast.progress(t(60));
        slow.release(t(300));
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "must wait for the holder that may free earlier");
        fast.release(t(90));
        assert_eq!(third.await.unwrap(), t(90));
    }

    #[tokio::test]
    async fn tickets_are_served_in_order() {
        let slots = Slots::new(1, t(0), 3);
        let later = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take(2).await.1 }
        });
        let (first, _) = slots.take(0).await;
        first.release(t(10));
        let (second, start) = slots.take(1).await;
        assert_eq!(start, t(10));
        second.release(t(25));
        assert_eq!(later.await.unwrap(), t(25));
    }
}
