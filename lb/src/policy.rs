//! What the proxy adds to and strips from the messages it relays.
//!
//! Hop-by-hop headers go out, `X-Forwarded-*` and `X-Request-Id` come in, and the sticky
//! cookie is set and removed. With `redirect_http_to_https`, the HTTP entry answers with a
//! redirect to the HTTPS entry instead.
//! Heads are rewritten straight from the parsed head into the output buffer, like HAProxy
//! does, with no header map on the way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::http1::{Framing, RequestHead, ResponseHead, eq, push_header, push_u64, tokens};

/// The entry point a client connection came in on (a forwarding rule's entry protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Http,
    Https,
}

/// The per-load-balancer settings of the rewriting; built once at bind.
pub(crate) struct Policy {
    /// Name of the sticky-session cookie, when stickiness is on.
    pub(crate) sticky_cookie: Option<String>,
    /// The HTTP entry's port, as `X-Forwarded-Port` says it.
    http_port: String,
    /// The HTTPS entry, if there is one.
    https: Option<SocketAddr>,
    request_id_prefix: u32,
    request_id_seq: AtomicU64,
}

/// Headers that describe one connection only (RFC 9110 section 7.6.1), dropped both ways.
fn is_hop_by_hop(name: &str) -> bool {
    eq(name, "connection")
        || eq(name, "keep-alive")
        || eq(name, "te")
        || eq(name, "trailer")
        || eq(name, "transfer-encoding")
        || eq(name, "upgrade")
        || (name.len() > 6 && eq(&name[..6], "proxy-"))
}

/// Headers the load balancer itself is answerable for towards the backend: a client naming
/// them in `Connection` must not make them disappear.
fn is_proxy_owned(name: &str) -> bool {
    eq(name, "host")
        || eq(name, "x-forwarded-for")
        || eq(name, "x-forwarded-proto")
        || eq(name, "x-forwarded-port")
        || eq(name, "x-request-id")
}

impl Policy {
    pub(crate) fn new(
        sticky_cookie: Option<String>,
        http_port: u16,
        https: Option<SocketAddr>,
    ) -> Self {
        Self {
            sticky_cookie,
            http_port: http_port.to_string(),
            https,
            request_id_prefix: random_u32(),
            request_id_seq: AtomicU64::new(0),
        }
    }

