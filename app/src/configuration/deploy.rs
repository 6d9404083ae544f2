//! `DeploySettings`: what a deployer sets per instance, rendered as environment variables.

use std::net::IpAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::env::{self, Environment};

/// What a deployment (cloud-init, the local stack) sets for one instance. Everything else
/// keeps the defaults of the embedded configuration files.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    pub environment: Environment,
    pub host: IpAddr,
    pub port: u16,
    pub server_id: String,
    /// `None`: writes need no key.
    pub api_key: Option<SecretString>,
    pub database_url: SecretString,
    /// The schema owner's URL (`database.owner_url`), when `database_url`'s role only reads
    /// and writes rows.
    pub owner_url: Option<SecretString>,
    /// Off behind PgBouncer in transaction mode.
    pub statement_cache: bool,
    /// Whether this instance applies pending migrations at start.
    pub run_migrations: bool,
    /// CA certificate of the database server, for `sslmode=verify-full`.
    pub ca_file: Option<PathBuf>,
    /// Seconds an instance keeps serving after SIGTERM with `/health` failing, so the load
    /// balancer stops choosing it before it stops accepting. `None`: the embedded default.
    pub drain_seconds: Option<u64>,
    /// How long `/health` waits for the database; keep it below the load balancer's check
    /// timeout so a slow database reads as a 503, not a timeout. `None`: the embedded default.
    pub health_timeout_ms: Option<u64>,
    /// Proxies in front of the instance that append to `X-Forwarded-For` (the load balancer:
    /// 1). `None`: the embedded default.
    pub trusted_proxy_hops: Option<u32>,
    /// How long the request log and its rollup are kept; unset parts keep the app's defaults.
    pub retention: LogRetention,
    /// Where the request log spools rows (`request_log.spool_dir`), when the working
    /// directory's `data/spool` is not writable there. `None`: the embedded default.
    pub spool_dir: Option<PathBuf>,
}

/// Retention of `requests_log` and `request_stats`, as a deployment may set it. `None` keeps
/// the app's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRetention {
    /// `request_log.retention_days`: whole UTC days of log rows kept before today's (0: all).
    pub request_log_days: Option<u32>,
    /// `stats.retention_days`: whole UTC days of hour rollups kept before today's (0: all).
    pub stats_days: Option<u32>,
    /// `request_log.maintenance_interval_seconds`: how often an instance runs the maintenance
    /// that applies both (0: never this instance).
    pub maintenance_interval_seconds: Option<u64>,
}

impl DeploySettings {
    /// The variables that configure an instance this way, secrets in the clear: whoever
    /// writes them down must keep them as secret as the settings themselves.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            (
                env::ENVIRONMENT_VAR.to_owned(),
                self.environment.as_str().to_owned(),
            ),
            (env::HOST.env(), self.host.to_string()),
            (env::PORT.env(), self.port.to_string()),
            (env::SERVER_ID.env(), self.server_id.clone()),
        ];
        if let Some(key) = &self.api_key {
            vars.push((env::API_KEY.env(), key.expose_secret().to_owned()));
        }
        vars.extend([
            (
                env::DATABASE_URL.env(),
                self.database_url.expose_secret().to_owned(),
            ),
            (env::STATEMENT_CACHE.env(), self.statement_cache.to_string()),
            (env::RUN_MIGRATIONS.env(), self.run_migrations.to_string()),
        ]);
        if let Some(owner) = &self.owner_url {
            vars.push((env::OWNER_URL.env(), owner.expose_secret().to_owned()));
        }
        if let Some(ca) = &self.ca_file {
            vars.push((env::CA_FILE.env(), ca.to_string_lossy().into_owned()));
        }
        if let Some(seconds) = self.drain_seconds {
            vars.push((env::DRAIN_SECONDS.env(), seconds.to_string()));
        }
        if let Some(ms) = self.health_timeout_ms {
            vars.push((env::HEALTH_TIMEOUT_MS.env(), ms.to_string()));
        }
        if let Some(dir) = &self.spool_dir {
            vars.push((
                env::REQUEST_LOG_SPOOL_DIR.env(),
                dir.to_string_lossy().into_owned(),
            ));
        }
        if let Some(hops) = self.trusted_proxy_hops {
            vars.push((env::TRUSTED_PROXY_HOPS.env(), hops.to_string()));
        }
        let retention = [
            (
                env::REQUEST_LOG_RETENTION_DAYS,
                self.retention.request_log_days.map(u64::from),
            ),
            (
                env::STATS_RETENTION_DAYS,
                self.retention.stats_days.map(u64::from),
            ),
            (
                env::MAINTENANCE_INTERVAL_SECONDS,
                self.retention.maintenance_interval_seconds,
            ),
        ];
        for (key, value) in retention {
            if let Some(value) = value {
                vars.push((key.env(), value.to_string()));
            }
        }
        vars
    }
}
