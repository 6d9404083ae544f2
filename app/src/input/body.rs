//! JSON request bodies: content type (415), size limit (413), one JSON object (400).
//!
//! The limit is checked against `Content-Length` first and again while reading, so a chunked
//! body cannot get around it; a field of the wrong type is named in the message.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::echo::capped;
use crate::error::ApiError;

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// A request body not yet read, with what its headers say about it.
pub struct Body {
    is_json: bool,
    declared_length: Option<u64>,
    chunks: Chunks,
}

impl Body {
    pub fn new<B: Buf>(
        headers: &HeaderMap,
        chunks: impl Stream<Item = Result<B, warp::Error>> + Send + 'static,
    ) -> Self {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let declared_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Self {
            is_json,
            declared_length,
            chunks: Box::pin(chunks.map_ok(|mut chunk| chunk.copy_to_bytes(chunk.remaining()))),
        }
    }

    /// Checks the content type, reads at most `limit` bytes, and parses them as a `T`.
    pub async fn json<T: DeserializeOwned>(self, limit: u64) -> Result<T, ApiError> {
        if !self.is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        if self.declared_length.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let mut chunks = self.chunks;
        let capacity = self.declared_length.unwrap_or(256).min(limit) as usize;
        let mut buf = BytesMut::with_capacity(capacity);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|err| ApiError::BadRequest {
                code: "invalid_body",
                message: format!("could not read the request body: {err}"),
            })?;
            if buf.len() as u64 + chunk.len() as u64 > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        parse(&buf)
    }
}

/// A JSON object as a `T`; the error names the field at fault, which serde alone omits.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid = |message: String| ApiError::BadRequest {
        code: "invalid_json",
        message,
    };
    // serde would also accept a struct written as an array (`["Ann", "a@x.io"]`).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(invalid("request body must be a JSON object".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            invalid(capped(&format!(
                "request body is not valid JSON for this endpoint: {inner}"
            )))
        } else {
            invalid(capped(&format!(
                "request body field `{path}` is not valid: {inner}"
            )))
        }
    })?;
    de.end()
        .map_err(|err| invalid(capped(&format!("request body has trailing data: {err}"))))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        name: String,
    }

    fn code(err: ApiError) -> String {
        match err {
            ApiError::BadRequest { code, message } => format!("{code}: {message}"),
            other => other.to_string(),
        }
    }

    #[test]
    fn only_a_json_object_with_known_fields_parses() {
        assert_eq!(parse::<Input>(br#" {"name": "Ann"}"#).unwrap().name, "Ann");
        let array = code(parse::<Input>(br#"["Ann"]"#).unwrap_err());
        assert!(array.contains("JSON object"), "{array}");
        let unknown = code(parse::<Input>(br#"{"name": "A", "admin": true}"#).unwrap_err());
        assert!(unknown.contains("admin"), "{unknown}");
        let typed = code(parse::<Input>(br#"{"name": 7}"#).unwrap_err());
        assert!(typed.contains("`name`"), "{typed}");
        let trailing = code(parse::<Input>(br#"{"name": "A"} x"#).unwrap_err());
        assert!(trailing.contains("invalid_json"), "{trailing}");
    }
}
