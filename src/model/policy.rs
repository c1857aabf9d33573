//! Replication policies and their rules: copy frequency (R1), retention (R2),
//! app-consistent snapshots (R3), initial replication (R4), throttling (R15) and the
//! fixed failback policy (R37).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// R1: how often changes are copied. 5 minutes unless the policy says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CopyFrequency {
    #[serde(rename = "30s")]
    Seconds30,
    #[default]
    #[serde(rename = "5m")]
    Minutes5,
    #[serde(rename = "15m")]
    Minutes15,
}

impl CopyFrequency {
    pub fn as_duration(self) -> Duration {
        match self {
            CopyFrequency::Seconds30 => Duration::from_secs(30),
            CopyFrequency::Minutes5 => Duration::from_secs(300),
            CopyFrequency::Minutes15 => Duration::from_secs(900),
        }
    }

    /// R1: the only frequencies offered.
    pub fn from_duration(d: Duration) -> Option<Self> {
        [CopyFrequency::Seconds30, CopyFrequency::Minutes5, CopyFrequency::Minutes15]
            .into_iter()
            .find(|f| f.as_duration() == d)
    }
}

/// The storage class replicas are written to on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageTier {
    #[default]
    Standard,
    Premium,
}

/// R4: how the first full copy of the disks reaches the target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum InitialReplication {
    /// Over the network, at the replication bandwidth.
    #[default]
    Network,
    /// Exported on the source, carried, and imported on the target; takes `transfer`.
    Offline { export_path: String, import_path: String, transfer: Duration },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationPolicy {
    pub name: String,
    pub copy_frequency: CopyFrequency,
    /// R2: how long recovery points are kept. Zero keeps only the latest one.
    pub retention: Duration,
    /// R3: how often an app-consistent snapshot is taken; zero means never.
    pub app_consistent_every: Duration,
    pub initial_replication: InitialReplication,
    /// R4: initial replication starts this long after protection is enabled.
    pub initial_replication_delay: Duration,
    pub compression: bool,
    pub encryption_at_rest: bool,
    pub target_storage: StorageTier,
    /// R15: replication is unhealthy when its current RPO exceeds this.
    pub rpo_threshold: Duration,
}

/// R37: the policy of replication from the recovery site back to the original site.
pub const FAILBACK_POLICY_NAME: &str = "failback";

impl ReplicationPolicy {
    /// R37: failback replication uses this policy, whatever the forward policy was.
    pub fn failback() -> Self {
        ReplicationPolicy {
            name: FAILBACK_POLICY_NAME.into(),
            copy_frequency: CopyFrequency::Minutes5,
            retention: Duration::from_secs(24 * 3600),
            app_consistent_every: Duration::from_secs(3600),
            initial_replication: InitialReplication::Network,
            initial_replication_delay: Duration::ZERO,
            compression: false,
            encryption_at_rest: false,
            target_storage: StorageTier::Standard,
            rpo_threshold: Duration::from_secs(15 * 60),
        }
    }

    /// Checks R1 and R3. Each error says which setting is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.copy_frequency == CopyFrequency::Seconds30 && self.target_storage == StorageTier::Premium {
            return Err(PolicyError::ThirtySecondsToPremium);
        }
        let hours = self.app_consistent_every.as_secs_f64() / 3600.0;
        if !self.app_consistent_every.is_zero() {
            if !self.app_consistent_every.as_secs().is_multiple_of(3600) || !(1.0..=12.0).contains(&hours) {
                return Err(PolicyError::AppConsistentFrequency(HumanDuration(self.app_consistent_every)));
            }
            if self.app_consistent_every >= self.retention {
                return Err(PolicyError::AppConsistentNotBelowRetention {
                    every: HumanDuration(self.app_consistent_every),
                    retention: HumanDuration(self.retention),
                });
            }
        }
        if !self.retention.as_secs().is_multiple_of(3600) {
            return Err(PolicyError::RetentionNotHours(HumanDuration(self.retention)));
        }
        if self.rpo_threshold.is_zero() {
            return Err(PolicyError::ZeroRpoThreshold);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("copy frequency must be 30s, 5m or 15m, not {0}")]
    CopyFrequency(HumanDuration),
    #[error("a 30s copy frequency is not offered when the target storage is premium: use 5m or 15m")]
    ThirtySecondsToPremium,
    #[error("app-consistent snapshots must be taken every 1 to 12 whole hours (0 = off), not every {0}")]
    AppConsistentFrequency(HumanDuration),
    #[error("app-consistent frequency ({every}) must be less than the retention window ({retention})")]
    AppConsistentNotBelowRetention { every: HumanDuration, retention: HumanDuration },
    #[error("retention is counted in whole hours, not {0}")]
    RetentionNotHours(HumanDuration),
    #[error("the RPO threshold must be more than zero")]
    ZeroRpoThreshold,
}

