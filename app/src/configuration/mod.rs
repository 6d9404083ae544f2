//! Layered, typed settings: embedded base file, environment file, then `APP__*` variables.

mod deploy;
pub mod env;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

pub use deploy::{DeploySettings, LogRetention};
use env::{Environment, Key};

const BASE: &str = include_str!("../../configuration/base.yaml");
const LOCAL: &str = include_str!("../../configuration/local.yaml");
const PRODUCTION: &str = include_str!("../../configuration/production.yaml");

/// Shorter API keys can be guessed.
const MIN_API_KEY_CHARS: usize = 16;

/// A drain longer than this is a typo, not a plan: the process would linger for it.
const MAX_DRAIN_SECONDS: u64 = 600;

/// Everything the app reads at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// From `APP_ENVIRONMENT`, not from the files it selects.
    #[serde(skip)]
    pub environment: Environment,
    pub application: ApplicationSettings,
    pub database: DatabaseSettings,
    pub request_log: RequestLogSettings,
    pub stats: StatsSettings,
    pub telemetry: TelemetrySettings,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSettings {
    pub host: String,
    pub port: u16,
    /// Empty in the files: resolved to the hostname by [`Settings::load`].
    pub server_id: String,
    #[serde(deserialize_with = "optional_secret")]
    pub api_key: Option<SecretString>,
    /// How many proxies append to `X-Forwarded-For` in front of the app.
    pub trusted_proxy_hops: u32,
    pub body_limit_bytes: u64,
    /// After a stop signal: seconds of serving with `/health` at 503 and `Connection: close`.
    pub drain_seconds: u64,
    pub shutdown_grace_seconds: u64,
    pub keep_alive_timeout_seconds: u64,
}

/// The database connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Secret because PostgreSQL URLs carry the password.
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_seconds: u64,
    pub acquire_timeout_seconds: u64,
    pub health_timeout_ms: u64,
    pub run_migrations: MigrationsMode,
    pub schema_check_interval_ms: u64,
    pub statement_cache: bool,
    #[serde(deserialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// The schema owner's URL (secret like `url`); `None`: `url` migrates and maintains too.
    #[serde(deserialize_with = "optional_secret")]
    pub owner_url: Option<SecretString>,
}

/// When to apply pending migrations at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationsMode {
    /// SQLite: yes (an embedded database has nobody else to migrate it); PostgreSQL: no.
    Auto,
    Always,
    Never,
}

/// The batched writer behind `requests_log`, and how long its rows are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLogSettings {
    pub enabled: bool,
    pub log_health_checks: bool,
    /// Where each process keeps its spool of rows not yet in the database, in
    /// `<spool_dir>/<server_id>/<spool id>/`; relative to the working directory.
    pub spool_dir: PathBuf,
    /// The most the spools on disk may hold; past it new rows are dropped and counted.
    pub spool_max_bytes: u64,
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    /// Whole UTC days of rows kept before today's; 0 keeps every row.
    pub retention_days: u32,
    /// How often this instance runs the retention maintenance (one instance at a time does);
    /// 0 leaves it to the others.
    pub maintenance_interval_seconds: u64,
}

/// `/api/stats` and the `request_stats` rollup it reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSettings {
    pub cache_ms: u64,
    /// Whole UTC days of hour rows kept before today's; 0 keeps them all.
    pub retention_days: u32,
    /// Hours of minute rows kept; windows starting earlier are read from hour rows.
    pub minute_retention_hours: u32,
}

impl StatsSettings {
    /// How far back minute rows reach.
    pub fn minute_retention(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::hours(i64::from(self.minute_retention_hours))
    }
}

/// Logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_level: String,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A setting that cannot be used, named by its key and the environment variable that sets it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}` (env {env}): {problem}")]
    Invalid {
        key: &'static str,
        env: String,
        problem: String,
    },
    #[error("{var}={0:?} is not one of `local`, `production`", var = env::ENVIRONMENT_VAR)]
    Environment(String),
}

impl Settings {
    /// Loads settings for `APP_ENVIRONMENT` (default `local`) from the embedded files, the
    /// optional override folder `APP_CONFIG_DIR`, and `APP__SECTION__KEY` variables.
    pub fn load() -> Result<Self, SettingsError> {
        Self::from_vars(std::env::vars())
    }

