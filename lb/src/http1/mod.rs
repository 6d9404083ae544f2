//! HTTP/1.1 parsing and framing: message heads as they arrive, body framing, chunked bodies.
//!
//! Heads are parsed in place with `httparse`, with no header map or per-header allocation;
//! what the proxy adds to or strips from them is `policy`'s business, not this module's.

mod chunked;

pub(crate) use chunked::ChunkedScanner;

use crate::error::{ErrorKind, ProxyError, Side};

/// Most header lines accepted in one head; more get 431 (clients) or 502 (backends).
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest head accepted, request line or status line included.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// A parsed request head, borrowing the client's buffer.
pub(crate) struct RequestHead<'h, 'b> {
    /// Length of the head in the buffer.
    pub(crate) head_len: usize,
    pub(crate) method: &'b str,
    /// The target in origin form, whatever form the client used.
    pub(crate) target: &'b str,
    pub(crate) http10: bool,
    pub(crate) headers: &'h [httparse::Header<'b>],
    pub(crate) framing: Framing,
    /// Whether the client sent `Content-Length` (even 0).
    pub(crate) had_length: bool,
    pub(crate) connection: ConnectionHeader<'b>,
    pub(crate) expect_continue: bool,
    pub(crate) has_host: bool,
}

impl RequestHead<'_, '_> {
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to send again after a failure.
    pub(crate) fn idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }

    /// Whether the client asked for the connection to close after this exchange.
    pub(crate) fn close(&self) -> bool {
        self.connection.close || (self.http10 && !self.connection.keep_alive)
    }
}

/// A parsed response head, borrowing the backend connection's buffer.
pub(crate) struct ResponseHead<'h, 'b> {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    pub(crate) reason: Option<&'b str>,
    pub(crate) headers: &'h [httparse::Header<'b>],
    pub(crate) framing: Framing,
    /// Whether the response keeps its `Content-Length` lines as sent (HEAD, 304, 204).
    pub(crate) bodiless: bool,
    pub(crate) connection: ConnectionHeader<'b>,
    /// The backend connection can carry another request after this response.
    pub(crate) reusable: bool,
}

pub(crate) fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// What the `Connection` header lines of a message say.
#[derive(Default)]
pub(crate) struct ConnectionHeader<'a> {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    /// Other header names it lists, which are hop-by-hop too.
    named: Vec<&'a [u8]>,
}

impl<'a> ConnectionHeader<'a> {
    fn add(&mut self, value: &'a [u8]) {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.named.push(t);
            }
        }
    }

    /// Whether the header `name` is listed.
    pub(crate) fn names(&self, name: &str) -> bool {
        self.named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Folds the `Content-Length` lines of a message into one value; differing or malformed
/// values are an error (they are how request smuggling starts).
fn content_length(current: Option<u64>, value: &[u8], side: Side) -> Result<u64, ProxyError> {
    let bad = || ProxyError::malformed(side, "bad Content-Length");
    let mut len = current;
    for t in tokens(value) {
        if t.len() > 18 || !t.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let n = t.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        match len {
            Some(prev) if prev != n => return Err(bad()),
            _ => len = Some(n),
        }
    }
    // None: an empty Content-Length line.
    len.ok_or_else(bad)
}

/// Whether the last coding a `Transfer-Encoding` value lists is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

/// Whether `buf` may hold the end of a head (an empty line), looking only at what follows
/// `from`, the length already searched minus the 3 bytes an end could straddle.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> bool {
    let from = from.min(buf.len());
    buf[from..].windows(2).any(|w| w == b"\n\n" || w == b"\n\r")
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends one header line.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Splits a target into its authority (absolute form only) and its origin form.
fn split_target(target: &str) -> Option<(Option<&str>, &str)> {
    if target.starts_with('/') || target == "*" {
        return Some((None, target));
    }
    let lower = target.get(..8).map(str::to_ascii_lowercase)?;
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return None;
    };
    Some(match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (Some(&rest[..i]), &rest[i..]),
        // "http://host?q": the path is empty, which means "/"; the query can't be kept
        // without allocating, and clients don't send this.
        Some(i) => (Some(&rest[..i]), "/"),
        None => (Some(rest), "/"),
    })
}

