//! Free loopback ports for a test's load balancer and its consecutive backend ports.

use std::net::{SocketAddr, TcpListener};

fn any_free() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A load balancer port and `n` consecutive backend ports after another base, all free now.
pub fn free_ports(n: u16) -> (u16, u16) {
    let lb = any_free();
    for _ in 0..200 {
        let base = any_free();
        if base > 65000 || (base..base + n).contains(&lb) {
            continue;
        }
        if (base..base + n)
            .all(|p| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], p))).is_ok())
        {
            return (lb, base);
        }
    }
    panic!("no {n} consecutive free ports");
}
