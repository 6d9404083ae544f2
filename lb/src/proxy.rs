//! The per-connection relay: read a request, forward it, relay the response, repeat.
//!
//! Each client connection is one task running this loop over plain byte buffers, so a
//! proxied request costs two reads and two writes, one parse of each head and no allocation
//! in the common case. Small request bodies are held whole, so a failed first try can go to
//! another backend; larger ones (or any, once the memory budget is used up) stream through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::config::Config;
use crate::error::{ErrorKind, ProxyError, Retry, Side};
use crate::http1::{self, ChunkedScanner, Framing};
use crate::io::{READ_CHUNK, Read, StopSignal, Timer, read_some, write_all};
use crate::policy::Policy;
use crate::upstream::{self, BackendConn, Parked, Pool};

/// Interim (1xx) responses skipped before a backend counts as broken.
const MAX_INTERIM: usize = 8;
/// Largest response chunk gathered before it is written on to the client.
const MAX_GATHER: usize = 64 * 1024;
/// Buffers that grew past this for one large request or response are given back after it,
/// so a connection that once carried a big upload doesn't hold megabytes while idle.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Largest request body held whole so it can be sent again; larger ones stream through.
const REPLAY_MAX: usize = 64 * 1024;
/// After an error that leaves unread request bytes, how long the connection keeps reading
/// (and discarding) so closing it doesn't reset the error response away.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// State shared by all connections; built once at bind.
pub(crate) struct Shared {
    pub(crate) pool: Arc<Pool>,
    policy: Policy,
    connect_timeout: Duration,
    response_timeout: Duration,
    client_idle_timeout: Duration,
    head_timeout: Duration,
    body_timeout: Duration,
    max_body: u64,
    budget: Budget,
    /// Set once shutdown starts: responses from then on close their connection.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: &Config, pool: Arc<Pool>, listen_port: u16) -> Self {
        let sticky_cookie = config.sticky.as_ref().map(|s| s.cookie_name.clone());
        Self {
            pool,
            policy: Policy::new(sticky_cookie, listen_port),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            client_idle_timeout: config.client_idle_timeout,
            head_timeout: config.request_head_timeout,
            body_timeout: config.request_body_timeout,
            max_body: config.max_request_body_bytes as u64,
            budget: Budget {
                limit: config.max_buffered_body_bytes,
                used: AtomicUsize::new(0),
            },
            stopping: AtomicBool::new(false),
        }
    }
}

/// The memory all connections together may hold in request bodies kept for replay.
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    fn try_reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Serves one client connection until it closes, times out or the load balancer stops.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    parked: Arc<Parked>,
    stop: StopSignal,
) {
    let mut conn = ClientConn {
        stream,
        peer,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(1024),
        req: Vec::with_capacity(1024),
        body: Vec::new(),
        client_ip: peer.ip().to_string().into_bytes(),
        shared,
        parked,
        timer: Timer::new(),
        stop: Some(stop),
        head_scanned: 0,
        reserved: 0,
        body_pending: false,
    };
    conn.run().await;
}

struct ClientConn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    /// The response (or its head and first bytes) on its way to the client.
    out: Vec<u8>,
    /// The request as the backend gets it; with a held body, kept whole so it can be sent
    /// again.
    req: Vec<u8>,
    /// Request body bytes, de-chunked: a held body whole, or the next piece to stream.
    body: Vec<u8>,
    client_ip: Vec<u8>,
    shared: Arc<Shared>,
    /// Idle backend connections of this I/O loop; one is taken for each request and put
    /// back as soon as its response is relayed, so idle clients hold no backend sockets.
    parked: Arc<Parked>,
    timer: Timer,
    /// `None` once the shutdown signal has been seen.
    stop: Option<StopSignal>,
    /// How much of `buf` is known not to hold the end of a request head.
    head_scanned: usize,
    /// Bytes of the memory budget this connection holds for the current body.
    reserved: usize,
    /// Part of the request body is still unread from the client.
    body_pending: bool,
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        self.shared.budget.release(self.reserved);
    }
}

