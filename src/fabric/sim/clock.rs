//! The simulated datacenter's modelled clock.
//!
//! Modelled time is logical: an operation that starts at `now` and spends 90 s ends at
//! exactly `now + 90s`, and the clock moves to the latest end any operation reached.
//! Reports are therefore exact and repeatable, while real time is only used to pace the
//! operations (modelled time divided by the speed factor), on tokio's clock so that tests
//! with paused time run instantly. Between commands, time moves only when the operator
//! says so (`drplan advance`).

use std::sync::Mutex;
use std::time::Duration;

use crate::model::Timestamp;
use crate::model::recovery::delta;

#[derive(Debug)]
pub struct SimClock {
    now: Mutex<Timestamp>,
    /// Modelled milliseconds per real millisecond.
    speed: u32,
}

impl SimClock {
    pub fn new(start: Timestamp, speed: u32) -> Self {
        SimClock { now: Mutex::new(start), speed: speed.max(1) }
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

    /// Lets `modelled` time pass in real time, shrunk by the speed factor.
    pub async fn pace(&self, modelled: Duration) {
        tokio::time::sleep(modelled / self.speed).await;
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
