//! The request log: each row appended to an on-disk spool before its answer, batch inserts
//! from there.
//!
//! Requests never wait for the database: [`RequestLogHandle::record`] is one `write(2)` to
//! this process's spool file (see `spool`), which outlives the process (kill -9 included).
//! A background writer reads the spool in batches (at once when `10 x batch_size` rows are
//! waiting, else every `flush_interval_ms`) and inserts the rows, updates the `request_stats`
//! rollup and moves the spool's position in `request_log_spools`, all in one transaction, so
//! a replay after any crash writes each row exactly once. While the database is away, or
//! refuses for any reason but the rows themselves, the batch is retried with backoff and
//! rows wait on disk, up to `request_log.spool_max_bytes`; past that new rows are dropped and
//! counted in `request_log_dropped_total{reason}`. A batch the database refuses because of
//! its data is split until the offending rows are found; only those are dropped. Rows wait
//! the same way while the database schema has migrations pending. At start, and every
//! [`writer::ORPHAN_SCAN`] after, the writer replays the spools of processes that are gone.

mod dropped;
pub mod histogram;
mod postgres;
mod record;
pub mod rollup;
mod spool;
mod spool_line;
mod spool_reader;
mod sqlite;
mod store;
mod writer;

use std::sync::Arc;

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::configuration::{RequestLogSettings, env};
use crate::database::Availability;
use crate::schema::Schema;
use crate::throttle::Throttle;

pub use dropped::DropReason;
use dropped::Dropped;
pub use record::LogRecord;
use spool::{AppendError, Spool};
pub use store::write_batch;
pub use writer::RequestLogWriter;

/// The request path's side of the spool. Cheap to clone.
#[derive(Clone)]
pub struct RequestLogHandle {
    spool: Option<Arc<Spool>>,
    dropped: Arc<Dropped>,
    log_health_checks: bool,
}

impl RequestLogHandle {
    /// Appends a row to the spool; counts it as dropped when it cannot be. Health checks are
    /// frequent and uninteresting: they are kept only when configured.
    pub fn record(&self, record: LogRecord, health_check: bool) {
        let Some(spool) = &self.spool else { return };
        if health_check && !self.log_health_checks {
            return;
        }
        let Err(err) = spool.append(&record) else {
            return;
        };
        static FULL: Throttle = Throttle::new();
        static FAILED: Throttle = Throttle::new();
        match err {
            AppendError::Full => {
                let before = self.dropped.count(DropReason::SpoolFull, 1);
                if let Some(suppressed) = FULL.allow() {
                    tracing::warn!(
                        dropped_total = before + 1,
                        suppressed,
                        spool_bytes = spool.bytes(),
                        "request log spool full ({}); dropping rows",
                        env::REQUEST_LOG_SPOOL_MAX_BYTES
                    );
                }
            }
            AppendError::Io(err) => {
                let before = self.dropped.count(DropReason::SpoolError, 1);
                if let Some(suppressed) = FAILED.allow() {
                    tracing::error!(
                        error = %err,
                        dropped_total = before + 1,
                        suppressed,
                        dir = %spool.dir().display(),
                        "cannot append to the request log spool; dropping rows"
                    );
                }
            }
            AppendError::Closed => {
                self.dropped.count(DropReason::Shutdown, 1);
            }
        }
    }

    /// Rows of this process waiting for the database.
    pub fn queue_depth(&self) -> u64 {
        self.spool.as_ref().map_or(0, |spool| spool.pending())
    }

    /// Bytes of spool files on disk (this process's and those it is replaying).
    pub fn spool_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |spool| spool.bytes())
    }

    /// This process's spool directory, while the log is on.
    pub fn spool_dir(&self) -> Option<&std::path::Path> {
        self.spool.as_ref().map(|spool| spool.dir())
    }

    /// Rows lost since start, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped.total()
    }
}

/// Creates this process's spool under `request_log.spool_dir` and starts the writer on `db`
/// (unless the log is disabled); returns both halves. Rows wait while `schema` has
/// migrations pending; `availability` tells the writer when a database that was away is back.
pub fn spawn(
    db: DatabaseConnection,
    schema: Schema,
    availability: Availability,
    server_id: String,
    database_identity: &str,
    settings: &RequestLogSettings,
) -> anyhow::Result<(RequestLogHandle, RequestLogWriter)> {
    let dropped = Arc::new(Dropped::default());
    if !settings.enabled {
        let handle = RequestLogHandle {
            spool: None,
            dropped,
            log_health_checks: false,
        };
        return Ok((handle, RequestLogWriter::disabled()));
    }
    // One transaction per interval, or per full batch when rows come faster: waking for
    // every `batch_size` rows would double the transactions at a few thousand requests/s.
    let max_batch = settings.batch_size * 10;
    let spool = Spool::create(
        &settings.spool_dir,
        &server_id,
        database_identity,
        settings.spool_max_bytes,
        max_batch,
    )
    .with_context(|| {
        format!(
            "cannot create the request log spool under {} (check {})",
            settings.spool_dir.display(),
            env::REQUEST_LOG_SPOOL_DIR
        )
    })?;
    let spool = Arc::new(spool);
    tracing::info!(dir = %spool.dir().display(), "request log spool");
    let writer = RequestLogWriter::start(writer::Worker {
        db,
        schema,
        availability,
        server_id,
        dropped: dropped.clone(),
        max_batch,
        flush_interval: std::time::Duration::from_millis(settings.flush_interval_ms),
        spool: spool.clone(),
    });
    let handle = RequestLogHandle {
        spool: Some(spool),
        dropped,
        log_health_checks: settings.log_health_checks,
    };
    Ok((handle, writer))
}