/// R15: the replication bandwidth allowed to each VM, by time of day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    /// Work hours as hours of the day in UTC, `start..end`.
    pub work_hours: (u32, u32),
    pub work_kbps: u64,
    pub off_hours_kbps: u64,
    /// Upload threads per VM.
    pub threads: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle { work_hours: (8, 18), work_kbps: 102_400, off_hours_kbps: 102_400, threads: 4 }
    }
}

/// R15: 512 Kbps to 102 Mbps (104,448 Kbps); 1 to 32 threads.
pub const MIN_KBPS: u64 = 512;
pub const MAX_KBPS: u64 = 102 * 1024;
pub const MAX_THREADS: u32 = 32;

impl Throttle {
    pub fn validate(&self) -> Result<(), String> {
        for (what, kbps) in [("work-hours", self.work_kbps), ("off-hours", self.off_hours_kbps)] {
            if !(MIN_KBPS..=MAX_KBPS).contains(&kbps) {
                return Err(format!("{what} bandwidth {kbps} Kbps is outside 512 Kbps to 102 Mbps ({MAX_KBPS} Kbps)"));
            }
        }
        let (start, end) = self.work_hours;
        if start >= end || end > 24 {
            return Err(format!("work hours {start}-{end} must be a range of hours within 0-24"));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!("{} threads per VM is outside 1 to {MAX_THREADS}", self.threads));
        }
        Ok(())
    }

    /// The bandwidth in force at `hour` (0-23, UTC).
    pub fn kbps_at(&self, hour: u32) -> u64 {
        let in_work = hour >= self.work_hours.0 && hour < self.work_hours.1;
        if in_work { self.work_kbps } else { self.off_hours_kbps }
    }

    /// How long sending `bytes` takes when starting at `start_of_day` into a UTC day,
    /// with the bandwidth changing at the work-hour boundaries.
    pub fn transfer_time(&self, bytes: u64, start_of_day: Duration) -> Duration {
        const HOUR: u64 = 3_600_000;
        let mut remaining_bits = bytes as f64 * 8.0;
        let mut clock_ms = start_of_day.as_millis() as u64 % (24 * HOUR);
        let mut elapsed_ms: u64 = 0;
        let bits_per_ms = |hour: u32| self.kbps_at(hour) as f64 * 1024.0 / 1000.0;
        // A copy of days (a big initial copy on a shared host) skips whole days at once.
        let bits_per_day: f64 = (0..24).map(|hour| bits_per_ms(hour) * HOUR as f64).sum();
        while remaining_bits > 0.0 {
            if clock_ms == 0 && remaining_bits > bits_per_day {
                let days = (remaining_bits / bits_per_day).floor();
                remaining_bits -= days * bits_per_day;
                elapsed_ms += days as u64 * 24 * HOUR;
                if remaining_bits <= 0.0 {
                    break;
                }
            }
            let bits_per_ms = bits_per_ms((clock_ms / HOUR) as u32);
            let to_boundary = HOUR - clock_ms % HOUR;
            let can_send = bits_per_ms * to_boundary as f64;
            if can_send >= remaining_bits {
                elapsed_ms += (remaining_bits / bits_per_ms).ceil() as u64;
                break;
            }
            remaining_bits -= can_send;
            elapsed_ms += to_boundary;
            clock_ms = (clock_ms + to_boundary) % (24 * HOUR);
        }
        Duration::from_millis(elapsed_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn policy() -> ReplicationPolicy {
        ReplicationPolicy {
            name: "gold".into(),
            copy_frequency: CopyFrequency::Minutes5,
            retention: Duration::from_secs(24 * 3600),
            app_consistent_every: Duration::from_secs(4 * 3600),
            initial_replication: InitialReplication::Network,
            initial_replication_delay: Duration::ZERO,
            compression: true,
            encryption_at_rest: false,
            target_storage: StorageTier::Standard,
            rpo_threshold: Duration::from_secs(1800),
        }
    }

    #[test]
    fn r1_copy_frequency_is_30s_5m_or_15m_defaulting_to_5m() {
        assert_eq!(CopyFrequency::default(), CopyFrequency::Minutes5);
        assert_eq!(CopyFrequency::from_duration(Duration::from_secs(30)), Some(CopyFrequency::Seconds30));
        assert_eq!(CopyFrequency::from_duration(Duration::from_secs(900)), Some(CopyFrequency::Minutes15));
        assert_eq!(CopyFrequency::from_duration(Duration::from_secs(60)), None);
    }

    #[test]
    fn r1_thirty_seconds_refused_for_premium_storage() {
        let mut p = policy();
        p.copy_frequency = CopyFrequency::Seconds30;
        assert!(p.validate().is_ok());
        p.target_storage = StorageTier::Premium;
        assert_eq!(p.validate(), Err(PolicyError::ThirtySecondsToPremium));
    }

    #[test]
    fn r3_app_consistent_frequency_is_1_to_12_hours_and_below_retention() {
        let mut p = policy();
        p.app_consistent_every = Duration::ZERO;
        assert!(p.validate().is_ok(), "0 turns app-consistent snapshots off");
        p.app_consistent_every = Duration::from_secs(13 * 3600);
        assert!(matches!(p.validate(), Err(PolicyError::AppConsistentFrequency(_))));
        p.app_consistent_every = Duration::from_secs(90 * 60);
        assert!(matches!(p.validate(), Err(PolicyError::AppConsistentFrequency(_))));
        p.app_consistent_every = Duration::from_secs(12 * 3600);
        p.retention = Duration::from_secs(12 * 3600);
        let err = p.validate().unwrap_err();
        assert!(err.to_string().contains("must be less than the retention window"), "{err}");
    }

    #[test]
    fn r37_failback_policy_is_fixed() {
        let p = ReplicationPolicy::failback();
        assert_eq!(p.rpo_threshold, Duration::from_secs(15 * 60));
        assert_eq!(p.retention, Duration::from_secs(24 * 3600));
        assert_eq!(p.app_consistent_every, Duration::from_secs(3600));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn r15_throttle_limits_bandwidth_and_threads() {
        assert!(Throttle::default().validate().is_ok());
        let too_slow = Throttle { work_kbps: 256, ..Throttle::default() };
        assert!(too_slow.validate().unwrap_err().contains("512 Kbps"));
        let too_fast = Throttle { off_hours_kbps: MAX_KBPS + 1, ..Throttle::default() };
        assert!(too_fast.validate().is_err());
        let threads = Throttle { threads: 33, ..Throttle::default() };
        assert!(threads.validate().unwrap_err().contains("1 to 32"));
    }

    #[test]
    fn r15_transfer_slows_down_during_work_hours() {
        let t = Throttle { work_hours: (8, 18), work_kbps: 1024, off_hours_kbps: 10 * 1024, threads: 4 };
        // 450 MiB at 1 Mbps takes an hour; at 10 Mbps a tenth of it.
        let bytes = 1024 * 1024 / 8 * 3600;
        let at_night = t.transfer_time(bytes, Duration::from_secs(2 * 3600));
        let at_work = t.transfer_time(bytes, Duration::from_secs(9 * 3600));
        assert_eq!(at_night, Duration::from_secs(360));
        assert_eq!(at_work, Duration::from_secs(3600));
        // Starting at 17:30 the first half hour is slow, the rest fast.
        let across = t.transfer_time(bytes, Duration::from_secs(17 * 3600 + 1800));
        assert_eq!(across, Duration::from_secs(1800 + 180));
    }

    #[test]
    fn r15_a_transfer_of_weeks_takes_what_hour_by_hour_sending_takes() {
        let t = Throttle { work_hours: (8, 18), work_kbps: 1024, off_hours_kbps: 10 * 1024, threads: 4 };
        // Hour by hour, as a reference: what each hour of each day can carry.
        let reference = |bytes: u64, start_s: u64| {
            let (mut left, mut clock, mut elapsed) = (bytes as f64 * 8.0, start_s * 1000, 0u64);
            loop {
                let hour = (clock / 3_600_000) % 24;
                let kbps = if (8..18).contains(&hour) { 1024.0 } else { 10.0 * 1024.0 };
                let rate = kbps * 1024.0 / 1000.0;
                let to_boundary = 3_600_000 - clock % 3_600_000;
                if rate * to_boundary as f64 >= left {
                    return Duration::from_millis(elapsed + (left / rate).ceil() as u64);
                }
                left -= rate * to_boundary as f64;
                elapsed += to_boundary;
                clock += to_boundary;
            }
        };
        for (gib, start_h) in [(50u64, 0u64), (300, 7), (2000, 17), (7, 23)] {
            let bytes = gib << 30;
            let (fast, slow) =
                (t.transfer_time(bytes, Duration::from_secs(start_h * 3600)), reference(bytes, start_h * 3600));
            let drift = fast.as_millis().abs_diff(slow.as_millis());
            assert!(drift <= 1, "{gib} GiB from {start_h}h: {fast:?} vs {slow:?}");
        }
    }
}
