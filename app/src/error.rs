//! API errors and the JSON envelope every one of them is answered with.

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;
use warp::reply::Response;

use crate::database::{Failure, classify};
use crate::domain::Invalid;
use crate::reply::json;

/// `Retry-After` of a 503 `database_unavailable`.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// Everything a handler can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a machine-readable code (`invalid_json`, `validation_error`, `invalid_id`, ...).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(u64),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The path exists; the method does not. `allow` lists the methods that do.
    #[error("this endpoint does not accept that method; the Allow header lists those it does")]
    MethodNotAllowed { allow: String },
    #[error("the database is not available")]
    DatabaseUnavailable,
    /// Migrations are pending; the text names them and how to apply them.
    #[error("{0}")]
    SchemaNotMigrated(String),
    /// A bug or an unexpected database answer; details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for a 400 `validation_error`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "validation_error",
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "email_taken"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::SchemaNotMigrated(_) => (StatusCode::SERVICE_UNAVAILABLE, "schema_not_migrated"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// The JSON response for this error, as answered by `server_id`.
    pub fn into_response(self, server_id: &str) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut response = json(
            status,
            &ErrorBody {
                error: ErrorDetail {
                    code,
                    message: &self.to_string(),
                },
                server_id,
            },
        );
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            Self::DatabaseUnavailable => {
                // The availability probe retries every 250 ms: a second is a fair wait.
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        match classify(&err) {
            Failure::Unreachable => {
                tracing::debug!(error = %err, "the database is unreachable");
                Self::DatabaseUnavailable
            }
            Failure::RowRejected | Failure::Other => Self::Internal(err.to_string()),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(err: Invalid) -> Self {
        Self::validation(err.0)
    }
}

/// The error envelope every non-2xx JSON answer uses.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
    /// The instance that answered.
    pub server_id: &'a str,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable machine-readable code, e.g. `validation_error`.
    pub code: &'a str,
    /// Human-readable explanation naming the problem.
    pub message: &'a str,
}