    /// Writes the head a backend gets for `head`, which came in on `entry`, into `out`
    /// (cleared first), up to but not including `Host` (when the client sent none), the body
    /// framing and the blank line, which depend on the backend and the body. Returns the
    /// sticky cookie's value, if the request carried one.
    pub(crate) fn write_request_head(
        &self,
        head: &RequestHead<'_, '_>,
        entry: Entry,
        client_ip: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Vec<u8>> {
        let sticky = self.sticky_cookie.as_deref();
        out.clear();
        out.extend_from_slice(head.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.target.as_bytes());
        out.extend_from_slice(if head.http10 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        let mut xff_written = false;
        let mut has_request_id = false;
        let mut sticky_token = None;
        for h in head.headers {
            let name = h.name;
            if is_hop_by_hop(name)
                || eq(name, "content-length")
                || eq(name, "expect")
                || eq(name, "x-forwarded-proto")
                || eq(name, "x-forwarded-port")
                || (head.connection.names(name) && !is_proxy_owned(name))
            {
                continue;
            }
            if eq(name, "x-forwarded-for") {
                // All lines of it become one, with the client appended.
                if !xff_written {
                    xff_written = true;
                    out.extend_from_slice(b"x-forwarded-for: ");
                    for x in head
                        .headers
                        .iter()
                        .filter(|x| eq(x.name, "x-forwarded-for"))
                    {
                        // Normalised element by element, so empty ones don't reach the app.
                        for hop in tokens(x.value) {
                            out.extend_from_slice(hop);
                            out.extend_from_slice(b", ");
                        }
                    }
                    out.extend_from_slice(client_ip);
                    out.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if let Some(cookie) = sticky
                && eq(name, "cookie")
            {
                if let Some(token) = find_cookie(h.value, cookie) {
                    sticky_token = Some(token.to_vec());
                }
                write_cookie_without(out, h.value, cookie);
                continue;
            }
            has_request_id |= eq(name, "x-request-id");
            push_header(out, name.as_bytes(), h.value);
        }
        if !xff_written {
            push_header(out, b"x-forwarded-for", client_ip);
        }
        self.push_forwarded_entry(entry, out);
        if !has_request_id {
            out.extend_from_slice(b"x-request-id: ");
            self.push_request_id(out);
            out.extend_from_slice(b"\r\n");
        }
        if head.http10 && !head.connection.close {
            // Keep the backend connection open even for HTTP/1.0 clients.
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        sticky_token
    }

    /// Appends the head the client gets for `res` to `out`, up to but not including the
    /// blank line. `set_cookie` pins the client for sticky sessions; `close` says the client
    /// connection closes after this response; `http10_client` that the client spoke HTTP/1.0.
    pub(crate) fn write_response_head(
        res: &ResponseHead<'_, '_>,
        set_cookie: Option<&[u8]>,
        close: bool,
        http10_client: bool,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_u64(out, u64::from(res.status));
        out.push(b' ');
        let reason = res.reason.filter(|r| !r.is_empty()).or_else(|| {
            http::StatusCode::from_u16(res.status)
                .ok()
                .and_then(|s| s.canonical_reason())
        });
        out.extend_from_slice(reason.unwrap_or("Unknown").as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in res.headers {
            let name = h.name;
            let skip = if eq(name, "content-length") {
                // HEAD and 304 responses keep the Content-Length of the body they stand for;
                // a body with a length gets one normalised line below.
                !res.bodiless
            } else if eq(name, "transfer-encoding") {
                // Chunked bodies are relayed as they came, so their codings are passed on as
                // sent (a "gzip, chunked" body stays labelled gzip).
                false
            } else {
                is_hop_by_hop(name) || res.connection.names(name)
            };
            if !skip {
                push_header(out, name.as_bytes(), h.value);
            }
        }
        if let Framing::Length(n) = res.framing {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(cookie) = set_cookie {
            push_header(out, b"set-cookie", cookie);
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10_client {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }

    /// `X-Forwarded-Proto` and `-Port` of the entry a request came in on.
    fn push_forwarded_entry(&self, entry: Entry, out: &mut Vec<u8>) {
        match (entry, self.https) {
            (Entry::Https, Some(https)) => {
                out.extend_from_slice(b"x-forwarded-proto: https\r\nx-forwarded-port: ");
                push_u64(out, u64::from(https.port()));
                out.extend_from_slice(b"\r\n");
            }
            _ => {
                out.extend_from_slice(b"x-forwarded-proto: http\r\n");
                push_header(out, b"x-forwarded-port", self.http_port.as_bytes());
            }
        }
    }

    /// Writes the whole answer that sends `head` to the same URL on the HTTPS entry into
    /// `out` (cleared first): 301 for GET and HEAD, 308 for other methods so they are
    /// repeated with their body. The host is the request's own, without its port; a request
    /// without a usable `Host` is sent to the HTTPS entry's address.
    pub(crate) fn write_https_redirect(
        &self,
        head: &RequestHead<'_, '_>,
        close: bool,
        out: &mut Vec<u8>,
    ) {
        let https = self
            .https
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 443)));
        out.clear();
        out.extend_from_slice(if matches!(head.method, "GET" | "HEAD") {
            &b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://"[..]
        } else {
            &b"HTTP/1.1 308 Permanent Redirect\r\nlocation: https://"[..]
        });
        let host = head
            .headers
            .iter()
            .find(|h| eq(h.name, "host"))
            .and_then(|h| host_without_port(h.value));
        match host {
            Some(host) => out.extend_from_slice(host),
            None if https.ip().is_unspecified() => out.extend_from_slice(b"localhost"),
            None if https.is_ipv6() => {
                out.extend_from_slice(format!("[{}]", https.ip()).as_bytes());
            }
            None => out.extend_from_slice(https.ip().to_string().as_bytes()),
        }
        if https.port() != 443 {
            out.push(b':');
            push_u64(out, u64::from(https.port()));
        }
        // `OPTIONS *` has no path to keep.
        let target = if head.target.starts_with('/') {
            head.target
        } else {
            "/"
        };
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: 0\r\n");
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if head.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Appends a unique request id: a per-process random prefix and a sequence number, in hex.
    fn push_request_id(&self, out: &mut Vec<u8>) {
        let seq = self.request_id_seq.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 25];
        hex(&mut buf[..8], u64::from(self.request_id_prefix));
        buf[8] = b'-';
        hex(&mut buf[9..], seq);
        out.extend_from_slice(&buf);
    }
}

/// The host of a `Host` value without its port, if it is a plain name or IP literal (so
/// nothing a client sends can be written into the `Location` of a redirect but a host).
fn host_without_port(value: &[u8]) -> Option<&[u8]> {
    let host = match value.strip_prefix(b"[") {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b']')?;
            let literal = &rest[..end];
            if literal.is_empty()
                || !literal
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || b".:".contains(b))
            {
                return None;
            }
            &value[..end + 2]
        }
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            let name = &value[..end];
            if name.is_empty()
                || !name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b))
            {
                return None;
            }
            name
        }
    };
    Some(host)
}

