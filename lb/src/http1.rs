//! HTTP/1.x message heads: parsing what clients and backends send, and writing the heads the
//! load balancer forwards in their place (hop-by-hop headers out, forwarding headers in).
//!
//! The proxy works on bytes, like HAProxy: a head is parsed in place with `httparse` and the
//! rewritten head is written straight into an output buffer, with no header map or
//! per-header allocation on the way.

use crate::proxy::{LbError, Shared};

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

/// What the proxy needs to know about a client request once its head is parsed.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    /// Length of the head in the client buffer.
    pub(crate) head_len: usize,
    pub(crate) framing: Framing,
    /// Whether the client sent `Content-Length` (even 0), so the backend gets one too.
    pub(crate) had_length: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to send again after a failure.
    pub(crate) idempotent: bool,
    /// A HEAD request: the response has no body whatever its headers say.
    pub(crate) head_method: bool,
    pub(crate) http10: bool,
    /// The client asked for the connection to close after this exchange.
    pub(crate) close: bool,
    pub(crate) expect_continue: bool,
    pub(crate) host_missing: bool,
    /// The backend the sticky cookie names, if the request carried one.
    pub(crate) sticky_token: Option<Vec<u8>>,
}

/// What the proxy needs to know about a backend response once its head is parsed.
#[derive(Debug)]
pub(crate) struct ResponseInfo {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    /// The backend connection can carry another request after this response.
    pub(crate) reusable: bool,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
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

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// What the `Connection` header lines of a message say.
#[derive(Default)]
struct ConnectionHeader<'a> {
    close: bool,
    keep_alive: bool,
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

    fn names(&self, name: &str) -> bool {
        self.named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Folds the `Content-Length` lines of a message into one value; differing or malformed
/// values are an error (they are how request smuggling starts).
fn content_length(current: Option<u64>, value: &[u8]) -> Result<u64, ()> {
    let mut len = current;
    for t in tokens(value) {
        if t.len() > 18 || !t.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = t.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        match len {
            Some(prev) if prev != n => return Err(()),
            _ => len = Some(n),
        }
    }
    // None: an empty Content-Length line.
    len.ok_or(())
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

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The origin-form target a backend gets, whatever form the client used.
fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') || target == "*" {
        return Some(target);
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
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // "http://host?q": the path is empty, which means "/"; the query can't be kept
        // without allocating, and clients don't send this.
        Some(_) | None => "/",
    })
}

