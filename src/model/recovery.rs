//! Recovery points: when they exist (R2 retention, R3 app-consistent snapshots), which
//! ones a replication group shares (R12), and which one a failover picks (R33).
//!
//! Points are not stored: a replication stream makes one at every tick of its copy
//! frequency on the UTC clock, so the set of points is a pure function of the stream and
//! "now". Ticks on the shared UTC grid are what lets group members share points.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub type Timestamp = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// What was on disk at that instant, as after a power cut.
    Crash,
    /// Taken with the guest's volume shadow copy: applications are consistent.
    App,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    pub time: Timestamp,
    pub consistency: Consistency,
}

/// R33: which recovery point a failover uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointChoice {
    /// Process all data already received first: lowest RPO, costs processing time.
    #[default]
    Latest,
    /// The latest point already processed: no wait, lowest RTO.
    LatestProcessed,
    LatestAppConsistent,
    /// The latest point at or before this time, inside the retention window.
    At(Timestamp),
}

impl FromStr for PointChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "latest" => Ok(PointChoice::Latest),
            "latest-processed" => Ok(PointChoice::LatestProcessed),
            "latest-app-consistent" => Ok(PointChoice::LatestAppConsistent),
            other => DateTime::parse_from_rfc3339(other)
                .map(|t| PointChoice::At(t.with_timezone(&Utc)))
                .map_err(|_| {
                    format!("bad recovery point {other:?}: use latest, latest-processed, latest-app-consistent or an RFC 3339 time")
                }),
        }
    }
}

impl fmt::Display for PointChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointChoice::Latest => f.write_str("latest"),
            PointChoice::LatestProcessed => f.write_str("latest-processed"),
            PointChoice::LatestAppConsistent => f.write_str("latest-app-consistent"),
            PointChoice::At(t) => f.write_str(&format_time(*t)),
        }
    }
}

/// Times as reports show them: RFC 3339 in UTC, to the second.
pub fn format_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A duration as a time delta, at most [`MAX_DURATION`](super::duration::MAX_DURATION):
/// a date plus a delta then stays in the calendar's range (chrono's `+` panics outside it)
/// for any date drplan models, even after many such additions.
pub fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d.min(super::duration::MAX_DURATION)).expect("ten years is a time delta")
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// How many points are kept, and the ones a status shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointSummary {
    pub count: usize,
    pub latest: Option<RecoveryPoint>,
    pub latest_app_consistent: Option<RecoveryPoint>,
}

/// The points one replication stream makes: a tick every `every` on the UTC grid from
/// `from` (when delta replication started) to `until` (now, or when it stalled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointSchedule {
    pub from: Timestamp,
    pub until: Timestamp,
    pub every: Duration,
    /// Zero: no app-consistent points.
    pub app_every: Duration,
    pub retention: Duration,
}

impl PointSchedule {
    fn tick_ms(&self) -> i64 {
        self.every.as_millis() as i64
    }

    fn consistency_at(&self, t: Timestamp) -> Consistency {
        let app_ms = self.app_every.as_millis() as i64;
        if app_ms > 0 && t.timestamp_millis().rem_euclid(app_ms) == 0 { Consistency::App } else { Consistency::Crash }
    }

    fn point(&self, ms: i64) -> RecoveryPoint {
        let time = DateTime::from_timestamp_millis(ms).expect("tick inside chrono's range");
        RecoveryPoint { time, consistency: self.consistency_at(time) }
    }

    /// The last tick at or before `t`, if the stream had made it by then.
    fn tick_at_or_before(&self, t: Timestamp) -> Option<i64> {
        let end = t.min(self.until).timestamp_millis();
        let tick = end - end.rem_euclid(self.tick_ms());
        (tick >= self.from.timestamp_millis()).then_some(tick)
    }

    /// R2: the oldest time still kept at `now`. The latest point is always kept, so
    /// retention 0 keeps exactly one point.
    fn window_start(&self, now: Timestamp) -> i64 {
        (now - delta(self.retention)).timestamp_millis()
    }

