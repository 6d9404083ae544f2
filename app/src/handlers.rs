//! Thin request handlers: validate input, call the service layer, shape the JSON answer.

use std::convert::Infallible;

use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use warp::reply::Response;

use crate::domain::{Email, Invalid, NewUser, UserName};
use crate::error::ApiError;
use crate::input::body::Body;
use crate::input::{auth, query};
use crate::reply::{empty, json};
use crate::service::{Mutation, Query, WriteError};
use crate::state::AppState;
use crate::stats::{self, Window};

/// Handlers answer errors themselves, so routing rejections only ever mean 404/405.
pub type HandlerResult = Result<Response, Infallible>;

fn respond(state: &AppState, result: Result<Response, ApiError>) -> HandlerResult {
    Ok(result.unwrap_or_else(|err| err.into_response(state)))
}

// ----- index, health, server info -------------------------------------------------------

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

/// The endpoints `GET /` lists.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/", "this index"),
    (
        "GET",
        "/health",
        "liveness and database check (used by the load balancer)",
    ),
    ("GET", "/server-info", "which instance answered"),
    (
        "GET",
        "/api/users",
        "list users, newest first (?limit=1..500&offset=)",
    ),
    ("POST", "/api/users", "create a user {name, email}"),
    ("GET", "/api/users/:id", "one user"),
    ("PUT", "/api/users/:id", "replace a user's name and email"),
    ("DELETE", "/api/users/:id", "delete a user"),
    (
        "GET",
        "/api/stats",
        "cluster-wide request distribution (?window=1h)",
    ),
    ("GET", "/metrics", "Prometheus metrics"),
    ("GET", "/openapi.json", "OpenAPI 3 description of this API"),
];

#[utoipa::path(get, path = "/", responses((status = 200, body = IndexBody)))]
pub async fn index(state: AppState) -> HandlerResult {
    let body = IndexBody {
        name: "rustlb API",
        version: env!("CARGO_PKG_VERSION"),
        endpoints: ENDPOINTS
            .iter()
            .map(|&(method, path, description)| EndpointEntry {
                method,
                path,
                description,
            })
            .collect(),
        server_id: state.server_id().to_owned(),
    };
    Ok(json(StatusCode::OK, &body))
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
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    /// `healthy` (200) or `unhealthy` (503).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub server_id: String,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub timestamp: DateTime<Utc>,
    pub database: DatabaseHealth,
}

#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "healthy", body = HealthBody),
    (status = 503, description = "unhealthy: the database did not answer in time", body = HealthBody)))]
pub async fn health(state: AppState) -> HandlerResult {
    let timeout = state.health_timeout();
    let started = std::time::Instant::now();
    let check = tokio::time::timeout(timeout, Query::ping(state.db())).await;
    let (status, database, reason) = match check {
        Ok(Ok(())) => (
            StatusCode::OK,
            DatabaseHealth {
                status: "up",
                latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                error: None,
            },
            None,
        ),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: database error");
            let msg = "database error".to_owned();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                DatabaseHealth {
                    status: "down",
                    latency_ms: None,
                    error: Some(msg.clone()),
                },
                Some(msg),
            )
        }
        Err(_) => {
            let msg = format!("database did not answer within {} ms", timeout.as_millis());
            tracing::warn!("health check: {msg}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                DatabaseHealth {
                    status: "down",
                    latency_ms: None,
                    error: Some(msg.clone()),
                },
                Some(msg),
            )
        }
    };
    let body = HealthBody {
        status: if status == StatusCode::OK {
            "healthy"
        } else {
            "unhealthy"
        },
        reason,
        server_id: state.server_id().to_owned(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.uptime_seconds(),
        timestamp: Utc::now(),
        database,
    };
    Ok(json(status, &body))
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

#[utoipa::path(get, path = "/server-info", responses((status = 200, body = ServerInfoBody)))]
pub async fn server_info(state: AppState) -> HandlerResult {
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

// ----- users ---------------------------------------------------------------------------

/// A user as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct UserDto {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The server id of the instance that created it.
    pub created_by: String,
}

impl From<entity::users::Model> for UserDto {
    fn from(m: entity::users::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            email: m.email,
            created_at: m.created_at,
            updated_at: m.updated_at,
            created_by: m.created_by,
        }
    }
}

/// Body of `POST /api/users` and `PUT /api/users/:id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// 1-100 characters.
    pub name: Option<String>,
    /// A plausible address, at most 254 characters; unique regardless of letter case.
    pub email: Option<String>,
}

impl TryFrom<UserInput> for NewUser {
    type Error = Invalid;

    fn try_from(input: UserInput) -> Result<Self, Invalid> {
        let required = |field: &str| Invalid(format!("`{field}` is required"));
        let name = UserName::parse(&input.name.ok_or_else(|| required("name"))?)?;
        let email = Email::parse(&input.email.ok_or_else(|| required("email"))?)?;
        Ok(Self { name, email })
    }
}

/// One user, with the instance that answered.
#[derive(Serialize, ToSchema)]
pub struct UserBody {
    pub user: UserDto,
    pub server_id: String,
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UserListBody {
    pub users: Vec<UserDto>,
    /// All users, not just this page.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
    pub server_id: String,
}

/// Query of `GET /api/users`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1-500, default 50.
    pub limit: Option<String>,
    /// Default 0.
    pub offset: Option<String>,
}

