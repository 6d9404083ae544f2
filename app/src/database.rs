//! Opening the connection pool (SQLite or PostgreSQL) and applying migrations.

use std::time::Duration;

use migration::MigratorTrait;
use sea_orm::sqlx::postgres::PgSslMode;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::configuration::{DatabaseSettings, redact_url};

/// Connects with the configured pool sizes, timeouts and TLS settings.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let url = settings.url.expose_secret();
    if url.starts_with("sqlite:") {
        ensure_sqlite_folder(url);
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_seconds))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            // WAL lets readers run beside the writer; NORMAL sync is durable across app
            // crashes (only an OS crash can lose the last commits), and the busy timeout makes
            // concurrent writers queue instead of failing.
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    let statement_cache = settings.statement_cache;
    let ca_file = settings.ca_file.clone();
    options.map_sqlx_postgres_opts(move |mut opts| {
        if !statement_cache {
            // PgBouncer in transaction mode hands each transaction a different server
            // connection, so a statement prepared on one is unknown on the next.
            opts = opts.statement_cache_capacity(0);
        }
        if let Some(ca) = &ca_file {
            opts = opts.ssl_root_cert(ca);
            if matches!(
                opts.get_ssl_mode(),
                PgSslMode::Prefer | PgSslMode::Allow | PgSslMode::Disable
            ) {
                opts = opts.ssl_mode(PgSslMode::VerifyFull);
            }
        }
        opts
    });
    let db = Database::connect(options).await?;
    tracing::info!(database = %redact_url(url), "connected to the database");
    Ok(db)
}

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

/// Arbitrary, fixed: the advisory lock id every instance agrees on ("rustlbmg" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7275_7374_6c62_6d67;

/// SQLite creates the file (with `mode=rwc`) but not its folder.
fn ensure_sqlite_folder(url: &str) {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path.starts_with(":memory:") {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
        && let Err(err) = std::fs::create_dir_all(parent)
    {
        tracing::warn!(folder = %parent.display(), error = %err, "could not create the SQLite folder");
    }
}
