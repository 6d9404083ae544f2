//! Hooks for this crate's integration tests (`app/tests/api`); not an API.
//!
//! They reach what HTTP cannot: the app's own pool, its request-log counters, rows for other
//! servers and other times.

use sea_orm::{DatabaseConnection, DbErr};

use crate::startup::Application;
use crate::state::AppState;

pub use crate::request_log::LogRecord;

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

    /// Request-log rows lost to a full queue.
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

/// Every route of the table as (method, template), for tests that check the index, the
/// OpenAPI document and the request log against it.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    crate::routes::ROUTES
        .iter()
        .map(|route| (route.method.as_str(), route.path))
        .collect()
}
