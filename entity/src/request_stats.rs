//! The `request_stats` table: per-minute and per-hour latency histograms per server.
//!
//! `/api/stats` reads it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Requests one server answered in one minute (or hour) whose latency fell in one histogram
/// bucket.
///
/// Written in the same transaction as the matching `requests_log` rows, so the two never
/// disagree; `/api/stats` reads this table because aggregating millions of log rows per call
/// would not stay fast.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "request_stats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub server_id: String,
    /// 60 for minute rows, 3600 for hour rows: windows read minutes at their ragged start
    /// and hours for the rest, so even "all time" reads a few thousand rows.
    #[sea_orm(primary_key, auto_increment = false)]
    pub span_seconds: i32,
    /// Start of the minute or hour (UTC) the requests finished in.
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket_start: DateTimeUtc,
    /// Log-scale latency bucket index (see the app's `request_log::rollup`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub latency_bucket: i32,
    pub requests: i64,
    /// Requests answered with a status of 500 or more.
    pub errors: i64,
    pub duration_sum_us: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
