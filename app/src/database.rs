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

use crate::configuration::DatabaseSettings;

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

/// Why [`migrate_database`] did not finish. The messages name the database and the cause
/// without the password.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("applying migrations to {url}: {reason}")]
    Migrate { url: String, reason: String },
}

/// Connects to `url` with the embedded pool defaults, applies pending migrations the way the
/// app does at start, and closes the connection: for a deployer that migrates once before
/// starting instances that do not.
pub async fn migrate_database(url: &str) -> Result<(), MigrateError> {
    let settings = DatabaseSettings::for_url(url);
    let db = connect(&settings)
        .await
        .map_err(|err| MigrateError::Connect {
            url: redact_url(url),
            reason: describe(&err, url),
        })?;
    let result = migrate(&db).await;
    let _ = db.close().await;
    result.map_err(|err| MigrateError::Migrate {
        url: redact_url(url),
        reason: describe(&err, url),
    })
}

/// A database error as text fit for a log: should a driver ever quote the URL (or just its
/// password) back, the password is replaced.
pub fn describe(err: &DbErr, url: &str) -> String {
    let text = err.to_string();
    match password(url) {
        Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
        _ => text,
    }
}

/// The password in a URL's user info or its `password=` parameter.
fn password(url: &str) -> Option<&str> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let in_query = query
        .split('&')
        .find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
        })
        .map(|(_, v)| v);
    let scheme_end = base.find("://")? + 3;
    let in_userinfo = base[scheme_end..]
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pass)| pass);
    in_userinfo.or(in_query)
}

/// Arbitrary, fixed: the advisory lock id every instance agrees on ("rustlbmg" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7275_7374_6c62_6d67;

/// The URL without its password (in the user info or a `password=` parameter), for logs.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}{}:[redacted]{}",
                &base[..scheme_end + 3],
                user,
                &base[at..]
            )
        }
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}=[redacted]")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_wherever_the_url_carries_them() {
        let shown = redact_url("postgres://app:s3cret@db:25060/app?sslmode=require");
        assert_eq!(
            shown,
            "postgres://app:[redacted]@db:25060/app?sslmode=require"
        );
        let shown = redact_url("postgres://db/app?user=app&password=s3cret&sslmode=require");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("sslmode=require"));
        assert_eq!(
            redact_url("sqlite://data/app.sqlite?mode=rwc"),
            "sqlite://data/app.sqlite?mode=rwc"
        );
    }

    #[test]
    fn error_texts_lose_the_password_too() {
        let err = DbErr::Custom("could not use postgres://app:s3cret@db/app".into());
        let text = describe(&err, "postgres://app:s3cret@db/app");
        assert!(!text.contains("s3cret"), "{text}");
        let err = DbErr::Custom("password s3cret rejected".into());
        let text = describe(&err, "postgres://db/app?user=app&password=s3cret");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
