//! Hooks for this crate's integration tests (`app/tests/api`); not an API.
//!
//! They reach what HTTP cannot: the app's own pool, its request-log counters, rows for other
//! servers and other times.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::startup::Application;
use crate::state::AppState;

pub use crate::request_log::LogRecord;
pub use crate::retention::{Policy as RetentionPolicy, Report as MaintenanceReport};

/// A view into a running application, kept after it started serving.
#[derive(Clone)]
pub struct Probe(AppState);

impl Probe {
    pub fn of(app: &Application) -> Self {
        Self(app.state().clone())
    }

    /// The pool requests use.
    pub fn database(&self) -> &DatabaseConnection {
        self.0.db()
    }

    /// Request-log rows lost, whatever the reason.
    pub fn request_log_dropped(&self) -> u64 {
        self.0.request_log().dropped()
    }
}

/// Writes `records` as if `server_id` had answered them, rollup included.
pub async fn write_request_log(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
) -> Result<(), DbErr> {
    crate::request_log::write_batch(db, server_id, records).await
}

/// One maintenance run on `db` as if the clock said `now`: retention, partitions, rollups.
pub async fn run_maintenance(
    db: &DatabaseConnection,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<MaintenanceReport, DbErr> {
    crate::retention::run_once(db, policy, now).await
}

/// `/api/stats?window=<window>` as the app would answer it at `now`, its minute rollups
/// reaching `minute_retention` back.
pub async fn stats_as_of(
    db: &DatabaseConnection,
    window: &str,
    minute_retention: chrono::TimeDelta,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, DbErr> {
    let window = crate::stats::Window::parse(window).map_err(DbErr::Custom)?;
    let snapshot = crate::stats::snapshot(db, &window, minute_retention, now).await?;
    let body = crate::stats::body(&window, &snapshot, "test");
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

/// The maintenance lock, held until the transaction ends, as an instance in the middle of a
/// run holds it; `None` when someone else holds it.
pub async fn hold_maintenance_lock(
    db: &DatabaseConnection,
) -> Result<Option<DatabaseTransaction>, DbErr> {
    crate::retention::lock_step(db).await
}

/// Every route of the table as (method, template), for tests that check the index, the
/// OpenAPI document and the request log against it.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    crate::routes::ROUTES
        .iter()
        .map(|route| (route.method.as_str(), route.path))
        .collect()
}
