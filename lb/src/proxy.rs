//! What every client connection shares: the backends, the settings of the request path,
//! request ids, and the JSON errors the load balancer answers with itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::Pool;
use crate::http1::push_u64;

/// State shared by all connections; built once at bind.
pub(crate) struct Shared {
    pub(crate) pool: Arc<Pool>,
    pub(crate) sticky_cookie: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) client_idle_timeout: Duration,
    pub(crate) max_body: usize,
    /// The listening port, as `X-Forwarded-Port` says it.
    pub(crate) forwarded_port: String,
    pub(crate) request_id_prefix: u32,
    pub(crate) request_id_seq: AtomicU64,
    /// Set once shutdown starts: responses from then on close their connection.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    /// Appends a unique request id: a per-process random prefix and a sequence number, in hex.
    pub(crate) fn push_request_id(&self, out: &mut Vec<u8>) {
        let seq = self.request_id_seq.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 25];
        hex(&mut buf[..8], u64::from(self.request_id_prefix));
        buf[8] = b'-';
        hex(&mut buf[9..], seq);
        out.extend_from_slice(&buf);
    }
}

fn hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The errors the load balancer answers itself, as JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LbError {
    NoHealthyBackend,
    BadGateway,
    GatewayTimeout,
    PayloadTooLarge,
    BadRequest,
    HeaderTooLarge,
    MethodNotAllowed,
    RequestTimeout,
}

impl LbError {
    fn status_line(self) -> &'static str {
        match self {
            Self::NoHealthyBackend => "503 Service Unavailable",
            Self::BadGateway => "502 Bad Gateway",
            Self::GatewayTimeout => "504 Gateway Timeout",
            Self::PayloadTooLarge => "413 Payload Too Large",
            Self::BadRequest => "400 Bad Request",
            Self::HeaderTooLarge => "431 Request Header Fields Too Large",
            Self::MethodNotAllowed => "405 Method Not Allowed",
            Self::RequestTimeout => "408 Request Timeout",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Self::NoHealthyBackend => {
                r#"{"error":{"code":"no_healthy_backend","message":"no healthy backend is available"}}"#
            }
            Self::BadGateway => {
                r#"{"error":{"code":"bad_gateway","message":"the backend failed to answer"}}"#
            }
            Self::GatewayTimeout => {
                r#"{"error":{"code":"gateway_timeout","message":"the backend did not answer in time"}}"#
            }
            Self::PayloadTooLarge => {
                r#"{"error":{"code":"payload_too_large","message":"the request body exceeds the limit"}}"#
            }
            Self::BadRequest => {
                r#"{"error":{"code":"bad_request","message":"the request is not valid HTTP/1.1"}}"#
            }
            Self::HeaderTooLarge => {
                r#"{"error":{"code":"header_too_large","message":"the request head exceeds 64 KiB or 100 header lines"}}"#
            }
            Self::MethodNotAllowed => {
                r#"{"error":{"code":"method_not_allowed","message":"CONNECT is not supported"}}"#
            }
            Self::RequestTimeout => {
                r#"{"error":{"code":"request_timeout","message":"the request body did not arrive in time"}}"#
            }
        }
    }

    /// Whether the client connection must close after this answer: the request was not read
    /// to its end, so the next bytes on the connection are not a request head.
    pub(crate) fn closes(self) -> bool {
        matches!(
            self,
            Self::PayloadTooLarge | Self::BadRequest | Self::HeaderTooLarge | Self::RequestTimeout
        )
    }

    /// Writes the whole response into `out`; an answer to HEAD has the length but no body.
    pub(crate) fn write(self, out: &mut Vec<u8>, close: bool, head_method: bool) {
        let body = self.body();
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status_line().as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        push_u64(out, body.len() as u64);
        if self == Self::MethodNotAllowed {
            out.extend_from_slice(b"\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
        }
        if close {
            out.extend_from_slice(b"\r\nconnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        if !head_method {
            out.extend_from_slice(body.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let mut buf = [0u8; 4];
        hex(&mut buf, 0xbeef);
        assert_eq!(&buf, b"beef");
    }

    #[test]
    fn error_responses_are_complete_json() {
        let mut out = Vec::new();
        LbError::NoHealthyBackend.write(&mut out, true, false);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.ends_with("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "no_healthy_backend");
    }
}