/// Whether an absolute-form target's authority names the same host as `Host`; a default
/// port written on one side only still matches.
fn same_authority(target: &str, host: &[u8]) -> bool {
    let strip = |a: &[u8]| -> Vec<u8> {
        let a = a.strip_suffix(b":80").unwrap_or(a);
        a.to_ascii_lowercase()
    };
    strip(target.as_bytes()) == strip(host.trim_ascii())
}

/// Parses the request head at the start of `buf` into `headers`.
///
/// Returns `Ok(None)` when `buf` doesn't hold a whole head yet. Refuses what a backend could
/// read differently from the load balancer: ambiguous framing, a second `Host`, an
/// absolute-form target naming another host than `Host` (RFC 9112 section 3.2).
pub(crate) fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<RequestHead<'h, 'b>>, ProxyError> {
    let bad = |reason| ProxyError::new(ErrorKind::BadRequest, reason);
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::new(
                ErrorKind::HeaderTooLarge,
                "request head too large",
            ));
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    let method = req.method.unwrap_or("GET");
    let http10 = req.version == Some(0);
    if method == "CONNECT" {
        return Err(ProxyError::new(ErrorKind::MethodNotAllowed, "CONNECT"));
    }
    let (authority, target) =
        split_target(req.path.unwrap_or("/")).ok_or_else(|| bad("unsupported request target"))?;

    let headers: &'h [httparse::Header<'b>] = req.headers;
    let fields = RequestFields::scan(headers)?;
    match (fields.host, authority) {
        // RFC 9112 section 3.2: an HTTP/1.1 request without Host is refused.
        (None, _) if !http10 => return Err(bad("no Host header")),
        (Some(host), Some(authority)) if !same_authority(authority, host) => {
            return Err(bad("absolute-form target and Host name different hosts"));
        }
        _ => {}
    }
    let framing = fields.framing(http10)?;
    Ok(Some(RequestHead {
        head_len,
        method,
        target,
        http10,
        headers,
        framing,
        had_length: fields.length.is_some(),
        connection: fields.connection,
        expect_continue: fields.expect_continue,
        has_host: fields.host.is_some(),
    }))
}

/// What a request's header lines say about its framing, connection and host, gathered in
/// one pass over them.
struct RequestFields<'b> {
    connection: ConnectionHeader<'b>,
    length: Option<u64>,
    /// Transfer codings over all lines: a request body must be exactly "chunked", since the
    /// body is decoded here (a coding like gzip would be lost).
    te_codings: u32,
    te_chunked: bool,
    expect_continue: bool,
    host: Option<&'b [u8]>,
}

