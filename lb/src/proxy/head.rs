//! Reading a request head: wait until it is whole, parse it (`http1`), rewrite it (`policy`).

use std::sync::atomic::Ordering;

use bytes::Buf;
use tokio::time::Instant;

use super::conn::{Body, ClientConn, RequestInfo};
use crate::error::{ErrorKind, ProxyError};
use crate::http1::{self, Framing};
use crate::io::{Read, read_some};
use crate::policy::Entry;

impl ClientConn {
    /// Reads the next request head, and the body too when it is small enough to hold.
    /// `Ok(None)`: the connection is done (closed by the client, idle too long, or the load
    /// balancer is stopping).
    pub(super) async fn read_request(&mut self) -> Result<Option<(RequestInfo, Body)>, ProxyError> {
        let idle_deadline = Instant::now() + self.shared.client_idle_timeout;
        // Set once the first byte of a head is here; the head must be whole by then.
        let mut head_deadline = None;
        let (info, expect_continue) = loop {
            if let Some(parsed) = self.parse_head()? {
                break parsed;
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
            if !idle && head_deadline.is_none() {
                head_deadline = Some(Instant::now() + self.shared.head_timeout);
            }
            let stop = if idle { Some(&mut self.stop) } else { None };
            let read = read_some(
                &mut self.stream,
                &mut self.buf,
                &mut self.timer,
                head_deadline.unwrap_or(idle_deadline),
                stop,
            );
            match read.await {
                Ok(Read::Data | Read::Stopped) => {}
                Ok(Read::TimedOut) if !idle => {
                    return Err(ProxyError::new(
                        ErrorKind::RequestTimeout,
                        "request head not received within request_head_timeout",
                    ));
                }
                Ok(Read::Eof | Read::TimedOut) | Err(_) => return Ok(None),
            }
        };
        let body = if info.redirect {
            Body::Held
        } else {
            self.read_body(&info, expect_continue).await?
        };
        Ok(Some((info, body)))
    }

    /// Once `buf` holds a whole head: writes the backend's version of it into `req` and
    /// consumes it from `buf`. The flag: the client waits for `100 Continue` before its body.
    fn parse_head(&mut self) -> Result<Option<(RequestInfo, bool)>, ProxyError> {
        // Parse only once the end of a head may be there, so a client dripping a head a
        // byte at a time doesn't make every read re-parse all of it.
        let end = http1::find_head_end(&self.buf, self.head_scanned);
        self.head_scanned = self.buf.len().saturating_sub(3);
        if !end {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; http1::MAX_HEADERS];
        let Some(head) = http1::parse_request(&self.buf, &mut headers)? else {
            return Ok(None);
        };
        let redirect = self.entry == Entry::Http && self.shared.redirect_to_https;
        let mut close = head.close();
        let sticky_token = if redirect {
            let has_body = !matches!(head.framing, Framing::None | Framing::Length(0));
            // The body is not read: the connection closes after the answer.
            self.body_pending = has_body;
            close |= has_body || self.shared.stopping.load(Ordering::Relaxed);
            self.shared
                .policy
                .write_https_redirect(&head, close, &mut self.out);
            None
        } else {
            self.shared
                .policy
                .write_request_head(&head, self.entry, &self.client_ip, &mut self.req)
        };
        let info = RequestInfo {
            framing: head.framing,
            had_length: head.had_length,
            idempotent: head.idempotent(),
            head_method: head.method == "HEAD",
            http10: head.http10,
            close,
            host_missing: !head.has_host,
            sticky_token,
            status: !redirect
                && matches!(head.method, "GET" | "HEAD")
                && self.shared.status_path.as_deref() == Some(head.target),
            redirect,
        };
        // HTTP/1.0 clients don't know 100 Continue (RFC 9110 section 15.2); they send anyway.
        let expect_continue = head.expect_continue && !head.http10;
        let head_len = head.head_len;
        self.buf.advance(head_len);
        self.head_scanned = 0;
        Ok(Some((info, expect_continue)))
    }
}