/// What the relay needs to know about a request once its head is parsed and rewritten.
struct RequestInfo {
    framing: Framing,
    /// Whether the client sent `Content-Length` (even 0), so the backend gets one too.
    had_length: bool,
    idempotent: bool,
    /// A HEAD request: the response has no body whatever its headers say.
    head_method: bool,
    http10: bool,
    /// The client asked for the connection to close after this exchange.
    close: bool,
    host_missing: bool,
    /// The backend the sticky cookie names, if the request carried one.
    sticky_token: Option<Vec<u8>>,
}

/// Where the request body is.
enum Body {
    /// In `body`, whole (or there is none).
    Held,
    /// Still arriving from the client; relayed to the backend as it comes.
    Streamed(Stream),
}

struct Stream {
    framing: StreamFraming,
    deadline: Instant,
    /// Body bytes were sent to a backend, and are gone: the request can't be replayed.
    started: bool,
}

enum StreamFraming {
    /// This many bytes of a `Content-Length` body left.
    Length(u64),
    /// A chunked body, forwarded re-chunked (its extensions and trailers dropped).
    Chunked(ChunkedScanner),
}

impl Body {
    fn replayable(&self) -> bool {
        match self {
            Body::Held => true,
            Body::Streamed(s) => !s.started,
        }
    }
}

/// How a response head was framed, kept once its borrowed parse is gone.
struct ResponseMeta {
    head_len: usize,
    framing: Framing,
    reusable: bool,
}

