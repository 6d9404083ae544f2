//! The maintenance lock: each step of a run is a transaction that holds it.

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, Statement,
    TransactionTrait,
};

/// Arbitrary, fixed: the advisory lock id every instance agrees on ("rustlbrt" in ASCII).
const LOCK_KEY: i64 = 0x7275_7374_6c62_7274;

/// How long a step waits for a table lock (a partition's `DROP` needs the parent to itself for
/// an instant) before giving up until the next run; writers queue behind a waiting `DROP`.
const LOCK_TIMEOUT: &str = "2s";

/// A transaction for one step, or `None` when another instance is maintaining.
///
/// On PostgreSQL the lock is transaction-scoped, taken with "try": it never waits, and it works
/// through a PgBouncer pool in transaction mode, where a session lock would stay behind on
/// whichever server connection took it. SQLite needs no lock: its writes are serial anyway.
pub async fn step(db: &DatabaseConnection) -> Result<Option<DatabaseTransaction>, DbErr> {
    let txn = db.begin().await?;
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Some(txn));
    }
    txn.execute_unprepared(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    let locked = txn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({LOCK_KEY}) AS locked"),
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "locked"))
        .transpose()?
        .unwrap_or(false);
    if locked {
        Ok(Some(txn))
    } else {
        txn.rollback().await?;
        Ok(None)
    }
}
