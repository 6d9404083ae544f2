//! An embeddable HTTP/1.1 load balancer with DigitalOcean load balancer semantics, on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lb::Error> {
//! use std::time::Duration;
//! let mut config = lb::Config::default();
//! config.backends.push(lb::BackendConfig::new("local-1", "127.0.0.1:3001".parse().unwrap()));
//! let running = lb::LoadBalancer::bind(config).await?;
//! println!("listening on {}", running.local_addr());
//! running.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod conn;
mod health;
mod http1;
mod proxy;
mod upstream;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};

pub use backend::{BackendState, BackendStatus, MAX_BACKENDS};
pub use config::{BackendConfig, Config, HealthCheckConfig, StickyConfig, parse_duration};

use backend::Pool;
use proxy::Shared;
use upstream::Parked;

/// Why the load balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is inconsistent.
    #[error("invalid load balancer config: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address from the config.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry point; see [`LoadBalancer::bind`].
pub struct LoadBalancer;

impl LoadBalancer {
    /// Validates `config`, binds the listener and starts serving and health checking in
    /// tasks on the caller's tokio runtime (or, with `io_threads`, serving on dedicated
    /// threads). Every backend starts down until it passes `healthy_threshold` checks.
    pub async fn bind(config: Config) -> Result<Running> {
        validate(&config)?;
        let bind_err = |source| Error::Bind {
            addr: config.listen,
            source,
        };
        let mut sockets = Vec::new();
        let (listener, local_addr) = if config.io_threads == 0 {
            let listener = TcpListener::bind(config.listen).await.map_err(bind_err)?;
            let local_addr = listener.local_addr().map_err(bind_err)?;
            (Some(listener), local_addr)
        } else {
            // The first socket settles the port (when 0 was asked for); the rest share it.
            let first = reuseport_socket(config.listen).map_err(bind_err)?;
            let local_addr = first.local_addr().map_err(bind_err)?;
            sockets.push(first);
            for _ in 1..config.io_threads {
                sockets.push(reuseport_socket(local_addr).map_err(bind_err)?);
            }
            (None, local_addr)
        };

        let pool = Arc::new(Pool::new(&config.backends, config.sticky.as_ref()));
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            sticky_cookie: config.sticky.as_ref().map(|s| s.cookie_name.clone()),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            client_idle_timeout: config.client_idle_timeout,
            max_body: config.max_request_body_bytes,
            forwarded_port: local_addr.port().to_string(),
            request_id_prefix: random_u32(),
            request_id_seq: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });

        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let mut accept = Vec::new();
        if let Some(listener) = listener {
            let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx.clone()));
            accept.push(AcceptLoop::Task(task));
        }
        for (i, socket) in sockets.into_iter().enumerate() {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let (shared, shutdown_rx) = (shared.clone(), shutdown_rx.clone());
            std::thread::Builder::new()
                .name(format!("lb-io-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(rt) => rt.block_on(async move {
                            match socket.listen(1024) {
                                Ok(listener) => accept_loop(listener, shared, shutdown_rx).await,
                                Err(err) => warn!(error = %err, "load balancer listener failed"),
                            }
                        }),
                        Err(err) => warn!(error = %err, "cannot start a load balancer thread"),
                    }
                    let _ = done_tx.send(());
                })
                .map_err(bind_err)?;
            accept.push(AcceptLoop::Thread(done_rx));
        }
        let health = health::spawn_checkers(pool.clone(), config.health_check.clone());
        info!(%local_addr, backends = config.backends.len(), "load balancer listening");

        Ok(Running {
            inner: Arc::new(Inner {
                local_addr,
                pool,
                shutdown_tx,
                accept: Mutex::new(accept),
                health: Mutex::new(health),
            }),
        })
    }
}

