//! Configuration of the load balancer, mirroring DigitalOcean's load balancer settings.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::tls::HttpsConfig;

/// Everything the load balancer needs to run; serde-friendly so it can live in a stack file.
///
/// Durations (de)serialize as strings such as `"30s"` or `"150ms"`; a bare number means seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct Config {
    /// Address of the HTTP entry (DigitalOcean's `http` forwarding rule); port 0 picks a
    /// free port.
    pub listen: SocketAddr,
    /// An HTTPS entry as well, with TLS terminated here (an `https` forwarding rule).
    pub https: Option<HttpsConfig>,
    /// Backends (droplets) in rotation; at most 64.
    pub backends: Vec<BackendConfig>,
    /// Active health check settings.
    pub health_check: HealthCheckConfig,
    /// Cookie stickiness; `None` means plain round robin.
    pub sticky: Option<StickyConfig>,
    /// Time allowed to open a TCP connection to a backend.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// Time allowed for a backend to send its response head (the first byte of the answer,
    /// counted from the moment the request is sent); past it the client gets 504. DigitalOcean
    /// applies `httpIdleTimeoutSeconds` (60 s by default) here.
    #[serde(with = "duration_str")]
    pub response_timeout: Duration,
    /// How a request picks among the backends in rotation.
    pub balance: Balance,
    /// Consecutive response timeouts after which a backend leaves rotation at once, to return
    /// after `healthy_threshold` passing health checks like any other; 0 (the default, as on
    /// DigitalOcean) leaves that to the health checks alone. A backend whose health check
    /// still passes while its requests hang (a stuck database pool, a frozen worker) is
    /// ejected this way too.
    pub eject_after_timeouts: u32,
    /// How long an idle client keep-alive connection stays open (`httpIdleTimeoutSeconds`).
    #[serde(with = "duration_str")]
    pub client_idle_timeout: Duration,
    /// Total time a client has to send a request head once its first byte arrived (an
    /// idle keep-alive connection waits `client_idle_timeout` for that byte instead). Past
    /// it the client gets 408 and the connection closes; the clock does not restart on
    /// each read, so a head dripped a byte at a time is cut off too.
    #[serde(with = "duration_str")]
    pub request_head_timeout: Duration,
    /// Total time a client has to send a request body, counted from the end of its head
    /// and not restarted on each read. Past it the client gets 408 and the connection
    /// closes (a backend connection the body was streaming to is dropped). Raise it with
    /// `max_request_body_bytes` for large uploads over slow links.
    #[serde(with = "duration_str")]
    pub request_body_timeout: Duration,
    /// Largest request body accepted; bigger ones get 413.
    pub max_request_body_bytes: usize,
    /// A path the load balancer answers itself, on GET and HEAD, with its status as JSON:
    /// every backend, its last 15 minutes and the rotation changes (see `StatusReport`).
    /// `None` (the default, as on DigitalOcean) proxies every path.
    pub status_path: Option<String>,
    /// Most client connections open at once (one DigitalOcean load balancer node takes
    /// 10,000). A connection over the limit is accepted, answered 503 with the JSON code
    /// `too_many_connections` and `Connection: close`, and closed.
    pub max_connections: usize,
    /// Memory budget, across all connections, for request bodies held whole so that a
    /// failed first try can send them to another backend (only bodies up to 64 KiB are
    /// held). When it is used up, further bodies stream to the backend through the
    /// connection's 16 KiB read buffer instead of being held: memory stays bounded, only
    /// the replay on a stale backend connection is lost.
    pub max_buffered_body_bytes: usize,
    /// Threads that serve client connections, each a single-threaded tokio runtime; the
    /// accept loop (on the caller's runtime) hands each new connection to the thread serving
    /// the fewest. They share backends and health state. 0 serves on the caller's runtime
    /// instead. Dedicated threads avoid the work-stealing scheduler's
    /// cross-thread wake-ups on every request, which cost more than the proxying itself.
    pub io_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: None,
            backends: Vec::new(),
            health_check: HealthCheckConfig::default(),
            sticky: None,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(60),
            balance: Balance::RoundRobin,
            eject_after_timeouts: 0,
            client_idle_timeout: Duration::from_secs(60),
            request_head_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            max_request_body_bytes: 1024 * 1024,
            status_path: None,
            max_connections: 10_000,
            max_buffered_body_bytes: 32 * 1024 * 1024,
            io_threads: 0,
        }
    }
}

