//! API errors and the one place that turns them (and warp's rejections) into JSON responses.

use std::convert::Infallible;

use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use warp::Rejection;
use warp::reply::Response;

use crate::domain::Invalid;
use crate::reply::json;
use crate::state::AppState;

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
    #[error("the database is not available")]
    DatabaseUnavailable,
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
            Self::DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// The JSON response for this error.
    pub fn into_response(self, state: &AppState) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut response = error_response(state, status, code, &self.to_string());
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Self::DatabaseUnavailable,
            _ => Self::Internal(err.to_string()),
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

/// Builds the error envelope.
pub fn error_response(state: &AppState, status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        &ErrorBody {
            error: ErrorDetail { code, message },
            server_id: state.server_id(),
        },
    )
}

/// Maps what warp's routing rejected (unknown path, wrong method) to the JSON envelope.
pub async fn handle_rejection(state: AppState, err: Rejection) -> Result<Response, Infallible> {
    let (status, code, message) = if err.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; GET / lists them".to_owned(),
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        // The `Allow` header is added by the outer service, which knows the path.
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that method; the Allow header lists those it does"
                .to_owned(),
        )
    } else {
        tracing::error!(rejection = ?err, "unhandled rejection");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error".to_owned(),
        )
    };
    Ok(error_response(&state, status, code, &message))
}
