//! The load balancer's own status page (`Config::status_path`): every backend as the balancer sees it, its last 15 minutes, and when backends left or rejoined rotation.
//!
//! Answered by the load balancer itself, never proxied, so it works when no backend does. It
//! is what the app's dashboard draws its time series and its backend table from on the local
//! stack (DigitalOcean's load balancer has no such page).

use serde::Serialize;

use crate::series::{self, Event, Point, STEP_SECONDS};
use crate::tls::{HandshakeCounts, Handshakes};
use crate::upstream::{BackendState, BackendStatus, Pool};

/// The status page's JSON.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Unix time in milliseconds.
    pub generated_at_ms: u64,
    /// Seconds per point of every backend's `series`.
    pub step_seconds: u64,
    pub backends: Vec<BackendView>,
    /// Rotation changes, oldest first.
    pub events: Vec<Event>,
    /// How the HTTPS entry's handshakes ended since start; absent without an HTTPS entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes: Option<HandshakeCounts>,
}

/// One backend: its status, and its requests, 5xx and p95 latency over the last 15 minutes.
#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    #[serde(flatten)]
    pub status: BackendStatus,
    /// Whether round robin hands it requests now.
    pub in_rotation: bool,
    pub series: Vec<Point>,
}

impl Pool {
    pub(crate) fn report(&self, tls: Option<&Handshakes>) -> StatusReport {
        let now = series::unix_now();
        let backends = self
            .status()
            .into_iter()
            .filter_map(|status| {
                let idx = self.index_of(&status.id)?;
                Some(BackendView {
                    in_rotation: status.state == BackendState::Up,
                    series: self.backend(idx).series.points(now),
                    status,
                })
            })
            .collect();
        StatusReport {
            generated_at_ms: now * 1000,
            step_seconds: STEP_SECONDS,
            backends,
            events: self.events.list(),
            tls_handshakes: tls.map(Handshakes::counts),
        }
    }
}

/// The whole HTTP response for the status page.
pub(crate) fn response(
    pool: &Pool,
    tls: Option<&Handshakes>,
    out: &mut Vec<u8>,
    head_only: bool,
    close: bool,
) {
    let body = serde_json::to_vec(&pool.report(tls)).unwrap_or_else(|_| b"{}".to_vec());
    out.clear();
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\n",
    );
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(if close {
        b"connection: close\r\n\r\n"
    } else {
        b"connection: keep-alive\r\n\r\n"
    });
    if !head_only {
        out.extend_from_slice(&body);
    }
}
