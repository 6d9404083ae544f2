//! The request body: held whole when small so a failed try can be replayed, else streamed.
//!
//! A body of up to 64 KiB (`REPLAY_MAX`) is read whole before the backend is picked, so a
//! request whose first try found a refused or stale connection can go again, body and all.
//! What all connections hold that way is capped by one shared `Budget`; past it, or for a
//! larger body, the body streams through and the request can't be replayed once any of it
//! left.

use std::net::SocketAddr;

use bytes::Buf;
use tokio::time::Instant;

use super::conn::{Body, ClientConn, RequestInfo, Stream, StreamFraming};
use crate::error::{ErrorKind, ProxyError, Side};
use crate::http1::{self, ChunkedScanner, Framing};
use crate::io::{Read, read_some, write_all};
use crate::upstream::BackendConn;

/// Largest request body held whole so it can be sent again; larger ones stream through.
const REPLAY_MAX: usize = 64 * 1024;

impl Body {
    pub(super) fn replayable(&self) -> bool {
        match self {
            Body::Held => true,
            Body::Streamed(s) => !s.started,
        }
    }

    pub(super) fn is_streamed(&self) -> bool {
        matches!(self, Body::Streamed(_))
    }
}

impl ClientConn {
    /// Reads a body small enough to hold into `body` (bounded by the memory budget), or
    /// sets up streaming a larger one.
    pub(super) async fn read_body(
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
        self.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n", &mut self.timer, deadline)
            .await
            .map_err(|e| ProxyError::new(ErrorKind::ClientGone, e.to_string()))
    }

    /// Ends the backend's request head in `req` with the body's framing, followed by a held
    /// body, so every try at a backend sends the same `req` as it is.
    pub(super) fn finish_request(&mut self, info: &RequestInfo, body: &Body) {
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
    }

    /// Relays the rest of a streamed request body from the client to the backend as it
    /// arrives (a held one went with `req`). `Ok(false)`: the backend stopped taking it (it
    /// may have answered early).
    pub(super) async fn send_body(
        &mut self,
        bc: &BackendConn,
        addr: SocketAddr,
        body: &mut Body,
    ) -> Result<bool, ProxyError> {
        let Body::Streamed(stream) = body else {
            return Ok(true);
        };
        loop {
            let (used, done) = match &mut stream.framing {
                StreamFraming::Length(left) => {
                    let take = (self.buf.len() as u64).min(*left);
                    *left -= take;
                    (take as usize, *left == 0)
                }
                StreamFraming::Chunked(scanner) => {
                    scanner.decode(&self.buf, &mut self.body, self.shared.max_body)?
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
