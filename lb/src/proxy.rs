//! The per-request path: pick a backend, rewrite headers, forward, retry safely, map errors.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use tracing::debug;

use crate::backend::Pool;
use crate::upstream::{Local, SendError, UpRequest, Upstream, UpstreamBody};

/// Body of every response the load balancer sends: streamed from a backend, or its own JSON.
pub(crate) type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// State shared by all connections; built once at bind.
pub(crate) struct Shared {
    pub(crate) pool: Arc<Pool>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) sticky_cookie: Option<String>,
    pub(crate) response_timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) forwarded_port: HeaderValue,
    pub(crate) request_id_prefix: u32,
    pub(crate) request_id_seq: AtomicU64,
}

/// Per-connection context; its own Arc so per-request clones don't contend across cores.
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client_ip: HeaderValue,
    /// This connection's backend connections.
    pub(crate) local: Arc<Local>,
}

/// The JSON errors the load balancer itself answers with.
#[derive(Clone, Copy, Debug)]
enum LbError {
    NoHealthyBackend,
    BadGateway,
    GatewayTimeout,
    PayloadTooLarge,
    BadRequest,
}

impl LbError {
    fn status(self) -> StatusCode {
        match self {
            Self::NoHealthyBackend => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
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
                r#"{"error":{"code":"bad_request","message":"the request body could not be read"}}"#
            }
        }
    }

    fn response(self) -> Response<ResponseBody> {
        let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(
            self.body().as_bytes(),
        ))));
        *res.status_mut() = self.status();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, APPLICATION_JSON);
        res
    }
}

/// Serves one client request; never fails, errors become JSON responses.
pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    Ok(proxy(&ctx, req).await.unwrap_or_else(LbError::response))
}

async fn proxy(ctx: &ConnCtx, req: Request<Incoming>) -> Result<Response<ResponseBody>, LbError> {
    let shared = &*ctx.shared;
    let pool = &*shared.pool;
    let (mut parts, body) = req.into_parts();

    let body = if body.is_end_stream() {
        Bytes::new()
    } else {
        // Boxed: most requests have no body, and a smaller request future is cheaper to move.
        Box::pin(read_body(body, &parts.headers, shared.max_body)).await?
    };

    strip_hop_by_hop(&mut parts.headers);
    // The body is already here (hyper answered any 100-continue); don't make backends ask.
    parts.headers.remove(header::EXPECT);
    add_forwarding_headers(ctx, &mut parts.headers);

    let pinned = match &shared.sticky_cookie {
        Some(name) => take_cookie(&mut parts.headers, name)
            .and_then(|token| pool.find_token(&token))
            .filter(|&i| pool.is_up(i)),
        None => None,
    };
    let mut idx = match pinned {
        Some(i) => i,
        None => pool.pick(0).ok_or(LbError::NoHealthyBackend)?,
    };

    let idempotent = is_idempotent(&parts.method);
    parts.version = Version::HTTP_11;
    // Backends get origin-form targets even if the client used absolute-form.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    if !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, pool.backends[idx].host_value.clone());
    }
    let mut req = Request::from_parts(parts, Full::new(body));
    let mut tried: u64 = 0;
    loop {
        tried |= 1 << idx;
        let backend = &pool.backends[idx];
        let next = pool.next_after(idx, tried);
        // A request that reached a backend is gone; keep a copy only where a retry is allowed.
        let spare = match next {
            Some(_) if idempotent => Some(copy_request(&req)),
            _ => None,
        };

        let sent = ctx.local.send(idx, backend.addr, req);
        let (err, retry) = match tokio::time::timeout(shared.response_timeout, sent).await {
            Ok(Ok(res)) => {
                backend.requests.fetch_add(1, Ordering::Relaxed);
                let (mut rparts, rbody) = res.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                if let Some(cookie) = &backend.set_cookie {
                    rparts.headers.append(header::SET_COOKIE, cookie.clone());
                }
                return Ok(Response::from_parts(rparts, Either::Left(rbody)));
            }
            // It never reached the backend, so any method may go elsewhere.
            Ok(Err(SendError::NotSent(r, e))) => (e, Some(*r)),
            // It may have reached the backend: only idempotent methods move on.
            Ok(Err(SendError::Sent(e))) => (e, spare),
            Err(_) => {
                backend.set_last_error(format!("no response within {:?}", shared.response_timeout));
                debug!(backend = %backend.id, "backend response timeout");
                return Err(LbError::GatewayTimeout);
            }
        };
        debug!(backend = %backend.id, error = %err, "backend request failed");
        backend.set_last_error(err);
        match (next, retry) {
            (Some(n), Some(r)) if pool.is_up(n) => {
                idx = n;
                req = r;
            }
            _ => return Err(LbError::BadGateway),
        }
    }
}

