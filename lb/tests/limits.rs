//! Limits that keep slow or greedy clients from tying up the load balancer.
//!
//! Total deadlines for request heads and bodies, streamed request bodies, the buffer budget
//! and the connection limit; raw sockets on 127.0.0.1, small configured limits, bounded loops.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads until the connection closes (or 5 s pass); returns everything read and when the
/// first byte came, counted from `started`.
async fn read_answer(
    mut r: impl tokio::io::AsyncRead + Unpin,
    started: Instant,
) -> (String, Duration) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut first = None;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| started.elapsed());
        all.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&all).into_owned();
    (text, first.unwrap_or_else(|| started.elapsed()))
}

async fn read_to_close(s: &mut TcpStream) -> String {
    read_answer(s, Instant::now()).await.0
}

/// Starts a load balancer in front of `a` with a 3 s idle timeout (each dripped byte comes
/// well within it, so only a total deadline can stop the drip) and `tweak` applied; writes
/// `head`, then one byte every 50 ms for at most 4 s. Returns the answer and when it came.
async fn drip_answer(
    a: &TestBackend,
    tweak: impl FnOnce(&mut lb::Config),
    head: &'static [u8],
) -> (String, Duration) {
    let mut cfg = fast_config(&[a]);
    cfg.client_idle_timeout = Duration::from_secs(3);
    tweak(&mut cfg);
    let lb = start_lb(cfg).await;
    let s = TcpStream::connect(lb.local_addr()).await.unwrap();
    let started = Instant::now();
    let (r, mut w) = s.into_split();
    tokio::spawn(async move {
        if w.write_all(head).await.is_err() {
            return;
        }
        while started.elapsed() < Duration::from_secs(4) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // An error means the load balancer closed the connection: the drip is over.
            if w.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let answer = read_answer(r, started).await;
    lb.shutdown(Duration::from_secs(1)).await;
    answer
}

#[tokio::test]
async fn a_dripped_body_is_cut_off_at_the_total_body_deadline() {
    let a = TestBackend::start("a").await;
    let (text, waited) = drip_answer(
        &a,
        |c| c.request_body_timeout = Duration::from_millis(500),
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert!(text.contains("connection: close"), "{text:?}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text:?}");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(a.seen.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_dripped_head_is_cut_off_at_the_head_deadline() {
    let a = TestBackend::start("a").await;
    let (text, waited) = drip_answer(
        &a,
        |c| c.request_head_timeout = Duration::from_millis(500),
        b"GET / HTTP/1.1\r\nx-slow: ",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
}

/// A backend that counts the request body bytes it has received so far (`seen`), answers
/// once `Content-Length` bytes are in, and passes health checks.
async fn start_counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                let end = loop {
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                if head.starts_with("get /health") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = got.len() - end;
                counter.store(body, Ordering::SeqCst);
                while body < len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body += n,
                    }
                    counter.store(body, Ordering::SeqCst);
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_large_body_reaches_the_backend_before_the_client_has_sent_it_all() {
    let (addr, seen) = start_counting_backend().await;
    let mut cfg = fast_config(&[]);
    cfg.backends = vec![lb::BackendConfig::new("counting", addr)];
    cfg.max_request_body_bytes = 4 << 20;
    let lb = start_lb(cfg).await;
    let mut s = TcpStream::connect(lb.local_addr()).await.unwrap();
    let total = 2 << 20;
    let first = 512 * 1024;
    s.write_all(
        format!("POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&vec![b'a'; first]).await.unwrap();
    // Half a megabyte in and the rest still unsent: a load balancer that holds whole
    // bodies shows the backend nothing yet.
    wait_until(Duration::from_secs(3), || {
        seen.load(Ordering::SeqCst) >= first / 2
    })
    .await;
    s.write_all(&vec![b'b'; total - first]).await.unwrap();
    let text = read_to_close(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    assert_eq!(seen.load(Ordering::SeqCst), total);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_large_chunked_body_streams_through_rechunked_and_whole() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = TcpStream::connect(lb.local_addr()).await.unwrap();
    let mut req = b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let piece = vec![b'z'; 10_000];
    for _ in 0..20 {
        req.extend_from_slice(b"2710;ext=1\r\n");
        req.extend_from_slice(&piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\ntrailer: x\r\n\r\nGET /next HTTP/1.1\r\nhost: x\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("responses in time")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap();
            if buf.len() < end + 4 + len {
                break;
            }
            let body: serde_json::Value =
                serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
            buf.drain(..end + 4 + len);
            bodies.push(body);
        }
    }
    // Too big to hold for replay: it went on chunked as it came, every byte of it, and the
    // connection stayed in step for the next request.
    assert_eq!(bodies[0]["body_len"], 200_000);
    assert_eq!(bodies[0]["headers"]["transfer-encoding"], "chunked");
    assert_eq!(bodies[1]["path"], "/next");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn with_the_buffer_budget_used_up_bodies_stream_instead_of_being_held() {
    let a = TestBackend::start("a").await;
    let mut cfg = fast_config(&[&a]);
    cfg.max_buffered_body_bytes = 0;
    let lb = start_lb(cfg).await;
    let mut s = TcpStream::connect(lb.local_addr()).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n\
          4\r\nwiki\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_to_close(&mut s).await;
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    // A held chunked body goes on with a length; this one could not be held.
    assert_eq!(seen["body_len"], 4);
    assert_eq!(seen["headers"]["transfer-encoding"], "chunked");
    assert!(seen["headers"].get("content-length").is_none(), "{seen}");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_streamed_post_still_moves_on_after_a_refused_connect() {
    // Too big to hold: nothing of it was consumed when the connect was refused.
    post_after_a_refused_connect(vec![b'x'; 300_000]).await;
}

#[tokio::test]
async fn a_connection_over_the_limit_gets_503_json_and_is_closed() {
    let a = TestBackend::start("a").await;
    let mut cfg = fast_config(&[&a]);
    cfg.max_connections = 2;
    let lb = start_lb(cfg).await;
    let get = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(lb.local_addr()).await.unwrap();
        s.write_all(get).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        open.push(s);
    }
    let mut third = TcpStream::connect(lb.local_addr()).await.unwrap();
    third.write_all(get).await.unwrap();
    let text = read_to_close(&mut third).await;
    assert!(text.starts_with("HTTP/1.1 503 "), "{text:?}");
    assert!(text.contains("connection: close"), "{text:?}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], "too_many_connections");

    // Once a connection closes, a new one is served again.
    drop(open.pop());
    let lb2 = lb.clone();
    let mut served = false;
    for _ in 0..50 {
        let mut s = TcpStream::connect(lb2.local_addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        if read_to_close(&mut s).await.starts_with("HTTP/1.1 200 ") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a freed connection slot was never reused");
    lb.shutdown(Duration::from_secs(1)).await;
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Lines saying a request from `peer` was refused.
    fn refusals(&self, peer: SocketAddr) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains("request refused") && l.contains(&format!("peer={peer}")))
            .map(str::to_owned)
            .collect()
    }
}

// Everything runs on this test's thread (current-thread runtime, no I/O threads), so a
// thread-local subscriber sees every line the load balancer logs.
#[tokio::test]
async fn every_refused_request_logs_one_debug_line_with_reason_and_peer() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let a = TestBackend::start("a").await;
    let mut cfg = fast_config(&[&a]);
    cfg.max_request_body_bytes = 10;
    cfg.request_head_timeout = Duration::from_millis(200);
    let lb = start_lb(cfg.clone()).await;
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases = [
        (
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n".to_owned(),
            "400",
            "two Host",
        ),
        (
            "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\nconnection: close\r\n\r\n".into(),
            "405",
            "CONNECT",
        ),
        (
            "GET / HTTP/1.1\r\nhost: x\r\n".into(),
            "408",
            "request_head_timeout",
        ),
        (
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n".into(),
            "413",
            "over the limit",
        ),
        (
            format!("GET / HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            "431",
            "too large",
        ),
    ];
    for (req, status, reason) in cases {
        let mut s = TcpStream::connect(lb.local_addr()).await.unwrap();
        let peer = s.local_addr().unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let text = read_to_close(&mut s).await;
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text:?}");
        let lines = captured.refusals(peer);
        assert_eq!(lines.len(), 1, "{status}: {lines:?}");
        assert!(lines[0].contains(reason), "{status}: {lines:?}");
    }
    lb.shutdown(Duration::from_secs(1)).await;

    cfg.max_connections = 1;
    let lb = start_lb(cfg).await;

    let mut held = TcpStream::connect(lb.local_addr()).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(held.read(&mut buf).await.unwrap() > 0);
    let mut over = TcpStream::connect(lb.local_addr()).await.unwrap();
    let peer = over.local_addr().unwrap();
    over.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut over).await.starts_with("HTTP/1.1 503 "));
    let lines = captured.refusals(peer);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("connection limit"), "{lines:?}");
    lb.shutdown(Duration::from_secs(1)).await;
}