impl ClientConn {
    async fn run(&mut self) {
        loop {
            let (info, mut body) = match self.read_request().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    self.reply(&e, true, false).await;
                    return;
                }
            };
            let forwarded = self.forward(&info, &mut body).await;
            self.shared
                .budget
                .release(std::mem::take(&mut self.reserved));
            self.shrink_buffers();
            match forwarded {
                Ok(true) => {}
                Ok(false) => {
                    // Pipelined requests we won't answer: read them away before closing, so
                    // the kernel doesn't reset the response we just sent.
                    if !self.buf.is_empty() {
                        self.linger().await;
                    }
                    return;
                }
                Err(e) => {
                    let close = info.close
                        || self.body_pending
                        || self.shared.stopping.load(Ordering::Relaxed);
                    if !self.reply(&e, close, info.head_method).await || close {
                        return;
                    }
                }
            }
        }
    }

    fn shrink_buffers(&mut self) {
        for v in [&mut self.req, &mut self.body, &mut self.out] {
            if v.capacity() > KEEP_CAPACITY {
                *v = Vec::new();
            }
        }
        if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() < READ_CHUNK {
            let mut fresh = BytesMut::with_capacity(READ_CHUNK);
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
    }

    /// Sends the load balancer's own answer to `e`; false if the client is gone. Requests
    /// it refuses are logged here, once each.
    async fn reply(&mut self, e: &ProxyError, close: bool, head_method: bool) -> bool {
        let close = close || e.kind().closes();
        e.write_response(&mut self.out, close, head_method);
        if e.kind().is_refusal() {
            debug!(peer = %self.peer, kind = ?e.kind(), reason = %e, "request refused");
        }
        if self.out.is_empty() {
            return false;
        }
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        let sent = write_all(&self.stream, &self.out, &mut self.timer, deadline)
            .await
            .is_ok();
        if sent && close && (e.kind().closes() || self.body_pending || !self.buf.is_empty()) {
            self.linger().await;
        }
        sent
    }

    /// Half-closes and discards what the client still sends for a moment, so the kernel
    /// doesn't answer those bytes with a reset that could destroy the response unread.
    async fn linger(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.buf.clear();
            match read_some(
                &mut self.stream,
                &mut self.buf,
                &mut self.timer,
                deadline,
                None,
            )
            .await
            {
                Ok(Read::Data) => discarded += self.buf.len(),
                _ => return,
            }
        }
    }

    /// Reads the next request head, and the body too when it is small enough to hold.
    /// `Ok(None)`: the connection is done (closed by the client, idle too long, or the load
    /// balancer is stopping).
    async fn read_request(&mut self) -> Result<Option<(RequestInfo, Body)>, ProxyError> {
        let idle_deadline = Instant::now() + self.shared.client_idle_timeout;
        // Set once the first byte of a head is here; the head must be whole by then.
        let mut head_deadline = None;
        let (info, head_len) = loop {
            // Parse only once the end of a head may be there, so a client dripping a head a
            // byte at a time doesn't make every read re-parse all of it.
            let end = http1::find_head_end(&self.buf, self.head_scanned);
            self.head_scanned = self.buf.len().saturating_sub(3);
            if end {
                let mut headers = [httparse::EMPTY_HEADER; http1::MAX_HEADERS];
                if let Some(head) = http1::parse_request(&self.buf, &mut headers)? {
                    let sticky_token = self.shared.policy.write_request_head(
                        &head,
                        &self.client_ip,
                        &mut self.req,
                    );
                    let info = RequestInfo {
                        framing: head.framing,
                        had_length: head.had_length,
                        idempotent: head.idempotent(),
                        head_method: head.method == "HEAD",
                        http10: head.http10,
                        close: head.close(),
                        host_missing: !head.has_host,
                        sticky_token,
                    };
                    let expect_continue = head.expect_continue && !head.http10;
                    break ((info, expect_continue), head.head_len);
                }
            }
            if self.buf.len() > http1::MAX_HEAD_BYTES {
                return Err(ProxyError::new(
                    ErrorKind::HeaderTooLarge,
                    "request head too large",
                ));
            }
            let idle = self.buf.is_empty();
            if idle && (self.stop.is_none() || self.shared.stopping.load(Ordering::Relaxed)) {
                return Ok(None);
            }
            if !idle && head_deadline.is_none() {
                head_deadline = Some(Instant::now() + self.shared.head_timeout);
            }
            let stop = if idle { Some(&mut self.stop) } else { None };
            let read = read_some(
                &mut self.stream,
                &mut self.buf,
                &mut self.timer,
                head_deadline.unwrap_or(idle_deadline),
                stop,
            );
            match read.await {
                Ok(Read::Data | Read::Stopped) => {}
                Ok(Read::TimedOut) if !idle => {
                    return Err(ProxyError::new(
                        ErrorKind::RequestTimeout,
                        "request head not received within request_head_timeout",
                    ));
                }
                Ok(Read::Eof | Read::TimedOut) | Err(_) => return Ok(None),
            }
        };
        let (info, expect_continue) = info;
        self.buf.advance(head_len);
        self.head_scanned = 0;
        let body = self.read_body(&info, expect_continue).await?;
        Ok(Some((info, body)))
    }

    /// Reads a body small enough to hold into `body` (bounded by the memory budget), or
    /// sets up streaming a larger one.
    async fn read_body(
        &mut self,
        info: &RequestInfo,
        expect_continue: bool,
    ) -> Result<Body, ProxyError> {
        self.body.clear();
        let len = match info.framing {
            Framing::None | Framing::UntilClose => return Ok(Body::Held),
            Framing::Length(n) if n > self.shared.max_body => {
                return Err(ProxyError::new(
                    ErrorKind::PayloadTooLarge,
                    format!("Content-Length {n} over the limit"),
                ));
            }
            Framing::Length(n) => Some(n as usize),
            Framing::Chunked => None,
        };
        // HTTP/1.0 clients don't know 100 Continue (RFC 9110 section 15.2); they send anyway.
        let missing = len.map_or(self.buf.is_empty(), |n| self.buf.len() < n);
        if expect_continue && missing {
            self.send_continue().await?;
        }
        let deadline = Instant::now() + self.shared.body_timeout;
        let hold = len.unwrap_or(REPLAY_MAX);
        let held = hold <= REPLAY_MAX && self.shared.budget.try_reserve(hold);
        if held {
            self.reserved = hold;
        }
        let framing = match len {
            Some(n) if held => {
                while self.buf.len() < n {
                    self.read_body_bytes(deadline).await?;
                }
                self.body.extend_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                return Ok(Body::Held);
            }
            Some(n) => StreamFraming::Length(n as u64),
            None => {
                let mut scanner = ChunkedScanner::new(Side::Client);
                // Decoded while it fits the hold; a longer body goes on as a stream, with
                // what was decoded so far as its first chunk.
                while held && self.body.len() <= REPLAY_MAX {
                    let (used, done) =
                        scanner.decode(&self.buf, &mut self.body, self.shared.max_body)?;
                    self.buf.advance(used);
                    if done {
                        return Ok(Body::Held);
                    }
                    self.read_body_bytes(deadline).await?;
                }
                StreamFraming::Chunked(scanner)
            }
        };
        self.body_pending = true;
        Ok(Body::Streamed(Stream {
            framing,
            deadline,
            started: false,
        }))
    }

    /// Reads more of a request body, which must be whole by `deadline`.
    async fn read_body_bytes(&mut self, deadline: Instant) -> Result<(), ProxyError> {
        let read = read_some(
            &mut self.stream,
            &mut self.buf,
            &mut self.timer,
            deadline,
            None,
        );
        match read.await {
            Ok(Read::Data) => Ok(()),
            Ok(Read::TimedOut) => Err(ProxyError::new(
                ErrorKind::RequestTimeout,
                "request body not received within request_body_timeout",
            )),
            // Cut short; the connection can't be used for another request.
            _ => Err(ProxyError::new(
                ErrorKind::BadRequest,
                "request body cut short",
            )),
        }
    }

    async fn send_continue(&mut self) -> Result<(), ProxyError> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        write_all(
            &self.stream,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            &mut self.timer,
            deadline,
        )
        .await
        .map_err(|e| ProxyError::new(ErrorKind::ClientGone, e.to_string()))
    }

    /// Sends the request to a backend (moving on to the next one where that is safe) and
    /// relays the response. `Ok(keep_open)` once a response went out; `Err` when the load
    /// balancer must answer itself.
    async fn forward(&mut self, info: &RequestInfo, body: &mut Body) -> Result<bool, ProxyError> {
        let pool = &*self.shared.pool;
        let pinned = info
            .sticky_token
            .as_deref()
            .and_then(|token| pool.find_token(token))
            .filter(|&i| pool.is_up(i));
        let mut idx = match pinned.or_else(|| pool.pick(0)) {
            Some(i) => i,
            None => {
                return Err(ProxyError::new(
                    ErrorKind::NoHealthyBackend,
                    "no backend in rotation",
                ));
            }
        };
        if info.host_missing {
            http1::push_header(
                &mut self.req,
                b"host",
                pool.backends[idx].host_value.as_bytes(),
            );
        }
        match body {
            Body::Held if info.had_length || !self.body.is_empty() => {
                self.req.extend_from_slice(b"content-length: ");
                http1::push_u64(&mut self.req, self.body.len() as u64);
                self.req.extend_from_slice(b"\r\n");
            }
            Body::Held => {}
            Body::Streamed(Stream {
                framing: StreamFraming::Length(n),
                ..
            }) => {
                self.req.extend_from_slice(b"content-length: ");
                http1::push_u64(&mut self.req, *n);
                self.req.extend_from_slice(b"\r\n");
            }
            Body::Streamed(_) => self
                .req
                .extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        self.req.extend_from_slice(b"\r\n");
        if let Body::Held = body {
            self.req.extend_from_slice(&self.body);
        }

        let mut tried = 0u64;
        let mut fresh = false;
        loop {
            tried |= 1 << idx;
            let err = match self.attempt(idx, info, fresh, body).await {
                Ok(keep_open) => return Ok(keep_open),
                Err(e) => e,
            };
            let pool = &*self.shared.pool;
            if err.kind().is_backend_failure() {
                let backend = &pool.backends[idx];
                debug!(backend = %backend.id, error = %err, "backend request failed");
                backend.set_last_error(err.to_string());
            }
            match err.kind().retry(info.idempotent, body.replayable()) {
                // Backends close idle connections; a request that found one closed was never
                // processed there, so it gets one fresh connection to the same backend.
                Retry::FreshConnection if !fresh => fresh = true,
                Retry::FreshConnection | Retry::NextBackend => match pool.next_after(idx, tried) {
                    Some(next) if pool.is_up(next) => {
                        idx = next;
                        fresh = false;
                    }
                    _ => return Err(err),
                },
                Retry::No => return Err(err),
            }
        }
    }

    /// One try at backend `idx`: send the prepared request (and stream the body), relay the
    /// response.
    async fn attempt(
        &mut self,
        idx: usize,
        info: &RequestInfo,
        fresh: bool,
        body: &mut Body,
    ) -> Result<bool, ProxyError> {
        let addr = self.shared.pool.backends[idx].addr;
        // A streamed body can't be sent again, so it never risks a connection the backend
        // may have closed while it was parked.
        let streamed = matches!(body, Body::Streamed(_));
        let reused = if fresh || streamed {
            None
        } else {
            self.parked.take(idx)
        };
        let was_reused = reused.is_some();
        let mut bc = match reused {
            Some(c) => c,
            None => upstream::connect(addr, self.shared.connect_timeout).await?,
        };
        let deadline = Instant::now() + self.shared.response_timeout;
        if let Err(e) = write_all(&bc.stream, &self.req, &mut self.timer, deadline).await {
            // Not all of it reached the backend, which can't act on part of a request.
            let kind = match e.kind() {
                std::io::ErrorKind::TimedOut => ErrorKind::ResponseTimeout,
                _ if was_reused => ErrorKind::StaleConnection,
                _ => ErrorKind::NotSent,
            };
            return Err(ProxyError::new(kind, format!("send to {addr}: {e}")));
        }
        let mut body_sent = true;
        if let Body::Streamed(stream) = body {
            body_sent = self.stream_body(&bc, addr, stream).await?;
        }

        let shared = &*self.shared;
        let backend = &shared.pool.backends[idx];
        let set_cookie = backend.set_cookie.as_ref().map(|v| v.as_bytes());
        let mut got_any = false;
        let mut interim = 0;
        self.out.clear();
        let (res, close) = loop {
            if !bc.buf.is_empty() {
                got_any = true;
                let mut headers = [httparse::EMPTY_HEADER; http1::MAX_HEADERS];
                let parsed =
                    http1::parse_response(&bc.buf, &mut headers, info.head_method, info.http10)
                        .map_err(|e| e.at(addr))?;
                match parsed {
                    Some(head) if head.status < 200 => {
                        // Interim responses (100 Continue, 103) are not passed on.
                        interim += 1;
                        if interim > MAX_INTERIM {
                            return Err(ProxyError::new(
                                ErrorKind::InvalidResponse,
                                format!("{addr}: endless 1xx responses"),
                            ));
                        }
                        let used = head.head_len;
                        bc.buf.advance(used);
                        continue;
                    }
                    Some(head) => {
                        // Read late, so a response that goes out after shutdown began says
                        // it closes; a body the backend stopped reading leaves the rest of
                        // it unread on the client connection.
                        let close = info.close
                            || !body_sent
                            || head.framing == Framing::UntilClose
                            || shared.stopping.load(Ordering::Relaxed);
                        Policy::write_response_head(
                            &head,
                            set_cookie,
                            close,
                            info.http10,
                            &mut self.out,
                        );
                        let meta = ResponseMeta {
                            head_len: head.head_len,
                            framing: head.framing,
                            reusable: head.reusable && body_sent,
                        };
                        break (meta, close);
                    }
                    None => {}
                }
            }
            let err = match read_some(&mut bc.stream, &mut bc.buf, &mut self.timer, deadline, None)
                .await
            {
                Ok(Read::Data) => continue,
                Ok(Read::TimedOut) => {
                    let timeout = shared.response_timeout;
                    return Err(ProxyError::new(
                        ErrorKind::ResponseTimeout,
                        format!("{addr}: no response within {timeout:?}"),
                    ));
                }
                Ok(Read::Eof | Read::Stopped) => "connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            let kind = if was_reused && !got_any {
                ErrorKind::StaleConnection
            } else {
                ErrorKind::NoResponse
            };
            return Err(ProxyError::new(
                kind,
                format!("{addr} sent no response: {err}"),
            ));
        };
        backend.requests.fetch_add(1, Ordering::Relaxed);
        bc.buf.advance(res.head_len);
        self.out.extend_from_slice(b"\r\n");

        let relayed = Relayer {
            client: &self.stream,
            bc: &mut bc,
            out: &mut self.out,
            timer: &mut self.timer,
            shared,
        }
        .relay(res.framing)
        .await;
        match relayed {
            Ok(()) => {
                if res.reusable && bc.buf.is_empty() {
                    if bc.buf.capacity() > KEEP_CAPACITY {
                        bc.buf = BytesMut::with_capacity(READ_CHUNK);
                    }
                    self.parked.put(idx, bc);
                }
                Ok(!close)
            }
            Err(e) if e.kind() == ErrorKind::InvalidResponse => Err(e.at(addr)),
            Err(e) => {
                if e.kind() == ErrorKind::BackendAborted {
                    debug!(backend = %backend.id, error = %e, "backend failed mid-response");
                }
                Ok(false)
            }
        }
    }

    /// Relays the rest of a request body from the client to the backend as it arrives.
    /// `Ok(false)`: the backend stopped taking it (it may have answered early).
    async fn stream_body(
        &mut self,
        bc: &BackendConn,
        addr: SocketAddr,
        stream: &mut Stream,
    ) -> Result<bool, ProxyError> {
        loop {
            let (used, done) = match &mut stream.framing {
                StreamFraming::Length(left) => {
                    let take = (self.buf.len() as u64).min(*left);
                    *left -= take;
                    (take as usize, *left == 0)
                }
                StreamFraming::Chunked(scanner) => {
                    let (used, done) =
                        scanner.decode(&self.buf, &mut self.body, self.shared.max_body)?;
                    (used, done)
                }
            };
            let piece = match stream.framing {
                StreamFraming::Length(_) => &self.buf[..used],
                StreamFraming::Chunked(_) => {
                    frame_chunk(&mut self.out, &self.body, done);
                    &self.out[..]
                }
            };
            if !piece.is_empty() {
                stream.started = true;
                let deadline = Instant::now() + self.shared.response_timeout;
                if let Err(e) = write_all(&bc.stream, piece, &mut self.timer, deadline).await {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        return Err(ProxyError::new(
                            ErrorKind::ResponseTimeout,
                            format!("{addr} stopped reading the request body"),
                        ));
                    }
                    return Ok(false);
                }
            }
            self.buf.advance(used);
            self.body.clear();
            self.out.clear();
            if done {
                self.body_pending = false;
                return Ok(true);
            }
            self.read_body_bytes(stream.deadline).await?;
        }
    }
}

