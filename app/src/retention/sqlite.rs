//! SQLite: aged-out `requests_log` rows deleted in bounded batches.

use std::time::Duration;

use chrono::NaiveDate;
use entity::prelude::*;
use entity::requests_log::Column;
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityName, EntityTrait, QueryFilter};

use super::policy::day_start;
use super::report::Report;

/// Rows per delete: each holds SQLite's one write lock for a few milliseconds, so the log
/// writer (and any user write) gets in between batches.
const BATCH: u64 = 5_000;

/// A breather between batches for whoever waits for the write lock.
const PAUSE: Duration = Duration::from_millis(5);

/// Deletes the rows from before `first_day` (none when `None`), oldest first.
pub async fn maintain_log(
    db: &DatabaseConnection,
    first_day: Option<NaiveDate>,
    report: &mut Report,
) -> Result<(), DbErr> {
    let Some(first_day) = first_day else {
        return Ok(());
    };
    let cutoff = day_start(first_day);
    loop {
        let oldest = Query::select()
            .column(Column::Id)
            .from(RequestsLog.table_ref())
            .and_where(Column::CreatedAt.lt(cutoff))
            .order_by(Column::CreatedAt, sea_orm::Order::Asc)
            .limit(BATCH)
            .to_owned();
        let deleted = RequestsLog::delete_many()
            .filter(Column::Id.in_subquery(oldest))
            .exec(db)
            .await?
            .rows_affected;
        report.log_rows_removed += deleted;
        if deleted < BATCH {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
}
