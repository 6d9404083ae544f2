//! Test helpers: in-process hyper backends that report their id and echo request headers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lb::{BackendConfig, Config, LoadBalancer, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// What a backend saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    pub healthy: AtomicBool,
    /// `/health` answers 503 `{"status":"draining"}`, as the app once told to stop.
    pub draining: AtomicBool,
    /// Every request, health checks included, waits for ever: a stopped (SIGSTOP) process.
    pub frozen: AtomicBool,
    /// Non-health-check requests.
    pub hits: AtomicUsize,
    pub posts: AtomicUsize,
}

pub struct TestBackend {
    pub id: String,
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub async fn start(id: &str) -> Self {
        Self::start_on(id, SocketAddr::from(([127, 0, 0, 1], 0)), Arc::default()).await
    }

    /// Binds `addr` (port 0 for any); reusing `seen` keeps counters across restarts.
    pub async fn start_on(id: &str, addr: SocketAddr, seen: Arc<Seen>) -> Self {
        seen.healthy.store(true, Ordering::SeqCst);
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, id.to_owned(), seen.clone()));
        Self {
            id: id.to_owned(),
            addr,
            seen,
            task,
        }
    }

    /// A backend that reads each request, then closes the connection without answering
    /// (health checks on /health still pass).
    pub async fn start_hangup(id: &str) -> Self {
        let seen: Arc<Seen> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                conns.spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some(end) = text.find("\r\n\r\n") else { continue };
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        if text.starts_with("GET /health") {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                        } else {
                            s.hits.fetch_add(1, Ordering::SeqCst);
                            if text.starts_with("POST") {
                                s.posts.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        return;
                    }
                });
            }
        });
        Self {
            id: id.to_owned(),
            addr,
            seen,
            task,
        }
    }

    /// Stops the backend: listener and open connections close, so connects are refused.
    pub async fn kill(self) -> (SocketAddr, Arc<Seen>) {
        self.task.abort();
        let _ = self.task.await;
        (self.addr, self.seen)
    }

    pub fn config(&self) -> BackendConfig {
        BackendConfig::new(self.id.clone(), self.addr)
    }
}

async fn serve(listener: TcpListener, id: String, seen: Arc<Seen>) {
    // Dropped with the task, which aborts every connection too.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let id = id.clone();
        let seen = seen.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(id.clone(), seen.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A body of `left` bytes (`0123456789` repeated) in 10,000-byte frames with no declared
/// length, which hyper sends chunked.
pub struct Pattern {
    sent: usize,
    left: usize,
}

/// The bytes [`Pattern`] sends, for comparing.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'0' + (i % 10) as u8).collect()
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(10_000);
        let start = self.sent;
        let chunk: Vec<u8> = (start..start + n).map(|i| b'0' + (i % 10) as u8).collect();
        self.sent += n;
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

type TestBody = Either<Full<Bytes>, Pattern>;

async fn handle(
    id: String,
    seen: Arc<Seen>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    if seen.frozen.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if req.uri().path() == "/health" {
        if seen.draining.load(Ordering::SeqCst) {
            let body = Bytes::from_static(br#"{"status":"draining","reason":"stopping"}"#);
            let mut res = Response::new(Either::Left(Full::new(body)));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(res);
        }
        let status = if seen.healthy.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut res = Response::new(Either::Left(Full::new(Bytes::from_static(b"ok"))));
        *res.status_mut() = status;
        return Ok(res);
    }
    if req.uri().path() == "/pattern" {
        let left = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return Ok(Response::new(Either::Right(Pattern { sent: 0, left })));
    }
    seen.hits.fetch_add(1, Ordering::SeqCst);
    if req.method() == http::Method::POST {
        seen.posts.fetch_add(1, Ordering::SeqCst);
    }
    if req.uri().path() == "/sleep" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("").to_owned();
        headers
            .entry(k.as_str().to_owned())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let method = req.method().to_string();
    let path = req.uri().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "id": id,
        "method": method,
        "path": path,
        "headers": headers,
        "body_len": body.len(),
    });
    let mut res = Response::new(Either::Left(Full::new(Bytes::from(json.to_string()))));
    let h = res.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    // Hop-by-hop headers the load balancer must not pass to clients.
    h.insert("connection", "x-backend-hop".parse().unwrap());
    h.insert("x-backend-hop", "1".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(res)
}

/// A config with fast health checks: every 100 ms, fall 3, rise 2.
pub fn fast_config(backends: &[&TestBackend]) -> Config {
    let mut c = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        backends: backends.iter().map(|b| b.config()).collect(),
        ..Config::default()
    };
    c.health_check.interval = Duration::from_millis(100);
    c.health_check.response_timeout = Duration::from_millis(500);
    c.health_check.unhealthy_threshold = 3;
    c.health_check.healthy_threshold = 2;
    c.connect_timeout = Duration::from_millis(500);
    c.response_timeout = Duration::from_secs(2);
    c
}

/// Binds the load balancer and waits until every backend is up.
pub async fn start_lb(config: Config) -> Running {
    let n = config.backends.len();
    let lb = LoadBalancer::bind(config).await.expect("bind lb");
    let lb2 = lb.clone();
    wait_until(Duration::from_secs(3), move || {
        lb2.status()
            .iter()
            .filter(|s| s.state == lb::BackendState::Up)
            .count()
            == n
    })
    .await;
    lb
}

/// Polls `f` every 10 ms until it holds; panics after `limit`.
pub async fn wait_until(limit: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

pub fn url(lb: &Running, path: &str) -> String {
    format!("http://{}{}", lb.local_addr(), path)
}

/// GETs `path` and returns (status, parsed JSON body).
pub async fn get_json(c: &reqwest::Client, lb: &Running, path: &str) -> (u16, serde_json::Value) {
    let res = c.get(url(lb, path)).send().await.expect("request");
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

pub fn backend_status(lb: &Running, id: &str) -> lb::BackendStatus {
    lb.status().into_iter().find(|s| s.id == id).unwrap()
}

/// POSTs `body` twice to a load balancer whose first backend refuses connections: both
/// must reach the other backend whole.
pub async fn post_after_a_refused_connect(body: Vec<u8>) {
    let dead = TestBackend::start("dead").await;
    let good = TestBackend::start("good").await;
    let lb = start_lb(fast_config(&[&dead, &good])).await;
    let _ = dead.kill().await;
    let c = client();
    for _ in 0..2 {
        let res = c
            .post(url(&lb, "/items"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let seen: serde_json::Value = res.json().await.unwrap();
        assert_eq!(seen["id"], "good");
        assert_eq!(seen["body_len"], body.len());
    }
    lb.shutdown(Duration::from_secs(1)).await;
}
