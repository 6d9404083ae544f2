//! Shared per-process state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::configuration::Settings;
use crate::creates::Creates;
use crate::dashboard::Dashboard;
use crate::database::Availability;
use crate::input::auth::ApiKey;
use crate::request_log::RequestLogHandle;
use crate::schema::Schema;
use crate::stats::{Snapshot, StatsCache};
use crate::storage::LocalStorage;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: DatabaseConnection,
    /// Group commit of user creates; PostgreSQL only (SQLite has one writer at a time anyway).
    creates: Option<Creates>,
    database: Availability,
    server_id: String,
    server_id_header: HeaderValue,
    hostname: String,
    api_key: Option<ApiKey>,
    trusted_proxy_hops: usize,
    body_limit: u64,
    health_timeout: Duration,
    storage: LocalStorage,
    started_at: DateTime<Utc>,
    started: Instant,
    /// Set once a stop signal arrived: `/health` fails and connections close after their
    /// current response.
    draining: AtomicBool,
    drain: Duration,
    request_log: RequestLogHandle,
    schema: Schema,
    stats_cache: StatsCache<Arc<Snapshot>>,
    stats_minute_retention: TimeDelta,
    documents: Documents,
    metrics: PrometheusHandle,
}

/// Answers that never change while the process runs, serialised once at start.
pub struct Documents {
    /// `GET /`.
    pub index: Bytes,
    /// `GET /openapi.json`.
    pub openapi: Bytes,
    /// `GET /dashboard`.
    pub dashboard: Dashboard,
}

impl AppState {
    /// Assembles the state once at start.
    pub fn new(
        settings: &Settings,
        db: DatabaseConnection,
        database: Availability,
        request_log: RequestLogHandle,
        schema: Schema,
        documents: Documents,
        metrics: PrometheusHandle,
    ) -> Self {
        let server_id = settings.application.server_id.clone();
        let server_id_header =
            HeaderValue::from_str(&server_id).expect("server_id was validated to be header-safe");
        let creates = (db.get_database_backend() == sea_orm::DatabaseBackend::Postgres)
            .then(|| Creates::start(db.clone()));
        Self(Arc::new(Inner {
            db,
            creates,
            database,
            server_id_header,
            server_id,
            hostname: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            api_key: settings.application.api_key.as_ref().map(ApiKey::new),
            trusted_proxy_hops: settings.application.trusted_proxy_hops as usize,
            body_limit: settings.application.body_limit_bytes,
            health_timeout: settings.database.health_timeout(),
            storage: LocalStorage::new(
                request_log.spool_dir(),
                settings.database.url.expose_secret(),
            ),
            started_at: Utc::now(),
            started: Instant::now(),
            draining: AtomicBool::new(false),
            drain: Duration::from_secs(settings.application.drain_seconds),
            request_log,
            schema,
            stats_cache: StatsCache::new(Duration::from_millis(settings.stats.cache_ms)),
            stats_minute_retention: settings.stats.minute_retention(),
            documents,
            metrics,
        }))
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.0.db
    }

    /// Where user creates go to share a statement, when the database takes batches.
    pub fn creates(&self) -> Option<&Creates> {
        self.0.creates.as_ref()
    }
    /// Whether the database is reachable right now.
    pub fn database(&self) -> &Availability {
        &self.0.database
    }
    pub fn server_id(&self) -> &str {
        &self.0.server_id
    }
    pub fn server_id_header(&self) -> &HeaderValue {
        &self.0.server_id_header
    }
    pub fn hostname(&self) -> &str {
        &self.0.hostname
    }
    /// `None` when writes are open.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.0.api_key.as_ref()
    }
    /// Proxies in front that append to `X-Forwarded-For`.
    pub fn trusted_proxy_hops(&self) -> usize {
        self.0.trusted_proxy_hops
    }
    pub fn body_limit(&self) -> u64 {
        self.0.body_limit
    }
    /// The instance's own folders `/health` checks can be written.
    pub fn storage(&self) -> &LocalStorage {
        &self.0.storage
    }
    pub fn health_timeout(&self) -> Duration {
        self.0.health_timeout
    }
    pub fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// Seconds since this process started serving.
    pub fn uptime_seconds(&self) -> u64 {
        self.0.started.elapsed().as_secs()
    }
    /// Whether this instance is on its way out (see [`AppState::start_draining`]).
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }
    /// From now on `/health` answers 503 and every response closes its connection.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }
    /// How long the instance serves after a stop signal before it stops accepting.
    pub fn drain(&self) -> Duration {
        self.0.drain
    }
    pub fn request_log(&self) -> &RequestLogHandle {
        &self.0.request_log
    }
    pub fn schema(&self) -> &Schema {
        &self.0.schema
    }
    pub fn stats_cache(&self) -> &StatsCache<Arc<Snapshot>> {
        &self.0.stats_cache
    }
    /// How far back `request_stats` keeps minute rows.
    pub fn stats_minute_retention(&self) -> TimeDelta {
        self.0.stats_minute_retention
    }
    pub fn documents(&self) -> &Documents {
        &self.0.documents
    }
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.0.metrics
    }
}
