//! Socket reads and writes with deadlines, on one timer per connection; the client stream.
//!
//! A proxied request costs two reads and two writes; these helpers add no syscall of their
//! own, and every deadline of a connection shares one timer that is only moved when a
//! deadline comes closer, so keep-alive traffic doesn't touch the timer wheel per request.
//! A client connection is plain TCP or TLS over it ([`ClientStream`]); backends are plain.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

/// Resolves when the load balancer starts shutting down.
pub(crate) type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Spare room kept in a read buffer before each read.
const MIN_READ: usize = 4 * 1024;
/// How much a read buffer grows by when it runs out of room.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// What one read brought.
pub(crate) enum Read {
    Data,
    Eof,
    TimedOut,
    Stopped,
}

/// Reads what is available into `buf`, waiting until `deadline` (and, with `stop`, until
/// shutdown starts; the signal is consumed then).
pub(crate) async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
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
fn poll_read<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

/// Writes all of `data`, failing with `TimedOut` at `deadline`.
pub(crate) async fn write_all(
    stream: &TcpStream,
    data: &[u8],
    timer: &mut Timer,
    deadline: Instant,
) -> io::Result<()> {
    let mut written = 0;
    poll_fn(|cx| {
        let write = poll_write_plain(stream, data, &mut written, cx);
        or_timed_out(write, timer, deadline, cx)
    })
    .await
}

/// Writes what is left of `data` after `written` bytes, with `try_write` first: when the
/// socket has room, as it usually does, no readiness is polled at all.
fn poll_write_plain(
    stream: &TcpStream,
    data: &[u8],
    written: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *written < data.len() {
        match stream.try_write(&data[*written..]) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            },
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// Encrypts what is left of `data` and flushes the records to the socket.
fn poll_write_tls(
    stream: &mut TlsStream<TcpStream>,
    data: &[u8],
    written: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *written < data.len() {
        let n = std::task::ready!(Pin::new(&mut *stream).poll_write(cx, &data[*written..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *written += n;
    }
    Pin::new(stream).poll_flush(cx)
}

/// A pending write fails with `TimedOut` once `deadline` has passed.
fn or_timed_out(
    write: Poll<io::Result<()>>,
    timer: &mut Timer,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    if write.is_pending() && timer.poll_expired(cx, deadline) {
        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
    }
    write
}

/// A client connection: plain TCP, or TLS terminated here.
pub(crate) enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// Writes all of `data` (encrypted on TLS), failing with `TimedOut` at `deadline`.
    pub(crate) async fn write_all(
        &mut self,
        data: &[u8],
        timer: &mut Timer,
        deadline: Instant,
    ) -> io::Result<()> {
        let mut written = 0;
        poll_fn(|cx| {
            let write = match self {
                ClientStream::Plain(s) => poll_write_plain(s, data, &mut written, cx),
                ClientStream::Tls(s) => poll_write_tls(s, data, &mut written, cx),
            };
            or_timed_out(write, timer, deadline, cx)
        })
        .await
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    /// On TLS, sends `close_notify` before the TCP half-close.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// One timer per connection for every deadline it has. The sleep is only moved earlier
/// when a deadline comes closer; when it fires before the current deadline it is moved to
/// it. Keep-alive traffic, whose deadlines only ever move later, touches the timer wheel
/// once per timeout period instead of twice per request.
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    pub(crate) fn new() -> Self {
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
