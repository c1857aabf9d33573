//! `[simulation]` and `[throttle]`: the settings of the whole file.

use std::time::Duration;

use toml::Spanned;

use super::checker::Checker;
use super::doc::{SimulationDoc, ThrottleDoc};
use super::values::{DEFAULT_START, parse_hours, rfc3339};
use crate::model::duration::parse_duration;
use crate::model::inventory::Simulation;
use crate::model::policy::Throttle;

const DEFAULT_SPEED: u32 = 600;
const MAX_SPEED: i64 = 1_000_000;
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl Checker<'_> {
    pub(super) fn simulation(&mut self, doc: &SimulationDoc) -> (Simulation, Duration) {
        let default_start = rfc3339(DEFAULT_START).expect("the default start is RFC 3339");
        let start = self.parse_or(doc.start.as_ref(), "simulation.start", default_start, rfc3339);
        let speed = match &doc.speed {
            Some(speed) if !(1..=MAX_SPEED).contains(speed.get_ref()) => {
                let message = format!(
                    "speed {} is outside 1 to {MAX_SPEED} (modelled milliseconds per real millisecond)",
                    speed.get_ref()
                );
                self.error(speed.span(), "simulation.speed", message);
                DEFAULT_SPEED
            }
            Some(speed) => *speed.get_ref() as u32,
            None => DEFAULT_SPEED,
        };
        let shutdown_timeout = self.parse_or(
            doc.shutdown_timeout.as_ref(),
            "simulation.shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            parse_duration,
        );
        (Simulation { start, speed, pace: doc.pace.unwrap_or(true) }, shutdown_timeout)
    }

    /// R15.
    pub(super) fn throttle(&mut self, doc: &ThrottleDoc) -> Throttle {
        let default = Throttle::default();
        let throttle = Throttle {
            work_hours: self.parse_or(doc.work_hours.as_ref(), "throttle.work_hours", default.work_hours, parse_hours),
            work_kbps: doc.work_kbps.as_ref().map_or(default.work_kbps, |v| *v.get_ref()),
            off_hours_kbps: doc.off_hours_kbps.as_ref().map_or(default.off_hours_kbps, |v| *v.get_ref()),
            threads: doc.threads.as_ref().map_or(default.threads, |v| *v.get_ref()),
        };
        // Throttle::validate stops at the first broken limit and does not say which field
        // it is: validating each given field alone against the defaults reports them all,
        // each at its value.
        let probes = [
            (
                "work_hours",
                doc.work_hours.as_ref().map(Spanned::span),
                Throttle { work_hours: throttle.work_hours, ..default.clone() },
            ),
            (
                "work_kbps",
                doc.work_kbps.as_ref().map(Spanned::span),
                Throttle { work_kbps: throttle.work_kbps, ..default.clone() },
            ),
            (
                "off_hours_kbps",
                doc.off_hours_kbps.as_ref().map(Spanned::span),
                Throttle { off_hours_kbps: throttle.off_hours_kbps, ..default.clone() },
            ),
            (
                "threads",
                doc.threads.as_ref().map(Spanned::span),
                Throttle { threads: throttle.threads, ..default.clone() },
            ),
        ];
        for (field, span, probe) in probes {
            if let (Some(span), Err(message)) = (span, probe.validate()) {
                self.error(span, format!("throttle.{field}"), message);
            }
        }
        throttle
    }
}