fn copy_request(req: &UpRequest) -> UpRequest {
    let mut r = Request::new(req.body().clone());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Buffers the request body (bounded) so it can be replayed after a refused connect.
async fn read_body(body: Incoming, headers: &HeaderMap, max: usize) -> Result<Bytes, LbError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(LbError::PayloadTooLarge);
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(LbError::PayloadTooLarge),
        Err(_) => Err(LbError::BadRequest),
    }
}

/// Removes headers that describe one connection only (RFC 9110 7.6.1).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let hop = *name == header::CONNECTION
            || *name == header::TE
            || *name == header::TRAILER
            || *name == header::TRANSFER_ENCODING
            || *name == header::UPGRADE
            || name.as_str() == "keep-alive"
            || name.as_str().starts_with("proxy-");
        if hop {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    for v in headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            if let Ok(n) = HeaderName::from_bytes(token.trim().as_bytes()) {
                doomed.push(n);
            }
        }
    }
    for n in doomed {
        headers.remove(n);
    }
}

fn add_forwarding_headers(ctx: &ConnCtx, headers: &mut HeaderMap) {
    let xff = match headers.get(X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ctx.client_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ctx.client_ip.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(v)).unwrap_or_else(|_| ctx.client_ip.clone())
        }
        None => ctx.client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, xff);
    headers.insert(X_FORWARDED_PROTO, HTTP);
    headers.insert(X_FORWARDED_PORT, ctx.shared.forwarded_port.clone());
    if !headers.contains_key(X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID, request_id(&ctx.shared));
    }
}

/// A unique id: a per-process random prefix and a sequence number, in hex.
fn request_id(shared: &Shared) -> HeaderValue {
    let seq = shared.request_id_seq.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 25];
    hex(&mut buf[..8], u64::from(shared.request_id_prefix));
    buf[8] = b'-';
    hex(&mut buf[9..], seq);
    HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
}

fn hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// Removes cookie `name` from the Cookie header(s) and returns its value.
fn take_cookie(headers: &mut HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut found = None;
    let mut rest: Vec<&[u8]> = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        for pair in v.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            if pair.len() > name.len()
                && pair.starts_with(name.as_bytes())
                && pair[name.len()] == b'='
            {
                found = Some(pair[name.len() + 1..].to_vec());
            } else {
                rest.push(pair);
            }
        }
    }
    found.as_ref()?;
    let joined = rest.join(&b"; "[..]);
    headers.remove(header::COOKIE);
    if !joined.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(&joined)
    {
        headers.insert(header::COOKIE, v);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn cookie_is_taken_and_others_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; DO-LB=abc; b=2"),
        );
        assert_eq!(take_cookie(&mut h, "DO-LB").as_deref(), Some(&b"abc"[..]));
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("DO-LB=abc"));
        assert!(take_cookie(&mut h, "DO-LB").is_some());
        assert!(!h.contains_key(header::COOKIE));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("DO-LBX=abc"));
        assert!(take_cookie(&mut h, "DO-LB").is_none());
        assert!(h.contains_key(header::COOKIE));
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let mut buf = [0u8; 4];
        hex(&mut buf, 0xbeef);
        assert_eq!(&buf, b"beef");
    }
}
