//! Whether the database can be reached, as one shared state that a background probe keeps.
//!
//! Requests must not wait for a database that is away: the pool would retry a refused
//! connection until its acquire timeout (seconds). So a connection-level failure, or a
//! request that runs longer than [`SLOW_REQUEST`], asks the probe to open a fresh connection
//! at once. If that fails the state turns "down": requests that need the database are answered
//! 503 straight away (and those already waiting are let go), until the probe, retrying every
//! [`RETRY_WHILE_DOWN`], gets through again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr};
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::pool::probe;
use super::url::describe;
use crate::configuration::DatabaseSettings;

/// A request running this long makes the probe look at the database.
pub const SLOW_REQUEST: Duration = Duration::from_millis(40);
/// While the database is away, how often the probe tries again: the bound on how long service
/// stays off after the database is back.
const RETRY_WHILE_DOWN: Duration = Duration::from_millis(250);
/// While the database is up, the least time between two probes, however many slow requests
/// ask for one: each probe opens a connection, so this bounds them (25 a second at most, and
/// only while requests are slow or failing). It is also part of how long the first 503s of
/// an outage take (a request waits [`SLOW_REQUEST`], then at most this for the probe, then the
/// probe itself), which must stay under 100 ms.
const MIN_PROBE_SPACING: Duration = Duration::from_millis(40);

/// The shared view of the database's reachability. Cheap to clone.
#[derive(Clone)]
pub struct Availability(Arc<Inner>);

struct Inner {
    up: watch::Sender<bool>,
    /// Asks the probe to look now.
    look: Notify,
    /// Why the last probe failed, without the password.
    reason: Mutex<String>,
    /// When the database last turned unreachable, while it is.
    down_since: Mutex<Option<Instant>>,
}

impl Availability {
    fn new() -> Self {
        Self(Arc::new(Inner {
            up: watch::Sender::new(true),
            look: Notify::new(),
            reason: Mutex::new(String::new()),
            down_since: Mutex::new(None),
        }))
    }

    pub fn is_up(&self) -> bool {
        *self.0.up.borrow()
    }

    /// Why the database counts as unreachable, while it does.
    pub fn problem(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        let reason = self.0.reason.lock().unwrap_or_else(|e| e.into_inner());
        Some(format!("the database is unreachable ({reason})"))
    }

    /// How long the database has been unreachable, while it is.
    pub fn down_for(&self) -> Option<Duration> {
        self.0
            .down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|since| since.elapsed())
    }

    /// Something failed in a way that may mean the database is away: probe it now.
    pub fn suspect(&self) {
        self.0.look.notify_one();
    }

    /// Resolves once the database counts as unreachable.
    pub async fn down(&self) {
        let _ = self.0.up.subscribe().wait_for(|up| !up).await;
    }

    /// Resolves once the database counts as reachable.
    pub async fn up(&self) {
        let _ = self.0.up.subscribe().wait_for(|up| *up).await;
    }

    /// For a request still running after [`SLOW_REQUEST`]: has the probe look, and resolves
    /// if it finds the database unreachable (never, while it is reachable).
    pub async fn lost_while_waiting(&self) {
        tokio::time::sleep(SLOW_REQUEST).await;
        self.suspect();
        self.down().await;
    }

    fn set(&self, up: bool, reason: Option<String>) {
        if let Some(reason) = reason {
            *self.0.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        }
        let changed = self.0.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        });
        if changed {
            *self.0.down_since.lock().unwrap_or_else(|e| e.into_inner()) = (!up).then(Instant::now);
        }
    }
}

/// The task behind an [`Availability`].
pub struct AvailabilityProbe(JoinHandle<()>);

impl AvailabilityProbe {
    pub fn stop(self) {
        self.0.abort();
    }
}

/// Starts watching the database of `settings` (`db` is its pool, used for SQLite).
pub fn watch_availability(
    settings: &DatabaseSettings,
    db: DatabaseConnection,
) -> (Availability, AvailabilityProbe) {
    let availability = Availability::new();
    let watcher = availability.clone();
    let settings = settings.clone();
    let task = tokio::spawn(async move {
        loop {
            if watcher.is_up() {
                watcher.0.look.notified().await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(RETRY_WHILE_DOWN) => {}
                    () = watcher.0.look.notified() => {}
                }
            }
            let was_up = watcher.is_up();
            match check(&settings, &db).await {
                Ok(()) => {
                    if !was_up {
                        tracing::info!("the database is reachable again; serving everything");
                    }
                    watcher.set(true, None);
                    tokio::time::sleep(MIN_PROBE_SPACING).await;
                }
                Err(err) => {
                    let reason = describe(&err, settings.url.expose_secret());
                    if was_up {
                        tracing::warn!(
                            error = %reason,
                            "the database is unreachable; answering 503 database_unavailable \
                             until it is back"
                        );
                    }
                    watcher.set(false, Some(reason));
                }
            }
        }
    });
    (availability, AvailabilityProbe(task))
}

/// A fresh PostgreSQL connection (the pool's may be dead or hanging); SQLite, a file, only
/// needs its pool to answer.
async fn check(settings: &DatabaseSettings, db: &DatabaseConnection) -> Result<(), DbErr> {
    let timeout = settings.health_timeout();
    if db.get_database_backend() == DatabaseBackend::Postgres {
        return probe(settings, timeout).await;
    }
    match tokio::time::timeout(timeout, db.ping()).await {
        Ok(result) => result,
        Err(_) => Err(DbErr::Custom(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
