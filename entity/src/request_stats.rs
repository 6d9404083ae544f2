//! The `request_stats` table: per-minute and per-hour request counts and latency histograms.
//!
//! `/api/stats` reads it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The requests one server answered in one minute (or hour).
///
/// Written in the same transaction as the matching `requests_log` rows, so the two never
/// disagree; `/api/stats` reads this table because aggregating millions of log rows per call
/// would not stay fast.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "request_stats")]
pub struct Model {
    /// 60 for minute rows, 3600 for hour rows: windows read minutes at their ragged start and
    /// hours for the rest. Minute rows are kept for `stats.minute_retention_hours` only.
    #[sea_orm(primary_key, auto_increment = false)]
    pub span_seconds: i32,
    /// Start of the minute or hour (UTC) the requests finished in.
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket_start: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub server_id: String,
    pub requests: i64,
    /// Requests answered with a status of 500 or more.
    pub errors: i64,
    pub duration_sum_us: i64,
    /// The requests per log-scale latency bucket (see the app's `request_log::histogram`):
    /// 5 bytes per non-empty bucket, its index (`u8`) then its count (`u32`, big-endian).
    #[sea_orm(column_type = "Blob")]
    pub latency_histogram: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