/// Random enough to keep request ids from two processes apart; no extra dependency.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) as u32
}

fn hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The value of cookie `name` in a `Cookie` header value.
fn find_cookie<'a>(value: &'a [u8], name: &str) -> Option<&'a [u8]> {
    value.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let rest = pair.strip_prefix(name.as_bytes())?;
        rest.strip_prefix(b"=")
    })
}

/// Writes a `Cookie` line with cookie `name` left out (it is the load balancer's own), or
/// nothing if no other cookie is left.
fn write_cookie_without(out: &mut Vec<u8>, value: &[u8], name: &str) {
    let start = out.len();
    out.extend_from_slice(b"cookie: ");
    let mut any = false;
    for pair in value.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        let ours = pair
            .strip_prefix(name.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b'='));
        if pair.is_empty() || ours {
            continue;
        }
        if any {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
        any = true;
    }
    if any {
        out.extend_from_slice(b"\r\n");
    } else {
        out.truncate(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let mut buf = [0u8; 4];
        hex(&mut buf, 0xbeef);
        assert_eq!(&buf, b"beef");
        let p = Policy::new(None, 80, None);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        p.push_request_id(&mut a);
        p.push_request_id(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn redirect_hosts_are_names_or_ip_literals_without_their_port() {
        assert_eq!(
            host_without_port(b"example.com:8080"),
            Some(&b"example.com"[..])
        );
        assert_eq!(host_without_port(b"127.0.0.1"), Some(&b"127.0.0.1"[..]));
        assert_eq!(host_without_port(b"[::1]:8080"), Some(&b"[::1]"[..]));
        assert_eq!(host_without_port(b"a/b"), None);
        assert_eq!(host_without_port(b"evil.com\"@x"), None);
        assert_eq!(host_without_port(b":80"), None);
        assert_eq!(host_without_port(b"[]"), None);
    }

    #[test]
    fn sticky_cookie_is_found_and_removed_from_the_others() {
        assert_eq!(
            find_cookie(b"a=1; DO-LB=abc; b=2", "DO-LB"),
            Some(&b"abc"[..])
        );
        assert_eq!(find_cookie(b"DO-LBX=abc", "DO-LB"), None);
        let mut out = Vec::new();
        write_cookie_without(&mut out, b"a=1; DO-LB=abc; b=2", "DO-LB");
        assert_eq!(out, b"cookie: a=1; b=2\r\n");
        out.clear();
        write_cookie_without(&mut out, b"DO-LB=abc", "DO-LB");
        assert!(out.is_empty());
    }
}