/// Parses the request head at the start of `buf` and writes the head to send to a backend
/// into `out`, up to but not including `Host` (when the client sent none), `Content-Length`
/// and the blank line, which depend on the backend and the body.
///
/// Returns `Ok(None)` when `buf` doesn't hold a whole head yet.
pub(crate) fn parse_request(
    buf: &[u8],
    out: &mut Vec<u8>,
    shared: &Shared,
    client_ip: &[u8],
) -> Result<Option<RequestInfo>, LbError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(LbError::HeaderTooLarge),
        Err(_) => return Err(LbError::BadRequest),
    };
    let method = req.method.unwrap_or("GET");
    let http10 = req.version == Some(0);
    if method == "CONNECT" {
        return Err(LbError::MethodNotAllowed);
    }
    let target = origin_form(req.path.unwrap_or("/")).ok_or(LbError::BadRequest)?;

    let sticky = shared.sticky_cookie.as_deref();
    let mut conn = ConnectionHeader::default();
    let mut length = None;
    // Transfer codings over all lines: a request body must be exactly "chunked", since the
    // body is decoded here and forwarded with a length (a coding like gzip would be lost).
    let mut te_codings = 0;
    let mut te_chunked = true;
    let mut expect_continue = false;
    let mut host_missing = true;
    let mut has_request_id = false;
    let mut has_xff = false;
    let mut sticky_token = None;
    for h in req.headers.iter() {
        let name = h.name;
        if eq(name, "connection") {
            conn.add(h.value);
        } else if eq(name, "content-length") {
            length = Some(content_length(length, h.value).map_err(|()| LbError::BadRequest)?);
        } else if eq(name, "transfer-encoding") {
            let before = te_codings;
            for coding in tokens(h.value) {
                te_codings += 1;
                te_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
            // An empty Transfer-Encoding line names a coding we can't decode either.
            if te_codings == before {
                te_codings += 1;
                te_chunked = false;
            }
        } else if eq(name, "expect") {
            expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        } else if eq(name, "host") {
            host_missing = false;
        } else if eq(name, "x-request-id") {
            has_request_id = true;
        } else if eq(name, "x-forwarded-for") {
            has_xff = true;
        } else if let Some(cookie) = sticky
            && eq(name, "cookie")
            && let Some(token) = find_cookie(h.value, cookie)
        {
            sticky_token = Some(token.to_vec());
        }
    }
    if host_missing && !http10 {
        // RFC 9112 section 3.2: an HTTP/1.1 request without Host is refused.
        return Err(LbError::BadRequest);
    }
    let chunked = (te_codings > 0).then_some(te_codings == 1 && te_chunked);
    let framing = match (chunked, length) {
        // A body framed both ways, or framed by a coding we can't decode, is refused
        // rather than guessed at (RFC 9112 section 6.3).
        (Some(_), Some(_)) | (Some(false), None) => return Err(LbError::BadRequest),
        (Some(true), None) if http10 => return Err(LbError::BadRequest),
        (Some(true), None) => Framing::Chunked,
        (None, Some(0)) | (None, None) => Framing::None,
        (None, Some(n)) => Framing::Length(n),
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let mut xff_written = false;
    for h in req.headers.iter() {
        let name = h.name;
        if is_hop_by_hop(name)
            || eq(name, "content-length")
            || eq(name, "expect")
            || eq(name, "x-forwarded-proto")
            || eq(name, "x-forwarded-port")
            || (conn.names(name) && !is_proxy_owned(name))
        {
            continue;
        }
        if eq(name, "x-forwarded-for") {
            // All lines of it become one, with the client appended.
            if !xff_written {
                xff_written = true;
                out.extend_from_slice(b"x-forwarded-for: ");
                for x in req.headers.iter().filter(|x| eq(x.name, "x-forwarded-for")) {
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
            write_cookie_without(out, h.value, cookie);
            continue;
        }
        push_header(out, name.as_bytes(), h.value);
    }
    if !has_xff {
        push_header(out, b"x-forwarded-for", client_ip);
    }
    out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    push_header(out, b"x-forwarded-port", shared.forwarded_port.as_bytes());
    if !has_request_id {
        out.extend_from_slice(b"x-request-id: ");
        shared.push_request_id(out);
        out.extend_from_slice(b"\r\n");
    }
    if http10 && !conn.close {
        // Keep the backend connection open even for HTTP/1.0 clients.
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }

    Ok(Some(RequestInfo {
        head_len,
        framing,
        had_length: length.is_some(),
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        head_method: method == "HEAD",
        http10,
        close: conn.close || (http10 && !conn.keep_alive),
        expect_continue,
        host_missing,
        sticky_token,
    }))
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

/// Parses the response head at the start of `buf` and writes the head for the client into
/// `out` (after what it holds), up to but not including the blank line.
///
/// `set_cookie` is added for sticky sessions; `close` says the client connection will close
/// after this response (and is updated when the response can only end by closing).
/// Returns `Ok(None)` when `buf` doesn't hold a whole head yet; 1xx responses are returned
/// like any other, with [`Framing::None`], for the caller to skip.
pub(crate) fn parse_response(
    buf: &[u8],
    out: &mut Vec<u8>,
    request: &RequestInfo,
    set_cookie: Option<&[u8]>,
    close: &mut bool,
) -> Result<Option<ResponseInfo>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err("response head too large"),
        Err(_) => return Err("malformed response head"),
    };
    let status = res.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err("status code out of range");
    }
    if (100..200).contains(&status) {
        if status == 101 {
            // We never forward Upgrade, so a switch of protocols is a broken backend.
            return Err("unexpected 101 Switching Protocols");
        }
        return Ok(Some(ResponseInfo {
            head_len,
            status,
            framing: Framing::None,
            reusable: true,
        }));
    }
    let http10 = res.version == Some(0);
    let mut conn = ConnectionHeader::default();
    let mut length = None;
    let mut chunked = None;
    for h in res.headers.iter() {
        if eq(h.name, "connection") {
            conn.add(h.value);
        } else if eq(h.name, "content-length") {
            length = Some(content_length(length, h.value).map_err(|()| "bad Content-Length")?);
        } else if eq(h.name, "transfer-encoding") {
            chunked = Some(ends_chunked(h.value));
        }
    }
    let bodiless = request.head_method || status == 204 || status == 304;
    let framing = match (chunked, length) {
        _ if bodiless => Framing::None,
        (Some(_), Some(_)) => return Err("both Transfer-Encoding and Content-Length"),
        (Some(true), None) if request.http10 => {
            return Err("chunked response to an HTTP/1.0 request");
        }
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) | (None, None) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
    };
    if framing == Framing::UntilClose {
        *close = true;
    }
    let reusable = framing != Framing::UntilClose && !conn.close && (!http10 || conn.keep_alive);

    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    let reason = res.reason.filter(|r| !r.is_empty()).or_else(|| {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
    });
    out.extend_from_slice(reason.unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        let name = h.name;
        let skip = if eq(name, "content-length") {
            // HEAD and 304 responses keep the Content-Length of the body they stand for;
            // a body with a length gets one normalised line below.
            !bodiless
        } else if eq(name, "transfer-encoding") {
            // Chunked bodies are relayed as they came, so their codings are passed on as
            // sent (a "gzip, chunked" body stays labelled gzip).
            false
        } else {
            is_hop_by_hop(name) || conn.names(name)
        };
        if !skip {
            push_header(out, name.as_bytes(), h.value);
        }
    }
    if let Framing::Length(n) = framing {
        out.extend_from_slice(b"content-length: ");
        push_u64(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(cookie) = set_cookie {
        push_header(out, b"set-cookie", cookie);
    }
    if *close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if request.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    Ok(Some(ResponseInfo {
        head_len,
        status,
        framing,
        reusable,
    }))
}

/// Finds where a chunked body ends, fed the bytes as they arrive; the bytes are relayed
/// unchanged, so only the chunk boundaries need tracking.
#[derive(Debug, Default)]
pub(crate) struct ChunkedScanner {
    state: ChunkState,
    trailer_bytes: usize,
}

/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

enum Step {
    /// `used` bytes consumed; `data` says they were chunk data (not framing).
    Consumed {
        used: usize,
        data: bool,
    },
    NeedMore,
    Done,
}

impl ChunkedScanner {
    /// One state transition over the bytes at hand.
    fn step(&mut self, rest: &[u8]) -> Result<Step, &'static str> {
        let consumed = |used| Ok(Step::Consumed { used, data: false });
        match self.state {
            ChunkState::Done => Ok(Step::Done),
            // httparse reads an empty size as 0, the last chunk; a size needs a digit.
            ChunkState::Size if rest.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                Err("malformed chunk size")
            }
            ChunkState::Size => match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                    consumed(used)
                }
                Ok(httparse::Status::Partial) if rest.len() < 1024 => Ok(Step::NeedMore),
                _ => Err("malformed chunk size"),
            },
            ChunkState::Data(_) if rest.is_empty() => Ok(Step::NeedMore),
            ChunkState::Data(left) => {
                let take = left.min(rest.len() as u64);
                self.state = if take == left {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left - take)
                };
                Ok(Step::Consumed {
                    used: take as usize,
                    data: true,
                })
            }
            ChunkState::DataEnd if rest.len() < 2 => Ok(Step::NeedMore),
            ChunkState::DataEnd if &rest[..2] == b"\r\n" => {
                self.state = ChunkState::Size;
                consumed(2)
            }
            ChunkState::DataEnd => Err("missing CRLF after chunk data"),
            ChunkState::Trailers => match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    // A line holding nothing (or just CR) ends the message.
                    if i == 0 || (i == 1 && rest[0] == b'\r') {
                        self.state = ChunkState::Done;
                    }
                    self.trailer_bytes += i + 1;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err("trailers too large");
                    }
                    consumed(i + 1)
                }
                None if rest.len() < 8192 => Ok(Step::NeedMore),
                None => Err("trailer line too long"),
            },
        }
    }

    /// Consumes what it can of `buf`, which is relayed unchanged. Returns how many bytes
    /// belong to the body and whether it ended there (`false`: need more bytes).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut pos = 0;
        loop {
            match self.step(&buf[pos..])? {
                Step::Consumed { used, .. } => pos += used,
                Step::NeedMore => return Ok((pos, false)),
                Step::Done => return Ok((pos, true)),
            }
        }
    }
}

