//! Slow and greedy clients for `bench/lb/attack.sh`, against a proxy on 127.0.0.1 only.
//!
//! `lb_attack held <port> <conns> <sent-bytes> <declared-bytes> <hold-secs>`: `conns`
//! connections each send a POST head declaring `declared-bytes`, then `sent-bytes` of body,
//! then hold the connection for `hold-secs`; prints what the proxy answered.
//!
//! `lb_attack drip <port> <every-ms> <max-secs>`: one POST declaring a 1000-byte body, then
//! one body byte every `every-ms`, for at most `max-secs`; prints when the proxy cut it off.
//!
//! Every loop is bounded in count and time, and only 127.0.0.1 is ever connected to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn target(port: &str) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    Ok(SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>()?)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(args.get(i).ok_or("missing argument")?.parse()?)
    };
    match args.first().map(String::as_str) {
        Some("held") => held(
            target(&args[1])?,
            num(2)? as usize,
            num(3)? as usize,
            num(4)?,
            Duration::from_secs(num(5)?),
        ),
        Some("drip") => drip(
            target(args.get(1).ok_or("missing port")?)?,
            Duration::from_millis(num(2)?),
            Duration::from_secs(num(3)?),
        ),
        _ => Err("usage: lb_attack held|drip ... (see the source)".into()),
    }
}

/// What one held connection saw.
#[derive(Default)]
struct Outcome {
    status_line: Option<String>,
    closed: bool,
}

fn held(
    addr: SocketAddr,
    conns: usize,
    sent: usize,
    declared: u64,
    hold: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let conns = conns.min(1000);
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || -> Outcome {
                let mut out = Outcome::default();
                let Ok(mut s) = TcpStream::connect(addr) else {
                    out.closed = true;
                    return out;
                };
                let head = format!(
                    "POST /upload HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {declared}\r\n\r\n"
                );
                let body = vec![b'a'; sent];
                if s.write_all(head.as_bytes()).is_err() || s.write_all(&body).is_err() {
                    out.closed = true;
                }
                // Hold: read whatever comes until the hold time is over or the proxy closes.
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while started.elapsed() < hold && !out.closed {
                    match s.read(&mut buf) {
                        Ok(0) => out.closed = true,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => out.closed = true,
                    }
                }
                out.status_line = String::from_utf8_lossy(&got)
                    .lines()
                    .next()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned);
                out
            })
        })
        .collect();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let mut closed = 0;
    for t in threads {
        let o = t.join().unwrap_or_default();
        *answers
            .entry(o.status_line.unwrap_or_else(|| "no answer".into()))
            .or_default() += 1;
        closed += usize::from(o.closed);
    }
    let answers: Vec<String> = answers.iter().map(|(k, v)| format!("{v}x {k}")).collect();
    println!(
        "held: {conns} connections, {sent} of {declared} body bytes each, held {:.1}s; closed by the proxy: {closed}; answers: {}",
        started.elapsed().as_secs_f64(),
        answers.join(", ")
    );
    Ok(())
}

fn drip(
    addr: SocketAddr,
    every: Duration,
    max: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(addr)?;
    let started = Instant::now();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000\r\n\r\n")?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut next_byte = started + every;
    let mut sent = 0;
    let mut got = Vec::new();
    let mut answered_at = None;
    let mut buf = [0u8; 4096];
    let outcome = loop {
        if started.elapsed() >= max {
            break "not cut off".to_owned();
        }
        if Instant::now() >= next_byte && sent < 1000 {
            if s.write_all(b"x").is_err() {
                break "write failed (connection closed)".to_owned();
            }
            sent += 1;
            next_byte += every;
        }
        match s.read(&mut buf) {
            Ok(0) => break "closed".to_owned(),
            Ok(n) => {
                answered_at.get_or_insert(started.elapsed());
                got.extend_from_slice(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break format!("reset ({e})"),
        }
    };
    let status = String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("no answer")
        .to_owned();
    let answered =
        answered_at.map_or_else(|| "-".to_owned(), |t| format!("{:.1}s", t.as_secs_f64()));
    println!(
        "drip: {outcome} after {:.1}s, {sent} body bytes sent; answer: {status} (at {answered})",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
