//! The load balancer's errors: [`Error`] for starting it, [`ProxyError`] for the request path.
//!
//! Every failure on the request path is one [`ProxyError`]; its [`ErrorKind`] alone decides
//! whether the request may go to another backend and what the client is told, so no
//! decision depends on the wording of a message.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;

/// Why the load balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is inconsistent.
    #[error("invalid load balancer config: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address from the config.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTPS entry's certificate or key could not be used.
    #[error("cannot use {}: {reason}", path.display())]
    Tls {
        /// The certificate or key file.
        path: std::path::PathBuf,
        /// What is wrong with it (never its contents).
        reason: String,
    },
}

/// What went wrong with one request; see [`ErrorKind::retry`] and [`ErrorKind::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The request is not valid HTTP/1.1, is framed ambiguously, or was cut short.
    BadRequest,
    /// `CONNECT`, which the load balancer does not tunnel.
    MethodNotAllowed,
    /// The request head or body did not arrive within its total deadline.
    RequestTimeout,
    /// The body is larger than `max_request_body_bytes`.
    PayloadTooLarge,
    /// The head is larger than 64 KiB or has more than 100 lines.
    HeaderTooLarge,
    /// `max_connections` client connections are open already.
    TooManyConnections,
    /// No backend is in rotation.
    NoHealthyBackend,
    /// No connection to the backend could be opened: nothing was sent.
    ConnectFailed,
    /// The request did not (fully) leave the load balancer on a new connection, so the
    /// backend cannot have acted on it.
    NotSent,
    /// A kept-alive backend connection turned out closed before any response byte: the
    /// backend closed it idle, so it never saw the request.
    StaleConnection,
    /// The request may have reached the backend, which gave no response.
    NoResponse,
    /// The backend answered something that is not a valid HTTP/1.1 response.
    InvalidResponse,
    /// No response head within `response_timeout` (or the backend stopped reading the body).
    ResponseTimeout,
    /// The backend failed after the response head went to the client: all the client can
    /// get is a closed connection.
    BackendAborted,
    /// The client went away; there is nobody to answer.
    ClientGone,
}

/// Where a failed request may go next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Another healthy backend.
    NextBackend,
    /// The same backend on a new connection (once), then the others.
    FreshConnection,
    /// Nowhere: answer the client.
    No,
}

impl ErrorKind {
    /// Where the request may be tried again. `idempotent`: the method may be repeated;
    /// `replayable`: every byte sent so far is still at hand to send again.
    pub(crate) fn retry(self, idempotent: bool, replayable: bool) -> Retry {
        match self {
            // Nothing left the load balancer: any request may go elsewhere.
            Self::ConnectFailed => Retry::NextBackend,
            Self::NotSent if replayable => Retry::NextBackend,
            Self::StaleConnection if idempotent && replayable => Retry::FreshConnection,
            Self::NoResponse if idempotent && replayable => Retry::NextBackend,
            _ => Retry::No,
        }
    }

    /// Whether the backend is to blame (its last error is recorded).
    pub(crate) fn is_backend_failure(self) -> bool {
        matches!(
            self,
            Self::ConnectFailed
                | Self::NotSent
                | Self::StaleConnection
                | Self::NoResponse
                | Self::InvalidResponse
                | Self::ResponseTimeout
                | Self::BackendAborted
        )
    }

    /// The status, JSON code and message of the load balancer's own answer; `None` when
    /// no answer can be sent.
    fn answer(self) -> Option<(&'static str, &'static str, &'static str)> {
        Some(match self {
            Self::BadRequest => (
                "400 Bad Request",
                "bad_request",
                "the request is not valid HTTP/1.1",
            ),
            Self::MethodNotAllowed => (
                "405 Method Not Allowed",
                "method_not_allowed",
                "CONNECT is not supported",
            ),
            Self::RequestTimeout => (
                "408 Request Timeout",
                "request_timeout",
                "the request did not arrive in time",
            ),
            Self::PayloadTooLarge => (
                "413 Payload Too Large",
                "payload_too_large",
                "the request body exceeds the limit",
            ),
            Self::HeaderTooLarge => (
                "431 Request Header Fields Too Large",
                "header_too_large",
                "the request head exceeds 64 KiB or 100 header lines",
            ),
            Self::TooManyConnections => (
                "503 Service Unavailable",
                "too_many_connections",
                "the load balancer is at its connection limit; try again later",
            ),
            Self::NoHealthyBackend => (
                "503 Service Unavailable",
                "no_healthy_backend",
                "no healthy backend is available",
            ),
            Self::ConnectFailed
            | Self::NotSent
            | Self::StaleConnection
            | Self::NoResponse
            | Self::InvalidResponse => (
                "502 Bad Gateway",
                "bad_gateway",
                "the backend failed to answer",
            ),
            Self::ResponseTimeout => (
                "504 Gateway Timeout",
                "gateway_timeout",
                "the backend did not answer in time",
            ),
            Self::BackendAborted | Self::ClientGone => return None,
        })
    }

