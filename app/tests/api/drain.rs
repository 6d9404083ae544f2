//! Stopping the real binary: it drains (health 503, `Connection: close`) before it exits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binary::{Logs, free_port, serving};

/// One HTTP/1.1 answer as read off a raw connection.
struct Answer {
    status: u16,
    /// Header lines, lower-cased.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn closes(&self) -> bool {
        self.headers.iter().any(|h| h == "connection: close")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Sends `request` on `stream` and reads one answer (framed by Content-Length).
fn exchange(stream: &mut TcpStream, request: &str) -> std::io::Result<Answer> {
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default()[9..12].parse().unwrap();
    let headers: Vec<String> = lines.map(str::to_owned).collect();
    let length: usize = headers
        .iter()
        .find_map(|h| h.strip_prefix("content-length: "))
        .map_or(0, |n| n.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n")
}

fn post_user(email: &str) -> String {
    let body = format!(r#"{{"name":"Drain","email":"{email}"}}"#);
    format!(
        "POST /api/users HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// True once the peer has closed `stream` (EOF), within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0))
}

#[test]
fn a_stopped_instance_drains_then_exits_without_failing_a_request() {
    const DRAIN: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serving(dir.path(), port)
        .env(
            "APP__APPLICATION__DRAIN_SECONDS",
            DRAIN.as_secs().to_string(),
        )
        .spawn()
        .unwrap();
    let logs = Logs::follow(&mut child);
    let connect = || TcpStream::connect(("127.0.0.1", port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while connect().is_err() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Keep-alive connections in use before the signal, as a load balancer's pool holds them.
    let mut pool: Vec<TcpStream> = (0..4).map(|_| connect().unwrap()).collect();
    for conn in &mut pool {
        let answer = exchange(conn, &get("/server-info")).unwrap();
        assert_eq!(answer.status, 200);
        assert!(!answer.closes(), "kept alive before the signal");
    }

    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let signalled = Instant::now();
    logs.wait_for("draining", 1, Duration::from_secs(5));

    let mut fresh = connect().expect("still accepting while draining");
    let health = exchange(&mut fresh, &get("/health")).unwrap();
    assert_eq!(health.status, 503);
    let body = health.json();
    assert_eq!(body["status"], "draining", "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );

    // Every request on an existing connection is answered normally, then the connection
    // closes after its answer.
    let requests = [
        get("/server-info"),
        post_user("drain@example.com"),
        get("/api/users"),
        get("/"),
    ];
    for (i, (conn, request)) in pool.iter_mut().zip(&requests).enumerate() {
        if i == 3 {
            // Late in the window: still served.
            std::thread::sleep((DRAIN / 2).saturating_sub(signalled.elapsed()));
        }
        let answer = exchange(conn, request)
            .unwrap_or_else(|err| panic!("request {i} failed while draining: {err}"));
        assert!(
            answer.status == 200 || answer.status == 201,
            "request {i}: {}",
            answer.status
        );
        assert!(answer.closes(), "request {i} lacks Connection: close");
        assert!(
            closed_by_server(conn, Duration::from_secs(2)),
            "connection {i} stayed open after its answer"
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the drain ended"
    );

    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < DRAIN + Duration::from_secs(10),
            "no exit after the drain:\n{}",
            logs.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", logs.text());
    assert!(
        took >= DRAIN,
        "exited after {took:?}, before the drain ended"
    );
    assert!(
        logs.text().contains("request log flushed"),
        "{}",
        logs.text()
    );
}
