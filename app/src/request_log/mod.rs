//! The request log: a bounded queue on the request path, batch inserts off it.
//!
//! Requests never wait for the database: [`RequestLogHandle::record`] is a non-blocking
//! `try_send`. A background writer drains the queue in batches (at once when `batch_size` rows
//! are waiting, else every `flush_interval_ms`), inserting the rows and updating the
//! `request_stats` rollup in one transaction. While the database is away, or refuses for any
//! reason but the rows themselves, the batch is kept and retried with backoff and the queue
//! keeps what fits; what overflows is counted in `request_log_dropped_total{reason}` and
//! logged. A batch the database refuses because of its data is split until the offending rows
//! are found; only those are dropped. Rows wait the same way while the database schema has
//! migrations pending.

mod dropped;
pub mod histogram;
mod postgres;
mod record;
pub mod rollup;
mod sqlite;
mod store;
mod writer;

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;

use crate::configuration::RequestLogSettings;
use crate::database::Availability;
use crate::schema::Schema;

pub use dropped::DropReason;
use dropped::Dropped;
pub use record::LogRecord;
pub use store::write_batch;
pub use writer::RequestLogWriter;

/// The request path's side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct RequestLogHandle {
    tx: Option<mpsc::Sender<LogRecord>>,
    dropped: Arc<Dropped>,
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
            let before = self.dropped.count(DropReason::QueueFull, 1);
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

    /// Rows lost since start, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped.total()
    }
}

/// Starts the writer on `db` (unless the log is disabled) and returns both halves. Rows wait
/// in the queue while `schema` has migrations pending; `availability` tells the writer when
/// a database that was away is back.
pub fn spawn(
    db: DatabaseConnection,
    schema: Schema,
    availability: Availability,
    server_id: String,
    settings: &RequestLogSettings,
) -> (RequestLogHandle, RequestLogWriter) {
    let dropped = Arc::new(Dropped::default());
    if !settings.enabled {
        let handle = RequestLogHandle {
            tx: None,
            dropped,
            log_health_checks: false,
        };
        return (handle, RequestLogWriter::disabled());
    }
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let writer = RequestLogWriter::start(
        writer::Worker {
            db,
            schema,
            availability,
            server_id,
            dropped: dropped.clone(),
            batch_size: settings.batch_size,
            max_batch: settings.batch_size * 10,
            flush_interval: std::time::Duration::from_millis(settings.flush_interval_ms),
        },
        rx,
    );
    let handle = RequestLogHandle {
        tx: Some(tx),
        dropped,
        log_health_checks: settings.log_health_checks,
    };
    (handle, writer)
}
