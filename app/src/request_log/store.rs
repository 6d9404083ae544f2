//! One batch into the database: log rows and rollup, atomically, the backend's fastest way.

use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr};

use super::record::LogRecord;
use super::rollup::rollup;
use super::{postgres, sqlite};

/// Writes `records` as answered by `server_id`, and folds them into `request_stats`.
pub async fn write_batch(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let rollup = rollup(records);
    match db.get_database_backend() {
        DatabaseBackend::Postgres => postgres::write(db, server_id, records, &rollup).await,
        _ => sqlite::write(db, server_id, records, &rollup).await,
    }
}
