//! Socket reads and writes with deadlines, on one timer per connection.
//!
//! A proxied request costs two reads and two writes; these helpers add no syscall of their
//! own, and every deadline of a connection shares one timer that is only moved when a
//! deadline comes closer, so keep-alive traffic doesn't touch the timer wheel per request.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

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
pub(crate) async fn read_some(
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
pub(crate) async fn write_all(
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
