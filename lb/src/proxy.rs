//! The per-connection relay: read a request, forward it to a backend, relay the response,
//! repeat.
//!
//! Each client connection is one task running this loop over plain byte buffers, so a
//! proxied request costs two reads and two writes, one parse of each head and no allocation
//! in the common case. Request bodies are held whole, so a failed first try can go to
//! another backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    max_body: u64,
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
            max_body: config.max_request_body_bytes as u64,
            stopping: AtomicBool::new(false),
        }
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
    /// The request as the backend gets it; kept whole so it can be sent again.
    req: Vec<u8>,
    /// The request body, de-chunked.
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

/// How a response head was framed, kept once its borrowed parse is gone.
struct ResponseMeta {
    head_len: usize,
    framing: Framing,
    reusable: bool,
}

impl ClientConn {
    async fn run(&mut self) {
        loop {
            let info = match self.read_request().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    self.reply(&e, true, false).await;
                    return;
                }
            };
            let forwarded = self.forward(&info).await;
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
                    let close = info.close || self.shared.stopping.load(Ordering::Relaxed);
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
        if sent && close && (e.kind().closes() || !self.buf.is_empty()) {
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

    /// Reads the next request head and body. `Ok(None)`: the connection is done (closed by
    /// the client, idle too long, or the load balancer is stopping).
    async fn read_request(&mut self) -> Result<Option<RequestInfo>, ProxyError> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
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
            let stop = if idle { Some(&mut self.stop) } else { None };
            let read = read_some(
                &mut self.stream,
                &mut self.buf,
                &mut self.timer,
                deadline,
                stop,
            );
            match read.await {
                Ok(Read::Data | Read::Stopped) => {}
                Ok(Read::Eof | Read::TimedOut) | Err(_) => return Ok(None),
            }
        };
        let (info, expect_continue) = info;
        self.buf.advance(head_len);
        self.head_scanned = 0;
        self.read_body(&info, expect_continue).await?;
        Ok(Some(info))
    }

    /// Reads the whole request body (bounded), so a refused connect can send it elsewhere.
    async fn read_body(
        &mut self,
        info: &RequestInfo,
        expect_continue: bool,
    ) -> Result<(), ProxyError> {
        self.body.clear();
        let max = self.shared.max_body;
        match info.framing {
            Framing::None | Framing::UntilClose => Ok(()),
            Framing::Length(n) => {
                if n > max {
                    return Err(ProxyError::new(
                        ErrorKind::PayloadTooLarge,
                        format!("Content-Length {n} over the limit"),
                    ));
                }
                let n = n as usize;
                if expect_continue && self.buf.len() < n {
                    self.send_continue().await?;
                }
                while self.buf.len() < n {
                    self.read_body_bytes().await?;
                }
                self.body.extend_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                Ok(())
            }
            Framing::Chunked => {
                if expect_continue && self.buf.is_empty() {
                    self.send_continue().await?;
                }
                let mut scanner = ChunkedScanner::new(Side::Client);
                loop {
                    let (used, done) = scanner.decode(&self.buf, &mut self.body, max)?;
                    self.buf.advance(used);
                    if done {
                        return Ok(());
                    }
                    self.read_body_bytes().await?;
                }
            }
        }
    }

    /// Reads more of a request body; a client may pause up to the idle timeout between reads.
    async fn read_body_bytes(&mut self) -> Result<(), ProxyError> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
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
                "request body did not arrive in time",
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
    async fn forward(&mut self, info: &RequestInfo) -> Result<bool, ProxyError> {
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
        if info.had_length || !self.body.is_empty() {
            self.req.extend_from_slice(b"content-length: ");
            http1::push_u64(&mut self.req, self.body.len() as u64);
            self.req.extend_from_slice(b"\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(&self.body);

        let mut tried = 0u64;
        let mut fresh = false;
        loop {
            tried |= 1 << idx;
            let err = match self.attempt(idx, info, fresh).await {
                Ok(keep_open) => return Ok(keep_open),
                Err(e) => e,
            };
            let pool = &*self.shared.pool;
            if err.kind().is_backend_failure() {
                let backend = &pool.backends[idx];
                debug!(backend = %backend.id, error = %err, "backend request failed");
                backend.set_last_error(err.to_string());
            }
            match err.kind().retry(info.idempotent, true) {
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

    /// One try at backend `idx`: send the prepared request, relay the response.
    async fn attempt(
        &mut self,
        idx: usize,
        info: &RequestInfo,
        fresh: bool,
    ) -> Result<bool, ProxyError> {
        let addr = self.shared.pool.backends[idx].addr;
        let reused = if fresh { None } else { self.parked.take(idx) };
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
                        // it closes.
                        let close = info.close
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
                            reusable: head.reusable,
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