    /// The first and last ticks kept at `now`, if any.
    fn kept(&self, now: Timestamp) -> Option<(i64, i64)> {
        let last = self.tick_at_or_before(now)?;
        let step = self.tick_ms();
        let first_allowed = self.window_start(now).max(self.from.timestamp_millis());
        let first = first_allowed + (step - first_allowed.rem_euclid(step)) % step;
        Some((first.min(last), last))
    }

    /// Every point kept at `now`, oldest first.
    pub fn points(&self, now: Timestamp) -> Vec<RecoveryPoint> {
        let Some((first, last)) = self.kept(now) else { return Vec::new() };
        let step = self.tick_ms();
        (0..=(last - first) / step).map(|i| self.point(first + i * step)).collect()
    }

    /// What `points` holds, without listing it: a status of 100,000 VMs would otherwise
    /// build hundreds of points per VM to count them.
    pub fn summary(&self, now: Timestamp) -> PointSummary {
        let Some((first, last)) = self.kept(now) else { return PointSummary::default() };
        let step = self.tick_ms();
        // App-consistent ticks are those on both grids: multiples of their least common
        // multiple.
        let app = self.app_every.as_millis() as i64;
        let latest_app_consistent = (app > 0)
            .then(|| {
                let both = step / gcd(step, app) * app;
                last - last.rem_euclid(both)
            })
            .filter(|&tick| tick >= first)
            .map(|tick| self.point(tick));
        PointSummary {
            count: ((last - first) / step + 1) as usize,
            latest: Some(self.point(last)),
            latest_app_consistent,
        }
    }

    pub fn latest(&self, now: Timestamp) -> Option<RecoveryPoint> {
        self.tick_at_or_before(now).map(|ms| self.point(ms))
    }

    pub fn latest_app_consistent(&self, now: Timestamp) -> Option<RecoveryPoint> {
        self.at_or_before(now, now, Some(Consistency::App))
    }

    /// The latest kept point at or before `t` (of the given consistency, if any).
    pub fn at_or_before(&self, t: Timestamp, now: Timestamp, only: Option<Consistency>) -> Option<RecoveryPoint> {
        let latest = self.tick_at_or_before(now)?;
        let mut tick = self.tick_at_or_before(t)?;
        if let Some(Consistency::App) = only {
            let app_ms = self.app_every.as_millis() as i64;
            if app_ms == 0 {
                return None;
            }
            tick -= tick.rem_euclid(app_ms);
        }
        let kept = tick == latest || tick >= self.window_start(now);
        (kept && tick >= self.from.timestamp_millis()).then(|| self.point(tick))
    }

