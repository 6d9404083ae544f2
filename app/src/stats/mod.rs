//! `/api/stats`: the cluster's traffic per server, read from the request log's rollup.

mod cache;
mod summary;
mod window;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_log::rollup::{self, Span};
use crate::service::Query;

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
    /// Start of the window (rounded down to the minute); null for all time.
    pub since: Option<DateTime<Utc>>,
    /// When this answer was computed; answers are reused for up to `stats.cache_ms`.
    pub generated_at: DateTime<Utc>,
    pub total_requests: u64,
    pub total_users: u64,
    /// One entry per server that answered requests in the window, busiest first.
    pub servers: Vec<ServerStats>,
}

/// The serialised answer for `window`: from `cache` while fresh, else summed from the rollup.
pub async fn report(
    db: &DatabaseConnection,
    cache: &StatsCache<Arc<Snapshot>>,
    window: &Window,
    server_id: &str,
) -> Result<Bytes, DbErr> {
    let snapshot = cache
        .get_or_compute(window.length, || async {
            let now = Utc::now();
            let since = window
                .length
                .and_then(|length| chrono::Duration::from_std(length).ok())
                .map(|length| Span::Minute.start(now - length));
            let (rows, total_users) =
                tokio::try_join!(rollup::totals_since(db, since), Query::count_users(db))?;
            let (total_requests, servers) = summary::summarize(&rows);
            Ok::<_, DbErr>(Arc::new(Snapshot {
                since,
                generated_at: now,
                total_requests,
                total_users,
                servers,
            }))
        })
        .await?;
    let body = StatsBody {
        window: &window.label,
        snapshot: &snapshot,
        server_id,
    };
    // Serialising our own plain struct cannot fail.
    Ok(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}