/// How a new request picks a backend among those in rotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Strict rotation, as DigitalOcean's load balancer does.
    #[default]
    RoundRobin,
    /// The backend with the fewest requests in flight from this load balancer; ties go in
    /// rotation, so sequential traffic is still spread in strict turn. A frozen or slow
    /// backend keeps its requests in flight and stops being chosen once it holds more than
    /// the others, so it stalls about its share of the concurrent clients instead of each
    /// client in turn.
    LeastOutstanding,
}

/// Most backends a pool can hold (one bit each in the healthy mask).
pub const MAX_BACKENDS: usize = 64;

/// One backend instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendConfig {
    /// Stable identifier shown in status and logs, e.g. `local-1`.
    pub id: String,
    /// Address traffic is forwarded to.
    pub addr: SocketAddr,
}

impl BackendConfig {
    /// Convenience constructor.
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            id: id.into(),
            addr,
        }
    }
}

/// Active HTTP health check, as DigitalOcean's `healthcheck` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct HealthCheckConfig {
    /// Path requested with GET.
    pub path: String,
    /// Port to check instead of the backend's traffic port.
    pub port: Option<u16>,
    /// Time between checks of one backend (`checkIntervalSeconds`).
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// Time a check may take before it counts as failed (`responseTimeoutSeconds`).
    #[serde(with = "duration_str")]
    pub response_timeout: Duration,
    /// Consecutive failures that take a backend out of rotation.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that put a backend (back) into rotation.
    pub healthy_threshold: u32,
    /// Take a backend out of rotation on the first check that answers 503 with the JSON
    /// `"status": "draining"` (the app's answer once it was told to stop), instead of after
    /// `unhealthy_threshold` failures. Off by default: DigitalOcean's load balancer knows
    /// only pass or fail.
    pub leave_on_draining: bool,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            port: None,
            interval: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            leave_on_draining: false,
        }
    }
}

/// Cookie-based sticky sessions (`stickySessions` with `type: cookies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct StickyConfig {
    /// Cookie name, 2-40 characters.
    pub cookie_name: String,
    /// Cookie lifetime (`cookieTtlSeconds`), sent as `Max-Age`.
    #[serde(with = "duration_str")]
    pub ttl: Duration,
}

impl Default for StickyConfig {
    fn default() -> Self {
        Self {
            cookie_name: "DO-LB".to_owned(),
            ttl: Duration::from_secs(300),
        }
    }
}

/// Durations as human strings (`"30s"`, `"150ms"`, `"2m"`) or bare seconds.
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurVisitor)
    }

    struct DurVisitor;

    impl Visitor<'_> for DurVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("seconds as a number, or a string like \"30s\", \"150ms\", \"2m\"")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("negative duration"))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(E::custom)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            crate::config::parse_duration(v)
                .ok_or_else(|| E::custom(format!("invalid duration {v:?}")))
        }
    }
}

/// Parses `"150ms"`, `"30s"`, `"2m"`, `"1h"` or bare seconds (`"1.5"`).
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(n * scale).ok()
}

/// Checks what serde cannot: limits, names and timeouts that make sense together.
pub(crate) fn validate(config: &Config) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Config(m));
    if config.backends.len() > MAX_BACKENDS {
        return bad(format!("at most {MAX_BACKENDS} backends"));
    }
    let mut ids = std::collections::HashSet::new();
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
    if let Some(p) = &config.status_path
        && (!p.starts_with('/') || p.contains('?') || p.parse::<http::uri::PathAndQuery>().is_err())
    {
        return bad(format!("status path {p:?} is not a path without a query"));
    }
    if hc.interval.is_zero() || hc.response_timeout.is_zero() {
        return bad("health check interval and response timeout must be positive".into());
    }
    if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
        return bad("health check thresholds must be at least 1".into());
    }
    if [
        config.client_idle_timeout,
        config.response_timeout,
        config.request_head_timeout,
        config.request_body_timeout,
    ]
    .iter()
    .any(Duration::is_zero)
    {
        return bad("timeouts must be positive".into());
    }
    if config.max_connections == 0 {
        return bad("max_connections must be at least 1".into());
    }
    if let Some(https) = &config.https {
        crate::tls::validate(https, config.listen)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        let mut c = Config::default();
        c.health_check.interval = Duration::from_millis(150);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"150ms\""), "{json}");
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let partial: Config = serde_json::from_str(
            r#"{"client_idle_timeout": 30, "health_check": {"interval": "2m"}}"#,
        )
        .unwrap();
        assert_eq!(partial.client_idle_timeout, Duration::from_secs(30));
        assert_eq!(partial.health_check.interval, Duration::from_secs(120));
        assert_eq!(partial.health_check.path, "/health");
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3d"), None);
    }
}
