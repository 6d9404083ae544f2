//! Handlers about the instance: the index, health, server info, metrics, the OpenAPI document.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;
use warp::reply::Response;

use super::{Call, HandlerResult};
use crate::reply::{json, json_bytes};
use crate::service::Query;
use crate::state::AppState;

/// One endpoint in the index.
#[derive(Serialize, ToSchema)]
pub struct EndpointEntry {
    pub method: &'static str,
    pub path: &'static str,
    pub description: &'static str,
}

/// `GET /`.
#[derive(Serialize, ToSchema)]
pub struct IndexBody {
    pub name: &'static str,
    pub version: &'static str,
    pub endpoints: Vec<EndpointEntry>,
    pub server_id: String,
}

/// The index listing `endpoints`, serialised once: nothing in it changes while the process
/// runs.
pub fn index_document(endpoints: Vec<EndpointEntry>, server_id: &str) -> Bytes {
    let body = IndexBody {
        name: "rustlb API",
        version: env!("CARGO_PKG_VERSION"),
        endpoints,
        server_id: server_id.to_owned(),
    };
    // Serialising our own plain struct cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

pub async fn index(call: Call) -> HandlerResult {
    Ok(json_bytes(
        StatusCode::OK,
        call.state.documents().index.clone(),
    ))
}

/// The database part of `/health`.
#[derive(Serialize, ToSchema)]
pub struct DatabaseHealth {
    /// `up` or `down`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Migrations this build expects that the database has not applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_migrations: Vec<String>,
}

/// The instance's own disk in `/health`: the request-log spool's folder and, on SQLite, the
/// database file's.
#[derive(Serialize, ToSchema)]
pub struct StorageHealth {
    /// `writable`, or `unwritable` (full, read-only, failing) with `problems`.
    pub status: &'static str,
    /// One line per folder that cannot be written, naming it and the error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    /// `healthy` or `degraded` (200), or `unhealthy` or `draining` (503).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub server_id: String,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub timestamp: DateTime<Utc>,
    pub database: DatabaseHealth,
    pub storage: StorageHealth,
}

/// A database that did not answer, and why.
fn down(reason: String) -> DatabaseHealth {
    DatabaseHealth {
        status: "down",
        latency_ms: None,
        error: Some(reason),
        pending_migrations: Vec::new(),
    }
}

/// What the load balancer reads, by what is wrong:
///
/// - draining, or migrations pending: 503. Both belong to this instance (it is stopping; its
///   build expects a schema the database lacks), so its peers are the better choice.
/// - the database away, or this instance's storage unwritable: 200 `degraded`, with the
///   reason. The database is shared by every instance, and so is the disk under a SQLite
///   file (the local stack's instances share one): failing every `/health` would take the
///   whole service out of rotation, `/server-info` and the other routes that need no database
///   included, and keep it out after the cause is gone until the healthy threshold passes.
///   Writes that cannot be stored get 503 `database_unavailable` meanwhile, fast.
pub async fn health(call: Call) -> HandlerResult {
    let state = &call.state;
    let availability = state.database();
    let problems = state.storage().problems();
    let storage = StorageHealth {
        status: if problems.is_empty() {
            "writable"
        } else {
            "unwritable"
        },
        problems,
    };
    if state.is_draining() {
        // Answered at once, without asking the database: the point is to leave the load
        // balancer's rotation quickly, whatever the database does.
        let database = DatabaseHealth {
            status: if availability.is_up() { "up" } else { "down" },
            latency_ms: None,
            error: availability.problem(),
            pending_migrations: Vec::new(),
        };
        let reason = format!(
            "shutting down: this instance serves for at most {} s more and then stops \
             accepting connections",
            state.drain().as_secs()
        );
        return Ok(health_answer(
            state,
            "draining",
            Some(reason),
            database,
            storage,
        ));
    }
    let database = match availability.problem() {
        // Known to be away: say so now rather than wait out the timeout, which a load
        // balancer would count as a failed check of its own rather than an answer.
        Some(problem) => down(match availability.down_for() {
            Some(down_for) => format!("{problem}, for {} s", down_for.as_secs()),
            None => problem,
        }),
        None => check_database(state).await,
    };
    let schema_problem = (database.status == "up")
        .then(|| state.schema().problem())
        .flatten();
    if let Some(problem) = schema_problem {
        return Ok(health_answer(
            state,
            "unhealthy",
            Some(problem),
            database,
            storage,
        ));
    }
    let reasons: Vec<&str> = database
        .error
        .iter()
        .map(String::as_str)
        .chain(storage.problems.iter().map(String::as_str))
        .collect();
    let (verdict, reason) = if reasons.is_empty() {
        ("healthy", None)
    } else {
        ("degraded", Some(reasons.join("; ")))
    };
    Ok(health_answer(state, verdict, reason, database, storage))
}

/// Asks the database, for at most `database.health_timeout_ms`.
async fn check_database(state: &AppState) -> DatabaseHealth {
    let timeout = state.health_timeout();
    let started = std::time::Instant::now();
    match tokio::time::timeout(timeout, Query::ping(state.db())).await {
        Ok(Ok(())) => DatabaseHealth {
            status: "up",
            latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            error: None,
            pending_migrations: state.schema().pending(),
        },
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: database error");
            state.database().suspect();
            down("database error".to_owned())
        }
        Err(_) => {
            let msg = format!("database did not answer within {} ms", timeout.as_millis());
            tracing::warn!("health check: {msg}");
            state.database().suspect();
            down(msg)
        }
    }
}

/// The `/health` answer: 200 when `verdict` is `healthy` or `degraded`, else 503.
fn health_answer(
    state: &AppState,
    verdict: &'static str,
    reason: Option<String>,
    database: DatabaseHealth,
    storage: StorageHealth,
) -> Response {
    let status = if matches!(verdict, "healthy" | "degraded") {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthBody {
        status: verdict,
        reason,
        server_id: state.server_id().to_owned(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.uptime_seconds(),
        timestamp: Utc::now(),
        database,
        storage,
    };
    json(status, &body)
}

/// `GET /server-info`.
#[derive(Serialize, ToSchema)]
pub struct ServerInfoBody<'a> {
    pub server_id: &'a str,
    pub hostname: &'a str,
    pub version: &'static str,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: u64,
    /// When this request was processed.
    pub request_time: DateTime<Utc>,
}

pub async fn server_info(call: Call) -> HandlerResult {
    let state = &call.state;
    let body = ServerInfoBody {
        server_id: state.server_id(),
        hostname: state.hostname(),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        started_at: state.started_at(),
        uptime_seconds: state.uptime_seconds(),
        request_time: Utc::now(),
    };
    Ok(json(StatusCode::OK, &body))
}

pub async fn metrics(call: Call) -> HandlerResult {
    crate::metrics::refresh_gauges(&call.state);
    let mut response = Response::new(Bytes::from(call.state.metrics().render()).into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

pub async fn dashboard(call: Call) -> HandlerResult {
    let dashboard = &call.state.documents().dashboard;
    let mut response = Response::new(dashboard.page.clone().into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, dashboard.policy.clone());
    Ok(response)
}

pub async fn openapi(call: Call) -> HandlerResult {
    Ok(json_bytes(
        StatusCode::OK,
        call.state.documents().openapi.clone(),
    ))
}
