//! Active HTTP health checks, one task per backend, on a fresh connection each time.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
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
        let result = match timeout(cfg.response_timeout, check(addr, &cfg.path, &host)).await {
            Ok(Ok(status)) if (200..400).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(format!("health check returned status {status}")),
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

async fn check(addr: SocketAddr, path: &str, host: &http::HeaderValue) -> Result<u16, BoxError> {
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
    tokio::select! {
        biased;
        res = send.as_mut() => Ok(res?.status().as_u16()),
        res = conn.as_mut() => {
            // With `Connection: close` the connection may finish first; the response (or
            // the reason there is none) is already waiting in `send`.
            res?;
            Ok(send.await?.status().as_u16())
        }
    }
}
