//! Active HTTP health checks, one task per backend, on a fresh connection each time.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, timeout};

use crate::config::HealthCheckConfig;
use crate::upstream::Pool;

/// Starts one checker per backend; the first check runs immediately.
pub(crate) fn spawn_checkers(pool: Arc<Pool>, cfg: Arc<HealthCheckConfig>) -> Vec<JoinHandle<()>> {
    (0..pool.len())
        .map(|idx| spawn_checker(pool.clone(), idx, cfg.clone()))
        .collect()
}

/// Starts the checker of backend `idx`; it ends when the backend is removed.
pub(crate) fn spawn_checker(
    pool: Arc<Pool>,
    idx: usize,
    cfg: Arc<HealthCheckConfig>,
) -> JoinHandle<()> {
    tokio::spawn(async move { run(pool, idx, cfg).await })
}

async fn run(pool: Arc<Pool>, idx: usize, cfg: Arc<HealthCheckConfig>) {
    let b = pool.backend(idx);
    let mut addr = b.addr;
    if let Some(port) = cfg.port {
        addr.set_port(port);
    }
    let host = b.host_value.clone();
    let mut tick = interval(cfg.interval);
    // A stalled runtime must not fire a burst of checks that flips state on stale evidence.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_removed(idx) {
            return;
        }
        let checked = check(addr, &cfg.path, &host, cfg.leave_on_draining);
        let result = match timeout(cfg.response_timeout, checked).await {
            Ok(Ok(Answer { status, .. })) if (200..400).contains(&status) => Ok(()),
            Ok(Ok(Answer { draining: true, .. })) => {
                pool.record_draining(idx, "health check: the backend is draining".to_owned());
                continue;
            }
            Ok(Ok(Answer { status, .. })) => Err(format!("health check returned status {status}")),
            Ok(Err(e)) => Err(format!("health check failed: {e}")),
            Err(_) => Err(format!(
                "health check timed out after {:?}",
                cfg.response_timeout
            )),
        };
        match result {
            Ok(()) => pool.record_success(idx, cfg.healthy_threshold),
            Err(e) => pool.record_failure(idx, cfg.unhealthy_threshold, e),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest health answer body read to look for `draining`; the app's is a few hundred bytes.
const BODY_LIMIT: usize = 16 * 1024;

/// What one check got back.
struct Answer {
    status: u16,
    /// A 503 whose JSON `status` is `draining` (looked for only with `leave_on_draining`).
    draining: bool,
}

async fn check(
    addr: SocketAddr,
    path: &str,
    host: &http::HeaderValue,
    look_for_draining: bool,
) -> Result<Answer, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let req = Request::get(path)
        .header(header::HOST, host.clone())
        .header(header::USER_AGENT, "lb-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    // Drive the connection here instead of spawning so a timeout drops everything at once.
    let mut conn = std::pin::pin!(conn);
    let mut send = std::pin::pin!(sender.send_request(req));
    let mut conn_done = false;
    let res = tokio::select! {
        biased;
        res = send.as_mut() => res?,
        res = conn.as_mut() => {
            // With `Connection: close` the connection may finish first; the response (or
            // the reason there is none) is already waiting in `send`.
            res?;
            conn_done = true;
            send.await?
        }
    };
    let status = res.status().as_u16();
    if !(look_for_draining && status == 503) {
        return Ok(Answer {
            status,
            draining: false,
        });
    }
    // The body arrives through the connection, so both are driven until it is whole.
    let body = Limited::new(res.into_body(), BODY_LIMIT).collect();
    let body = if conn_done {
        body.await
    } else {
        tokio::join!(body, conn).0
    };
    let draining = body.ok().is_some_and(|b| says_draining(&b.to_bytes()));
    Ok(Answer { status, draining })
}

/// Whether a health answer's JSON body has `"status": "draining"`.
fn says_draining(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("draining"))
}

#[cfg(test)]
mod tests {
    use super::says_draining;

    #[test]
    fn only_a_json_draining_status_counts_as_draining() {
        assert!(says_draining(
            br#"{"status":"draining","reason":"stopping"}"#
        ));
        assert!(!says_draining(br#"{"status":"unhealthy"}"#));
        assert!(!says_draining(b"draining"));
        assert!(!says_draining(br#"{"error":{"status":"draining"}}"#));
    }
}
