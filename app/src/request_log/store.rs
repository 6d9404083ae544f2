//! One batch into the database: log rows and rollup, atomically, the backend's fastest way.

use entity::prelude::*;
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr, EntityTrait};

use super::record::{LogRecord, SpoolPosition};
use super::rollup::rollup;
use super::{postgres, sqlite};

/// Writes `records` as answered by `server_id`, and folds them into `request_stats`.
pub async fn write_batch(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
) -> Result<(), DbErr> {
    write_spooled(db, server_id, records, None).await
}

/// [`write_batch`], moving the spool's position to `position` in the same transaction.
pub async fn write_spooled(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    position: Option<SpoolPosition<'_>>,
) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let rollup = rollup(records);
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            postgres::write(db, server_id, records, &rollup, position).await
        }
        _ => sqlite::write(db, server_id, records, &rollup, position).await,
    }
}

/// How far the database has a spool: `(segment, offset)`, `(1, 0)` when it has none of it.
pub async fn spool_position(db: &DatabaseConnection, spool_id: &str) -> Result<(u64, u64), DbErr> {
    let row = RequestLogSpools::find_by_id(spool_id.to_owned())
        .one(db)
        .await?;
    Ok(row.map_or((1, 0), |row| {
        (row.segment.max(0) as u64, row.offset_bytes.max(0) as u64)
    }))
}

/// Forgets a spool whose directory is gone (every row written). Only after the directory is
/// removed: a position forgotten first would make a leftover directory replay from the start.
pub async fn forget_spool(db: &DatabaseConnection, spool_id: &str) -> Result<(), DbErr> {
    RequestLogSpools::delete_by_id(spool_id.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}
