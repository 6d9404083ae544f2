//! TLS termination: the HTTPS entry's settings, its certificate, and the handshake gate.
//!
//! As on DigitalOcean's load balancer with an `https` forwarding rule, TLS ends here and the
//! backends get plain HTTP with `X-Forwarded-Proto: https`. Handshakes are bounded in time
//! and in number, so clients that open connections and then handshake slowly (or never)
//! hold neither memory nor connection slots for long.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rustls::HandshakeKind;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::error::Error;

/// Sessions remembered for clients that resume by session id instead of a ticket (TLS 1.2
/// without tickets), as many as HAProxy's default `tune.ssl.cachesize`. Tickets themselves are
/// stateless (encrypted with a key rotated every 6 hours), as HAProxy's: a cache of TLS 1.3
/// tickets cost a third more CPU per resumed connection than a full handshake.
const SESSION_CACHE: usize = 20_000;

/// The HTTPS entry point (an `https` forwarding rule with TLS terminated here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct HttpsConfig {
    /// Address the HTTPS entry listens on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// PEM file with the certificate, then any intermediates.
    pub certificate: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// Answer every request on the HTTP entry with a redirect to the same URL on this entry
    /// (`redirectHttpToHttps`): 301 for GET and HEAD, 308 for other methods, which keeps
    /// the method and body.
    pub redirect_http_to_https: bool,
    /// Time a client has, from the TCP connection, to complete its handshake.
    #[serde(with = "crate::config::duration_str")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; connections past it are closed at once, so a flood of
    /// slow handshakes can't hold more than this many connections' worth of TLS state.
    pub max_handshakes: usize,
    /// Oldest protocol version offered.
    pub min_version: TlsVersion,
    /// Newest protocol version offered.
    pub max_version: TlsVersion,
    /// Let returning clients resume their session (session tickets, or TLS 1.2 session ids),
    /// which saves the certificate signature; off, every handshake is a full one.
    pub resumption: bool,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            certificate: PathBuf::new(),
            private_key: PathBuf::new(),
            redirect_http_to_https: false,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            resumption: true,
        }
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

/// How the HTTPS entry's handshakes ended, since start (on the status page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HandshakeCounts {
    /// Completed with a certificate signature.
    pub full: u64,
    /// Completed by resuming an earlier session (no signature).
    pub resumed: u64,
    /// Failed: not TLS, no common version or cipher, closed midway.
    pub failed: u64,
    /// Not complete within `handshake_timeout`.
    pub timed_out: u64,
    /// Closed at once because `max_handshakes` were in progress.
    pub refused: u64,
}

/// The live counters behind [`HandshakeCounts`].
#[derive(Default)]
pub(crate) struct Handshakes {
    full: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
}

impl Handshakes {
    pub(crate) fn counts(&self) -> HandshakeCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HandshakeCounts {
            full: get(&self.full),
            resumed: get(&self.resumed),
            failed: get(&self.failed),
            timed_out: get(&self.timed_out),
            refused: get(&self.refused),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes TLS off accepted connections, within the handshake limits.
pub(crate) struct Terminator {
    acceptor: TlsAcceptor,
    timeout: Duration,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    pub(crate) handshakes: Arc<Handshakes>,
}

/// Gives a handshake slot back however the handshake ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Terminator {
    /// Loads the certificate and key; errors name the file.
    pub(crate) fn new(config: &HttpsConfig) -> Result<Self, Error> {
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server_config(config)?)),
            timeout: config.handshake_timeout,
            max_in_flight: config.max_handshakes,
            in_flight: AtomicUsize::new(0),
            handshakes: Arc::default(),
        })
    }

    /// Completes the handshake on `stream`, or gives up on it (logged at debug: a failed
    /// handshake is the client's business, and a flood of them must not flood the log).
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<TlsStream<TcpStream>> {
        let _slot = Slot(&self.in_flight);
        let counts = &*self.handshakes;
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight {
            Handshakes::count(&counts.refused);
            debug!(%peer, "TLS handshake refused: max_handshakes in progress");
            return None;
        }
        match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
                Handshakes::count(if resumed {
                    &counts.resumed
                } else {
                    &counts.full
                });
                Some(tls)
            }
            Ok(Err(e)) => {
                Handshakes::count(&counts.failed);
                debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                Handshakes::count(&counts.timed_out);
                debug!(%peer, timeout = ?self.timeout, "TLS handshake timed out");
                None
            }
        }
    }
}

fn server_config(config: &HttpsConfig) -> Result<rustls::ServerConfig, Error> {
    let certs = load_certificates(&config.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&config.private_key)
        .map_err(|e| tls_error(&config.private_key, pem_reason(&e, "private key")))?;
    let versions: Vec<_> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (config.min_version..=config.max_version).contains(v))
    .map(|(_, supported)| supported)
    .collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| Error::Config(format!("https: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        // Names the key file: a key that doesn't match the certificate, or an unsupported type.
        .map_err(|e| tls_error(&config.private_key, e.to_string()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    if config.resumption {
        server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        server.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| Error::Config(format!("https: session tickets: {e}")))?;
    } else {
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }
    Ok(server)
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(path, pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// What went wrong reading a PEM file, without any of its contents.
fn pem_reason(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::Io(io) => io.to_string(),
        Pem::NoItemsFound => format!("no PEM {what} in the file"),
        _ => format!("not a valid PEM {what}"),
    }
}

fn tls_error(path: &Path, reason: String) -> Error {
    Error::Tls {
        path: path.to_owned(),
        reason,
    }
}

/// Checks what serde cannot.
pub(crate) fn validate(config: &HttpsConfig, http_listen: SocketAddr) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::Config(format!("https: {m}")));
    if config.handshake_timeout.is_zero() {
        return bad("handshake_timeout must be positive");
    }
    if config.max_handshakes == 0 {
        return bad("max_handshakes must be at least 1");
    }
    if config.min_version > config.max_version {
        return bad("min_version is newer than max_version");
    }
    if config.listen.port() != 0 && config.listen == http_listen {
        return bad("listen must differ from the HTTP entry's");
    }
    Ok(())
}
