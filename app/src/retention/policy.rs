//! `Policy`: what a maintenance run removes, and the days and instants it counts from.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};

use crate::configuration::{RequestLogSettings, StatsSettings};
use crate::request_log::rollup::minute_horizon;

/// What a run removes, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whole UTC days of log rows kept before today's; 0 keeps all.
    pub log_days: u32,
    /// Whole UTC days of hour rollups kept before today's; 0 keeps all.
    pub stats_days: u32,
    /// How long minute rollups are kept.
    pub minute_retention: TimeDelta,
}

impl Policy {
    pub fn from_settings(log: &RequestLogSettings, stats: &StatsSettings) -> Self {
        Self {
            log_days: log.retention_days,
            stats_days: stats.retention_days,
            minute_retention: stats.minute_retention(),
        }
    }

    /// The first UTC day whose log rows are kept at `now`; `None` keeps them all.
    pub fn first_log_day(&self, now: DateTime<Utc>) -> Option<NaiveDate> {
        first_kept_day(now, self.log_days)
    }

    /// Minute rollups before this are removed.
    pub fn minute_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        minute_horizon(now, self.minute_retention)
    }

    /// Hour rollups before this are removed; `None` keeps them all.
    pub fn hour_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        first_kept_day(now, self.stats_days).map(day_start)
    }
}

/// `days` whole days before `now`'s UTC day; `None` when `days` is 0 (keep everything).
fn first_kept_day(now: DateTime<Utc>, days: u32) -> Option<NaiveDate> {
    (days > 0).then(|| now.date_naive() - TimeDelta::days(i64::from(days)))
}

/// The first instant of `day` (UTC).
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn retention_counts_whole_days_before_today() {
        let now = at("2026-12-02T00:30:00Z");
        let policy = Policy {
            log_days: 7,
            stats_days: 0,
            minute_retention: TimeDelta::hours(48),
        };
        assert_eq!(
            policy.first_log_day(now),
            NaiveDate::from_ymd_opt(2026, 11, 25)
        );
        assert_eq!(policy.hour_cutoff(now), None, "0 keeps everything");
        assert_eq!(policy.minute_cutoff(now), at("2026-11-30T00:00:00Z"));
        let policy = Policy {
            stats_days: 400,
            ..policy
        };
        assert_eq!(policy.hour_cutoff(now), Some(at("2025-10-28T00:00:00Z")));
    }
}
