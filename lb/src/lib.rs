//! An embeddable HTTP/1.1 load balancer with DigitalOcean load balancer semantics, on tokio.
//!
//! An HTTP entry always, and optionally an HTTPS entry that terminates TLS (rustls) and can
//! take the HTTP entry's requests by redirect ([`HttpsConfig`]).
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

mod config;
mod error;
mod health;
mod http1;
mod io;
mod listener;
mod policy;
mod proxy;
mod series;
mod status;
mod tls;
mod trim;
mod upstream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use config::{BackendConfig, Balance, Config, HealthCheckConfig, MAX_BACKENDS, StickyConfig};
pub use error::Error;
pub use series::{BUCKETS, Event, Point, STEP_SECONDS};
pub use status::{BackendView, StatusReport};
pub use tls::{HandshakeCounts, HttpsConfig, TlsVersion};
pub use upstream::{BackendState, BackendStatus};

use listener::Loop;
use policy::Entry;
use proxy::Shared;
use tls::{Handshakes, Terminator};
use upstream::Pool;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry point; see [`LoadBalancer::bind`].
pub struct LoadBalancer;

impl LoadBalancer {
    /// Validates `config`, loads the HTTPS entry's certificate, binds the listeners and
    /// starts serving and health checking in tasks on the caller's tokio runtime (or, with
    /// `io_threads`, serving on dedicated threads). Every backend starts down until it
    /// passes `healthy_threshold` checks.
    pub async fn bind(config: Config) -> Result<Running> {
        config::validate(&config)?;
        let terminator = config.https.as_ref().map(Terminator::new).transpose()?;
        let (listener, local_addr) = listen(config.listen).await?;
        let mut listeners = vec![(listener, Entry::Http)];
        let mut https = None;
        if let (Some(h), Some(tls)) = (&config.https, terminator) {
            let (listener, addr) = listen(h.listen).await?;
            listeners.push((listener, Entry::Https));
            https = Some((addr, tls));
        }
        let https_addr = https.as_ref().map(|(addr, _)| *addr);
        let handshakes = https.as_ref().map(|(_, tls)| tls.handshakes.clone());

        let pool = Arc::new(Pool::new(
            &config.backends,
            config.sticky.as_ref(),
            config.balance,
        ));
        let shared = Arc::new(Shared::new(&config, pool.clone(), local_addr.port(), https));
        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let loops = listener::start(
            listeners,
            shared,
            config.io_threads,
            config.max_connections,
            shutdown_rx,
        )
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let health_check = Arc::new(config.health_check.clone());
        let health = health::spawn_checkers(pool.clone(), health_check.clone());
        info!(%local_addr, https = ?https_addr, backends = config.backends.len(), "load balancer listening");

        Ok(Running {
            inner: Arc::new(Inner {
                local_addr,
                https_addr,
                handshakes,
                pool,
                health_check,
                shutdown_tx,
                loops: Mutex::new(loops),
                health: Mutex::new(health),
            }),
        })
    }
}

/// Binds one entry's listener.
async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let bind_err = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    Ok((listener, bound))
}

/// Handle to a running load balancer; cheap to clone. Dropping the last handle stops it
/// without draining, so keep one until [`Running::shutdown`].
#[derive(Clone)]
pub struct Running {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    handshakes: Option<Arc<Handshakes>>,
    pool: Arc<Pool>,
    health_check: Arc<HealthCheckConfig>,
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
    /// The HTTP entry's address as bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The HTTPS entry's address as bound, when there is one.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.inner.https_addr
    }

    /// A snapshot of every backend, in config order.
    pub fn status(&self) -> Vec<BackendStatus> {
        self.inner.pool.status()
    }

    /// What the status page shows: every backend, its last 15 minutes, and the rotation changes.
    pub fn report(&self) -> StatusReport {
        self.inner.pool.report(self.inner.handshakes.as_deref())
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

    /// Adds a backend while serving (DigitalOcean's semantics: it starts down and enters
    /// rotation once it passes `healthy_threshold` checks). Must be called on a tokio runtime,
    /// which runs its health checker.
    pub fn add_backend(&self, backend: BackendConfig) -> Result<()> {
        let idx = self.inner.pool.add(&backend).map_err(Error::Config)?;
        let checker = health::spawn_checker(
            self.inner.pool.clone(),
            idx,
            self.inner.health_check.clone(),
        );
        let mut health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        health.retain(|h| !h.is_finished());
        health.push(checker);
        info!(backend = %backend.id, addr = %backend.addr, "backend added");
        Ok(())
    }

    /// Takes backend `id` out of rotation and out of [`Running::status`] for good; requests
    /// already sent to it finish (stop the backend only after that). False for an unknown id.
    pub fn remove_backend(&self, id: &str) -> bool {
        match self.inner.pool.index_of(id) {
            Some(i) => {
                self.inner.pool.remove(i);
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
            l.join().await;
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
