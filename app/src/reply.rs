//! Small builders for JSON responses.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use warp::reply::Response;

/// Serialises `value` as the body of a `status` response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    // Serialising our own plain structs cannot fail; an empty object beats a panic if it did.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Bytes::from(body).into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An already serialised JSON body.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response with no body (204).
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Bytes::new().into());
    *response.status_mut() = status;
    response
}
