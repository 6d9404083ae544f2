//! The background writer: copies the spools into the database in batches, at most once each.
//!
//! Rows are kept until written: a failed batch is retried with backoff for as long as the
//! database is away or refuses for reasons other than the rows (they wait in the spool
//! meanwhile), and a batch it refuses for its data is bisected until the offending rows are
//! found; only those are dropped. Each batch's transaction stores where it ends in its spool,
//! so a replay never writes a row twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::dropped::{DropReason, Dropped};
use super::record::{LogRecord, SpoolPosition};
use super::spool::{Spool, orphans};
use super::spool_reader::{Reader, Spooled};
use super::store::{forget_spool, spool_position, write_spooled};
use crate::database::{Availability, Failure, classify};
use crate::schema::Schema;
use crate::throttle::Throttle;

/// How long the final flush may take when the writer stops without being told (its handle
/// was dropped rather than shut down).
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The longest pause between two attempts to write a batch (cut short when the database
/// comes back).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often the writer looks for spools of processes that are gone (at start, then this
/// often): an instance restarted under the same server id finds its predecessor's at once,
/// one that never comes back has its spool taken over by another instance sharing the
/// directory.
pub const ORPHAN_SCAN: Duration = Duration::from_secs(30);

/// The background writer; [`RequestLogWriter::shutdown`] flushes what is spooled.
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

    /// Spawns `worker`.
    pub fn start(worker: Worker) -> Self {
        let (stop_tx, stop_rx) = oneshot::channel();
        Self {
            stop: Some(stop_tx),
            task: Some(tokio::spawn(worker.run(stop_rx))),
        }
    }

    /// Stops taking rows and writes everything spooled, retrying for at most `grace`; what
    /// is not written by then stays in the spool for the next start.
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
    /// One write takes up to this many rows: with a backlog, fewer, larger transactions are
    /// how the writer catches up.
    pub max_batch: usize,
    pub flush_interval: Duration,
    pub spool: Arc<Spool>,
}

/// Rows read from one spool and not yet written, with where each ends in it.
struct Batch {
    records: Vec<LogRecord>,
    ends: Vec<(u64, u64)>,
    spool_id: String,
    server_id: String,
    /// This process's own rows (they count in its pending gauge).
    own: bool,
}

impl Batch {
    fn fill(&mut self, spooled: Vec<Spooled>, reader: &Reader, own: bool) {
        self.spool_id.clone_from(&reader.spool_id);
        self.server_id.clone_from(&reader.server_id);
        self.own = own;
        for row in spooled {
            self.records.push(row.record);
            self.ends.push((row.segment, row.end));
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    /// The first `n` rows are written (or dropped).
    fn done(&mut self, n: usize, spool: &Spool) {
        self.records.drain(..n);
        self.ends.drain(..n);
        if self.own {
            spool.written(n);
        }
    }
}

/// The spools being written: those adopted from dead processes first (oldest first), then
/// this process's own.
struct Sources {
    adopted: VecDeque<Reader>,
    own: Reader,
}

impl Worker {
    async fn run(self, mut stop: oneshot::Receiver<Duration>) {
        let mut sources = Sources {
            adopted: VecDeque::new(),
            own: Reader::own(self.spool.clone(), &self.server_id),
        };
        let mut batch = Batch {
            records: Vec::new(),
            ends: Vec::new(),
            spool_id: String::new(),
            server_id: String::new(),
            own: true,
        };
        let mut next_scan = Instant::now();
        let grace = loop {
            if !self.schema.is_migrated() {
                tracing::warn!(
                    rows = self.spool.pending(),
                    "request log rows wait in the spool until the database schema is migrated"
                );
                let mut schema = self.schema.clone();
                tokio::select! {
                    () = schema.migrated() => {}
                    grace = &mut stop => break grace.unwrap_or(DEFAULT_GRACE),
                }
            }
            if Instant::now() >= next_scan {
                next_scan = Instant::now() + ORPHAN_SCAN;
                self.adopt(&mut sources).await;
            }
            if let Err(grace) = self.drain(&mut sources, &mut batch, &mut stop).await {
                break grace;
            }
            // Wake when a batch is waiting, else once per interval: being woken for every
            // row would cost a cross-thread wake-up per request.
            tokio::select! {
                grace = &mut stop => break grace.unwrap_or(DEFAULT_GRACE),
                () = self.spool.ready.notified() => {}
                () = tokio::time::sleep(self.flush_interval) => {}
            }
        };
        self.spool.close();
        self.flush(sources, batch, grace).await;
    }

    /// Locks the spools of processes that are gone and queues them for writing, each from
    /// the position the database has for it.
    async fn adopt(&self, sources: &mut Sources) {
        let found = match orphans(&self.spool) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for spools left by earlier processes");
                return;
            }
        };
        for orphan in found {
            if sources
                .adopted
                .iter()
                .any(|r| r.spool_id == orphan.spool_id)
            {
                continue;
            }
            let from = match spool_position(&self.db, &orphan.spool_id).await {
                Ok(from) => from,
                Err(err) => {
                    // Unlocked again when `orphan` goes: the next scan tries again.
                    tracing::warn!(error = %err, "cannot read a spool's position; retrying later");
                    return;
                }
            };
            let dir = orphan.dir.display().to_string();
            match Reader::adopt(self.spool.clone(), orphan, from) {
                Ok(reader) => {
                    tracing::info!(
                        %dir,
                        server_id = reader.server_id,
                        "replaying the request log spool of a process that is gone"
                    );
                    sources.adopted.push_back(reader);
                }
                Err(err) => tracing::warn!(%dir, error = %err, "cannot replay a spool"),
            }
        }
    }

