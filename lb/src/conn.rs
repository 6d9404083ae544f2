//! One client connection: read a request, forward it to a backend, relay the response, repeat.
//!
//! Each connection is one task running this loop over plain byte buffers, so a proxied
//! request costs two reads and two writes, one parse of each head and no allocation in the
//! common case. Timeouts share one timer per connection that is only moved when a deadline
//! comes closer, so keep-alive traffic doesn't touch the timer wheel on every request.

use std::future::{Future, poll_fn};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use crate::http1::{self, ChunkedScanner, Framing, RequestInfo};
use crate::proxy::{LbError, Shared};
use crate::upstream::{self, BackendConn, Parked};

/// Resolves when the load balancer starts shutting down.
pub(crate) type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Spare room kept in a read buffer before each read.
const MIN_READ: usize = 4 * 1024;
/// How much a read buffer grows by when it runs out of room.
const READ_CHUNK: usize = 16 * 1024;
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

/// Serves one client connection until it closes, times out or the load balancer stops.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: IpAddr,
    shared: Arc<Shared>,
    parked: Arc<Parked>,
    stop: StopSignal,
) {
    let mut conn = ClientConn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(1024),
        req: Vec::with_capacity(1024),
        body: Vec::new(),
        client_ip: peer.to_string().into_bytes(),
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

/// How one try at one backend went.
enum Attempt {
    /// The response was relayed; `true` if the client connection stays open.
    Done(bool),
    /// No response head within `response_timeout`.
    TimedOut,
    /// A kept-alive connection was closed by the backend before any response byte.
    Stale(String),
    /// The request never (fully) left the load balancer, so any backend may take it.
    NotSent(String),
    /// The request may have reached the backend.
    Sent(String),
    /// The backend answered something that is not a valid response.
    Invalid(String),
}

impl ClientConn {
    async fn run(&mut self) {
        loop {
            let info = match self.read_request().await {
                Ok(Some(info)) => info,
                Ok(None) => return,
                Err(e) => {
                    self.reply(e, true, false).await;
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
                    if !self.reply(e, close, info.head_method).await || close {
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

    /// Sends the load balancer's own error response; false if the client is gone.
    async fn reply(&mut self, e: LbError, close: bool, head_method: bool) -> bool {
        e.write(&mut self.out, close, head_method);
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        let sent = write_all(&self.stream, &self.out, &mut self.timer, deadline)
            .await
            .is_ok();
        if sent && close && (e.closes() || !self.buf.is_empty()) {
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
    async fn read_request(&mut self) -> Result<Option<RequestInfo>, LbError> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        let info = loop {
            // Parse only once the end of a head may be there, so a client dripping a head a
            // byte at a time doesn't make every read re-parse all of it.
            let end = http1::find_head_end(&self.buf, self.head_scanned);
            self.head_scanned = self.buf.len().saturating_sub(3);
            if end
                && let Some(info) =
                    http1::parse_request(&self.buf, &mut self.req, &self.shared, &self.client_ip)?
            {
                break info;
            }
            if self.buf.len() > http1::MAX_HEAD_BYTES {
                return Err(LbError::HeaderTooLarge);
            }
            let idle = self.buf.is_empty();
            if idle && (self.stop.is_none() || self.shared.stopping.load(Ordering::Relaxed)) {
                return Ok(None);
            }
            let stop = if idle { Some(&mut self.stop) } else { None };
            match read_some(
                &mut self.stream,
                &mut self.buf,
                &mut self.timer,
                deadline,
                stop,
            )
            .await
            {
                Ok(Read::Data | Read::Stopped) => {}
                Ok(Read::Eof | Read::TimedOut) | Err(_) => return Ok(None),
            }
        };
        self.buf.advance(info.head_len);
        self.head_scanned = 0;
        self.read_body(&info).await?;
        Ok(Some(info))
    }

    /// Reads the whole request body (bounded), so a refused connect can send it elsewhere.
    async fn read_body(&mut self, info: &RequestInfo) -> Result<(), LbError> {
        self.body.clear();
        let max = self.shared.max_body;
        // HTTP/1.0 clients don't know 100 Continue (RFC 9110 section 15.2); they send anyway.
        let expect_continue = info.expect_continue && !info.http10;
        match info.framing {
            Framing::None | Framing::UntilClose => Ok(()),
            Framing::Length(n) => {
                if n > max as u64 {
                    return Err(LbError::PayloadTooLarge);
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
                let mut scanner = ChunkedScanner::default();
                loop {
                    let (used, done) =
                        http1::decode_chunked(&self.buf, &mut self.body, &mut scanner, max)?;
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
    async fn read_body_bytes(&mut self) -> Result<(), LbError> {
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
            Ok(Read::TimedOut) => Err(LbError::RequestTimeout),
            // Cut short; the connection can't be used for another request.
            _ => Err(LbError::BadRequest),
        }
    }

    async fn send_continue(&mut self) -> Result<(), LbError> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        write_all(
            &self.stream,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            &mut self.timer,
            deadline,
        )
        .await
        .map_err(|_| LbError::BadRequest)
    }

    /// Sends the request to a backend (moving on to the next one where that is safe) and
    /// relays the response. `Ok(keep_open)` once a response went out; `Err` when the load
    /// balancer must answer itself.
    async fn forward(&mut self, info: &RequestInfo) -> Result<bool, LbError> {
        let pool = &*self.shared.pool;
        let pinned = info
            .sticky_token
            .as_deref()
            .and_then(|token| pool.find_token(token))
            .filter(|&i| pool.is_up(i));
        let mut idx = match pinned {
            Some(i) => i,
            None => pool.pick(0).ok_or(LbError::NoHealthyBackend)?,
        };
        if info.host_missing {
            self.req.extend_from_slice(b"host: ");
            self.req
                .extend_from_slice(pool.backends[idx].host_value.as_bytes());
            self.req.extend_from_slice(b"\r\n");
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
            let (err, retry) = match self.attempt(idx, info, fresh).await {
                Attempt::Done(keep_open) => return Ok(keep_open),
                Attempt::TimedOut => {
                    let backend = &self.shared.pool.backends[idx];
                    let timeout = self.shared.response_timeout;
                    backend.set_last_error(format!("no response within {timeout:?}"));
                    debug!(backend = %backend.id, "backend response timeout");
                    return Err(LbError::GatewayTimeout);
                }
                // Backends close idle connections; a request that found one closed was never
                // processed there, so an idempotent one gets one fresh connection to the same
                // backend before moving on.
                Attempt::Stale(_) if info.idempotent && !fresh => {
                    fresh = true;
                    continue;
                }
                Attempt::NotSent(e) => (e, true),
                Attempt::Stale(e) | Attempt::Sent(e) => (e, info.idempotent),
                Attempt::Invalid(e) => (e, false),
            };
            let pool = &*self.shared.pool;
            let backend = &pool.backends[idx];
            debug!(backend = %backend.id, error = %err, "backend request failed");
            backend.set_last_error(err);
            match pool.next_after(idx, tried) {
                Some(next) if retry && pool.is_up(next) => {
                    idx = next;
                    fresh = false;
                }
                _ => return Err(LbError::BadGateway),
            }
        }
    }

    /// One try at backend `idx`: send the prepared request, relay the response.
    async fn attempt(&mut self, idx: usize, info: &RequestInfo, fresh: bool) -> Attempt {
        let addr = self.shared.pool.backends[idx].addr;
        let reused = if fresh { None } else { self.parked.take(idx) };
        let was_reused = reused.is_some();
        let mut bc = match reused {
            Some(c) => c,
            None => match upstream::connect(addr, self.shared.connect_timeout).await {
                Ok(c) => c,
                Err(e) => return Attempt::NotSent(e),
            },
        };
        let deadline = Instant::now() + self.shared.response_timeout;
        if let Err(e) = write_all(&bc.stream, &self.req, &mut self.timer, deadline).await {
            // Not all of it reached the backend, which can't act on part of a request.
            let err = format!("send to {addr}: {e}");
            return match e.kind() {
                io::ErrorKind::TimedOut => Attempt::TimedOut,
                _ if was_reused => Attempt::Stale(err),
                _ => Attempt::NotSent(err),
            };
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
                // Read late, so a response that goes out after shutdown began says it closes.
                let mut close = info.close || shared.stopping.load(Ordering::Relaxed);
                match http1::parse_response(&bc.buf, &mut self.out, info, set_cookie, &mut close) {
                    Ok(Some(r)) if r.status < 200 => {
                        // Interim responses (100 Continue, 103) are not passed on.
                        interim += 1;
                        if interim > MAX_INTERIM {
                            return Attempt::Invalid(format!("{addr}: endless 1xx responses"));
                        }
                        bc.buf.advance(r.head_len);
                        continue;
                    }
                    Ok(Some(r)) => break (r, close),
                    Ok(None) => {}
                    Err(e) => return Attempt::Invalid(format!("{addr}: {e}")),
                }
            }
            let err = match read_some(&mut bc.stream, &mut bc.buf, &mut self.timer, deadline, None)
                .await
            {
                Ok(Read::Data) => continue,
                Ok(Read::TimedOut) => return Attempt::TimedOut,
                Ok(Read::Eof | Read::Stopped) => "connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            let err = format!("{addr} sent no response: {err}");
            return if was_reused && !got_any {
                Attempt::Stale(err)
            } else {
                Attempt::Sent(err)
            };
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
                Attempt::Done(!close)
            }
            Err(Relay::InvalidBeforeHead(e)) => Attempt::Invalid(format!("{addr}: {e}")),
            Err(Relay::BackendFailed(e)) => {
                debug!(backend = %backend.id, error = %e, "backend failed mid-response");
                Attempt::Done(false)
            }
            Err(Relay::ClientGone) => Attempt::Done(false),
        }
    }
}

/// Why relaying a response body stopped early.
enum Relay {
    /// The backend failed before anything reached the client: answer 502 instead.
    InvalidBeforeHead(String),
    /// The backend failed after the head went out: all the client can get is a closed
    /// connection.
    BackendFailed(String),
    ClientGone,
}

/// Relays one response body from a backend connection to the client, after the head that
/// waits in `out`.
struct Relayer<'a> {
    client: &'a TcpStream,
    bc: &'a mut BackendConn,
    out: &'a mut Vec<u8>,
    timer: &'a mut Timer,
    shared: &'a Shared,
}

impl Relayer<'_> {
    async fn relay(mut self, framing: Framing) -> Result<(), Relay> {
        match framing {
            Framing::None => self.flush_out().await,
            Framing::Length(n) => self.length(n).await,
            Framing::Chunked => self.chunked().await,
            Framing::UntilClose => self.until_close().await,
        }
    }

    /// Writes what `out` holds to the client.
    async fn flush_out(&mut self) -> Result<(), Relay> {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        write_all(self.client, self.out, self.timer, deadline)
            .await
            .map_err(|_| Relay::ClientGone)?;
        self.out.clear();
        Ok(())
    }

    /// Moves the first `n` bytes of the backend buffer into `out`.
    fn take_into_out(&mut self, n: usize) {
        self.out.extend_from_slice(&self.bc.buf[..n]);
        self.bc.buf.advance(n);
    }

    /// Reads more from the backend; `Ok(false)` when it closed the connection.
    async fn read_backend(&mut self) -> Result<bool, Relay> {
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
            Ok(Read::TimedOut) => Err(Relay::BackendFailed("body timed out".into())),
            Err(e) => Err(Relay::BackendFailed(e.to_string())),
        }
    }

    async fn read_more_body(&mut self) -> Result<(), Relay> {
        match self.read_backend().await? {
            true => Ok(()),
            false => Err(Relay::BackendFailed("closed mid-body".into())),
        }
    }

    /// A body of `n` bytes. Usually it all came with the head and goes out in one write.
    async fn length(&mut self, n: u64) -> Result<(), Relay> {
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
    async fn chunked(&mut self) -> Result<(), Relay> {
        let mut scanner = ChunkedScanner::default();
        let mut head_sent = false;
        loop {
            let (used, done) = match scanner.scan(&self.bc.buf) {
                Ok(r) => r,
                Err(e) if !head_sent => return Err(Relay::InvalidBeforeHead(e.into())),
                Err(e) => return Err(Relay::BackendFailed(e.into())),
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
                Err(Relay::BackendFailed(e)) if !head_sent => {
                    return Err(Relay::InvalidBeforeHead(e));
                }
                other => other?,
            }
        }
    }

    /// Everything until the backend closes (a response with no length).
    async fn until_close(&mut self) -> Result<(), Relay> {
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

/// What one read brought.
enum Read {
    Data,
    Eof,
    TimedOut,
    Stopped,
}

/// Reads what is available into `buf`, waiting until `deadline` (and, with `stop`, until
/// shutdown starts; the signal is consumed then).
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timer: &mut Timer,
    deadline: Instant,
    mut stop: Option<&mut Option<StopSignal>>,
) -> io::Result<Read> {
    poll_fn(|cx| {
        if let Poll::Ready(r) = poll_read(stream, buf, cx) {
            return Poll::Ready(r.map(|n| if n == 0 { Read::Eof } else { Read::Data }));
        }
        if let Some(slot) = stop.as_deref_mut()
            && let Some(signal) = slot
            && signal.as_mut().poll(cx).is_ready()
        {
            *slot = None;
            return Poll::Ready(Ok(Read::Stopped));
        }
        if timer.poll_expired(cx, deadline) {
            return Poll::Ready(Ok(Read::TimedOut));
        }
        Poll::Pending
    })
    .await
}

/// One read into the spare room of `buf`. tokio's `poll_read` skips the syscall when it
/// knows the socket has nothing, and learns that from short reads too, so waiting for the
/// next request or response costs no `EAGAIN` round trip.
fn poll_read(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

/// Writes all of `data`, failing with `TimedOut` at `deadline`.
async fn write_all(
    stream: &TcpStream,
    data: &[u8],
    timer: &mut Timer,
    deadline: Instant,
) -> io::Result<()> {
    let mut written = 0;
    poll_fn(|cx| {
        while written < data.len() {
            match stream.try_write(&data[written..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            if timer.poll_expired(cx, deadline) {
                                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                            }
                            return Poll::Pending;
                        }
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// One timer per connection for every deadline it has. The sleep is only moved earlier
/// when a deadline comes closer; when it fires before the current deadline it is moved to
/// it. Keep-alive traffic, whose deadlines only ever move later, touches the timer wheel
/// once per timeout period instead of twice per request.
struct Timer {
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(24 * 3600))),
        }
    }

    /// Whether `deadline` has passed; otherwise makes sure the task wakes by then.
    fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return true;
            }
            self.sleep.as_mut().reset(deadline);
        }
        false
    }
}
