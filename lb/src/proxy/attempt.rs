//! One try at one backend: get a connection, send the request, read the response head.
//!
//! Each failure is given the `ErrorKind` that says how far the request got (never sent,
//! found a stale connection, sent without an answer), since that alone decides in `forward`
//! whether it may go again.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use tokio::time::Instant;
use tracing::debug;

use super::conn::{Body, ClientConn, KEEP_CAPACITY, RequestInfo};
use super::relay::Relayer;
use crate::error::{ErrorKind, ProxyError};
use crate::http1::{self, Framing};
use crate::io::{READ_CHUNK, Read, read_some, write_all};
use crate::policy::Policy;
use crate::upstream::{self, BackendConn, InFlight};

/// Interim (1xx) responses skipped before a backend counts as broken.
const MAX_INTERIM: usize = 8;

/// The backend of one try and how it is reached.
struct Try {
    idx: usize,
    addr: SocketAddr,
    /// The connection was parked: failing before any response means the backend had closed
    /// it idle, not that it refused the request.
    reused: bool,
    /// Set once connected: `req` must be sent and the response head read by then (the
    /// pieces of a streamed body have deadlines of their own).
    deadline: Instant,
}

/// How a response head was framed, kept once its borrowed parse is gone.
struct ResponseMeta {
    framing: Framing,
    reusable: bool,
    /// The client connection closes after this response.
    close: bool,
    /// A 5xx from the backend itself.
    server_error: bool,
}

impl ClientConn {
    /// One try at backend `idx`: send the prepared request (and stream the body), relay the
    /// response. `Ok(keep_open)` once a response went out.
    pub(super) async fn attempt(
        &mut self,
        idx: usize,
        info: &RequestInfo,
        fresh: bool,
        body: &mut Body,
    ) -> Result<bool, ProxyError> {
        let addr = self.shared.pool.backend(idx).addr;
        let _in_flight = InFlight::start(&self.shared.pool, idx);
        // A streamed body can't be sent again, so it never risks a connection the backend
        // may have closed while it was parked.
        let parked = if fresh || body.is_streamed() {
            None
        } else {
            self.parked.take(idx)
        };
        let reused = parked.is_some();
        // Awaited here rather than in helpers: every extra async layer on this path is paid
        // on each request (its state set up, dropped and polled through).
        let mut bc = match parked {
            Some(c) => c,
            None => upstream::connect(addr, self.shared.connect_timeout).await?,
        };
        let t = Try {
            idx,
            addr,
            reused,
            deadline: Instant::now() + self.shared.response_timeout,
        };
        if let Err(e) = write_all(&bc.stream, &self.req, &mut self.timer, t.deadline).await {
            return Err(not_sent(&t, e));
        }
        let body_sent = !body.is_streamed() || self.send_body(&bc, addr, body).await?;
        let res = self
            .read_response_head(&mut bc, &t, info, body_sent)
            .await?;
        // From the request going out (the deadline was set then) to the response head.
        let waited = self
            .shared
            .response_timeout
            .saturating_sub(t.deadline.saturating_duration_since(Instant::now()));
        let backend = self.shared.pool.backend(idx);
        backend.answered();
        backend.record_response(waited, res.server_error);
        self.relay_response(bc, &t, res).await
    }

    /// Reads until the final response head is parsed and its client version is in `out`.
    async fn read_response_head(
        &mut self,
        bc: &mut BackendConn,
        t: &Try,
        info: &RequestInfo,
        body_sent: bool,
    ) -> Result<ResponseMeta, ProxyError> {
        let mut got_any = false;
        let mut interim = 0;
        self.out.clear();
        loop {
            if !bc.buf.is_empty() {
                got_any = true;
                if let Some(res) = self.parse_response_head(bc, t, info, body_sent, &mut interim)? {
                    return Ok(res);
                }
            }
            let err = match read_some(
                &mut bc.stream,
                &mut bc.buf,
                &mut self.timer,
                t.deadline,
                None,
            )
            .await
            {
                Ok(Read::Data) => continue,
                Ok(Read::TimedOut) => {
                    let timeout = self.shared.response_timeout;
                    return Err(ProxyError::new(
                        ErrorKind::ResponseTimeout,
                        format!("{}: no response within {timeout:?}", t.addr),
                    ));
                }
                Ok(Read::Eof | Read::Stopped) => "connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            let kind = if t.reused && !got_any {
                ErrorKind::StaleConnection
            } else {
                ErrorKind::NoResponse
            };
            return Err(ProxyError::new(
                kind,
                format!("{} sent no response: {err}", t.addr),
            ));
        }
    }

