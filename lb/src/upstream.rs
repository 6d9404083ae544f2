//! Keep-alive connections to the backends, driven inside the client connection's own task.
//!
//! hyper's usual client spawns a task per backend connection, so every proxied request
//! hops between tasks (and often threads) four times: request in, response head out, body
//! wanted, body out. Here each client connection owns at most one backend connection per
//! backend and polls them itself in a small local loop, so a request costs two external
//! wake-ups (client readable, backend readable) and no cross-thread hand-offs. Backend
//! connections outlive their client connection through a shared idle list.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Request type sent upstream; bodies are buffered so they can be replayed.
pub(crate) type UpRequest = Request<Full<Bytes>>;
type Sender = SendRequest<Full<Bytes>>;
type ConnFut = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// Why a request got no response.
pub(crate) enum SendError {
    /// The request never left the load balancer (connect failed, or the connection was
    /// dead before writing), so any backend may take it.
    NotSent(Box<UpRequest>, String),
    /// The request may have reached the backend.
    Sent(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An idle backend connection nobody is polling, parked between client connections.
struct Parked {
    sender: Sender,
    conn: ConnFut,
}

/// Shared by all client connections: connect settings and the parked connections.
pub(crate) struct Upstream {
    parked: Box<[Mutex<Vec<Parked>>]>,
    connect_timeout: Duration,
    max_parked: usize,
    builder: http1::Builder,
}

/// Dead connections tried per request before opening a fresh one, so a storm of them
/// can't keep one request looping.
const MAX_STALE: usize = 16;

impl Upstream {
    pub(crate) fn new(backends: usize, connect_timeout: Duration, max_parked: usize) -> Self {
        Self {
            parked: (0..backends).map(|_| Mutex::new(Vec::new())).collect(),
            connect_timeout,
            max_parked,
            builder: {
                let mut b = http1::Builder::new();
                // Requests here are small: one copied-together write() beats a writev() of parts.
                b.writev(false);
                b
            },
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<(Sender, ConnFut), String> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "connect to {addr}: timed out after {:?}",
                        self.connect_timeout
                    ));
                }
            };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        Ok((sender, Box::pin(conn)))
    }
}

/// One backend connection slot of a client connection.
#[derive(Default)]
struct Slot {
    /// Present while the connection is idle; taken while a request uses it.
    sender: Option<Sender>,
    conn: Option<ConnFut>,
}

/// The backend connections of one client connection, polled by that connection's task.
pub(crate) struct Local {
    upstream: Arc<Upstream>,
    slots: Mutex<Box<[Slot]>>,
    wake: Arc<LoopState>,
    server_waker: Waker,
    slot_wakers: Box<[Waker]>,
}

impl Local {
    pub(crate) fn new(upstream: Arc<Upstream>) -> Self {
        let n = upstream.parked.len();
        let wake = Arc::new(LoopState::default());
        wake.server.store(true, Ordering::Relaxed);
        let child = |bit| {
            Waker::from(Arc::new(ChildWaker {
                state: wake.clone(),
                bit,
            }))
        };
        Self {
            slots: Mutex::new((0..n).map(|_| Slot::default()).collect()),
            upstream,
            server_waker: child(None),
            slot_wakers: (0..n).map(|i| child(Some(1u64 << i))).collect(),
            wake,
        }
    }

    /// Makes the next [`Local::drive`] poll the client connection (e.g. after asking it to
    /// shut down).
    pub(crate) fn poke_server(&self) {
        self.wake.server.store(true, Ordering::Release);
    }

    /// Polls `server` and this connection's backend connections until nothing inside the
    /// task is left to do, each only when its own waker fired. Wake-ups that happen while
    /// polling (a response handed from a backend connection to the handler, say) are served
    /// by looping here rather than by rescheduling the task.
    pub(crate) fn drive<F: Future>(
        &self,
        mut server: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        let w = &*self.wake;
        w.register(cx.waker());
        for _ in 0..32 {
            w.state.store(POLLING, Ordering::SeqCst);
            if w.server.swap(false, Ordering::AcqRel) {
                let mut scx = Context::from_waker(&self.server_waker);
                if let Poll::Ready(out) = server.as_mut().poll(&mut scx) {
                    w.state.store(IDLE, Ordering::SeqCst);
                    return Poll::Ready(out);
                }
            }
            let bits = w.slots.swap(0, Ordering::AcqRel);
            if bits != 0 {
                self.poll_conns(bits);
            }
            if w.state.swap(IDLE, Ordering::AcqRel) & WOKEN == 0 {
                return Poll::Pending;
            }
        }
        // Still busy: yield to other tasks and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_conns(&self, mut bits: u64) {
        let mut slots = lock(&self.slots);
        while bits != 0 {
            let idx = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let slot = &mut slots[idx];
            if let Some(conn) = &mut slot.conn {
                let mut cx = Context::from_waker(&self.slot_wakers[idx]);
                if conn.as_mut().poll(&mut cx).is_ready() {
                    slot.conn = None;
                    slot.sender = None;
                }
            }
        }
    }