/// Writes `data` as one chunk into `out` (cleared first), followed by the last chunk when
/// `last`; nothing for empty data unless it is the last.
fn frame_chunk(out: &mut Vec<u8>, data: &[u8], last: bool) {
    use std::io::Write as _;
    out.clear();
    if !data.is_empty() {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    if last {
        out.extend_from_slice(b"0\r\n\r\n");
    }
}

/// Relays one response body from a backend connection to the client, after the head that
/// waits in `out`. Fails with `InvalidResponse` when the backend broke the framing before
/// anything reached the client (a 502 can still be sent), `BackendAborted` after that, and
/// `ClientGone` when the client went away.
struct Relayer<'a> {
    client: &'a TcpStream,
    bc: &'a mut BackendConn,
    out: &'a mut Vec<u8>,
    timer: &'a mut Timer,
    shared: &'a Shared,
}

fn aborted(reason: impl Into<std::borrow::Cow<'static, str>>) -> ProxyError {
    ProxyError::new(ErrorKind::BackendAborted, reason)
}

impl Relayer<'_> {
    async fn relay(mut self, framing: Framing) -> Result<(), ProxyError> {
        match framing {
            Framing::None => self.flush_out().await,
            Framing::Length(n) => self.length(n).await,
            Framing::Chunked => self.chunked().await,
            Framing::UntilClose => self.until_close().await,
        }
    }

    /// Writes what `out` holds to the client.
    async fn flush_out(&mut self) -> Result<(), ProxyError> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        write_all(self.client, self.out, self.timer, deadline)
            .await
            .map_err(|e| ProxyError::new(ErrorKind::ClientGone, e.to_string()))?;
        self.out.clear();
        Ok(())
    }

    /// Moves the first `n` bytes of the backend buffer into `out`.
    fn take_into_out(&mut self, n: usize) {
        self.out.extend_from_slice(&self.bc.buf[..n]);
        self.bc.buf.advance(n);
    }

    /// Reads more from the backend; `Ok(false)` when it closed the connection.
    async fn read_backend(&mut self) -> Result<bool, ProxyError> {
        let deadline = Instant::now() + self.shared.response_timeout;
        match read_some(
            &mut self.bc.stream,
            &mut self.bc.buf,
            self.timer,
            deadline,
            None,
        )
        .await
        {
            Ok(Read::Data) => Ok(true),
            Ok(Read::Eof | Read::Stopped) => Ok(false),
            Ok(Read::TimedOut) => Err(aborted("body timed out")),
            Err(e) => Err(aborted(e.to_string())),
        }
    }

    async fn read_more_body(&mut self) -> Result<(), ProxyError> {
        match self.read_backend().await? {
            true => Ok(()),
            false => Err(aborted("closed mid-body")),
        }
    }

    /// A body of `n` bytes. Usually it all came with the head and goes out in one write.
    async fn length(&mut self, n: u64) -> Result<(), ProxyError> {
        let mut left = n;
        loop {
            let take = (self.bc.buf.len() as u64).min(left);
            self.take_into_out(take as usize);
            left -= take;
            self.flush_out().await?;
            if left == 0 {
                return Ok(());
            }
            self.read_more_body().await?;
        }
    }

    /// A chunked body, relayed unchanged; the chunks are tracked only to find its end.
    async fn chunked(&mut self) -> Result<(), ProxyError> {
        let mut scanner = ChunkedScanner::new(Side::Backend);
        let mut head_sent = false;
        loop {
            let (used, done) = match scanner.scan(&self.bc.buf) {
                Ok(r) => r,
                Err(e) if !head_sent => return Err(e),
                Err(e) => return Err(aborted(e.to_string())),
            };
            self.take_into_out(used);
            if done || self.out.len() >= MAX_GATHER || self.bc.buf.is_empty() {
                self.flush_out().await?;
                head_sent = true;
            }
            if done {
                return Ok(());
            }
            match self.read_more_body().await {
                Err(e) if !head_sent && e.kind() == ErrorKind::BackendAborted => {
                    return Err(ProxyError::new(ErrorKind::InvalidResponse, e.to_string()));
                }
                other => other?,
            }
        }
    }

    /// Everything until the backend closes (a response with no length).
    async fn until_close(&mut self) -> Result<(), ProxyError> {
        loop {
            let all = self.bc.buf.len();
            self.take_into_out(all);
            self.flush_out().await?;
            if !self.read_backend().await? {
                return Ok(());
            }
        }
    }
}
