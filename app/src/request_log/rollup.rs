//! The `request_stats` rollup: per-minute and per-hour counts and latency histograms of the log.
//!
//! A batch folds into rollup rows here, and the rows of a window are chosen here. Minute rows are
//! kept for `stats.minute_retention_hours` only; a window that starts earlier is read from hour
//! rows alone and starts on the hour.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use entity::prelude::*;
use entity::request_stats::Column;
use sea_orm::sea_query::{Expr, Query, SelectStatement, UnionType};
use sea_orm::{ColumnTrait, EntityName, IdenStatic};

use super::histogram::{Histogram, latency_bucket};
use super::record::LogRecord;

/// How long a rollup row's time bucket is; stored as `span_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Span {
    Minute,
    Hour,
}

impl Span {
    pub const fn seconds(self) -> i32 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }

    /// The start of the span `at` falls in.
    pub fn start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let length = match self {
            Self::Minute => TimeDelta::minutes(1),
            Self::Hour => TimeDelta::hours(1),
        };
        at.duration_trunc(length).unwrap_or(at)
    }
}

/// Which rollup row (of one server) a request counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub span: Span,
    pub start: DateTime<Utc>,
}

/// What a rollup row adds up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupCounts {
    pub requests: i64,
    /// Requests answered with 500 or above.
    pub errors: i64,
    pub duration_sum_us: i64,
    pub latency: Histogram,
}

impl RollupCounts {
    /// The stored histogram of a rollup row after this batch: the batch's latencies added to
    /// what the row held (`None` for a new row).
    pub fn histogram_after(&self, stored: Option<&[u8]>) -> Vec<u8> {
        let mut latency = self.latency.clone();
        if let Some(before) = stored {
            latency.add_stored(before);
        }
        latency.to_stored()
    }
}

/// The minute and hour rows one batch adds to `request_stats`, in key order (minutes first,
/// then by time), the order every writer locks them in.
pub type Rollup = Vec<(RollupKey, RollupCounts)>;

/// Folds a batch into its rollup rows.
pub fn rollup(records: &[LogRecord]) -> Rollup {
    let mut rows: HashMap<RollupKey, RollupCounts> = HashMap::new();
    for r in records {
        let bucket = latency_bucket(r.duration_us);
        let duration = i64::try_from(r.duration_us).unwrap_or(i64::MAX);
        for span in [Span::Minute, Span::Hour] {
            let key = RollupKey {
                span,
                start: span.start(r.at),
            };
            let counts = rows.entry(key).or_default();
            counts.requests += 1;
            counts.errors += i64::from(r.status >= 500);
            counts.duration_sum_us = counts.duration_sum_us.saturating_add(duration);
            counts.latency.add(bucket, 1);
        }
    }
    let mut rows: Rollup = rows.into_iter().collect();
    rows.sort_by_key(|(key, _)| *key);
    rows
}

/// The first minute whose minute rows are still kept at `now`: the hour `minute_retention`
/// before `now` begins. Maintenance deletes the minute rows before it.
pub fn minute_horizon(now: DateTime<Utc>, minute_retention: TimeDelta) -> DateTime<Utc> {
    Span::Hour.start(now - minute_retention)
}

/// Where a window's rows start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStart {
    /// Minute rows from here to the next full hour, hour rows after that.
    Minute(DateTime<Utc>),
    /// Hour rows only, from here: the minute rows of the window's start are gone.
    Hour(DateTime<Utc>),
}

impl WindowStart {
    /// The window from `since` (rounded down to the minute, or to the hour when its minute is
    /// before `horizon`).
    pub fn at(since: DateTime<Utc>, horizon: DateTime<Utc>) -> Self {
        let minute = Span::Minute.start(since);
        if minute >= horizon {
            Self::Minute(minute)
        } else {
            Self::Hour(Span::Hour.start(since))
        }
    }

    pub fn time(self) -> DateTime<Utc> {
        match self {
            Self::Minute(at) | Self::Hour(at) => at,
        }
    }
}

/// Which rows make up a window: hour rows from a time on, and the minute rows of the window's
/// first hour, added or subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPlan {
    /// Hour rows from here on (all of them when `None`).
    pub hours_from: Option<DateTime<Utc>>,
    /// Minute rows in `[from, to)`.
    pub minutes: Option<MinuteRange>,
}

/// Minute rows a window adds (its ragged start up to the next hour) or subtracts (the part of
/// its first hour row before the window starts), whichever is fewer rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub subtract: bool,
}

impl WindowPlan {
    /// The plan for a window from `start` (all time when `None`). At most 30 minute rows and 25
    /// hour rows per server make a day: an hour row holds the same counts as its minute rows
    /// (they are written in one transaction), so the first hour's row minus its minutes before
    /// the start is the same sum as the minutes after it.
    pub fn new(start: Option<WindowStart>) -> Self {
        let (hours_from, minutes) = match start {
            None => (None, None),
            Some(WindowStart::Hour(at)) => (Some(at), None),
            Some(WindowStart::Minute(at)) => {
                let hour = Span::Hour.start(at);
                let next = hour + TimeDelta::hours(1);
                if at == hour {
                    (Some(at), None)
                } else if at - hour <= next - at {
                    let before = MinuteRange {
                        from: hour,
                        to: at,
                        subtract: true,
                    };
                    (Some(hour), Some(before))
                } else {
                    let after = MinuteRange {
                        from: at,
                        to: next,
                        subtract: false,
                    };
                    (Some(next), Some(after))
                }
            }
        };
        Self {
            hours_from,
            minutes,
        }
    }

