//! Runs the load balancer standalone for benchmarks.
//!
//! `cargo run --release -p lb --example lb_bench -- <listen-port> <backend-addr>...`;
//! 2 worker threads, health checks on (`GET /health` every 30 s, fall 3, rise `LB_RISE`
//! or 1). With `LB_TLS_CERT` and `LB_TLS_KEY` (PEM files) the port is an HTTPS entry
//! offering TLS up to `LB_TLS_MAX` (1.3), with session resumption unless `LB_TLS_RESUME=0`;
//! HTTP goes to a free port, and the status page, with its handshake counts, answers at
//! `/_lb/status`.

use std::net::SocketAddr;
use std::time::Duration;

use lb::{BackendConfig, Config, HttpsConfig, LoadBalancer, TlsVersion};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: lb_bench <port> <backend>...")?
        .parse()?;
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        ..Config::default()
    };
    if let (Ok(certificate), Ok(private_key)) =
        (std::env::var("LB_TLS_CERT"), std::env::var("LB_TLS_KEY"))
    {
        let max_version = match std::env::var("LB_TLS_MAX").as_deref() {
            Ok("1.2") => TlsVersion::Tls12,
            _ => TlsVersion::Tls13,
        };
        config.https = Some(HttpsConfig {
            listen: config.listen,
            certificate: certificate.into(),
            private_key: private_key.into(),
            max_version,
            resumption: std::env::var("LB_TLS_RESUME").as_deref() != Ok("0"),
            ..HttpsConfig::default()
        });
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.status_path = Some("/_lb/status".to_owned());
    }
    for (i, a) in args.enumerate() {
        config
            .backends
            .push(BackendConfig::new(format!("local-{}", i + 1), a.parse()?));
    }
    config.health_check.interval = Duration::from_secs(30);
    config.health_check.unhealthy_threshold = 3;
    // Backends start down and the second check comes 30 s after the first, so the bench
    // defaults to rise 1 (HAProxy starts servers up); LB_RISE=2 gives the production value.
    config.health_check.healthy_threshold = std::env::var("LB_RISE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let threads = std::env::var("LB_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // As `infra up` runs it: client connections on dedicated I/O threads (LB_IO_THREADS,
    // default 2; 0 serves on this runtime), health checks on a small runtime of the caller.
    config.io_threads = std::env::var("LB_IO_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = LoadBalancer::bind(config).await?;
        let n = running.status().len();
        for _ in 0..200 {
            if running
                .status()
                .iter()
                .all(|s| s.state == lb::BackendState::Up)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let up = running
            .status()
            .iter()
            .filter(|s| s.state == lb::BackendState::Up)
            .count();
        let addr = running.https_addr().unwrap_or(running.local_addr());
        println!("ready {addr} {up}/{n} up");
        for s in running
            .status()
            .iter()
            .filter(|s| s.state != lb::BackendState::Up)
        {
            println!("down: {}", serde_json::to_string(s)?);
        }
        tokio::signal::ctrl_c().await?;
        running.shutdown(Duration::from_secs(1)).await;
        for s in running.status() {
            println!("{} {:?} requests={}", s.id, s.state, s.requests);
        }
        Ok(())
    })
}
