//! The background writer: drains the queue in batches and flushes the rest at shutdown.
//!
//! While the database is away it retries with backoff.

use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::record::LogRecord;
use super::store::write_batch;
use crate::configuration::RequestLogSettings;
use crate::schema::Schema;

/// How long the final flush may take when the writer stops without being told (its handle
/// was dropped rather than shut down).
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The longest pause between two attempts to write a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The background writer; [`RequestLogWriter::shutdown`] flushes what is queued.
pub struct RequestLogWriter {
    stop: Option<oneshot::Sender<Duration>>,
    task: Option<JoinHandle<()>>,
}

impl RequestLogWriter {
    /// A writer with nothing to write: the log is disabled.
    pub fn disabled() -> Self {
        Self {
            stop: None,
            task: None,
        }
    }

    /// Spawns the task that drains `rx` into `db`.
    pub fn start(
        db: DatabaseConnection,
        schema: Schema,
        server_id: String,
        settings: &RequestLogSettings,
        rx: mpsc::Receiver<LogRecord>,
    ) -> Self {
        let (stop_tx, stop_rx) = oneshot::channel();
        let worker = Worker {
            db,
            schema,
            server_id,
            batch_size: settings.batch_size,
            max_batch: settings.batch_size * 10,
            flush_interval: Duration::from_millis(settings.flush_interval_ms),
        };
        Self {
            stop: Some(stop_tx),
            task: Some(tokio::spawn(worker.run(rx, stop_rx))),
        }
    }

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
    /// Until it is migrated there is no table to write to.
    schema: Schema,
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
                grace = &mut stop => break grace.unwrap_or(DEFAULT_GRACE),
                n = rx.recv_many(&mut batch, self.max_batch) => if n == 0 {
                    break DEFAULT_GRACE;
                },
            }
            if batch.len() < self.batch_size {
                // Let the batch fill for one interval without listening to the queue: being
                // woken for every row would cost a cross-thread wake-up per request.
                tokio::select! {
                    grace = &mut stop => break grace.unwrap_or(DEFAULT_GRACE),
                    () = tokio::time::sleep(self.flush_interval) => {}
                }
                while batch.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(_) => break,
                    }
                }
            }
            if !self.schema.is_migrated() {
                tracing::warn!(
                    rows = batch.len(),
                    "request log rows wait in the queue until the database schema is migrated"
                );
                let mut schema = self.schema.clone();
                tokio::select! {
                    () = schema.migrated() => {}
                    grace = &mut stop => break grace.unwrap_or(DEFAULT_GRACE),
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
        if total > 0 && !self.schema.is_migrated() {
            tracing::error!(
                lost = total,
                "request log rows lost at shutdown: the database schema is not migrated"
            );
            metrics::counter!("request_log_dropped_total").increment(total as u64);
            return;
        }
        let mut written = 0;
        for chunk in batch.chunks(self.max_batch) {
            loop {
                let attempt = tokio::time::timeout_at(
                    deadline,
                    write_batch(&self.db, &self.server_id, chunk),
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
            match write_batch(&self.db, &self.server_id, batch).await {
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
                        grace = &mut *stop => return Err(grace.unwrap_or(DEFAULT_GRACE)),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Errors that mean "the database is not there right now" (worth retrying indefinitely), as
/// opposed to "it refused these rows".
fn is_unreachable(err: &DbErr) -> bool {
    matches!(err, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
}