    /// The plan as a query selecting `server_id`, `requests`, `errors`, `duration_sum_us`,
    /// `latency_histogram` and `sign` (1 to add the row, -1 to subtract it).
    pub fn rows(&self) -> SelectStatement {
        let mut query = select(Span::Hour, 1);
        if let Some(from) = self.hours_from {
            query.and_where(Column::BucketStart.gte(from));
        }
        if let Some(range) = self.minutes {
            let mut minutes = select(Span::Minute, if range.subtract { -1 } else { 1 });
            minutes
                .and_where(Column::BucketStart.gte(range.from))
                .and_where(Column::BucketStart.lt(range.to));
            query.union(UnionType::All, minutes);
        }
        query
    }
}

/// The columns a window reads, from the rows of one span.
fn select(span: Span, sign: i32) -> SelectStatement {
    let mut query = Query::select();
    // Named with `AS`: SQLite names the columns of a compound select after their source text
    // otherwise, sometimes quotes included.
    for column in [
        Column::ServerId,
        Column::Requests,
        Column::Errors,
        Column::DurationSumUs,
        Column::LatencyHistogram,
    ] {
        query.expr_as(Expr::col(column), column.as_str());
    }
    query
        .expr_as(Expr::val(sign), "sign")
        .from(RequestStats.table_ref())
        .and_where(Column::SpanSeconds.eq(span.seconds()))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn a_batch_folds_into_minute_and_hour_rows() {
        let record = |status, duration_us, when: &str| LogRecord {
            method: "GET",
            route: "/health",
            status,
            duration_us,
            client_ip: None,
            request_id: Arc::from("r"),
            at: at(when),
        };
        let rows = rollup(&[
            record(200, 1000, "2026-11-29T10:00:10Z"),
            record(503, 1000, "2026-11-29T10:00:50Z"),
            record(200, 3000, "2026-11-29T10:01:00Z"),
        ]);
        let keys: Vec<_> = rows.iter().map(|(k, _)| (k.span, k.start)).collect();
        assert_eq!(
            keys,
            [
                (Span::Minute, at("2026-11-29T10:00:00Z")),
                (Span::Minute, at("2026-11-29T10:01:00Z")),
                (Span::Hour, at("2026-11-29T10:00:00Z")),
            ],
            "two minutes and one hour, in locking order"
        );
        let minute = &rows[0].1;
        assert_eq!(
            (minute.requests, minute.errors, minute.duration_sum_us),
            (2, 1, 2000)
        );
        assert_eq!(
            minute.latency.buckets().collect::<Vec<_>>(),
            [(latency_bucket(1000), 2)]
        );
        let hour = &rows[2].1;
        assert_eq!(hour.requests, 3);
        assert_eq!(
            hour.latency.buckets().collect::<Vec<_>>(),
            [(latency_bucket(1000), 2), (latency_bucket(3000), 1)]
        );
    }

    #[test]
    fn windows_start_on_the_minute_while_minute_rows_last_then_on_the_hour() {
        let now = at("2026-12-02T12:34:56Z");
        let horizon = minute_horizon(now, TimeDelta::hours(48));
        assert_eq!(horizon, at("2026-11-30T12:00:00Z"));
        assert_eq!(
            WindowStart::at(at("2026-12-01T12:34:56Z"), horizon),
            WindowStart::Minute(at("2026-12-01T12:34:00Z"))
        );
        assert_eq!(
            WindowStart::at(at("2026-11-30T12:00:30Z"), horizon),
            WindowStart::Minute(at("2026-11-30T12:00:00Z")),
            "the horizon's own minute is kept"
        );
        assert_eq!(
            WindowStart::at(at("2026-11-30T11:59:59Z"), horizon),
            WindowStart::Hour(at("2026-11-30T11:00:00Z"))
        );
    }

    #[test]
    fn a_window_reads_its_first_hour_by_the_fewer_minute_rows() {
        let plan = |start| WindowPlan::new(Some(WindowStart::Minute(at(start))));
        assert_eq!(
            plan("2026-12-02T10:50:00Z"),
            WindowPlan {
                hours_from: Some(at("2026-12-02T11:00:00Z")),
                minutes: Some(MinuteRange {
                    from: at("2026-12-02T10:50:00Z"),
                    to: at("2026-12-02T11:00:00Z"),
                    subtract: false
                }),
            },
            "ten minutes added"
        );
        assert_eq!(
            plan("2026-12-02T10:20:00Z"),
            WindowPlan {
                hours_from: Some(at("2026-12-02T10:00:00Z")),
                minutes: Some(MinuteRange {
                    from: at("2026-12-02T10:00:00Z"),
                    to: at("2026-12-02T10:20:00Z"),
                    subtract: true
                }),
            },
            "the hour, less its first twenty minutes"
        );
        assert!(plan("2026-12-02T10:30:00Z").minutes.unwrap().subtract);
        assert_eq!(
            plan("2026-12-02T10:00:00Z"),
            WindowPlan {
                hours_from: Some(at("2026-12-02T10:00:00Z")),
                minutes: None
            }
        );
        assert_eq!(
            WindowPlan::new(Some(WindowStart::Hour(at("2026-12-02T10:00:00Z")))).minutes,
            None
        );
        assert_eq!(
            WindowPlan::new(None),
            WindowPlan {
                hours_from: None,
                minutes: None
            }
        );
    }
}