impl<'b> RequestFields<'b> {
    fn scan(headers: &[httparse::Header<'b>]) -> Result<Self, ProxyError> {
        let mut f = Self {
            connection: ConnectionHeader::default(),
            length: None,
            te_codings: 0,
            te_chunked: true,
            expect_continue: false,
            host: None,
        };
        for h in headers {
            let name = h.name;
            if eq(name, "connection") {
                f.connection.add(h.value);
            } else if eq(name, "content-length") {
                f.length = Some(content_length(f.length, h.value, Side::Client)?);
            } else if eq(name, "transfer-encoding") {
                let before = f.te_codings;
                for coding in tokens(h.value) {
                    f.te_codings += 1;
                    f.te_chunked &= coding.eq_ignore_ascii_case(b"chunked");
                }
                // An empty Transfer-Encoding line names a coding we can't decode either.
                if f.te_codings == before {
                    f.te_codings += 1;
                    f.te_chunked = false;
                }
            } else if eq(name, "expect") {
                f.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            } else if eq(name, "host") {
                if f.host.is_some() {
                    return Err(ProxyError::malformed(Side::Client, "two Host headers"));
                }
                f.host = Some(h.value);
            }
        }
        Ok(f)
    }

    fn framing(&self, http10: bool) -> Result<Framing, ProxyError> {
        let bad = |reason| Err(ProxyError::malformed(Side::Client, reason));
        let chunked = (self.te_codings > 0).then_some(self.te_codings == 1 && self.te_chunked);
        Ok(match (chunked, self.length) {
            // A body framed both ways, or framed by a coding we can't decode, is refused
            // rather than guessed at (RFC 9112 section 6.3).
            (Some(_), Some(_)) => return bad("both Transfer-Encoding and Content-Length"),
            (Some(false), None) => return bad("a transfer coding other than chunked"),
            (Some(true), None) if http10 => return bad("chunked HTTP/1.0 request"),
            (Some(true), None) => Framing::Chunked,
            (None, Some(0)) | (None, None) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
        })
    }
}

/// Parses the response head at the start of `buf` into `headers`, for a request that was a
/// HEAD (`head_method`) or HTTP/1.0 (`http10`).
///
/// Returns `Ok(None)` when `buf` doesn't hold a whole head yet; 1xx responses are returned
/// like any other, with [`Framing::None`], for the caller to skip.
pub(crate) fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    head_method: bool,
    http10_request: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, ProxyError> {
    let bad = |reason| ProxyError::malformed(Side::Backend, reason);
    let mut res = httparse::Response::new(headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(bad("response head too large"));
        }
        Err(_) => return Err(bad("malformed response head")),
    };
    let status = res.code.unwrap_or(0);
    let reason = res.reason;
    let http10 = res.version == Some(0);
    let headers: &'h [httparse::Header<'b>] = res.headers;
    if !(100..=599).contains(&status) {
        return Err(bad("status code out of range"));
    }
    if (100..200).contains(&status) {
        if status == 101 {
            // We never forward Upgrade, so a switch of protocols is a broken backend.
            return Err(bad("unexpected 101 Switching Protocols"));
        }
        return Ok(Some(ResponseHead {
            head_len,
            status,
            reason,
            headers,
            framing: Framing::None,
            bodiless: true,
            connection: ConnectionHeader::default(),
            reusable: true,
        }));
    }
    let mut connection = ConnectionHeader::default();
    let mut length = None;
    let mut chunked = None;
    for h in headers {
        if eq(h.name, "connection") {
            connection.add(h.value);
        } else if eq(h.name, "content-length") {
            length = Some(content_length(length, h.value, Side::Backend)?);
        } else if eq(h.name, "transfer-encoding") {
            chunked = Some(ends_chunked(h.value));
        }
    }
    let bodiless = head_method || status == 204 || status == 304;
    let framing = match (chunked, length) {
        _ if bodiless => Framing::None,
        (Some(_), Some(_)) => return Err(bad("both Transfer-Encoding and Content-Length")),
        (Some(true), None) if http10_request => {
            return Err(bad("chunked response to an HTTP/1.0 request"));
        }
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) | (None, None) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
    };
    let reusable =
        framing != Framing::UntilClose && !connection.close && (!http10 || connection.keep_alive);
    Ok(Some(ResponseHead {
        head_len,
        status,
        reason,
        headers,
        framing,
        bodiless,
        connection,
        reusable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lengths_must_agree_and_be_digits() {
        let cl = |cur, v| content_length(cur, v, Side::Client).ok();
        assert_eq!(cl(None, &b"42"[..]), Some(42));
        assert_eq!(cl(Some(42), b"42, 42"), Some(42));
        assert_eq!(cl(Some(42), b"43"), None);
        assert_eq!(cl(None, b"+4"), None);
        assert_eq!(cl(None, b""), None);
        assert_eq!(cl(None, b"99999999999999999999"), None);
    }

    #[test]
    fn targets_become_origin_form() {
        let origin = |t| split_target(t).map(|(_, o)| o);
        assert_eq!(origin("/a?b"), Some("/a?b"));
        assert_eq!(origin("*"), Some("*"));
        assert_eq!(origin("HTTP://h:1/x/y?z"), Some("/x/y?z"));
        assert_eq!(origin("http://h"), Some("/"));
        assert_eq!(origin("h:443"), None);
        assert_eq!(split_target("http://H:1/x").unwrap().0, Some("H:1"));
    }

    #[test]
    fn host_header_and_absolute_target_must_agree() {
        let parse = |req: &str| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parse_request(req.as_bytes(), &mut headers).map(|h| h.map(|h| h.target.to_owned()))
        };
        let ok = parse("GET http://Example.com:80/a HTTP/1.1\r\nhost: example.com\r\n\r\n");
        assert_eq!(ok.unwrap().as_deref(), Some("/a"));
        for bad in [
            "GET http://evil.example/a HTTP/1.1\r\nhost: example.com\r\n\r\n",
            "GET http://example.com:81/ HTTP/1.1\r\nhost: example.com\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nhost: a\r\n\r\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 1_234_567, u64::MAX] {
            out.clear();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