    /// Installs a backend connection in slot `idx` and has the loop poll it.
    fn install(&self, idx: usize, conn: ConnFut) {
        lock(&self.slots)[idx].conn = Some(conn);
        self.wake.slots.fetch_or(1 << idx, Ordering::AcqRel);
        self.wake.notify();
    }

    /// An idle connection to backend `idx`: this client's own, a parked one, or a new one.
    /// `fresh` tells whether a failure on it says anything about the backend itself.
    async fn checkout(
        &self,
        idx: usize,
        addr: SocketAddr,
        allow_reuse: bool,
    ) -> Result<(Sender, bool), String> {
        {
            let mut slots = lock(&self.slots);
            let slot = &mut slots[idx];
            if allow_reuse
                && slot.conn.is_some()
                && let Some(s) = slot.sender.take()
                && !s.is_closed()
            {
                return Ok((s, false));
            }
            slot.sender = None;
            slot.conn = None;
        }
        if allow_reuse {
            let parked = lock(&self.upstream.parked[idx]).pop();
            if let Some(p) = parked
                && !p.sender.is_closed()
            {
                self.install(idx, p.conn);
                // Let the loop poll the adopted connection once so a close that happened
                // while it was parked is seen before a request is written to it.
                yield_once().await;
                return Ok((p.sender, false));
            }
        }
        // Boxed: connecting is the cold path, and keeps the per-request future small.
        let (sender, conn) = Box::pin(self.upstream.connect(addr)).await?;
        self.install(idx, conn);
        Ok((sender, true))
    }

    fn release(&self, idx: usize, sender: Sender) {
        let mut slots = lock(&self.slots);
        let slot = &mut slots[idx];
        if slot.conn.is_some() && slot.sender.is_none() && !sender.is_closed() {
            slot.sender = Some(sender);
        }
    }

    /// Sends `req` to backend `idx`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        idx: usize,
        addr: SocketAddr,
        mut req: UpRequest,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut stale = 0;
        loop {
            let (mut sender, fresh) = match self.checkout(idx, addr, stale < MAX_STALE).await {
                Ok(x) => x,
                Err(e) => return Err(SendError::NotSent(Box::new(req), e)),
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    let msg = format!("connection to {addr}: {e}");
                    return Err(SendError::NotSent(Box::new(req), msg));
                }
                stale += 1;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let (parts, body) = res.into_parts();
                    let mut body = UpstreamBody {
                        inner: body,
                        sender: Some(sender),
                        owner: self.clone(),
                        idx,
                    };
                    if body.inner.is_end_stream() {
                        body.release();
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // hyper gave the request back: it was never written.
                    Some(r) if !fresh => {
                        req = r;
                        stale += 1;
                    }
                    Some(r) => {
                        let msg = format!("connection to {addr}: {}", e.error());
                        return Err(SendError::NotSent(Box::new(r), msg));
                    }
                    None => return Err(SendError::Sent(error_chain(&e.into_error()))),
                },
            }
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Idle connections outlive this client: park them for the next one.
        let slots = self.slots.get_mut().unwrap_or_else(|e| e.into_inner());
        for (idx, slot) in slots.iter_mut().enumerate() {
            if let (Some(sender), Some(conn)) = (slot.sender.take(), slot.conn.take())
                && !sender.is_closed()
            {
                let mut parked = lock(&self.upstream.parked[idx]);
                if parked.len() < self.upstream.max_parked {
                    parked.push(Parked { sender, conn });
                }
            }
        }
    }
}

/// Returns Pending once after waking itself, so the local loop runs once in between.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// Shared state of the local loop: which children want polling, and whether the loop is
/// running. A wake during polling only sets flags (the loop goes round again); a wake from
/// outside reschedules the task as usual.
#[derive(Default)]
struct LoopState {
    state: AtomicU8,
    server: AtomicBool,
    slots: AtomicU64,
    task: Mutex<Option<Waker>>,
}

impl LoopState {
    fn register(&self, w: &Waker) {
        let mut task = lock(&self.task);
        match &*task {
            Some(old) if old.will_wake(w) => {}
            _ => *task = Some(w.clone()),
        }
    }

    fn notify(&self) {
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & POLLING == 0
            && let Some(w) = &*lock(&self.task)
        {
            w.wake_by_ref();
        }
    }
}

/// Waker handed to one child future: the client connection (`bit` None) or a backend slot.
struct ChildWaker {
    state: Arc<LoopState>,
    bit: Option<u64>,
}

impl Wake for ChildWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self.bit {
            None => self.state.server.store(true, Ordering::Release),
            Some(b) => {
                self.state.slots.fetch_or(b, Ordering::AcqRel);
            }
        }
        self.state.notify();
    }
}

pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// A backend response body that hands its connection back once fully read.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    sender: Option<Sender>,
    owner: Arc<Local>,
    idx: usize,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(s) = self.sender.take() {
            self.owner.release(self.idx, s);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            // A broken body means a broken connection: let the sender drop with it.
            Poll::Ready(Some(Err(_))) => this.sender = None,
            _ => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Only a fully read body leaves the connection reusable; otherwise dropping the
        // sender lets hyper close it.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
