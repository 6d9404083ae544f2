//! Keep-alive connections to the backends: opened on demand, parked per I/O loop between requests.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::error::{ErrorKind, ProxyError};

/// How long an idle backend connection is kept. Shorter than common server keep-alive
/// timeouts (hyper and Node.js default to 5 s or more; ours never time out), so a parked
/// connection is rarely one the backend is closing at that moment.
const MAX_IDLE: Duration = Duration::from_secs(4);

/// Initial read buffer of a backend connection; responses larger than this stream through.
const BUF_SIZE: usize = 8 * 1024;

/// An open HTTP/1.1 connection to one backend, with the bytes read but not yet relayed.
pub(crate) struct BackendConn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    /// When it was last put back idle.
    parked_at: Instant,
}

impl BackendConn {
    /// Whether a connection that sat idle has been closed (or sent something unasked) by the
    /// backend. Cheap: tokio answers from its cached readiness without a syscall when nothing
    /// happened on the socket since it was last drained.
    fn is_stale(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Opens a connection to `addr`, giving up after `timeout`.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<BackendConn, ProxyError> {
    let failed = |reason: String| ProxyError::new(ErrorKind::ConnectFailed, reason);
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(failed(format!("connect to {addr}: {e}"))),
        Err(_) => {
            return Err(failed(format!(
                "connect to {addr}: timed out after {timeout:?}"
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(BackendConn {
        stream,
        buf: BytesMut::with_capacity(BUF_SIZE),
        parked_at: Instant::now(),
    })
}

/// Idle backend connections of one accept loop, per backend, newest last.
pub(crate) struct Parked {
    lists: Box<[Mutex<Vec<BackendConn>>]>,
    max_per_backend: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Parked {
    pub(crate) fn new(backends: usize, max_per_backend: usize) -> Self {
        Self {
            lists: (0..backends).map(|_| Mutex::new(Vec::new())).collect(),
            max_per_backend,
        }
    }

    /// The most recently parked live connection to backend `idx` (the least likely to be
    /// closed by the backend's idle timeout). Connections the backend closed, or that sent
    /// bytes nobody asked for, are dropped on the way: a late byte must never be read as
    /// the next request's response.
    pub(crate) fn take(&self, idx: usize) -> Option<BackendConn> {
        let mut list = lock(&self.lists[idx]);
        while let Some(conn) = list.pop() {
            if !conn.is_stale() && conn.parked_at.elapsed() < MAX_IDLE {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for later unless enough are parked already. The oldest connection goes
    /// when it has idled too long, so a burst's connections don't linger for ever.
    pub(crate) fn put(&self, idx: usize, mut conn: BackendConn) {
        let mut list = lock(&self.lists[idx]);
        if list
            .first()
            .is_some_and(|c| c.parked_at.elapsed() >= MAX_IDLE)
        {
            list.remove(0);
        }
        if list.len() < self.max_per_backend {
            conn.parked_at = Instant::now();
            list.push(conn);
        }
    }
}