    /// Parses what `bc.buf` holds, dropping whole interim (1xx) responses; on the final head,
    /// writes the client's version into `out` and consumes it. `None`: more is needed.
    fn parse_response_head(
        &mut self,
        bc: &mut BackendConn,
        t: &Try,
        info: &RequestInfo,
        body_sent: bool,
        interim: &mut usize,
    ) -> Result<Option<ResponseMeta>, ProxyError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; http1::MAX_HEADERS];
            let parsed =
                http1::parse_response(&bc.buf, &mut headers, info.head_method, info.http10)
                    .map_err(|e| e.at(t.addr))?;
            let Some(head) = parsed else {
                return Ok(None);
            };
            if head.status < 200 {
                // Interim responses (100 Continue, 103) are not passed on.
                *interim += 1;
                if *interim > MAX_INTERIM {
                    return Err(ProxyError::new(
                        ErrorKind::InvalidResponse,
                        format!("{}: endless 1xx responses", t.addr),
                    ));
                }
                let used = head.head_len;
                bc.buf.advance(used);
                if bc.buf.is_empty() {
                    return Ok(None);
                }
                continue;
            }
            let shared = &*self.shared;
            // Read late, so a response that goes out after shutdown began says it closes; a
            // body the backend stopped reading leaves the rest of it unread on the client
            // connection.
            let close = info.close
                || !body_sent
                || head.framing == Framing::UntilClose
                || shared.stopping.load(Ordering::Relaxed);
            let set_cookie = shared.pool.backend(t.idx).set_cookie.as_ref();
            let set_cookie = set_cookie.map(|v| v.as_bytes());
            Policy::write_response_head(&head, set_cookie, close, info.http10, &mut self.out);
            let res = ResponseMeta {
                framing: head.framing,
                reusable: head.reusable && body_sent,
                close,
                server_error: head.status >= 500,
            };
            let head_len = head.head_len;
            bc.buf.advance(head_len);
            self.out.extend_from_slice(b"\r\n");
            return Ok(Some(res));
        }
    }

    /// Relays the response body after the head waiting in `out`, then parks the backend
    /// connection if it can carry another request. Past the head, a backend failure can only
    /// close the client connection.
    async fn relay_response(
        &mut self,
        mut bc: BackendConn,
        t: &Try,
        res: ResponseMeta,
    ) -> Result<bool, ProxyError> {
        let shared = &*self.shared;
        let relayed = Relayer {
            client: &mut self.stream,
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
                    self.parked.put(t.idx, bc);
                }
                Ok(!res.close)
            }
            Err(e) if e.kind() == ErrorKind::InvalidResponse => Err(e.at(t.addr)),
            Err(e) => {
                if e.kind() == ErrorKind::BackendAborted {
                    let backend = &shared.pool.backend(t.idx);
                    debug!(backend = %backend.id, error = %e, "backend failed mid-response");
                }
                Ok(false)
            }
        }
    }
}

/// The error for a request that did not all reach the backend, which can't act on part of
/// one.
fn not_sent(t: &Try, e: std::io::Error) -> ProxyError {
    let kind = match e.kind() {
        std::io::ErrorKind::TimedOut => ErrorKind::ResponseTimeout,
        _ if t.reused => ErrorKind::StaleConnection,
        _ => ErrorKind::NotSent,
    };
    ProxyError::new(kind, format!("send to {}: {e}", t.addr))
}
