//! The `request_stats` rollup: per-minute and per-hour latency histograms of the log rows.
//!
//! A batch folds into rollup rows here, and windows are read back summed from here.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use entity::prelude::*;
use entity::request_stats;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect,
};

use super::record::LogRecord;

/// Buckets per doubling of latency: 8 keeps any percentile within about 4.5% of the truth.
const BUCKETS_PER_OCTAVE: f64 = 8.0;
const MAX_BUCKET: i32 = 255;

/// The histogram bucket a latency (in microseconds) falls in.
pub fn latency_bucket(duration_us: u64) -> i32 {
    if duration_us <= 1 {
        return 0;
    }
    ((duration_us as f64).log2() * BUCKETS_PER_OCTAVE)
        .floor()
        .min(f64::from(MAX_BUCKET)) as i32
}

/// The latency a bucket stands for: its geometric middle, in microseconds.
pub fn bucket_midpoint_us(bucket: i32) -> f64 {
    2f64.powf((f64::from(bucket) + 0.5) / BUCKETS_PER_OCTAVE)
}

/// How long a rollup row's time bucket is; stored as `span_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Which rollup row a request counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RollupKey {
    pub span: Span,
    pub start: DateTime<Utc>,
    pub latency_bucket: i32,
}

/// What a rollup row adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupCounts {
    pub requests: i64,
    /// Requests answered with 500 or above.
    pub errors: i64,
    pub duration_sum_us: i64,
}

/// The minute and hour rows one batch adds to `request_stats`.
pub type Rollup = HashMap<RollupKey, RollupCounts>;

/// Folds a batch into its rollup rows.
pub fn rollup(records: &[LogRecord]) -> Rollup {
    let mut rollup = Rollup::new();
    for r in records {
        let latency_bucket = latency_bucket(r.duration_us);
        let duration = i64::try_from(r.duration_us).unwrap_or(i64::MAX);
        for span in [Span::Minute, Span::Hour] {
            let key = RollupKey {
                span,
                start: span.start(r.at),
                latency_bucket,
            };
            let counts = rollup.entry(key).or_default();
            counts.requests += 1;
            counts.errors += i64::from(r.status >= 500);
            counts.duration_sum_us = counts.duration_sum_us.saturating_add(duration);
        }
    }
    rollup
}

/// One (server, latency bucket) of the rollup, summed over a window.
#[derive(Debug, FromQueryResult)]
pub struct BucketTotal {
    pub server_id: String,
    pub latency_bucket: i32,
    pub requests: i64,
    pub errors: i64,
    pub duration_sum_us: i64,
}

/// The rollup summed per server and latency bucket, for requests finished at or after
/// `since` (rounded down to the minute; all time when `None`).
///
/// Minute rows cover the ragged start of a window up to the next full hour; hour rows cover
/// the rest, so a day-long window reads about 60 + 24 rows per server and bucket.
pub async fn totals_since(
    db: &DatabaseConnection,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<BucketTotal>, DbErr> {
    let span = |s: Span| request_stats::Column::SpanSeconds.eq(s.seconds());
    let filter = match since {
        None => Condition::all().add(span(Span::Hour)),
        Some(since) => {
            let start = Span::Minute.start(since);
            let first_full_hour = ceil_hour(start);
            Condition::any()
                .add(
                    Condition::all()
                        .add(span(Span::Minute))
                        .add(request_stats::Column::BucketStart.gte(start))
                        .add(request_stats::Column::BucketStart.lt(first_full_hour)),
                )
                .add(
                    Condition::all()
                        .add(span(Span::Hour))
                        .add(request_stats::Column::BucketStart.gte(first_full_hour)),
                )
        }
    };
    RequestStats::find()
        .select_only()
        .column(request_stats::Column::ServerId)
        .column(request_stats::Column::LatencyBucket)
        // PostgreSQL sums BIGINT into NUMERIC; the cast keeps both databases on i64.
        .column_as(Expr::cust("CAST(SUM(requests) AS BIGINT)"), "requests")
        .column_as(Expr::cust("CAST(SUM(errors) AS BIGINT)"), "errors")
        .column_as(
            Expr::cust("CAST(SUM(duration_sum_us) AS BIGINT)"),
            "duration_sum_us",
        )
        .filter(filter)
        .group_by(request_stats::Column::ServerId)
        .group_by(request_stats::Column::LatencyBucket)
        .into_model::<BucketTotal>()
        .all(db)
        .await
}

/// The first full hour at or after `at`.
fn ceil_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = Span::Hour.start(at);
    if floor == at {
        at
    } else {
        floor + TimeDelta::hours(1)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn buckets_grow_with_latency_and_midpoints_stay_close() {
        assert!(latency_bucket(100) < latency_bucket(1000));
        for us in [3u64, 150, 2_000, 40_000, 1_000_000] {
            let mid = bucket_midpoint_us(latency_bucket(us));
            assert!((mid - us as f64).abs() / (us as f64) < 0.1, "{us} -> {mid}");
        }
    }

    #[test]
    fn a_batch_folds_into_minute_and_hour_rows() {
        let record = |status, when: &str| LogRecord {
            method: "GET",
            route: "/health",
            status,
            duration_us: 1000,
            client_ip: None,
            request_id: Arc::from("r"),
            at: at(when),
        };
        let rows = rollup(&[
            record(200, "2026-11-29T10:00:10Z"),
            record(503, "2026-11-29T10:00:50Z"),
            record(200, "2026-11-29T10:01:00Z"),
        ]);
        let key = |span, start| RollupKey {
            span,
            start: at(start),
            latency_bucket: latency_bucket(1000),
        };
        assert_eq!(rows.len(), 3, "two minutes and one hour");
        assert_eq!(
            rows[&key(Span::Minute, "2026-11-29T10:00:00Z")],
            RollupCounts {
                requests: 2,
                errors: 1,
                duration_sum_us: 2000
            }
        );
        assert_eq!(rows[&key(Span::Hour, "2026-11-29T10:00:00Z")].requests, 3);
        assert_eq!(
            ceil_hour(at("2026-11-29T10:00:01Z")),
            at("2026-11-29T11:00:00Z")
        );
    }
}
