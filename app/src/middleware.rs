//! What every request gets whatever its route: ids, a span, metrics and a request-log row.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use hyper::body::Incoming;
use tracing::Instrument;
use warp::reply::Response;

use crate::request_log::LogRecord;
use crate::router;
use crate::routes::HEALTH;
use crate::state::AppState;
use crate::throttle::Throttle;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_SERVER_ID: HeaderName = HeaderName::from_static("x-server-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Wraps the warp routes with what every request gets: a request id, the `X-Server-Id`
/// header, a tracing span, metrics and a request-log row.
#[derive(Clone)]
pub struct AppService<S> {
    inner: S,
    state: AppState,
    peer: SocketAddr,
}

impl<S> AppService<S> {
    /// `inner` (the routes) for one connection from `peer`.
    pub fn new(inner: S, state: AppState, peer: SocketAddr) -> Self {
        Self { inner, state, peer }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for AppService<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let request_id: Arc<str> = incoming_request_id(req.headers())
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
        let client_ip = client_ip(
            req.headers(),
            self.state.trusted_proxy_hops(),
            self.peer.ip(),
        );
        let method = method_name(req.method());
        // HEAD is GET without the body (RFC 9110 section 9.3.2): routed as GET; hyper knows
        // the request was HEAD and sends the head alone, Content-Length included.
        if req.method() == Method::HEAD {
            *req.method_mut() = Method::GET;
        }
        let route = router::resolve(req.method(), req.uri().path()).template();
        let span = tracing::info_span!("request", request_id = %request_id, method, route);
        // warp's future for the routes is large: box it where it is made so it is
        // not copied again into this wrapper's state.
        let routed = Box::pin(self.inner.clone().call(req));
        let state = self.state.clone();
        // A client (or the load balancer) that hangs up drops this future; `Detached` then
        // hands what is left of it to a task of its own, so a request that was started is
        // finished and logged, a write committed included. Only abandoned requests pay for
        // the task.
        Box::pin(Detached::new(
            async move {
                let Ok(mut response) = routed.await;
                let elapsed = started.elapsed();
                let status = response.status().as_u16();
                let headers = response.headers_mut();
                headers.insert(X_SERVER_ID.clone(), state.server_id_header().clone());
                if state.is_draining() {
                    // hyper closes the connection once this response is out: keep-alive
                    // connections end after an answer, never under a request in flight.
                    headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    headers.insert(X_REQUEST_ID.clone(), value);
                }
                metrics::counter!("http_requests_total", "route" => route, "method" => method, "status" => status_label(status))
                    .increment(1);
                metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
                    .record(elapsed.as_secs_f64());
                if status >= 500 {
                    if let Some(suppressed) = failure_throttle(status).allow() {
                        tracing::warn!(
                            status,
                            duration_us = elapsed.as_micros() as u64,
                            suppressed,
                            "request failed"
                        );
                    }
                } else {
                    tracing::debug!(status, duration_us = elapsed.as_micros() as u64, "request");
                }
                // Before the answer leaves: a client that has one can count on its row.
                state.request_log().record(LogRecord {
                    method,
                    route,
                    status,
                    duration_us: elapsed.as_micros() as u64,
                    client_ip: Some(client_ip),
                    request_id,
                    at: chrono::Utc::now(),
                }, route == HEALTH);
                Ok(response)
            }
            .instrument(span),
        ))
    }
}

/// A future that, dropped before it is done, finishes in a task of its own instead of being
/// cancelled.
struct Detached<F: Future<Output = T> + Send + 'static, T: Send + 'static> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future<Output = T> + Send + 'static, T: Send + 'static> Detached<F, T> {
    fn new(future: F) -> Self {
        Self {
            inner: Some(Box::pin(future)),
        }
    }
}

impl<F: Future<Output = T> + Send + 'static, T: Send + 'static> Future for Detached<F, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Pending;
        };
        let output = std::task::ready!(inner.as_mut().poll(cx));
        self.inner = None;
        std::task::Poll::Ready(output)
    }
}

impl<F: Future<Output = T> + Send + 'static, T: Send + 'static> Drop for Detached<F, T> {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(rest);
        }
    }
}

/// One line a second per 5xx status, with how many of that status went unlogged: an outage
/// answers every request with a 503, and a line for each would be most of the log.
fn failure_throttle(status: u16) -> &'static Throttle {
    static BY_STATUS: [Throttle; 100] = [const { Throttle::new() }; 100];
    &BY_STATUS[usize::from(status.clamp(500, 599) - 500)]
}

/// An incoming `X-Request-Id` if it is 1-128 characters of `A-Z a-z 0-9 - _ . :`.
fn incoming_request_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then_some(value)
}

/// The client as the outermost trusted proxy saw it. Each proxy appends the address it got
/// the request from to `X-Forwarded-For`, so with `hops` trusted proxies in front, the entry
/// `hops` from the end is the first one nobody could forge; the entries before it are the
/// client's own claims. Without such an entry (no header, too few entries, not an address,
/// or `hops` 0), the TCP peer.
fn client_ip(headers: &HeaderMap, hops: usize, peer: IpAddr) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    // Byte-wise, so a client's own garbage in the list cannot hide the appended entries.
    let entries: Vec<&[u8]> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|entry| !entry.is_empty())
        .collect();
    entries
        .len()
        .checked_sub(hops)
        .and_then(|at| std::str::from_utf8(entries[at]).ok()?.parse().ok())
        .unwrap_or(peer)
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(lines: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_static(line));
        }
        headers
    }

    #[test]
    fn the_client_is_the_entry_the_trusted_proxies_appended() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let ip =
            |lines: &[&'static str], hops| client_ip(&forwarded(lines), hops, peer).to_string();
        assert_eq!(ip(&["6.6.6.6, 203.0.113.9"], 1), "203.0.113.9");
        assert_eq!(ip(&["not-an-ip, 203.0.113.9"], 1), "203.0.113.9");
        assert_eq!(ip(&["6.6.6.6", "203.0.113.9"], 1), "203.0.113.9");
        assert_eq!(ip(&["203.0.113.9, garbage"], 1), "10.0.0.9");
        assert_eq!(ip(&["a, 198.51.100.7, 10.0.0.2"], 2), "198.51.100.7");
        assert_eq!(ip(&["198.51.100.7"], 2), "10.0.0.9");
        assert_eq!(ip(&["2001:db8::1"], 1), "2001:db8::1");
        assert_eq!(ip(&["6.6.6.6"], 0), "10.0.0.9");
        assert_eq!(ip(&[], 1), "10.0.0.9");
    }
}