/// Handle to a running load balancer; cheap to clone. Dropping the last handle stops it
/// without draining, so keep one until [`Running::shutdown`].
#[derive(Clone)]
pub struct Running {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    pool: Arc<Pool>,
    shutdown_tx: watch::Sender<Option<Duration>>,
    accept: Mutex<Vec<AcceptLoop>>,
    health: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for h in self.health.get_mut().unwrap_or_else(|e| e.into_inner()) {
            h.abort();
        }
    }
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// A snapshot of every backend, in config order.
    pub fn status(&self) -> Vec<BackendStatus> {
        self.inner.pool.status()
    }

    /// Takes backend `id` out of rotation at once (e.g. its process died); it returns after
    /// passing `healthy_threshold` health checks. Returns false for an unknown id.
    pub fn mark_down(&self, id: &str) -> bool {
        match self.inner.pool.index_of(id) {
            Some(i) => {
                self.inner.pool.mark_down(i, "marked down by supervisor");
                true
            }
            None => false,
        }
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes what
    /// is left and stops the health checkers. Later calls return at once.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.shutdown_tx.send(Some(grace));
        let accept =
            std::mem::take(&mut *self.inner.accept.lock().unwrap_or_else(|e| e.into_inner()));
        for accept in accept {
            match accept {
                AcceptLoop::Task(task) => {
                    let _ = task.await;
                }
                AcceptLoop::Thread(done) => {
                    let _ = done.await;
                }
            }
        }
        for h in self
            .inner
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            h.abort();
        }
        info!(addr = %self.inner.local_addr, "load balancer stopped");
    }
}

fn validate(config: &Config) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    if config.backends.len() > MAX_BACKENDS {
        return bad(format!("at most {MAX_BACKENDS} backends"));
    }
    let mut ids = HashSet::new();
    for b in &config.backends {
        if !ids.insert(b.id.as_str()) {
            return bad(format!("duplicate backend id {:?}", b.id));
        }
    }
    let hc = &config.health_check;
    if !hc.path.starts_with('/') || hc.path.parse::<http::uri::PathAndQuery>().is_err() {
        return bad(format!(
            "health check path {:?} is not a valid path",
            hc.path
        ));
    }
    if hc.interval.is_zero() || hc.response_timeout.is_zero() {
        return bad("health check interval and response timeout must be positive".into());
    }
    if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
        return bad("health check thresholds must be at least 1".into());
    }
    if config.client_idle_timeout.is_zero() || config.response_timeout.is_zero() {
        return bad("timeouts must be positive".into());
    }
    if let Some(s) = &config.sticky {
        let n = &s.cookie_name;
        let token = n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !(2..=40).contains(&n.len()) || !token {
            return bad(format!(
                "sticky cookie name {n:?} must be a 2-40 character token"
            ));
        }
        if s.ttl < Duration::from_secs(1) {
            return bad("sticky cookie ttl must be at least 1s".into());
        }
    }
    Ok(())
}

/// Where an accept loop runs: a task on the caller's runtime, or a dedicated thread that says
/// when it is done.
enum AcceptLoop {
    Task(JoinHandle<()>),
    Thread(tokio::sync::oneshot::Receiver<()>),
}

/// A bound, not yet listening socket that other sockets may bind to the same port, so the
/// kernel spreads incoming connections across the I/O threads.
fn reuseport_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Idle backend connections kept per backend after their client connection closed.
const MAX_PARKED_PER_BACKEND: usize = 256;

/// Random enough to keep request ids from two processes apart; no extra dependency.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) as u32
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let parked = Arc::new(Parked::new(
        shared.pool.backends.len(),
        MAX_PARKED_PER_BACKEND,
    ));
    let mut conns = JoinSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => match changed {
                Ok(()) => break shutdown.borrow().unwrap_or_default(),
                // Every handle is gone: nobody can ask for a drain any more.
                Err(_) => break Duration::ZERO,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let mut stop = stop_rx.clone();
                    let stop: conn::StopSignal = Box::pin(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    });
                    conns.spawn(conn::serve(
                        stream,
                        peer.ip(),
                        shared.clone(),
                        parked.clone(),
                        stop,
                    ));
                }
                Err(e) => {
                    // Usually fd exhaustion; back off instead of spinning on the error.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    };
    drop(listener);
    shared.stopping.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            open = conns.len(),
            "grace period over; closing remaining connections"
        );
        conns.shutdown().await;
    }
}
