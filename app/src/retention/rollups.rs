//! `request_stats`: minute and hour rows removed once past their retention, a day per step.

use chrono::{DateTime, TimeDelta, Utc};
use entity::prelude::*;
use entity::request_stats::Column;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::lock;
use super::report::Report;
use crate::request_log::rollup::Span;

/// Removes `span`'s rows that start before `cutoff`, one day of them per transaction so no
/// statement grows with the backlog (about 1,440 minute rows per server and day).
pub async fn prune(
    db: &DatabaseConnection,
    span: Span,
    cutoff: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), DbErr> {
    let of_span = Column::SpanSeconds.eq(span.seconds());
    loop {
        // Read outside the step: on SQLite a transaction that reads before it writes fails at
        // once when another connection writes in between, instead of waiting its turn.
        let oldest: Option<DateTime<Utc>> = RequestStats::find()
            .select_only()
            .column_as(Column::BucketStart.min(), "oldest")
            .filter(of_span.clone())
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(db)
            .await?
            .flatten();
        let Some(oldest) = oldest.filter(|oldest| *oldest < cutoff) else {
            return Ok(());
        };
        let Some(txn) = lock::step(db).await? else {
            report.skipped = true;
            return Ok(());
        };
        let until = (oldest + TimeDelta::days(1)).min(cutoff);
        let deleted = RequestStats::delete_many()
            .filter(of_span.clone())
            .filter(Column::BucketStart.lt(until))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        report.rollup_rows_removed += deleted;
    }
}
