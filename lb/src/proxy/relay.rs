//! The response relay: moves one response body from a backend to the client.
//!
//! Only the framing is tracked, to find where the body ends; the bytes go through unchanged,
//! gathered into as few client writes as the reads allow.

use bytes::Buf;
use tokio::time::Instant;

use super::conn::Shared;
use crate::error::{ErrorKind, ProxyError, Side};
use crate::http1::{ChunkedScanner, Framing};
use crate::io::{ClientStream, Read, Timer, read_some};
use crate::upstream::BackendConn;

/// Largest response chunk gathered before it is written on to the client.
const MAX_GATHER: usize = 64 * 1024;

/// Relays one response body from a backend connection to the client, after the head that
/// waits in `out`. Fails with `InvalidResponse` when the backend broke the framing before
/// anything reached the client (a 502 can still be sent), `BackendAborted` after that, and
/// `ClientGone` when the client went away.
pub(super) struct Relayer<'a> {
    pub(super) client: &'a mut ClientStream,
    pub(super) bc: &'a mut BackendConn,
    pub(super) out: &'a mut Vec<u8>,
    pub(super) timer: &'a mut Timer,
    pub(super) shared: &'a Shared,
}

fn aborted(reason: impl Into<std::borrow::Cow<'static, str>>) -> ProxyError {
    ProxyError::new(ErrorKind::BackendAborted, reason)
}

impl Relayer<'_> {
    pub(super) async fn relay(mut self, framing: Framing) -> Result<(), ProxyError> {
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
        self.client
            .write_all(self.out, self.timer, deadline)
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