#[utoipa::path(get, path = "/api/users", params(ListParams), responses(
    (status = 200, body = UserListBody),
    (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_users(state: AppState, raw_query: String) -> HandlerResult {
    let result = async {
        let params: ListParams = query::parse(&raw_query)?;
        let limit = query::number("limit", params.limit.as_deref(), 50, 1, 500)?;
        let offset = query::number("offset", params.offset.as_deref(), 0, 0, i64::MAX as u64)?;
        let (users, total) = Query::list_users(state.db(), limit, offset).await?;
        let body = UserListBody {
            users: users.into_iter().map(UserDto::from).collect(),
            total,
            limit,
            offset,
            server_id: state.server_id().to_owned(),
        };
        Ok(json(StatusCode::OK, &body))
    }
    .await;
    respond(&state, result)
}

#[utoipa::path(post, path = "/api/users", request_body = UserInput, security(("bearer" = [])), responses(
    (status = 201, body = UserBody, headers(("Location" = String, description = "the new user's URL"))),
    (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
    (status = 409, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
    (status = 415, body = crate::error::ErrorBody)))]
pub async fn create_user<S, B>(state: AppState, headers: HeaderMap, body: S) -> HandlerResult
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    let result = async {
        auth::authorize(state.api_key(), &headers)?;
        let input: UserInput = Body::new(&headers, body).json(state.body_limit()).await?;
        let user = Mutation::create_user(state.db(), input.try_into()?, state.server_id())
            .await
            .map_err(write_error)?;
        let location = format!("/api/users/{}", user.id);
        let mut response = json(
            StatusCode::CREATED,
            &UserBody {
                user: user.into(),
                server_id: state.server_id().to_owned(),
            },
        );
        if let Ok(value) = header::HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Ok(response)
    }
    .await;
    respond(&state, result)
}

#[utoipa::path(get, path = "/api/users/{id}", params(("id" = Uuid, Path)), responses(
    (status = 200, body = UserBody), (status = 400, body = crate::error::ErrorBody),
    (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_user(id: String, state: AppState) -> HandlerResult {
    let result = async {
        let id = parse_id(&id)?;
        let user = Query::find_user(state.db(), id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(json(
            StatusCode::OK,
            &UserBody {
                user: user.into(),
                server_id: state.server_id().to_owned(),
            },
        ))
    }
    .await;
    respond(&state, result)
}

#[utoipa::path(put, path = "/api/users/{id}", params(("id" = Uuid, Path)), request_body = UserInput,
    security(("bearer" = [])), responses(
    (status = 200, body = UserBody), (status = 400, body = crate::error::ErrorBody),
    (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
    (status = 409, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
    (status = 415, body = crate::error::ErrorBody)))]
pub async fn update_user<S, B>(
    id: String,
    state: AppState,
    headers: HeaderMap,
    body: S,
) -> HandlerResult
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    let result = async {
        auth::authorize(state.api_key(), &headers)?;
        let id = parse_id(&id)?;
        let input: UserInput = Body::new(&headers, body).json(state.body_limit()).await?;
        let user = Mutation::update_user(state.db(), id, input.try_into()?)
            .await
            .map_err(|err| match err {
                WriteError::NotFound => not_found(id),
                other => write_error(other),
            })?;
        Ok(json(
            StatusCode::OK,
            &UserBody {
                user: user.into(),
                server_id: state.server_id().to_owned(),
            },
        ))
    }
    .await;
    respond(&state, result)
}

#[utoipa::path(delete, path = "/api/users/{id}", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody),
    (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_user(id: String, state: AppState, headers: HeaderMap) -> HandlerResult {
    let result = async {
        auth::authorize(state.api_key(), &headers)?;
        let id = parse_id(&id)?;
        if Mutation::delete_user(state.db(), id).await? {
            Ok(empty(StatusCode::NO_CONTENT))
        } else {
            Err(not_found(id))
        }
    }
    .await;
    respond(&state, result)
}

// ----- stats, metrics, openapi ------------------------------------------------------------

/// Query of `GET /api/stats`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    /// `all` (default) or a duration such as `15m`, `1h`, `24h`, `7d`.
    pub window: Option<String>,
}

#[utoipa::path(get, path = "/api/stats", params(StatsParams), responses(
    (status = 200, body = stats::StatsBody), (status = 400, body = crate::error::ErrorBody)))]
pub async fn get_stats(state: AppState, raw_query: String) -> HandlerResult {
    let result = async {
        let params: StatsParams = query::parse(&raw_query)?;
        let window =
            Window::parse(params.window.as_deref().unwrap_or_default()).map_err(query::invalid)?;
        let body =
            stats::report(state.db(), state.stats_cache(), &window, state.server_id()).await?;
        Ok(crate::reply::json_bytes(StatusCode::OK, body))
    }
    .await;
    respond(&state, result)
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: AppState) -> HandlerResult {
    crate::metrics::refresh_gauges(&state);
    let mut response = Response::new(Bytes::from(state.metrics().render()).into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "this document", content_type = "application/json")))]
pub async fn openapi(state: AppState) -> HandlerResult {
    let mut response = Response::new(state.openapi_json().into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

// ----- input helpers -----------------------------------------------------------------------

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest {
        code: "invalid_id",
        message: format!("{raw:?} is not a valid user id (a UUID)"),
    })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no user with id {id}"))
}

fn write_error(err: WriteError) -> ApiError {
    match err {
        WriteError::EmailTaken => {
            ApiError::Conflict("a user with this email already exists".into())
        }
        WriteError::NotFound => ApiError::NotFound("no such user".into()),
        WriteError::Db(err) => err.into(),
    }
}
