//! The per-connection relay: read a request, forward it, relay the response, repeat.
//!
//! Each client connection is one task running this loop over plain byte buffers, so a
//! proxied request costs two reads and two writes, one parse of each head and no allocation
//! in the common case. The loop goes through one phase per module: `head` reads the request
//! head, `body` holds a small body for replay or streams a larger one, `forward` picks the
//! backend and decides on retries, `attempt` is one try at one backend, and `relay` moves the
//! response body to the client. `ClientConn` owns the buffers every phase uses, so they are
//! allocated once per connection rather than per request or per phase.

mod attempt;
mod body;
mod conn;
mod forward;
mod head;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::error::ProxyError;
use crate::io::{ClientStream, READ_CHUNK, Read, StopSignal, Timer, read_some};
use crate::policy::Entry;
use crate::upstream::Parked;

pub(crate) use conn::Shared;
use conn::{ClientConn, KEEP_CAPACITY, RequestInfo};

/// After an error that leaves unread request bytes, how long the connection keeps reading
/// (and discarding) so closing it doesn't reset the error response away.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Serves one client connection, which came in on `entry`, until it closes, times out or
/// the load balancer stops. An HTTPS entry's connection completes its handshake first.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    entry: Entry,
    shared: Arc<Shared>,
    parked: Arc<Parked>,
    mut stop: StopSignal,
) {
    let stream = match (entry, &shared.tls) {
        // A handshake still going when shutdown starts is given up: there is no request yet.
        (Entry::Https, Some(tls)) => tokio::select! {
            accepted = tls.accept(stream, peer) => match accepted {
                Some(tls) => ClientStream::Tls(Box::new(tls)),
                None => return,
            },
            () = &mut stop => return,
        },
        _ => ClientStream::Plain(stream),
    };
    let mut conn = ClientConn {
        stream,
        entry,
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
            let forwarded = if info.status {
                Ok(self.answer_status(&info).await)
            } else if info.redirect {
                // `close` is what the answer in `out` says.
                Ok(self.send_own(info.close).await)
            } else {
                self.forward(&info, &mut body).await
            };
            self.shared
                .budget
                .release(std::mem::take(&mut self.reserved));
            self.shrink_buffers();
            match forwarded {
                Ok(true) => {}
                Ok(false) => {
                    // Pipelined requests we won't answer: read them away before closing, so
                    // the kernel doesn't reset the response we just sent.
                    if !self.buf.is_empty() || self.body_pending {
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

    /// Answers the status page; false when the connection is done.
    async fn answer_status(&mut self, info: &RequestInfo) -> bool {
        let close = info.close || self.shared.stopping.load(Ordering::Relaxed);
        let tls = self.shared.tls.as_ref().map(|t| &*t.handshakes);
        crate::status::response(
            &self.shared.pool,
            tls,
            &mut self.out,
            info.head_method,
            close,
        );
        self.send_own(close).await
    }

    /// Sends the load balancer's own answer waiting in `out`; false when the connection is
    /// done (`close`, or the client is gone).
    async fn send_own(&mut self, close: bool) -> bool {
        let deadline = Instant::now() + self.shared.client_idle_timeout;
        let sent = self
            .stream
            .write_all(&self.out, &mut self.timer, deadline)
            .await
            .is_ok();
        sent && !close
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
        let sent = self
            .stream
            .write_all(&self.out, &mut self.timer, deadline)
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
}