/// Decodes a chunked request body from `buf` into `body`. Returns the bytes consumed and
/// whether the body is complete; the caller reads more and calls again otherwise.
pub(crate) fn decode_chunked(
    buf: &[u8],
    body: &mut Vec<u8>,
    state: &mut ChunkedScanner,
    max: usize,
) -> Result<(usize, bool), LbError> {
    let mut pos = 0;
    loop {
        match state.step(&buf[pos..]).map_err(|_| LbError::BadRequest)? {
            Step::Consumed { used, data } => {
                if data {
                    if body.len() + used > max {
                        return Err(LbError::PayloadTooLarge);
                    }
                    body.extend_from_slice(&buf[pos..pos + used]);
                }
                pos += used;
            }
            Step::NeedMore => return Ok((pos, false)),
            Step::Done => return Ok((pos, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"4\r\nwiki\r\n5;name=val\r\npedia\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";

    #[test]
    fn chunked_end_is_found_whatever_the_read_boundaries() {
        for step in [1, 2, 3, 7, BODY.len()] {
            let mut scanner = ChunkedScanner::default();
            let mut fed = 0;
            let mut consumed = 0;
            let end = loop {
                fed = (fed + step).min(BODY.len());
                let (used, done) = scanner.scan(&BODY[consumed..fed]).unwrap();
                consumed += used;
                if done {
                    break consumed;
                }
                assert!(fed < BODY.len(), "end not found with step {step}");
            };
            assert_eq!(&BODY[end..], b"NEXT", "step {step}");
        }
    }

    #[test]
    fn chunked_request_bodies_decode_and_respect_the_limit() {
        let mut body = Vec::new();
        let mut state = ChunkedScanner::default();
        let (used, done) = decode_chunked(BODY, &mut body, &mut state, 100).unwrap();
        assert!(done);
        assert_eq!(body, b"wikipedia");
        assert_eq!(&BODY[used..], b"NEXT");

        let mut body = Vec::new();
        let mut state = ChunkedScanner::default();
        let err = decode_chunked(BODY, &mut body, &mut state, 8).unwrap_err();
        assert_eq!(err, LbError::PayloadTooLarge);

        let mut state = ChunkedScanner::default();
        let bad = decode_chunked(b"4\r\nwikiXX", &mut Vec::new(), &mut state, 100);
        assert_eq!(bad.unwrap_err(), LbError::BadRequest);
    }

    #[test]
    fn content_lengths_must_agree_and_be_digits() {
        assert_eq!(content_length(None, b"42"), Ok(42));
        assert_eq!(content_length(Some(42), b"42, 42"), Ok(42));
        assert!(content_length(Some(42), b"43").is_err());
        assert!(content_length(None, b"+4").is_err());
        assert!(content_length(None, b"").is_err());
        assert!(content_length(None, b"99999999999999999999").is_err());
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

    #[test]
    fn targets_become_origin_form() {
        assert_eq!(origin_form("/a?b"), Some("/a?b"));
        assert_eq!(origin_form("*"), Some("*"));
        assert_eq!(origin_form("HTTP://h:1/x/y?z"), Some("/x/y?z"));
        assert_eq!(origin_form("http://h"), Some("/"));
        assert_eq!(origin_form("h:443"), None);
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
