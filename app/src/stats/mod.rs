//! `/api/stats`: the cluster's traffic per server, read from the request log's rollup.

mod cache;
mod query;
mod summary;
mod window;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_log::rollup::{self, WindowStart};

pub use cache::StatsCache;
pub use summary::ServerStats;
pub use window::Window;

/// `GET /api/stats`: the cluster's traffic, from the shared database.
#[derive(Serialize, ToSchema)]
pub struct StatsBody<'a> {
    /// The window asked for (`all` by default).
    pub window: &'a str,
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
    pub server_id: &'a str,
}

/// What a window's answer says, whoever asks: cached per window.
#[derive(Serialize, ToSchema)]
pub struct Snapshot {
    /// Start of the window: rounded down to the minute, or to the hour when the window reaches
    /// further back than the minute rollups are kept (`stats.minute_retention_hours`); null for
    /// all time.
    pub since: Option<DateTime<Utc>>,
    /// When this answer was computed; answers are reused for up to `stats.cache_ms`.
    pub generated_at: DateTime<Utc>,
    pub total_requests: u64,
    pub total_users: u64,
    /// One entry per server that answered requests in the window, busiest first.
    pub servers: Vec<ServerStats>,
}

/// The serialised answer for `window`: from `cache` while fresh, else summed from the rollup,
/// whose minute rows reach `minute_retention` back.
pub async fn report(
    db: &DatabaseConnection,
    cache: &StatsCache<Arc<Snapshot>>,
    window: &Window,
    minute_retention: TimeDelta,
    server_id: &str,
) -> Result<Bytes, DbErr> {
    let snapshot = cache
        .get_or_compute(window.length, || async {
            snapshot(db, window, minute_retention, Utc::now())
                .await
                .map(Arc::new)
        })
        .await?;
    Ok(body(window, &snapshot, server_id))
}

/// The answer's JSON: the window as asked, its figures, the answering server.
pub fn body(window: &Window, snapshot: &Snapshot, server_id: &str) -> Bytes {
    let body = StatsBody {
        window: &window.label,
        snapshot,
        server_id,
    };
    // Serialising our own plain struct cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// The figures of `window` as of `now`, summed from the rollup.
pub async fn snapshot(
    db: &DatabaseConnection,
    window: &Window,
    minute_retention: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Snapshot, DbErr> {
    let horizon = rollup::minute_horizon(now, minute_retention);
    let start = window
        .length
        .and_then(|length| TimeDelta::from_std(length).ok())
        .map(|length| WindowStart::at(now - length, horizon));
    let window_rows = query::window_rows(db, start).await?;
    let (total_requests, servers) = summary::summarize(&window_rows.servers);
    Ok(Snapshot {
        since: start.map(WindowStart::time),
        generated_at: now,
        total_requests,
        total_users: window_rows.total_users,
        servers,
    })
}
