//! Group commit for user creates on PostgreSQL: creates that arrive together share one multi-row INSERT, one round trip and one commit, and each caller still gets its own answer.
//!
//! Nothing waits for a batch to fill: a create that finds no other in flight is written at
//! once by its own task, and a queued one is taken by a worker as soon as it is there, with
//! whatever others are already queued (up to [`MAX_BATCH`]). A lone client therefore pays
//! nothing; under load, creates queue while a worker's statement is in
//! flight and the next one carries them all. Duplicates are settled by the statement's
//! `ON CONFLICT (email_key) DO NOTHING`: a row it skipped, because another user (or an earlier
//! row of the same batch) has its email, answers 409. When a batch fails as a whole, each of
//! its creates is retried alone, so each gets the error of its own write (a fast 503 while the
//! database is away, never a 500 for a neighbour's problem).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use entity::users;
use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::service::{Mutation, WriteError};

/// Most rows in one INSERT.
pub const MAX_BATCH: usize = 128;
/// Statements in flight at once: while one is at the database the next batch gathers.
const WORKERS: usize = 4;
/// Creates queued at most; a create past it waits for room.
const QUEUE: usize = 4 * MAX_BATCH;

struct Pending {
    row: users::Model,
    reply: oneshot::Sender<Result<users::Model, WriteError>>,
}

/// The queue creates go through; cheap to share.
pub struct Creates {
    db: DatabaseConnection,
    tx: mpsc::Sender<Pending>,
    /// Creates between their start and their answer.
    in_flight: AtomicUsize,
}

impl Creates {
    /// Starts the workers on the current tokio runtime; they end with the last `Creates`.
    pub fn start(db: DatabaseConnection) -> Creates {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            tokio::spawn(work(db.clone(), rx.clone()));
        }
        Creates {
            db,
            tx,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Writes `row` with whatever creates arrive with it: the row as stored, or why not.
    pub async fn create(&self, row: users::Model) -> Result<users::Model, WriteError> {
        let counted = InFlight::enter(&self.in_flight);
        if counted.alone {
            // Nobody to share a statement with: the queue's two task hops would only add
            // latency for a lone client.
            count_statement(1);
            return Mutation::insert_user(&self.db, row).await;
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending { row, reply };
        if let Err(mpsc::error::SendError(pending)) = self.tx.send(pending).await {
            // The workers are gone (shutting down): write it alone.
            return Mutation::insert_user(&self.db, pending.row).await;
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(WriteError::Db(sea_orm::DbErr::Custom(
                "the create was dropped before it was written".into(),
            ))),
        }
    }
}

/// Counts a create in flight for as long as it lives, cancelled requests included.
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> InFlight<'a> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        InFlight {
            counter,
            alone: before == 0,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn work(db: DatabaseConnection, rx: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            batch
        };
        write(&db, batch).await;
    }
}

/// One statement written for `creates` creates.
fn count_statement(creates: usize) {
    metrics::counter!("user_creates_total").increment(creates as u64);
    metrics::counter!("user_create_statements_total").increment(1);
}

async fn write(db: &DatabaseConnection, batch: Vec<Pending>) {
    count_statement(batch.len());
    if batch.len() == 1 {
        let Pending { row, reply } = batch.into_iter().next().expect("one create");
        let _ = reply.send(Mutation::insert_user(db, row).await);
        return;
    }
    match Mutation::insert_users(db, batch.iter().map(|p| &p.row)).await {
        Ok(inserted) => {
            for Pending { row, reply } in batch {
                let answer = if inserted.contains(&row.id) {
                    Ok(row)
                } else {
                    Err(WriteError::EmailTaken)
                };
                let _ = reply.send(answer);
            }
        }
        Err(_) => {
            metrics::counter!("user_create_batch_retries_total").increment(1);
            // Each create alone, at once, so each answers with its own error.
            for Pending { row, reply } in batch {
                let db = db.clone();
                tokio::spawn(async move {
                    let _ = reply.send(Mutation::insert_user(&db, row).await);
                });
            }
        }
    }
}
