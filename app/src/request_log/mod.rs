//! The request log: a bounded queue on the request path, batch inserts off it.
//!
//! Requests never wait for the database: [`RequestLogHandle::record`] is a non-blocking
//! `try_send`. A background writer drains the queue in batches (at once when `batch_size` rows
//! are waiting, else every `flush_interval_ms`), inserting the rows and updating the
//! `request_stats` rollup in one transaction. While the database is down the failed batch is
//! retried with backoff and the queue keeps what fits; what overflows is counted in
//! `request_log_dropped_total` and logged. Rows wait the same way while the database schema
//! has migrations pending.

pub mod histogram;
mod postgres;
mod record;
pub mod rollup;
mod sqlite;
mod store;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;

use crate::configuration::RequestLogSettings;
use crate::schema::Schema;

pub use record::LogRecord;
pub use store::write_batch;
pub use writer::RequestLogWriter;

/// The request path's side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct RequestLogHandle {
    tx: Option<mpsc::Sender<LogRecord>>,
    dropped: Arc<AtomicU64>,
    log_health_checks: bool,
}

impl RequestLogHandle {
    /// Queues a row without waiting; counts it as dropped when the queue is full. Health
    /// checks are frequent and uninteresting: they are kept only when configured.
    pub fn record(&self, record: LogRecord, health_check: bool) {
        let Some(tx) = &self.tx else { return };
        if health_check && !self.log_health_checks {
            return;
        }
        if tx.try_send(record).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("request_log_dropped_total").increment(1);
            // One line per 1000 drops: enough to notice, not enough to flood the log.
            if before.is_multiple_of(1000) {
                tracing::warn!(
                    dropped_total = before + 1,
                    "request log queue full; dropping rows"
                );
            }
        }
    }

    /// Rows waiting for the database.
    pub fn queue_depth(&self) -> usize {
        self.tx
            .as_ref()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .unwrap_or(0)
    }

    /// Rows lost to a full queue since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer on `db` (unless the log is disabled) and returns both halves. Rows wait
/// in the queue while `schema` has migrations pending.
pub fn spawn(
    db: DatabaseConnection,
    schema: Schema,
    server_id: String,
    settings: &RequestLogSettings,
) -> (RequestLogHandle, RequestLogWriter) {
    let dropped = Arc::new(AtomicU64::new(0));
    if !settings.enabled {
        let handle = RequestLogHandle {
            tx: None,
            dropped,
            log_health_checks: false,
        };
        return (handle, RequestLogWriter::disabled());
    }
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let writer = RequestLogWriter::start(db, schema, server_id, settings, rx);
    let handle = RequestLogHandle {
        tx: Some(tx),
        dropped,
        log_health_checks: settings.log_health_checks,
    };
    (handle, writer)
}
