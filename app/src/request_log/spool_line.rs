//! One log row as one line of a spool file, and back.
//!
//! `<unix µs>\t<method>\t<status>\t<duration µs>\t<client ip or ->\t<route>\t<request id>\n`:
//! every field is a number, an address, a route template or a request id the middleware
//! checked, none of which holds a tab or a line break.

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::DateTime;

use super::record::LogRecord;

/// Appends `record` to `out` as one line.
pub fn encode(record: &LogRecord, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{}\t{}\t{}\t{}\t",
        record.at.timestamp_micros(),
        record.method,
        record.status,
        record.duration_us
    );
    match record.client_ip {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push(b'-'),
    }
    out.push(b'\t');
    push_field(out, record.route);
    out.push(b'\t');
    push_field(out, &record.request_id);
    out.push(b'\n');
}

/// A separator inside a value would shift every field after it; such a value (which the
/// middleware never makes) is kept readable instead.
fn push_field(out: &mut Vec<u8>, value: &str) {
    out.extend(value.bytes().map(|b| match b {
        b'\t' | b'\n' | b'\r' => b'_',
        b => b,
    }));
}

/// The row of one line (without its `\n`); `None` for a line that is not one.
pub fn decode(line: &[u8]) -> Option<LogRecord> {
    let line = std::str::from_utf8(line).ok()?;
    let mut fields = line.split('\t');
    let at = DateTime::from_timestamp_micros(fields.next()?.parse().ok()?)?;
    let method = intern(fields.next()?)?;
    let status = fields.next()?.parse().ok()?;
    let duration_us = fields.next()?.parse().ok()?;
    let client_ip = match fields.next()? {
        "-" => None,
        ip => Some(ip.parse::<IpAddr>().ok()?),
    };
    let route = intern(fields.next()?)?;
    let request_id: Arc<str> = Arc::from(fields.next()?);
    if fields.next().is_some() || request_id.is_empty() {
        return None;
    }
    Some(LogRecord {
        method,
        route,
        status,
        duration_us,
        client_ip,
        request_id,
        at,
    })
}

/// Distinct methods and route templates a process may read back: the route table's are a few
/// dozen; past this a file is not a spool of ours.
const MAX_INTERNED: usize = 1024;

/// Rows hold methods and templates as `&'static str` (they come from the route table); read
/// back, each distinct one is leaked once.
fn intern(value: &str) -> Option<&'static str> {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(known) = seen.get(value) {
        return Some(known);
    }
    if seen.len() >= MAX_INTERNED || value.is_empty() || value.len() > 256 {
        return None;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    seen.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_survives_the_round_trip_and_garbage_is_refused() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T10:00:00.123456Z")
            .unwrap()
            .to_utc();
        let row = LogRecord {
            method: "POST",
            route: "/api/users/:id",
            status: 503,
            duration_us: 1234,
            client_ip: Some("2001:db8::1".parse().unwrap()),
            request_id: Arc::from("req-1"),
            at,
        };
        let mut line = Vec::new();
        encode(&row, &mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let back = decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(
            (back.method, back.route, back.status, back.duration_us),
            ("POST", "/api/users/:id", 503, 1234)
        );
        assert_eq!(
            (back.client_ip, &*back.request_id, back.at),
            (row.client_ip, "req-1", at)
        );

        let no_ip = LogRecord {
            client_ip: None,
            request_id: Arc::from("odd\tid"),
            ..row
        };
        let mut line = Vec::new();
        encode(&no_ip, &mut line);
        let back = decode(&line[..line.len() - 1]).unwrap();
        assert_eq!((back.client_ip, &*back.request_id), (None, "odd_id"));

        for bad in [
            &b""[..],
            b"12\tGET\t200",
            b"x\tGET\t200\t5\t-\t/\tid",
            b"12\tGET\t200\t5\tnot-ip\t/\tid",
            b"12\tGET\t200\t5\t-\t/\tid\textra",
            b"12\tGET\t200\t5\t-\t/\t",
            b"\xff\xfe",
        ] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }
}
