//! HTTP/1.x on the wire through the load balancer, over raw sockets on 127.0.0.1.
//!
//! Framing, pipelining, HTTP/1.0, interim responses and malformed requests.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as a client reads it off the socket.
struct Res {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Res {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Reads one response from `s`, keeping bytes of the next one in `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Res {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (status, headers, head_len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) = r.parse(buf).expect("valid response head") {
            let headers = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>();
            break (r.code.unwrap(), headers, n);
        }
        fill(s, buf, deadline).await;
    };
    buf.drain(..head_len);
    let mut res = Res {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 100 || status == 204 || status == 304 {
        return res;
    }
    if let Some(len) = res.header("content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            fill(s, buf, deadline).await;
        }
        res.body = buf.drain(..len).collect();
    } else {
        assert_eq!(
            res.header("transfer-encoding"),
            Some("chunked"),
            "{:?}",
            res.headers
        );
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(buf).expect("chunk size") {
                    httparse::Status::Complete(x) => break x,
                    httparse::Status::Partial => fill(s, buf, deadline).await,
                }
            };
            let size = size as usize;
            while buf.len() < used + size + 2 {
                fill(s, buf, deadline).await;
            }
            res.body.extend_from_slice(&buf[used..used + size]);
            buf.drain(..used + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    res
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: tokio::time::Instant) {
    let mut chunk = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
        .await
        .expect("response in time")
        .expect("read");
    assert!(
        n > 0,
        "connection closed mid-response: {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

async fn connect(lb: &lb::Running) -> TcpStream {
    TcpStream::connect(lb.local_addr()).await.unwrap()
}

/// True once the peer has closed the connection (nothing more to read).
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn chunked_and_large_responses_arrive_whole_and_the_connection_is_reused() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    let mut buf = Vec::new();
    for bytes in [0usize, 7, 1_000_000] {
        let req = format!("GET /pattern?bytes={bytes} HTTP/1.1\r\nhost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let res = read_response(&mut s, &mut buf, false).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("transfer-encoding"), Some("chunked"));
        assert_eq!(res.body.len(), bytes);
        assert!(
            res.body == pattern(bytes),
            "body of {bytes} bytes corrupted"
        );
    }
    // The same client connection (and the backend connection under it) still works.
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let res = read_response(&mut s, &mut buf, false).await;
    assert_eq!(res.json()["id"], "a");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    s.write_all(
        b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
          HEAD /three HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /four HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let one = read_response(&mut s, &mut buf, false).await;
    assert_eq!(one.json()["path"], "/one");
    let two = read_response(&mut s, &mut buf, false).await;
    assert_eq!(two.json()["path"], "/two");
    assert_eq!(two.json()["body_len"], 3);
    let three = read_response(&mut s, &mut buf, true).await;
    assert_eq!(three.status, 200);
    assert!(
        three.header("content-length").is_some(),
        "HEAD keeps its length"
    );
    let four = read_response(&mut s, &mut buf, false).await;
    assert_eq!(four.json()["path"], "/four");
    assert!(buf.is_empty(), "HEAD response carried a body");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn http10_clients_keep_the_connection_only_when_they_ask() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut buf = Vec::new();

    let mut s = connect(&lb).await;
    s.write_all(b"GET /plain HTTP/1.0\r\n\r\n").await.unwrap();
    let res = read_response(&mut s, &mut buf, false).await;
    assert_eq!(res.status, 200);
    let seen = res.json();
    assert_eq!(seen["path"], "/plain");
    assert!(seen["headers"]["host"].is_string(), "no Host added: {seen}");
    assert!(
        closed(&mut s).await,
        "HTTP/1.0 without keep-alive stayed open"
    );

    let mut s = connect(&lb).await;
    for path in ["/ka1", "/ka2"] {
        let req = format!("GET {path} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let res = read_response(&mut s, &mut buf, false).await;
        assert_eq!(res.json()["path"], path);
        assert_eq!(res.header("connection"), Some("keep-alive"));
    }
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn expect_continue_gets_100_before_the_body_is_sent() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    s.write_all(
        b"PUT /items/1 HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let interim = read_response(&mut s, &mut buf, false).await;
    assert_eq!(interim.status, 100);
    s.write_all(b"hello").await.unwrap();
    let res = read_response(&mut s, &mut buf, false).await;
    assert_eq!(res.status, 200);
    let seen = res.json();
    assert_eq!(seen["body_len"], 5);
    assert!(
        seen["headers"].get("expect").is_none(),
        "Expect reached the backend"
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn chunked_request_bodies_reach_the_backend_with_a_length() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    s.write_all(
        b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
          4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\ntrailer: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let res = read_response(&mut s, &mut buf, false).await;
    let seen = res.json();
    assert_eq!(seen["body_len"], 9);
    assert_eq!(seen["headers"]["content-length"], "9");
    assert!(seen["headers"].get("transfer-encoding").is_none());
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn ambiguous_or_oversized_requests_are_refused_before_any_backend() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: [(String, u16, &str); 5] = [
        (
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
                .into(),
            400,
            "bad_request",
        ),
        (
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"
                .into(),
            400,
            "bad_request",
        ),
        (
            "GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            format!("GET / HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            431,
            "header_too_large",
        ),
        (
            "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n".into(),
            405,
            "method_not_allowed",
        ),
    ];
    for (req, status, code) in cases {
        let mut s = connect(&lb).await;
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let res = read_response(&mut s, &mut buf, false).await;
        assert_eq!(res.status, status, "{req:?}");
        assert_eq!(res.json()["error"]["code"], code, "{req:?}");
        if status != 405 {
            assert_eq!(res.header("connection"), Some("close"));
            assert!(closed(&mut s).await, "connection left open after {status}");
        }
    }
    assert_eq!(a.seen.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn absolute_form_targets_reach_the_backend_in_origin_form() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    s.write_all(b"GET http://example.com/api/users?limit=2 HTTP/1.1\r\nhost: example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let res = read_response(&mut s, &mut buf, false).await;
    assert_eq!(res.json()["path"], "/api/users?limit=2");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn errors_answering_head_carry_no_body_and_keep_the_connection_in_step() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    lb.mark_down("a");
    let mut s = connect(&lb).await;
    s.write_all(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\nGET /next HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let head = read_response(&mut s, &mut buf, true).await;
    assert_eq!(head.status, 503);
    assert!(head.header("content-length").is_some());
    // The next response must start right where the HEAD answer ended.
    let next = read_response(&mut s, &mut buf, false).await;
    assert_eq!(next.status, 503);
    assert_eq!(next.json()["error"]["code"], "no_healthy_backend");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn clients_cannot_strip_the_forwarding_headers_through_connection() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    s.write_all(
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: x-forwarded-for, x-request-id, host, x-drop\r\n\
          x-forwarded-for: , 203.0.113.9\r\nx-drop: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let seen = read_response(&mut s, &mut buf, false).await.json();
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "{h}");
    assert!(h["x-request-id"].is_string(), "{h}");
    assert_eq!(h["host"], "x");
    assert!(
        h.get("x-drop").is_none(),
        "a header the client named hop-by-hop went through"
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_without_host_or_with_other_codings_are_refused() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    for req in [
        "GET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\r\n\r\n",
    ] {
        let mut s = connect(&lb).await;
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let res = read_response(&mut s, &mut buf, false).await;
        assert_eq!(res.status, 400, "{req:?}");
    }
    assert_eq!(a.seen.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    lb.shutdown(Duration::from_secs(1)).await;
}

/// A backend that answers each request with keep-alive semantics but closes the connection
/// shortly after, as servers with short idle timeouts do.
async fn start_closing_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn kept_alive_connections_the_backend_closed_are_never_used() {
    let (addr, task) = start_closing_backend().await;
    let mut cfg = fast_config(&[]);
    cfg.backends = vec![lb::BackendConfig::new("closing", addr)];
    let lb = start_lb(cfg).await;
    let c = client();
    for i in 0..6 {
        let req = if i % 2 == 0 {
            c.get(url(&lb, "/"))
        } else {
            c.post(url(&lb, "/")).body("x")
        };
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(res.text().await.unwrap(), "ok");
        // Long enough for the backend to have closed the connection it answered on.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lb.shutdown(Duration::from_secs(1)).await;
    task.abort();
}

/// Sends `req` on a new connection and asserts the load balancer answers 400 itself and
/// closes, with no backend seeing anything.
async fn assert_refused_400(req: &str) {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let mut s = connect(&lb).await;
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let res = read_response(&mut s, &mut buf, false).await;
    assert_eq!(res.status, 400, "{req:?}");
    assert_eq!(res.json()["error"]["code"], "bad_request", "{req:?}");
    assert_eq!(res.header("connection"), Some("close"));
    assert!(closed(&mut s).await, "connection left open after 400");
    assert_eq!(a.seen.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn chunk_extension_with_a_bare_lf_is_refused() {
    // httparse reads "ext\nxx" as one extension; a parser that ends the line at the LF
    // reads "xx" as data and the chunks fall out of step: smuggling.
    assert_refused_400(
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
         5;ext\nxx\r\nhello\r\n0\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    assert_refused_400("GET / HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\n\r\n").await;
}

#[tokio::test]
async fn absolute_form_target_naming_another_host_than_host_is_refused() {
    assert_refused_400("GET http://evil.example/x HTTP/1.1\r\nhost: example.com\r\n\r\n").await;
}
