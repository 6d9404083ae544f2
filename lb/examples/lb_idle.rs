//! Idle keep-alive clients for `bench/lb/idle.sh`, against a proxy on 127.0.0.1 only.
//!
//! `lb_idle <port> <conns> <hold-secs>`: opens `conns` connections, sends one keep-alive
//! `GET /` on each and reads its answer, holds them all idle for `hold-secs`, then closes
//! them; prints how many were answered. Bounded in connections and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: lb_idle <port> <conns> <hold-secs>";
    let port: u16 = args.first().ok_or(usage)?.parse()?;
    let conns: usize = args.get(1).ok_or(usage)?.parse()?;
    let hold = Duration::from_secs(args.get(2).ok_or(usage)?.parse()?);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut open = Vec::with_capacity(conns);
    let mut answered = 0;
    for _ in 0..conns.min(20_000) {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")?;
        if read_answer(&mut s) {
            answered += 1;
        }
        open.push(s);
    }
    println!("ready: {} open, {answered} answered", open.len());
    std::thread::sleep(hold);
    drop(open);
    println!("closed");
    Ok(())
}

/// Reads one response with a `content-length` body; false if it did not come whole.
fn read_answer(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = s.read(&mut chunk) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len = text[..end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return true;
        }
    }
}
