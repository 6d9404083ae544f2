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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
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
        let listener = TcpListener::bind(config.listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;

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
        let mut loops = Vec::new();
        let mut targets = Vec::new();
        if config.io_threads == 0 {
            let (tx, rx) = mpsc::unbounded_channel();
            let load = Arc::new(AtomicUsize::new(0));
            let task = tokio::spawn(io_loop(
                rx,
                shared.clone(),
                load.clone(),
                shutdown_rx.clone(),
            ));
            loops.push(Loop::Task(task));
            targets.push(IoTarget { tx, load });
        }
        for i in 0..config.io_threads {
            let (tx, rx) = mpsc::unbounded_channel();
            let load = Arc::new(AtomicUsize::new(0));
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let (shared, load2, shutdown_rx) = (shared.clone(), load.clone(), shutdown_rx.clone());
            std::thread::Builder::new()
                .name(format!("lb-io-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(rt) => rt.block_on(io_loop(rx, shared, load2, shutdown_rx)),
                        Err(err) => warn!(error = %err, "cannot start a load balancer thread"),
                    }
                    let _ = done_tx.send(());
                })
                .map_err(bind_err)?;
            loops.push(Loop::Thread(done_rx));
            targets.push(IoTarget { tx, load });
        }
        let dispatch = tokio::spawn(accept_loop(listener, targets, shutdown_rx));
        loops.insert(0, Loop::Task(dispatch));
        let health = health::spawn_checkers(pool.clone(), config.health_check.clone());
        info!(%local_addr, backends = config.backends.len(), "load balancer listening");

        Ok(Running {
            inner: Arc::new(Inner {
                local_addr,
                pool,
                shutdown_tx,
                loops: Mutex::new(loops),
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
    /// The accept loop first, then the connection loops it feeds.
    loops: Mutex<Vec<Loop>>,
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
        let loops =
            std::mem::take(&mut *self.inner.loops.lock().unwrap_or_else(|e| e.into_inner()));
        for l in loops {
            match l {
                Loop::Task(task) => {
                    let _ = task.await;
                }
                Loop::Thread(done) => {
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

/// Where a loop runs: a task on the caller's runtime, or a dedicated thread that says when
/// it is done.
enum Loop {
    Task(JoinHandle<()>),
    Thread(tokio::sync::oneshot::Receiver<()>),
}

/// A connection loop as the accept loop sees it: where to send connections, and how many
/// it is serving.
struct IoTarget {
    tx: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    load: Arc<AtomicUsize>,
}

/// Idle backend connections kept per backend after their client connection closed.
const MAX_PARKED_PER_BACKEND: usize = 256;

/// Random enough to keep request ids from two processes apart; no extra dependency.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) as u32
}

/// Accepts connections and hands each to the connection loop serving the fewest, as
/// HAProxy spreads connections over its threads. (`SO_REUSEPORT` listeners spread them by a
/// hash instead, which leaves one thread noticeably busier and shows in tail latency.)
async fn accept_loop(
    listener: TcpListener,
    mut targets: Vec<IoTarget>,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    loop {
        tokio::select! {
            biased;
            // A drain was asked for, or every handle is gone: stop accepting either way.
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let Ok(mut stream) = stream.into_std() else {
                        warn!("cannot hand over a connection");
                        continue;
                    };
                    // A loop whose thread died is forgotten, and the next one gets the connection.
                    while let Some(i) = (0..targets.len())
                        .min_by_key(|&i| targets[i].load.load(Ordering::Relaxed))
                    {
                        targets[i].load.fetch_add(1, Ordering::Relaxed);
                        match targets[i].tx.send((stream, peer)) {
                            Ok(()) => break,
                            Err(mpsc::error::SendError((back, _))) => {
                                warn!("a load balancer I/O thread is gone");
                                stream = back;
                                targets.swap_remove(i);
                            }
                        }
                    }
                    if targets.is_empty() {
                        warn!("no load balancer I/O thread left; no longer accepting");
                        break;
                    }
                }
                Err(e) => {
                    // Usually fd exhaustion; back off instead of spinning on the error.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves the connections the accept loop hands over until shutdown, then drains them for
/// the grace period.
async fn io_loop(
    mut incoming: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    shared: Arc<Shared>,
    load: Arc<AtomicUsize>,
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
            Some(_) = conns.join_next(), if !conns.is_empty() => {
                load.fetch_sub(1, Ordering::Relaxed);
            }
            next = incoming.recv() => match next {
                Some((stream, peer)) => match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => {
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
                        load.fetch_sub(1, Ordering::Relaxed);
                        warn!(error = %e, "cannot take over a connection");
                    }
                },
                // The accept loop stopped, which it does on shutdown; take the grace from it.
                None => break match shutdown.wait_for(Option::is_some).await {
                    Ok(grace) => grace.unwrap_or_default(),
                    Err(_) => Duration::ZERO,
                },
            },
        }
    };
    shared.stopping.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // Connections accepted but not yet taken over are closed now, not left waiting.
    incoming.close();
    while incoming.try_recv().is_ok() {
        load.fetch_sub(1, Ordering::Relaxed);
    }
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