    /// R12: the points every member of a replication group has. Members share the
    /// policy, hence the grid; their common points lie where all their streams overlap.
    pub fn common(schedules: &[PointSchedule]) -> Option<PointSchedule> {
        let first = schedules.first()?;
        let mut common = *first;
        for s in &schedules[1..] {
            if s.every != first.every || s.app_every != first.app_every || s.retention != first.retention {
                return None;
            }
            common.from = common.from.max(s.from);
            common.until = common.until.min(s.until);
        }
        (common.from <= common.until).then_some(common)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn schedule(from: &str, until: &str, every_min: u64, app_hours: u64, retention_hours: u64) -> PointSchedule {
        PointSchedule {
            from: t(from),
            until: t(until),
            every: Duration::from_secs(every_min * 60),
            app_every: Duration::from_secs(app_hours * 3600),
            retention: Duration::from_secs(retention_hours * 3600),
        }
    }

    #[test]
    fn r2_points_inside_retention_are_kept_and_older_ones_pruned() {
        let s = schedule("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", 15, 0, 24);
        let now = t("2026-01-02T12:07:00Z");
        let points = s.points(now);
        assert_eq!(points.first().unwrap().time, t("2026-01-01T12:15:00Z"));
        assert_eq!(points.last().unwrap().time, t("2026-01-02T12:00:00Z"));
        assert_eq!(points.len(), 24 * 4);
        // A custom point inside the window can be used; one outside cannot.
        assert!(s.at_or_before(t("2026-01-01T18:10:00Z"), now, None).is_some());
        assert!(s.at_or_before(t("2026-01-01T11:00:00Z"), now, None).is_none());
    }

    #[test]
    fn r2_retention_zero_keeps_only_the_latest_point() {
        let s = schedule("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", 5, 0, 0);
        let points = s.points(t("2026-01-01T10:02:00Z"));
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].time, t("2026-01-01T10:00:00Z"));
    }

    #[test]
    fn r3_app_consistent_points_at_their_frequency() {
        let s = schedule("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", 5, 4, 24);
        let now = t("2026-01-01T10:02:00Z");
        let app: Vec<_> =
            s.points(now).into_iter().filter(|p| p.consistency == Consistency::App).map(|p| p.time).collect();
        assert_eq!(app, vec![t("2026-01-01T00:00:00Z"), t("2026-01-01T04:00:00Z"), t("2026-01-01T08:00:00Z")]);
        assert_eq!(s.latest_app_consistent(now).unwrap().time, t("2026-01-01T08:00:00Z"));
        assert_eq!(s.latest(now).unwrap().consistency, Consistency::Crash);
    }

    #[test]
    fn r12_replication_group_members_share_points() {
        let a = schedule("2026-01-01T00:03:00Z", "2026-01-03T00:00:00Z", 5, 1, 24);
        let b = schedule("2026-01-01T00:41:00Z", "2026-01-01T09:58:00Z", 5, 1, 24);
        let now = t("2026-01-01T10:02:00Z");
        let common = PointSchedule::common(&[a, b]).unwrap();
        let pts = common.points(now);
        assert_eq!(pts.first().unwrap().time, t("2026-01-01T00:45:00Z"));
        // b stalled at 09:58, so the latest common point is b's last one.
        assert_eq!(common.latest(now).unwrap().time, t("2026-01-01T09:55:00Z"));
        for p in &pts {
            assert!(a.points(now).contains(p) && b.points(now).contains(p), "{p:?} is not shared");
        }
    }

    #[test]
    fn a_summary_counts_and_picks_what_the_list_of_points_holds() {
        let shapes = [(5, 4, 24), (15, 0, 72), (5, 1, 0), (15, 1, 2), (5, 0, 0)];
        let froms = ["2026-01-01T00:00:00Z", "2026-01-01T00:03:00Z", "2026-01-01T09:59:59Z"];
        let untils = ["2026-01-01T09:58:00Z", "2026-01-03T00:00:00Z"];
        let nows = ["2025-12-31T23:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T10:02:00Z", "2026-01-02T07:30:00Z"];
        for (every, app, retention) in shapes {
            for (from, until, now) in
                froms.iter().flat_map(|f| untils.iter().flat_map(move |u| nows.map(|n| (f, u, n))))
            {
                let s = schedule(from, until, every, app, retention);
                let now = t(now);
                let points = s.points(now);
                let expected = PointSummary {
                    count: points.len(),
                    latest: points.last().copied(),
                    latest_app_consistent: points.iter().rev().find(|p| p.consistency == Consistency::App).copied(),
                };
                assert_eq!(s.summary(now), expected, "{s:?} at {now}");
            }
        }
    }

    #[test]
    fn r33_point_choice_parses_every_kind() {
        assert_eq!("latest".parse::<PointChoice>().unwrap(), PointChoice::Latest);
        assert_eq!("latest-processed".parse::<PointChoice>().unwrap(), PointChoice::LatestProcessed);
        assert_eq!("latest-app-consistent".parse::<PointChoice>().unwrap(), PointChoice::LatestAppConsistent);
        assert_eq!("2026-01-01T10:00:00Z".parse::<PointChoice>().unwrap(), PointChoice::At(t("2026-01-01T10:00:00Z")));
        assert!("yesterday".parse::<PointChoice>().unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn a_delta_is_at_most_the_longest_duration_so_adding_it_never_overflows() {
        assert_eq!(delta(Duration::MAX), delta(crate::model::MAX_DURATION));
        assert_eq!(delta(Duration::from_secs(90)), TimeDelta::seconds(90));
        let far = t("2026-01-01T00:00:00Z") + delta(Duration::MAX) * 100;
        assert!(far > t("3000-01-01T00:00:00Z"));
    }
}
