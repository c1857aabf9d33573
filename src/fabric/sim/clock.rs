//! The simulated datacenter's modelled clock.
//!
//! Modelled time is logical: an operation that starts at `now` and spends 90 s ends at
//! exactly `now + 90s`, and the clock moves to the latest end any operation reached.
//! Reports are therefore exact and repeatable, while real time is only used to pace the
//! operations (modelled time divided by the speed factor), on tokio's clock so that tests
//! with paused time run instantly. An unpaced clock spends no real time at all: what a
//! benchmark of the engine or a fast drill wants. Between commands, time moves only when
//! the operator says so (`drplan advance`).

use std::sync::Mutex;
use std::time::Duration;

use crate::model::Timestamp;
use crate::model::recovery::delta;

#[derive(Debug)]
pub struct SimClock {
    now: Mutex<Timestamp>,
    /// Modelled milliseconds per real millisecond; `None`: operations take no real time.
    speed: Option<u32>,
}

impl SimClock {
    /// A clock that paces operations at `speed`.
    pub fn new(start: Timestamp, speed: u32) -> Self {
        SimClock { now: Mutex::new(start), speed: Some(speed.max(1)) }
    }

    /// A clock whose operations complete at once in real time.
    pub fn unpaced(start: Timestamp) -> Self {
        SimClock { now: Mutex::new(start), speed: None }
    }

    /// Whether operations take real time (see [`SimClock::pace`]).
    pub fn is_paced(&self) -> bool {
        self.speed.is_some()
    }

    pub fn now(&self) -> Timestamp {
        *self.now.lock().expect("clock lock")
    }

    /// An operation reached `t`: the clock never goes back.
    pub fn reached(&self, t: Timestamp) {
        let mut now = self.now.lock().expect("clock lock");
        *now = (*now).max(t);
    }

    pub fn advance(&self, by: Duration) -> Timestamp {
        let mut now = self.now.lock().expect("clock lock");
        *now += delta(by);
        *now
    }

    /// Lets `modelled` time pass in real time, shrunk by the speed factor. Unpaced, it
    /// returns at once, without even a zero sleep (which would still yield to tokio's
    /// timer): only the modelled clock moves, when the operation reports where it got.
    pub async fn pace(&self, modelled: Duration) {
        if let Some(speed) = self.speed {
            tokio::time::sleep(modelled / speed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[tokio::test(start_paused = true)]
    async fn pacing_shrinks_modelled_time_by_the_speed_factor() {
        let clock = SimClock::new(DateTime::from_timestamp(0, 0).unwrap(), 600);
        let before = tokio::time::Instant::now();
        clock.pace(Duration::from_secs(600)).await;
        assert_eq!(before.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unpaced_clock_lets_no_real_time_pass() {
        let clock = SimClock::unpaced(DateTime::from_timestamp(0, 0).unwrap());
        let before = tokio::time::Instant::now();
        // Ready at the first poll: it never waits on tokio's timer, which paused time
        // would otherwise advance.
        let mut pacing = std::pin::pin!(clock.pace(Duration::from_secs(3600)));
        let waker = std::task::Waker::noop();
        assert!(pacing.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_ready());
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let start = DateTime::from_timestamp(1000, 0).unwrap();
        let clock = SimClock::new(start, 1);
        clock.reached(DateTime::from_timestamp(500, 0).unwrap());
        assert_eq!(clock.now(), start);
        clock.reached(DateTime::from_timestamp(2000, 0).unwrap());
        assert_eq!(clock.advance(Duration::from_secs(10)), DateTime::from_timestamp(2010, 0).unwrap());
    }
}