    /// Writes what the spools hold until they are all read. `Err(grace)` when a stop arrived
    /// meanwhile; the rows not written stay in their spool.
    async fn drain(
        &self,
        sources: &mut Sources,
        batch: &mut Batch,
        stop: &mut oneshot::Receiver<Duration>,
    ) -> Result<(), Duration> {
        static UNREADABLE: Throttle = Throttle::new();
        loop {
            if batch.len() == 0 {
                let own = sources.adopted.is_empty();
                let reader = sources.adopted.front_mut().unwrap_or(&mut sources.own);
                let mut spooled = Vec::new();
                match reader.read(self.max_batch, &mut spooled) {
                    Ok(skipped) => {
                        if skipped.corrupt > 0 {
                            self.dropped.count(DropReason::Corrupt, skipped.corrupt);
                            tracing::error!(
                                lines = skipped.corrupt,
                                dir = %reader.dir().display(),
                                "request log spool lines that are not rows were skipped"
                            );
                        }
                        if skipped.torn > 0 {
                            tracing::info!(
                                dir = %reader.dir().display(),
                                "a spool ended in a partial line (its request was never \
                                 answered); skipped"
                            );
                        }
                    }
                    Err(err) => {
                        if let Some(suppressed) = UNREADABLE.allow() {
                            tracing::error!(
                                error = %err,
                                suppressed,
                                dir = %reader.dir().display(),
                                "cannot read the request log spool; retrying"
                            );
                        }
                        return Ok(());
                    }
                }
                if spooled.is_empty() {
                    if !own && reader.is_done() {
                        let done = sources.adopted.pop_front();
                        if let Some(done) = done {
                            self.retire(&done).await;
                        }
                        continue;
                    }
                    return Ok(());
                }
                batch.fill(spooled, reader, own);
            }
            self.write_with_retry(batch, stop).await?;
        }
    }

    /// A spool read to its end and deleted: its directory goes first, then its position (a
    /// directory left behind by a crash between the two is empty or replayed from there).
    async fn retire(&self, reader: &Reader) {
        if let Err(err) = std::fs::remove_dir_all(reader.dir()) {
            tracing::warn!(error = %err, dir = %reader.dir().display(), "cannot remove a spool");
            return;
        }
        if let Err(err) = forget_spool(&self.db, &reader.spool_id).await {
            tracing::warn!(error = %err, "cannot forget a written spool's position");
        }
    }

    /// Writes `batch` until it is all written (or dropped for its data), retrying with
    /// backoff whatever else goes wrong. `Err(grace)` when a stop arrived meanwhile; what is
    /// not written yet stays in `batch`.
    async fn write_with_retry(
        &self,
        batch: &mut Batch,
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
    async fn write_isolating_bad_rows(&self, batch: &mut Batch) -> Result<(), DbErr> {
        // The sizes of the chunks the front of `batch` is cut into, the first chunk last.
        let mut chunks: Vec<usize> = Vec::new();
        let mut rest = batch.len();
        while rest > 0 {
            let size = rest.min(self.max_batch);
            chunks.insert(0, size);
            rest -= size;
        }
        while let Some(size) = chunks.pop() {
            let (segment, offset) = batch.ends[size - 1];
            let position = SpoolPosition {
                spool_id: &batch.spool_id,
                segment,
                offset,
            };
            match write_spooled(
                &self.db,
                &batch.server_id,
                &batch.records[..size],
                Some(position),
            )
            .await
            {
                Ok(()) => {
                    metrics::counter!("request_log_rows_written_total").increment(size as u64);
                    batch.done(size, &self.spool);
                }
                Err(err) if classify(&err) == Failure::RowRejected => {
                    if size == 1 {
                        let request_id = batch.records[0].request_id.clone();
                        batch.done(1, &self.spool);
                        let before = self.dropped.count(DropReason::Rejected, 1);
                        if before.is_power_of_two() || before == 0 {
                            tracing::error!(
                                error = %err,
                                %request_id,
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

    /// The final flush, the spool closed: writes what is spooled within `grace`. A spool
    /// written to its end is removed; what is not written stays on disk, and the next process
    /// to start on this spool directory writes it.
    async fn flush(&self, mut sources: Sources, mut batch: Batch, grace: Duration) {
        let total = self.spool.pending();
        if self.schema.is_migrated() {
            // Never sent: the deadline below is the only end.
            let (_keep, mut never) = oneshot::channel();
            let _ =
                tokio::time::timeout(grace, self.drain(&mut sources, &mut batch, &mut never)).await;
        }
        if sources.own.is_done() && batch.len() == 0 {
            self.retire(&sources.own).await;
            tracing::info!(rows = total, "request log flushed");
            return;
        }
        tracing::warn!(
            rows = self.spool.pending(),
            dir = %self.spool.dir().display(),
            "request log rows not written at shutdown stay in the spool; the next start \
             writes them"
        );
    }
}
