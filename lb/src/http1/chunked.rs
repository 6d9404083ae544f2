//! Chunked transfer coding: finding where a chunked body ends, or decoding it.
//!
//! Size lines are checked more strictly than `httparse` does, since a server behind the load
//! balancer that splits the chunks differently would see another request or response.

use crate::error::{ErrorKind, ProxyError, Side};

/// Tracks a chunked body as its bytes arrive: finds where it ends (for relaying it
/// unchanged) or decodes it (for forwarding it with other framing).
#[derive(Debug)]
pub(crate) struct ChunkedScanner {
    side: Side,
    state: ChunkState,
    trailer_bytes: usize,
    /// Chunk data seen so far.
    data: u64,
}

/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    /// Expecting a chunk-size line.
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
    /// A scanner for a body sent by `side`, which decides what a framing error means.
    pub(crate) fn new(side: Side) -> Self {
        Self {
            side,
            state: ChunkState::Size,
            trailer_bytes: 0,
            data: 0,
        }
    }

    fn bad(&self, reason: &'static str) -> ProxyError {
        ProxyError::malformed(self.side, reason)
    }

    /// Parses a chunk-size line: hex digits, then optional extensions, ended by CRLF.
    /// Stricter than `httparse`, which lets a bare LF or CR through inside an extension:
    /// a parser behind us that ends the line there would see other chunks than we do.
    fn size_line(&self, rest: &[u8]) -> Result<Option<(usize, u64)>, ProxyError> {
        let window = &rest[..rest.len().min(MAX_CHUNK_LINE)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            return if rest.len() < MAX_CHUNK_LINE {
                Ok(None)
            } else {
                Err(self.bad("chunk size line too long"))
            };
        };
        let line = rest[..lf]
            .strip_suffix(b"\r")
            .ok_or_else(|| self.bad("chunk size line not ended by CRLF"))?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 15 {
            return Err(self.bad("malformed chunk size"));
        }
        let size = line[..digits].iter().fold(0u64, |n, &d| {
            n * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))
        });
        let ext = &line[digits..];
        let ext_start = ext
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(ext.len());
        let ext = &ext[ext_start..];
        let control = |b: &u8| (*b < 0x20 && *b != b'\t') || *b == 0x7f;
        if !ext.is_empty() && (ext[0] != b';' || ext.iter().any(control)) {
            return Err(self.bad("malformed chunk extension"));
        }
        Ok(Some((lf + 1, size)))
    }

    /// One state transition over the bytes at hand.
    fn step(&mut self, rest: &[u8]) -> Result<Step, ProxyError> {
        let consumed = |used| Ok(Step::Consumed { used, data: false });
        match self.state {
            ChunkState::Done => Ok(Step::Done),
            ChunkState::Size => match self.size_line(rest)? {
                Some((used, size)) => {
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                    consumed(used)
                }
                None => Ok(Step::NeedMore),
            },
            ChunkState::Data(_) if rest.is_empty() => Ok(Step::NeedMore),
            ChunkState::Data(left) => {
                let take = left.min(rest.len() as u64);
                self.state = if take == left {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left - take)
                };
                self.data += take;
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
            ChunkState::DataEnd => Err(self.bad("missing CRLF after chunk data")),
            ChunkState::Trailers => match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    // A line holding nothing (or just CR) ends the message.
                    if i == 0 || (i == 1 && rest[0] == b'\r') {
                        self.state = ChunkState::Done;
                    }
                    self.trailer_bytes += i + 1;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(self.bad("trailers too large"));
                    }
                    consumed(i + 1)
                }
                None if rest.len() < 8192 => Ok(Step::NeedMore),
                None => Err(self.bad("trailer line too long")),
            },
        }
    }

    /// Consumes what it can of `buf`, which is relayed unchanged. Returns how many bytes
    /// belong to the body and whether it ended there (`false`: need more bytes).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<(usize, bool), ProxyError> {
        self.walk(buf, |_| {})
    }

    /// Decodes what it can of `buf`, appending the chunk data to `out`; fails once the body
    /// holds more than `max` bytes. Returns the bytes consumed and whether the body ended.
    pub(crate) fn decode(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        max: u64,
    ) -> Result<(usize, bool), ProxyError> {
        let r = self.walk(buf, |data| out.extend_from_slice(data));
        if self.data > max {
            return Err(ProxyError::new(
                ErrorKind::PayloadTooLarge,
                "chunked body over the limit",
            ));
        }
        r
    }

    fn walk(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), ProxyError> {
        let mut pos = 0;
        loop {
            match self.step(&buf[pos..])? {
                Step::Consumed { used, data } => {
                    if data {
                        on_data(&buf[pos..pos + used]);
                    }
                    pos += used;
                }
                Step::NeedMore => return Ok((pos, false)),
                Step::Done => return Ok((pos, true)),
            }
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
            let mut scanner = ChunkedScanner::new(Side::Backend);
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
        let mut state = ChunkedScanner::new(Side::Client);
        let (used, done) = state.decode(BODY, &mut body, 100).unwrap();
        assert!(done);
        assert_eq!(body, b"wikipedia");
        assert_eq!(&BODY[used..], b"NEXT");

        let mut state = ChunkedScanner::new(Side::Client);
        let err = state.decode(BODY, &mut Vec::new(), 8).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);

        let mut state = ChunkedScanner::new(Side::Client);
        let bad = state.decode(b"4\r\nwikiXX", &mut Vec::new(), 100);
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::BadRequest);
    }

    #[test]
    fn chunk_size_lines_must_end_in_crlf_with_no_control_bytes() {
        for bad in [
            &b"5;ext\nxx\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
        ] {
            let mut s = ChunkedScanner::new(Side::Backend);
            let err = s.scan(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{bad:?}");
        }
        let mut s = ChunkedScanner::new(Side::Client);
        let mut out = Vec::new();
        let ok = b"5 ;a=\"q\"\t;b\r\nhello\r\n0\r\n\r\n";
        assert_eq!(s.decode(ok, &mut out, 10).unwrap(), (ok.len(), true));
        assert_eq!(out, b"hello");
    }
}
