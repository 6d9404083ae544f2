//! Shared per-process state handed to every handler.

use std::sync::Arc;
use std::time::Instant;

use crate::configuration::Settings;
use crate::input::auth::ApiKey;
use crate::request_log::RequestLogHandle;
use chrono::{DateTime, Utc};
use http::HeaderValue;
use sea_orm::DatabaseConnection;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: DatabaseConnection,
    server_id: String,
    server_id_header: HeaderValue,
    hostname: String,
    api_key: Option<ApiKey>,
    body_limit: u64,
    health_timeout: std::time::Duration,
    started_at: DateTime<Utc>,
    started: Instant,
    request_log: RequestLogHandle,
    stats_cache: crate::stats::StatsCache,
    openapi_json: bytes::Bytes,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    /// Assembles the state once at start.
    pub fn new(
        settings: &Settings,
        db: DatabaseConnection,
        request_log: RequestLogHandle,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Self {
        let server_id = settings.application.server_id.clone();
        let server_id_header =
            HeaderValue::from_str(&server_id).expect("server_id was validated to be header-safe");
        Self(Arc::new(Inner {
            db,
            server_id_header,
            server_id,
            hostname: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            api_key: settings.application.api_key.as_ref().map(ApiKey::new),
            body_limit: settings.application.body_limit_bytes,
            health_timeout: settings.database.health_timeout(),
            started_at: Utc::now(),
            started: Instant::now(),
            request_log,
            stats_cache: crate::stats::StatsCache::new(std::time::Duration::from_millis(
                settings.stats.cache_ms,
            )),
            openapi_json: crate::openapi::document_json().into(),
            metrics,
        }))
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.0.db
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
    pub fn body_limit(&self) -> u64 {
        self.0.body_limit
    }
    pub fn health_timeout(&self) -> std::time::Duration {
        self.0.health_timeout
    }
    pub fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// Seconds since this process started serving.
    pub fn uptime_seconds(&self) -> u64 {
        self.0.started.elapsed().as_secs()
    }
    pub fn request_log(&self) -> &RequestLogHandle {
        &self.0.request_log
    }
    pub fn stats_cache(&self) -> &crate::stats::StatsCache {
        &self.0.stats_cache
    }
    pub fn openapi_json(&self) -> bytes::Bytes {
        self.0.openapi_json.clone()
    }
    pub fn metrics(&self) -> &metrics_exporter_prometheus::PrometheusHandle {
        &self.0.metrics
    }
    /// `None` when writes are open.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.0.api_key.as_ref()
    }
}