    /// [`Settings::load`] with `vars` in place of the process environment.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let name = vars
            .get(env::ENVIRONMENT_VAR)
            .map_or(Environment::default().as_str(), String::as_str);
        let environment =
            Environment::parse(name).ok_or_else(|| SettingsError::Environment(name.to_owned()))?;
        let env_file = match environment {
            Environment::Local => LOCAL,
            Environment::Production => PRODUCTION,
        };
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(BASE, config::FileFormat::Yaml))
            .add_source(config::File::from_str(env_file, config::FileFormat::Yaml));
        if let Some(dir) = vars.get(env::CONFIG_DIR_VAR) {
            let dir = PathBuf::from(dir);
            builder = builder
                .add_source(config::File::from(dir.join("base.yaml")).required(false))
                .add_source(
                    config::File::from(dir.join(format!("{environment}.yaml"))).required(false),
                );
        }
        let raw = builder
            .add_source(
                // No `try_parsing`: it would turn an API key such as `0123` into the number 123.
                // Typed fields still parse their strings (port, booleans).
                config::Environment::with_prefix(env::PREFIX)
                    .prefix_separator(env::SEPARATOR)
                    .separator(env::SEPARATOR)
                    .source(Some(vars.into_iter().collect())),
            )
            .build()?;
        let mut settings: Settings = raw.try_deserialize()?;
        settings.environment = environment;
        settings.resolve()?;
        Ok(settings)
    }

    /// Fills derived defaults and checks values the types alone don't.
    pub fn resolve(&mut self) -> Result<(), SettingsError> {
        if self.application.server_id.trim().is_empty() {
            self.application.server_id = hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "unknown".into());
        }
        let sid = &self.application.server_id;
        if sid.len() > 64
            || !sid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(invalid(
                env::SERVER_ID,
                format!("{sid:?} must be 1-64 characters of A-Z a-z 0-9 - _ . :"),
            ));
        }
        if let Some(key) = self.application.api_key.take() {
            // A secret file's trailing newline is not part of the key.
            let key = key.expose_secret().trim();
            if key.chars().count() < MIN_API_KEY_CHARS {
                return Err(invalid(
                    env::API_KEY,
                    format!(
                        "must be at least {MIN_API_KEY_CHARS} characters (value not shown); \
                         e.g. `openssl rand -hex 32`, or leave it empty for open writes"
                    ),
                ));
            }
            self.application.api_key = Some(SecretString::from(key.to_owned()));
        }
        if self.application.drain_seconds > MAX_DRAIN_SECONDS {
            return Err(invalid(
                env::DRAIN_SECONDS,
                format!("must be at most {MAX_DRAIN_SECONDS}"),
            ));
        }
        if self.application.body_limit_bytes == 0 {
            return Err(invalid(env::BODY_LIMIT_BYTES, "must be at least 1".into()));
        }
        if self.application.host.parse::<std::net::IpAddr>().is_err()
            && self.application.host != "localhost"
        {
            return Err(invalid(
                env::HOST,
                format!("{:?} is not an IP address", self.application.host),
            ));
        }
        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                env::DATABASE_URL,
                "must start with sqlite: or postgres:// (value not shown: it may hold a password)"
                    .into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid(env::MAX_CONNECTIONS, "must be at least 1".into()));
        }
        if self.database.min_connections > self.database.max_connections {
            return Err(invalid(
                env::MIN_CONNECTIONS,
                format!("must not exceed {}", env::MAX_CONNECTIONS.path()),
            ));
        }
        if self.database.schema_check_interval_ms == 0 {
            return Err(invalid(
                env::SCHEMA_CHECK_INTERVAL_MS,
                "must be at least 1".into(),
            ));
        }
        if self.database.health_timeout_ms == 0 {
            return Err(invalid(env::HEALTH_TIMEOUT_MS, "must be at least 1".into()));
        }
        if self.database.owner_url.is_some() && self.is_sqlite() {
            return Err(invalid(
                env::OWNER_URL,
                "applies to PostgreSQL only; leave it empty for SQLite".into(),
            ));
        }
        if let Some(ca) = &self.database.ca_file
            && !ca.is_file()
        {
            return Err(invalid(
                env::CA_FILE,
                format!("{} is not a readable file", ca.display()),
            ));
        }
        let log = &self.request_log;
        if log.batch_size == 0 || log.flush_interval_ms == 0 {
            return Err(invalid(
                env::REQUEST_LOG,
                "batch_size and flush_interval_ms must be at least 1".into(),
            ));
        }
        if log.spool_max_bytes < MIN_SPOOL_BYTES {
            return Err(invalid(
                env::REQUEST_LOG_SPOOL_MAX_BYTES,
                format!("must be at least {MIN_SPOOL_BYTES} (64 KiB)"),
            ));
        }
        if log.enabled && log.spool_dir.as_os_str().is_empty() {
            return Err(invalid(
                env::REQUEST_LOG_SPOOL_DIR,
                "must name a directory the app may write".into(),
            ));
        }
        if log.batch_size > 5000 {
            return Err(invalid(
                env::REQUEST_LOG_BATCH_SIZE,
                "must be at most 5000".into(),
            ));
        }
        for (key, days) in [
            (env::REQUEST_LOG_RETENTION_DAYS, log.retention_days),
            (env::STATS_RETENTION_DAYS, self.stats.retention_days),
        ] {
            if days > MAX_RETENTION_DAYS {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_RETENTION_DAYS} (0 keeps everything)"),
                ));
            }
        }
        let minute_hours = self.stats.minute_retention_hours;
        if minute_hours == 0 || minute_hours > MAX_RETENTION_DAYS * 24 {
            return Err(invalid(
                env::STATS_MINUTE_RETENTION_HOURS,
                format!("must be between 1 and {}", MAX_RETENTION_DAYS * 24),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level).is_err() {
            return Err(invalid(
                env::LOG_LEVEL,
                format!(
                    "{:?} is not a tracing filter directive",
                    self.telemetry.log_level
                ),
            ));
        }
        Ok(())
    }

    /// True when the database is the embedded SQLite file.
    pub fn is_sqlite(&self) -> bool {
        self.database.url.expose_secret().starts_with("sqlite:")
    }

    /// Which database `database.url` names, without credentials or options: `sqlite:` and the
    /// file's absolute path, or `postgres://host:port/name`. The request-log spool is tagged
    /// with its hash, so rows are replayed only into the database they were answered for.
    pub fn database_identity(&self) -> String {
        database_identity(self.database.url.expose_secret())
    }
}

