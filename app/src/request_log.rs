//! The request log: a bounded queue on the request path, batch inserts off it.
//!
//! Requests never wait for the database: [`RequestLogHandle::record`] is a non-blocking
//! `try_send`. A background writer drains the queue in batches (at once when `batch_size` rows
//! are waiting, else every `flush_interval_ms`), inserting the rows and updating the `request_stats` rollup in one
//! transaction. While the database is down the failed batch is retried with backoff and the
//! queue keeps what fits; what overflows is counted in `request_log_dropped_total` and logged.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::configuration::RequestLogSettings;
use crate::service::Mutation;

/// One answered request, as queued.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
    pub duration_us: u64,
    pub client_ip: Option<IpAddr>,
    pub request_id: Arc<str>,
    pub at: DateTime<Utc>,
}

/// The request path's side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct RequestLogHandle {
    tx: Option<mpsc::Sender<LogRecord>>,
    /// The writer's own pool (absent when the log is disabled).
    db: Option<DatabaseConnection>,
    dropped: Arc<AtomicU64>,
    log_health_checks: bool,
}

impl RequestLogHandle {
    /// Queues a row without waiting; counts it as dropped when the queue is full.
    pub fn record(&self, record: LogRecord) {
        let Some(tx) = &self.tx else { return };
        if record.route == "/health" && !self.log_health_checks {
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

    /// The writer's connection pool.
    pub fn database(&self) -> Option<&DatabaseConnection> {
        self.db.as_ref()
    }

    /// Rows lost to a full queue since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The background writer; [`RequestLogWriter::shutdown`] flushes what is queued.
pub struct RequestLogWriter {
    stop: Option<oneshot::Sender<Duration>>,
    task: Option<JoinHandle<()>>,
}

/// Starts the writer (unless disabled) and returns both halves.
pub fn spawn(
    db: DatabaseConnection,
    server_id: String,
    settings: &RequestLogSettings,
) -> (RequestLogHandle, RequestLogWriter) {
    let dropped = Arc::new(AtomicU64::new(0));
    if !settings.enabled {
        let handle = RequestLogHandle {
            tx: None,
            db: None,
            dropped,
            log_health_checks: false,
        };
        return (
            handle,
            RequestLogWriter {
                stop: None,
                task: None,
            },
        );
    }
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let (stop_tx, stop_rx) = oneshot::channel();
    let worker = Worker {
        db: db.clone(),
        server_id,
        batch_size: settings.batch_size,
        max_batch: settings.batch_size * 10,
        flush_interval: Duration::from_millis(settings.flush_interval_ms),
    };
    let task = tokio::spawn(worker.run(rx, stop_rx));
    let handle = RequestLogHandle {
        tx: Some(tx),
        db: Some(db),
        dropped,
        log_health_checks: settings.log_health_checks,
    };
    (
        handle,
        RequestLogWriter {
            stop: Some(stop_tx),
            task: Some(task),
        },
    )
}

impl RequestLogWriter {
    /// Stops taking rows and writes everything queued, retrying for at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

struct Worker {
    db: DatabaseConnection,
    server_id: String,
    batch_size: usize,
    /// With a backlog, one write takes up to this many rows: fewer, larger transactions are
    /// how the writer catches up.
    max_batch: usize,
    flush_interval: Duration,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<LogRecord>, mut stop: oneshot::Receiver<Duration>) {
        let mut batch: Vec<LogRecord> = Vec::with_capacity(self.batch_size);
        let grace = loop {
            // Wait for the first rows of a batch (all that are queued, up to `max_batch`).
            tokio::select! {
                grace = &mut stop => break grace.unwrap_or(Duration::from_secs(5)),
                n = rx.recv_many(&mut batch, self.max_batch) => if n == 0 {
                    break Duration::from_secs(5);
                },
            }
            if batch.len() < self.batch_size {
                // Let the batch fill for one interval without listening to the queue: being
                // woken for every row would cost a cross-thread wake-up per request.
                tokio::select! {
                    grace = &mut stop => break grace.unwrap_or(Duration::from_secs(5)),
                    () = tokio::time::sleep(self.flush_interval) => {}
                }
                while batch.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(_) => break,
                    }
                }
            }
            if let Err(grace) = self.write_with_retry(&mut batch, &mut stop).await {
                break grace;
            }
        };
        // Shutting down: no new rows; write what is queued within the grace period.
        rx.close();
        let deadline = tokio::time::Instant::now() + grace;
        while let Some(record) = rx.recv().await {
            batch.push(record);
        }
        let total = batch.len();
        let mut written = 0;
        for chunk in batch.chunks(self.max_batch) {
            loop {
                let attempt = tokio::time::timeout_at(
                    deadline,
                    Mutation::insert_request_logs(&self.db, &self.server_id, chunk),
                )
                .await;
                match attempt {
                    Ok(Ok(())) => {
                        written += chunk.len();
                        break;
                    }
                    Ok(Err(err)) if tokio::time::Instant::now() < deadline => {
                        tracing::warn!(error = %err, "request log flush failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    failed => {
                        let error = match failed {
                            Ok(Err(err)) => err.to_string(),
                            _ => "the grace period ended".to_owned(),
                        };
                        let lost = (total - written) as u64;
                        tracing::error!(%error, lost, "request log rows lost at shutdown");
                        metrics::counter!("request_log_dropped_total").increment(lost);
                        return;
                    }
                }
            }
        }
        tracing::info!(rows = written, "request log flushed");
    }

    /// Writes `batch`, retrying with backoff while the database is unreachable. A batch the
    /// database keeps refusing for another reason is dropped (and counted) after a few tries,
    /// so one bad batch cannot stall the log for good. `Err(grace)` when a stop arrived
    /// meanwhile; the batch then stays for the final flush.
    async fn write_with_retry(
        &self,
        batch: &mut Vec<LogRecord>,
        stop: &mut oneshot::Receiver<Duration>,
    ) -> Result<(), Duration> {
        const MAX_REJECTIONS: u32 = 5;
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        let mut rejections = 0u32;
        loop {
            match Mutation::insert_request_logs(&self.db, &self.server_id, batch).await {
                Ok(()) => {
                    metrics::counter!("request_log_rows_written_total")
                        .increment(batch.len() as u64);
                    if failures > 0 {
                        tracing::info!(failures, "request log writes recovered");
                    }
                    batch.clear();
                    return Ok(());
                }
                Err(err) => {
                    failures += 1;
                    if !is_unreachable(&err) {
                        rejections += 1;
                        if rejections >= MAX_REJECTIONS {
                            tracing::error!(error = %err, rows = batch.len(), "the database keeps rejecting a request log batch; dropping it");
                            metrics::counter!("request_log_dropped_total")
                                .increment(batch.len() as u64);
                            batch.clear();
                            return Ok(());
                        }
                    }
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %err, rows = batch.len(), failures, "request log write failed; will retry");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        grace = &mut *stop => return Err(grace.unwrap_or(Duration::from_secs(5))),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Errors that mean "the database is not there right now" (worth retrying indefinitely), as
/// opposed to "it refused these rows".
fn is_unreachable(err: &sea_orm::DbErr) -> bool {
    matches!(
        err,
        sea_orm::DbErr::Conn(_) | sea_orm::DbErr::ConnectionAcquire(_)
    )
}
