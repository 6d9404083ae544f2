//! The connection pool: opened with the configured sizes, timeouts and TLS, waited for at start.

use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};
use secrecy::{ExposeSecret, SecretString};

use super::url::{DatabaseUrl, describe, redact_url};
use crate::configuration::DatabaseSettings;

/// Why [`connect_database`] failed: the database and the cause, both without the password.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {url}: {reason}")]
pub struct ConnectError {
    url: String,
    reason: String,
}

/// Connects to `url` with the embedded pool defaults, the way an instance does (the password
/// never reaches a library, a log or the error): for tools beside the app that only know the
/// URL.
pub async fn connect_database(url: &str) -> Result<DatabaseConnection, ConnectError> {
    connect(&DatabaseSettings::for_url(url))
        .await
        .map_err(|err| ConnectError {
            url: redact_url(url),
            reason: describe(&err, url),
        })
}

/// Connects with the configured pool sizes, timeouts and TLS settings.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let url = settings.url.expose_secret();
    if url.starts_with("sqlite:") {
        ensure_sqlite_folder(url);
    }
    let parsed = DatabaseUrl::parse(url);
    let mut options = ConnectOptions::new(parsed.public().to_owned());
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
        })
        .map_sqlx_sqlite_pool_opts(|opts| {
            opts.after_release(|conn, _| Box::pin(outside_transaction(conn)))
        });
    let tuning = settings.clone();
    let password = parsed.password().map(|p| SecretString::from(p.to_owned()));
    options.map_sqlx_postgres_opts(move |opts| tune_postgres(opts, &tuning, password.as_ref()));
    let db = Database::connect(options).await?;
    tracing::info!(database = %parsed.shown(), "connected to the database");
    Ok(db)
}

/// What the pool's PostgreSQL connections are opened with beyond the URL (which carries no
/// password: see [`DatabaseUrl`]).
fn tune_postgres(
    mut opts: PgConnectOptions,
    settings: &DatabaseSettings,
    password: Option<&SecretString>,
) -> PgConnectOptions {
    if let Some(password) = password {
        opts = opts.password(password.expose_secret());
    }
    if !settings.statement_cache {
        // PgBouncer in transaction mode hands each transaction a different server
        // connection, so a statement prepared on one is unknown on the next.
        opts = opts.statement_cache_capacity(0);
    }
    if let Some(ca) = &settings.ca_file {
        opts = opts.ssl_root_cert(ca);
        if matches!(
            opts.get_ssl_mode(),
            PgSslMode::Prefer | PgSslMode::Allow | PgSslMode::Disable
        ) {
            opts = opts.ssl_mode(PgSslMode::VerifyFull);
        }
    }
    opts
}

/// One PostgreSQL connection, opened, asked `SELECT 1` and closed, within `timeout`: to learn
/// why the pool cannot be opened (the pool retries a refused connection until its acquire
/// timeout and then reports only the timeout), and whether a database that was away is
/// back. The query makes a pooler in front of the database (PgBouncer) reach the server.
/// Always `Ok` for SQLite.
pub async fn probe(settings: &DatabaseSettings, timeout: Duration) -> Result<(), DbErr> {
    let url = settings.url.expose_secret();
    if !url.starts_with("postgres") {
        return Ok(());
    }
    let conn_err = |err| DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(err)));
    let parsed = DatabaseUrl::parse(url);
    let password = parsed.password().map(|p| SecretString::from(p.to_owned()));
    let opts = parsed
        .public()
        .parse::<PgConnectOptions>()
        .map_err(conn_err)?;
    let opts = tune_postgres(opts, settings, password.as_ref());
    let attempt = async {
        let mut conn = opts.connect().await?;
        sea_orm::sqlx::Executor::execute(&mut conn, "SELECT 1").await?;
        conn.close().await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map_err(conn_err),
        Err(_) => Err(conn_err(sea_orm::sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
        )))),
    }
}

/// The first pause after a failed connection attempt; it doubles per failure up to
/// [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// [`connect`], retried with backoff for as long as the database is not there or refuses the
/// user: a droplet may boot before its database, or its database user, exists. Every failure
/// is logged with its reason; only a URL no retry can fix ends the wait. Errors, like the
/// logs, never carry the password.
pub async fn connect_with_retry(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    let mut delay = FIRST_RETRY_DELAY;
    let mut failures = 0u32;
    loop {
        let timeout = Duration::from_secs(settings.connect_timeout_seconds);
        let attempt = match probe(settings, timeout).await {
            Ok(()) => connect(settings).await,
            Err(err) => Err(err),
        };
        match attempt {
            Ok(db) => {
                if failures > 0 {
                    tracing::info!(failures, "the database is reachable after all");
                }
                return Ok(db);
            }
            Err(err) if is_permanent(&err) => {
                return Err(anyhow::anyhow!("{}", describe(&err, url)));
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(
                    database = %redact_url(url),
                    error = %describe(&err, url),
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot connect to the database; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Errors of the URL itself, which waiting cannot fix (unlike a refused connection, a missing
/// database or a rejected password).
fn is_permanent(err: &DbErr) -> bool {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(err)) => {
            matches!(err.as_ref(), sea_orm::sqlx::Error::Configuration(_))
        }
        DbErr::Conn(RuntimeErr::Internal(_)) => true,
        _ => false,
    }
}

/// Whether a released SQLite connection may go back to the pool: not while SQLite still holds
/// it in a transaction. A COMMIT or ROLLBACK that failed (a full disk) leaves one open, and
/// the next `begin` on that connection would only open a savepoint, whose "commit" commits
/// nothing: a write acknowledged that no other connection, and no file, ever sees. Closing the
/// connection ends the transaction.
async fn outside_transaction(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<bool, sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    // SAFETY: `db` is the connection's open handle, locked for this call; the function only
    // reads the handle's autocommit flag.
    let autocommit = unsafe { libsqlite3_sys::sqlite3_get_autocommit(db.as_ptr()) };
    if autocommit == 0 {
        tracing::warn!("a SQLite connection came back inside a transaction; closing it");
    }
    Ok(autocommit != 0)
}

/// SQLite creates the file (with `mode=rwc`) but not its folder.
fn ensure_sqlite_folder(url: &str) {
    if let Some(parent) = crate::configuration::sqlite_file(url).and_then(|path| path.parent())
        && !parent.as_os_str().is_empty()
        && let Err(err) = std::fs::create_dir_all(parent)
    {
        tracing::warn!(folder = %parent.display(), error = %err, "could not create the SQLite folder");
    }
}