/// The file a `sqlite:` URL names (`sqlite://data/app.sqlite?mode=rwc` -> `data/app.sqlite`,
/// relative to the working directory); `None` for other URLs and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| Path::new(path))
}

fn database_identity(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return match sqlite_file(url) {
            Some(path) => {
                let absolute = std::env::current_dir()
                    .map(|cwd| cwd.join(path))
                    .unwrap_or_else(|_| path.to_owned());
                format!("sqlite:{}", absolute.display())
            }
            None => "sqlite::memory:".to_owned(),
        };
    }
    // Parsed, not cut at the first '?' or '@': a password may hold either.
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "postgres://{}:{}{}",
            parsed.host_str().unwrap_or(""),
            parsed.port().unwrap_or(5432),
            parsed.path()
        ),
        Err(_) => "unparsed".to_owned(),
    }
}

/// A spool smaller than this would drop rows in the first second of an outage.
const MIN_SPOOL_BYTES: u64 = 64 * 1024;

/// Ten years: past that a retention is a typo for "keep everything" (0).
const MAX_RETENTION_DAYS: u32 = 3650;

impl ApplicationSettings {
    /// The bind address as `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl DatabaseSettings {
    /// The embedded defaults for `url`: what a tool that only knows the URL (such as the local
    /// stack runner applying migrations) connects with.
    pub fn for_url(url: &str) -> Self {
        let mut settings: DatabaseSettings = config::Config::builder()
            .add_source(config::File::from_str(BASE, config::FileFormat::Yaml))
            .build()
            .and_then(|base| base.get("database"))
            .expect("the embedded base.yaml has a valid database section");
        settings.url = SecretString::from(url.to_owned());
        settings
    }

    /// The settings of the schema owner's connection, when one is configured: one connection,
    /// for migrations and maintenance.
    pub fn owner(&self) -> Option<DatabaseSettings> {
        self.owner_url.as_ref().map(|url| DatabaseSettings {
            url: url.clone(),
            owner_url: None,
            max_connections: 1,
            min_connections: 1,
            ..self.clone()
        })
    }

    /// Whether pending migrations run at start, given the database kind.
    pub fn migrate_at_start(&self, sqlite: bool) -> bool {
        match self.run_migrations {
            MigrationsMode::Auto => sqlite,
            MigrationsMode::Always => true,
            MigrationsMode::Never => false,
        }
    }

