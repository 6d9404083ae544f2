//! The background writer: drains the queue in batches and flushes the rest at shutdown.
//!
//! Rows are kept until written: a failed batch is retried with backoff for as long as the
//! database is away or refuses for reasons other than the rows, and a batch it refuses for
//! its data is bisected until the offending rows are found; only those are dropped.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::dropped::{DropReason, Dropped};
use super::record::LogRecord;
use super::store::write_batch;
use crate::database::{Availability, Failure, classify};
use crate::schema::Schema;

/// How long the final flush may take when the writer stops without being told (its handle
/// was dropped rather than shut down).
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The longest pause between two attempts to write a batch (cut short when the database
/// comes back).
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

    /// Spawns `worker` on the queue `rx`.
    pub fn start(worker: Worker, rx: mpsc::Receiver<LogRecord>) -> Self {
        let (stop_tx, stop_rx) = oneshot::channel();
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

/// What the writer task works with.
pub struct Worker {
    pub db: DatabaseConnection,
    /// Until it is migrated there is no table to write to.
    pub schema: Schema,
    /// Says when a database that was away is back, so a waiting batch goes at once.
    pub availability: Availability,
    pub server_id: String,
    pub dropped: Arc<Dropped>,
    pub batch_size: usize,
    /// With a backlog, one write takes up to this many rows: fewer, larger transactions are
    /// how the writer catches up.
    pub max_batch: usize,
    pub flush_interval: Duration,
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
        while let Some(record) = rx.recv().await {
            batch.push(record);
        }
        self.flush(batch, grace).await;
    }

    /// Writes `batch` until it is all written (or dropped for its data), retrying with
    /// backoff whatever else goes wrong. `Err(grace)` when a stop arrived meanwhile; what is
    /// not written yet stays in `batch` for the final flush.
    async fn write_with_retry(
        &self,
        batch: &mut Vec<LogRecord>,
        stop: &mut oneshot::Receiver<Duration>,
    ) -> Result<(), Duration> {
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let Err(err) = self.write_isolating_bad_rows(batch).await else {
                if failures > 0 {
                    tracing::info!(failures, "request log writes recovered");
                }
                return Ok(());
            };
            failures += 1;
            let unreachable = classify(&err) == Failure::Unreachable;
            if unreachable {
                self.availability.suspect();
            }
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(
                    error = %err,
                    rows = batch.len(),
                    failures,
                    unreachable,
                    "request log write failed; the rows are kept and retried"
                );
            }
            // A database known to be away wakes the writer the moment it is back.
            let availability = &self.availability;
            let back = async {
                if availability.is_up() {
                    std::future::pending::<()>().await;
                }
                availability.up().await;
            };
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = back => {}
                grace = &mut *stop => return Err(grace.unwrap_or(DEFAULT_GRACE)),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Writes the rows of `batch` in transactions of at most `max_batch`, removing each
    /// written row from `batch`. A transaction the database refuses for its data is split in
    /// halves until the rows it refuses are alone; those are dropped and counted. Any other
    /// failure returns with the unwritten rows still in `batch`, in order; so does a
    /// cancelled call, since rows leave `batch` only once written.
    async fn write_isolating_bad_rows(&self, batch: &mut Vec<LogRecord>) -> Result<(), DbErr> {
        // The sizes of the chunks the front of `batch` is cut into, the first chunk last.
        let mut chunks: Vec<usize> = Vec::new();
        let mut rest = batch.len();
        while rest > 0 {
            let size = rest.min(self.max_batch);
            chunks.insert(0, size);
            rest -= size;
        }
        while let Some(size) = chunks.pop() {
            match write_batch(&self.db, &self.server_id, &batch[..size]).await {
                Ok(()) => {
                    metrics::counter!("request_log_rows_written_total").increment(size as u64);
                    batch.drain(..size);
                }
                Err(err) if classify(&err) == Failure::RowRejected => {
                    if size == 1 {
                        let row = batch.remove(0);
                        let before = self.dropped.count(DropReason::Rejected, 1);
                        if before.is_power_of_two() || before == 0 {
                            tracing::error!(
                                error = %err,
                                request_id = %row.request_id,
                                dropped_total = before + 1,
                                "the database refused a request log row; dropping that row"
                            );
                        }
                    } else {
                        chunks.push(size - size / 2);
                        chunks.push(size / 2);
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The final flush: writes `batch` within `grace`, retrying while there is time; what is
    /// left then is counted as lost.
    async fn flush(&self, mut batch: Vec<LogRecord>, grace: Duration) {
        let total = batch.len();
        if total > 0 && !self.schema.is_migrated() {
            tracing::error!(
                lost = total,
                "request log rows lost at shutdown: the database schema is not migrated"
            );
            self.dropped.count(DropReason::Shutdown, total as u64);
            return;
        }
        let deadline = tokio::time::Instant::now() + grace;
        let error = loop {
            match tokio::time::timeout_at(deadline, self.write_isolating_bad_rows(&mut batch)).await
            {
                Ok(Ok(())) => {
                    tracing::info!(rows = total, "request log flushed");
                    return;
                }
                Ok(Err(err)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %err, "request log flush failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(err)) => break err.to_string(),
                Err(_) => break "the grace period ended".to_owned(),
            }
        };
        let lost = batch.len() as u64;
        tracing::error!(%error, lost, "request log rows lost at shutdown");
        self.dropped.count(DropReason::Shutdown, lost);
    }
}
