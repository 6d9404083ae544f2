//! Applying migrations: at an instance's start, or once by a deployer before instances start.

use std::collections::HashSet;

use migration::MigratorTrait;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait,
};

use super::pool::{ConnectError, connect_database};
use super::url::{describe, redact_url};

/// Applies pending migrations.
///
/// On PostgreSQL every droplet may start at once, so the migrations run inside one transaction
/// holding a transaction-scoped advisory lock: the first instance migrates, the others wait and
/// then find nothing to do. Being transaction-scoped, the lock also works through a PgBouncer
/// pool in transaction mode, where session locks would land on random server connections.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return migration::Migrator::up(db, None).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    ))
    .await?;
    migration::Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// The migrations of this build the database has not applied, in order; reads only (unlike
/// sea-orm's own check, which creates its bookkeeping table when it is missing).
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let bookkeeping = match backend {
        DatabaseBackend::Postgres => {
            "SELECT count(*) AS n FROM pg_catalog.pg_tables \
             WHERE schemaname = current_schema() AND tablename = 'seaql_migrations'"
        }
        _ => {
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'seaql_migrations'"
        }
    };
    let row = db
        .query_one_raw(Statement::from_string(backend, bookkeeping))
        .await?;
    let tracked = match row {
        Some(row) => row.try_get::<i64>("", "n")? > 0,
        None => false,
    };
    let mut applied = HashSet::new();
    if tracked {
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations",
            ))
            .await?;
        for row in rows {
            applied.insert(row.try_get::<String>("", "version")?);
        }
    }
    Ok(migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| !applied.contains(name))
        .collect())
}

/// Arbitrary, fixed: the advisory lock id every instance agrees on ("rustlbmg" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7275_7374_6c62_6d67;

/// Why [`migrate_database`] did not finish. The messages name the database and the cause
/// without the password.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("applying migrations to {url}: {reason}")]
    Migrate { url: String, reason: String },
}

/// Connects to `url` with the embedded pool defaults, applies pending migrations the way the
/// app does at start, and closes the connection: for a deployer that migrates once before
/// starting instances that do not.
pub async fn migrate_database(url: &str) -> Result<(), MigrateError> {
    let db = connect_database(url).await?;
    let result = migrate(&db).await;
    let _ = db.close().await;
    result.map_err(|err| MigrateError::Migrate {
        url: redact_url(url),
        reason: describe(&err, url),
    })
}