    /// Whether this is a request the load balancer refuses itself (a 4xx, or the
    /// connection limit), as opposed to a backend failure.
    pub(crate) fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::BadRequest
                | Self::MethodNotAllowed
                | Self::RequestTimeout
                | Self::PayloadTooLarge
                | Self::HeaderTooLarge
                | Self::TooManyConnections
        )
    }

    /// Whether the client connection must close after the answer: the request was not
    /// read to its end, so the next bytes on the connection are not a request head.
    pub(crate) fn closes(self) -> bool {
        matches!(
            self,
            Self::BadRequest
                | Self::RequestTimeout
                | Self::PayloadTooLarge
                | Self::HeaderTooLarge
                | Self::TooManyConnections
        )
    }
}

/// Which side sent a malformed message: the same framing rule breaks differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Backend,
}

/// One failure on the request path: a kind, which decides, and a reason, for logs.
#[derive(Debug)]
pub(crate) struct ProxyError {
    kind: ErrorKind,
    reason: Cow<'static, str>,
}

impl ProxyError {
    pub(crate) fn new(kind: ErrorKind, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    /// A message from `side` that breaks HTTP/1.1 framing.
    pub(crate) fn malformed(side: Side, reason: &'static str) -> Self {
        let kind = match side {
            Side::Client => ErrorKind::BadRequest,
            Side::Backend => ErrorKind::InvalidResponse,
        };
        Self::new(kind, reason)
    }

    /// The same error, its reason prefixed with the backend's address.
    pub(crate) fn at(self, addr: SocketAddr) -> Self {
        Self::new(self.kind, format!("{addr}: {}", self.reason))
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Writes the whole answer into `out` (cleared first); an answer to HEAD has the
    /// length but no body. Writes nothing when the kind has no answer.
    pub(crate) fn write_response(&self, out: &mut Vec<u8>, close: bool, head_method: bool) {
        out.clear();
        let Some((status, code, message)) = self.kind.answer() else {
            return;
        };
        let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if self.kind == ErrorKind::MethodNotAllowed {
            out.extend_from_slice(b"allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_method {
            out.extend_from_slice(body.as_bytes());
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_are_complete_json() {
        let mut out = Vec::new();
        ProxyError::new(ErrorKind::NoHealthyBackend, "x").write_response(&mut out, true, false);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.ends_with("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "no_healthy_backend");
    }

    #[test]
    fn only_requests_that_cannot_have_been_acted_on_are_replayed() {
        use ErrorKind::*;
        // A refused connect sends nothing, so even a POST with a streamed body moves on.
        assert_eq!(ConnectFailed.retry(false, false), Retry::NextBackend);
        assert_eq!(NotSent.retry(false, true), Retry::NextBackend);
        assert_eq!(NotSent.retry(true, false), Retry::No);
        assert_eq!(StaleConnection.retry(true, true), Retry::FreshConnection);
        assert_eq!(StaleConnection.retry(false, true), Retry::No);
        assert_eq!(NoResponse.retry(true, true), Retry::NextBackend);
        assert_eq!(NoResponse.retry(false, true), Retry::No);
        assert_eq!(NoResponse.retry(true, false), Retry::No);
        for k in [InvalidResponse, ResponseTimeout, BadRequest, RequestTimeout] {
            assert_eq!(k.retry(true, true), Retry::No, "{k:?}");
        }
    }
}
