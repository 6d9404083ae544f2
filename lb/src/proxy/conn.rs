//! The client connection's state and the settings every connection shares; the phase modules add its methods.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::config::Config;
use crate::http1::{ChunkedScanner, Framing};
use crate::io::{ClientStream, StopSignal, Timer};
use crate::policy::{Entry, Policy};
use crate::tls::Terminator;
use crate::upstream::{Parked, Pool};

/// Buffers that grew past this for one large request or response are given back after it,
/// so a connection that once carried a big upload doesn't hold megabytes while idle.
pub(super) const KEEP_CAPACITY: usize = 64 * 1024;

/// State shared by all connections; built once at bind.
pub(crate) struct Shared {
    pub(crate) pool: Arc<Pool>,
    pub(super) policy: Policy,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) eject_after_timeouts: u32,
    pub(super) client_idle_timeout: Duration,
    pub(super) head_timeout: Duration,
    pub(super) body_timeout: Duration,
    pub(super) max_body: u64,
    pub(super) budget: Budget,
    /// The path the load balancer answers with its own status.
    pub(super) status_path: Option<String>,
    /// TLS for the HTTPS entry's connections.
    pub(super) tls: Option<Terminator>,
    /// The HTTP entry answers every request with a redirect to the HTTPS entry.
    pub(super) redirect_to_https: bool,
    /// Set once shutdown starts: responses from then on close their connection.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    /// `https`: the HTTPS entry's bound address and its TLS, when there is one.
    pub(crate) fn new(
        config: &Config,
        pool: Arc<Pool>,
        http_port: u16,
        https: Option<(SocketAddr, Terminator)>,
    ) -> Self {
        let sticky_cookie = config.sticky.as_ref().map(|s| s.cookie_name.clone());
        let redirect_to_https = https.is_some()
            && config
                .https
                .as_ref()
                .is_some_and(|h| h.redirect_http_to_https);
        let (https_addr, tls) = https.unzip();
        Self {
            pool,
            policy: Policy::new(sticky_cookie, http_port, https_addr),
            tls,
            redirect_to_https,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            eject_after_timeouts: config.eject_after_timeouts,
            client_idle_timeout: config.client_idle_timeout,
            head_timeout: config.request_head_timeout,
            body_timeout: config.request_body_timeout,
            max_body: config.max_request_body_bytes as u64,
            budget: Budget::new(config.max_buffered_body_bytes),
            status_path: config.status_path.clone(),
            stopping: AtomicBool::new(false),
        }
    }
}

/// One client connection and the buffers its requests go through. Its methods live with
/// the phase they belong to; this module keeps the loop and the load balancer's own answers.
pub(super) struct ClientConn {
    pub(super) stream: ClientStream,
    pub(super) entry: Entry,
    pub(super) peer: SocketAddr,
    /// Bytes read from the client and not yet used.
    pub(super) buf: BytesMut,
    /// The response (or its head and first bytes) on its way to the client.
    pub(super) out: Vec<u8>,
    /// The request as the backend gets it; with a held body, kept whole so it can be sent
    /// again.
    pub(super) req: Vec<u8>,
    /// Request body bytes, de-chunked: a held body whole, or the next piece to stream.
    pub(super) body: Vec<u8>,
    pub(super) client_ip: Vec<u8>,
    pub(super) shared: Arc<Shared>,
    /// Idle backend connections of this I/O loop; one is taken for each request and put
    /// back as soon as its response is relayed, so idle clients hold no backend sockets.
    pub(super) parked: Arc<Parked>,
    pub(super) timer: Timer,
    /// `None` once the shutdown signal has been seen.
    pub(super) stop: Option<StopSignal>,
    /// How much of `buf` is known not to hold the end of a request head.
    pub(super) head_scanned: usize,
    /// Bytes of the memory budget this connection holds for the current body.
    pub(super) reserved: usize,
    /// Part of the request body is still unread from the client.
    pub(super) body_pending: bool,
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        self.shared.budget.release(self.reserved);
    }
}

/// The memory all connections together may hold in request bodies kept for replay.
pub(super) struct Budget {
    pub(super) limit: usize,
    pub(super) used: AtomicUsize,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub(super) fn try_reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    pub(super) fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Where the request body is.
pub(super) enum Body {
    /// In `ClientConn::body`, whole (or there is none).
    Held,
    /// Still arriving from the client; relayed to the backend as it comes.
    Streamed(Stream),
}

pub(super) struct Stream {
    pub(super) framing: StreamFraming,
    pub(super) deadline: Instant,
    /// Body bytes were sent to a backend, and are gone: the request can't be replayed.
    pub(super) started: bool,
}

pub(super) enum StreamFraming {
    /// This many bytes of a `Content-Length` body left.
    Length(u64),
    /// A chunked body, forwarded re-chunked (its extensions and trailers dropped).
    Chunked(ChunkedScanner),
}

/// What the relay needs to know about a request once its head is parsed and rewritten.
pub(super) struct RequestInfo {
    pub(super) framing: Framing,
    /// Whether the client sent `Content-Length` (even 0), so the backend gets one too.
    pub(super) had_length: bool,
    pub(super) idempotent: bool,
    /// A HEAD request: the response has no body whatever its headers say.
    pub(super) head_method: bool,
    pub(super) http10: bool,
    /// The client asked for the connection to close after this exchange (for a redirect:
    /// the answer waiting in `out` closes it).
    pub(super) close: bool,
    pub(super) host_missing: bool,
    /// The backend the sticky cookie names, if the request carried one.
    pub(super) sticky_token: Option<Vec<u8>>,
    /// A GET or HEAD of the status path: the load balancer answers it.
    pub(super) status: bool,
    /// A request on the HTTP entry that gets a redirect to HTTPS, which waits in `out`.
    pub(super) redirect: bool,
}