    /// How often pending migrations are looked for again while there are some.
    pub fn schema_check_interval(&self) -> Duration {
        Duration::from_millis(self.schema_check_interval_ms)
    }

    /// How long `/health` waits for the database.
    pub fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.health_timeout_ms)
    }
}

fn invalid(key: Key, problem: String) -> SettingsError {
    SettingsError::Invalid {
        key: key.path(),
        env: key.env(),
        problem,
    }
}

fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.trim().is_empty()).then(|| SecretString::from(s)))
}

fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.trim().is_empty()).then(|| PathBuf::from(s)))
}

impl<'de> Deserialize<'de> for MigrationsMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Self::Always),
            Raw::Bool(false) => Ok(Self::Never),
            Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "" | "auto" => Ok(Self::Auto),
                "true" | "always" | "yes" => Ok(Self::Always),
                "false" | "never" | "no" => Ok(Self::Never),
                other => Err(serde::de::Error::custom(format!(
                    "{other:?} is not one of auto, true, false"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn retention_settings_have_defaults_and_are_checked() {
        let defaults = load(&[]).unwrap();
        assert_eq!(defaults.request_log.retention_days, 7);
        assert_eq!(defaults.request_log.maintenance_interval_seconds, 300);
        assert_eq!(defaults.stats.retention_days, 400);
        assert_eq!(defaults.stats.minute_retention_hours, 48);

        let set = load(&[
            ("APP__REQUEST_LOG__RETENTION_DAYS", "0"),
            ("APP__STATS__RETENTION_DAYS", "30"),
            ("APP__STATS__MINUTE_RETENTION_HOURS", "6"),
            ("APP__REQUEST_LOG__MAINTENANCE_INTERVAL_SECONDS", "0"),
        ])
        .unwrap();
        assert_eq!(set.request_log.retention_days, 0, "0 keeps every row");
        assert_eq!(set.stats.retention_days, 30);
        assert_eq!(set.stats.minute_retention(), chrono::TimeDelta::hours(6));
        assert_eq!(set.request_log.maintenance_interval_seconds, 0);

        for (var, value, key) in [
            (
                "APP__STATS__MINUTE_RETENTION_HOURS",
                "0",
                "stats.minute_retention_hours",
            ),
            (
                "APP__REQUEST_LOG__RETENTION_DAYS",
                "3651",
                "request_log.retention_days",
            ),
            (
                "APP__STATS__RETENTION_DAYS",
                "99999",
                "stats.retention_days",
            ),
        ] {
            let err = load(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(var), "{err}");
        }
        assert!(load(&[("APP__STATS__RETENTION_DAYS", "-1")]).is_err());
    }

    #[test]
    fn the_spool_settings_have_defaults_and_are_checked() {
        let defaults = load(&[]).unwrap();
        assert_eq!(defaults.request_log.spool_dir, PathBuf::from("data/spool"));
        assert_eq!(defaults.request_log.spool_max_bytes, 1 << 30);
        let set = load(&[
            ("APP__REQUEST_LOG__SPOOL_DIR", "/var/lib/x"),
            ("APP__REQUEST_LOG__SPOOL_MAX_BYTES", "65536"),
        ])
        .unwrap();
        assert_eq!(set.request_log.spool_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(set.request_log.spool_max_bytes, 65536);
        for (var, value, key) in [
            (
                "APP__REQUEST_LOG__SPOOL_MAX_BYTES",
                "65535",
                "request_log.spool_max_bytes",
            ),
            ("APP__REQUEST_LOG__SPOOL_DIR", "", "request_log.spool_dir"),
        ] {
            let err = load(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(var), "{err}");
        }
    }

    // DeploySettings renders what this module loads: the round trip is checked here, where
    // both sides are in view, so that `deploy` does not refer back to the module above it.
    fn loaded(deploy: &DeploySettings) -> Settings {
        Settings::from_vars(deploy.to_env()).expect("rendered settings load")
    }

    #[test]
    fn rendered_settings_load_back_to_the_same_values() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let deploy = DeploySettings {
            environment: Environment::Production,
            host: "10.0.0.7".parse().unwrap(),
            port: 3123,
            server_id: "rustlb-dev-blue-2".into(),
            // Leading zeros: must stay text all the way through.
            api_key: Some("0012345678901234".into()),
            database_url: "postgres://app:p%40ss@db:25061/app?sslmode=verify-full".into(),
            owner_url: Some("postgres://app_owner:o%23wn@db:25060/app?sslmode=verify-full".into()),
            statement_cache: false,
            run_migrations: true,
            ca_file: Some(ca.path().to_owned()),
            drain_seconds: Some(40),
            health_timeout_ms: Some(800),
            trusted_proxy_hops: Some(2),
            retention: LogRetention {
                request_log_days: Some(3),
                stats_days: Some(90),
                maintenance_interval_seconds: Some(60),
            },
            spool_dir: Some("/var/lib/rustlb/spool".into()),
        };
        let settings = loaded(&deploy);
        assert_eq!(settings.environment, Environment::Production);
        assert_eq!(settings.application.host, "10.0.0.7");
        assert_eq!(settings.application.port, 3123);
        assert_eq!(settings.application.server_id, "rustlb-dev-blue-2");
        assert_eq!(
            settings.application.api_key.unwrap().expose_secret(),
            "0012345678901234"
        );
        assert_eq!(
            settings.database.url.expose_secret(),
            deploy.database_url.expose_secret()
        );
        assert_eq!(
            settings.database.owner_url.unwrap().expose_secret(),
            deploy.owner_url.unwrap().expose_secret()
        );
        assert!(!settings.database.statement_cache);
        assert_eq!(settings.database.run_migrations, MigrationsMode::Always);
        assert_eq!(settings.database.ca_file.as_deref(), Some(ca.path()));
        assert_eq!(settings.application.drain_seconds, 40);
        assert_eq!(settings.database.health_timeout_ms, 800);
        assert_eq!(settings.application.trusted_proxy_hops, 2);
        assert_eq!(settings.request_log.retention_days, 3);
        assert_eq!(settings.stats.retention_days, 90);
        assert_eq!(settings.request_log.maintenance_interval_seconds, 60);
        assert_eq!(
            settings.request_log.spool_dir,
            PathBuf::from("/var/lib/rustlb/spool")
        );
    }

    #[test]
    fn what_a_deployer_leaves_out_keeps_its_default() {
        let deploy = DeploySettings {
            environment: Environment::Local,
            host: "127.0.0.1".parse().unwrap(),
            port: 3001,
            server_id: "local-1".into(),
            api_key: None,
            database_url: "sqlite://data/local.sqlite?mode=rwc".into(),
            owner_url: None,
            statement_cache: true,
            run_migrations: false,
            ca_file: None,
            drain_seconds: None,
            health_timeout_ms: None,
            trusted_proxy_hops: None,
            retention: LogRetention::default(),
            spool_dir: None,
        };
        let settings = loaded(&deploy);
        assert_eq!(settings.environment, Environment::Local);
        assert!(settings.application.api_key.is_none());
        assert!(settings.database.statement_cache);
        assert_eq!(settings.database.run_migrations, MigrationsMode::Never);
        assert!(settings.database.ca_file.is_none());
        assert_eq!(settings.application.drain_seconds, 0);
        assert_eq!(settings.database.health_timeout_ms, 1000);
        assert_eq!(settings.application.trusted_proxy_hops, 1);
        assert_eq!(settings.request_log.retention_days, 7);
        assert_eq!(settings.stats.retention_days, 400);
        assert_eq!(settings.request_log.maintenance_interval_seconds, 300);
        assert_eq!(settings.request_log.spool_dir, PathBuf::from("data/spool"));
        let names: Vec<String> = deploy.to_env().into_iter().map(|(k, _)| k).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn the_database_identity_names_the_database_and_never_its_credentials() {
        for (url, identity) in [
            (
                "postgres://app:s3cr%3Ft@x@db.internal:25060/rustlb?sslmode=require",
                "postgres://db.internal:25060/rustlb",
            ),
            (
                "postgresql://u:p@127.0.0.1/other",
                "postgres://127.0.0.1:5432/other",
            ),
        ] {
            assert_eq!(super::database_identity(url), identity);
        }
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            super::database_identity("sqlite://data/local.sqlite?mode=rwc"),
            format!("sqlite:{}", cwd.join("data/local.sqlite").display())
        );
        assert_eq!(
            super::database_identity("sqlite:///var/lib/a.db"),
            "sqlite:/var/lib/a.db"
        );
    }
}
