//! The names settings go by outside the files: `APP_ENVIRONMENT` and `APP__SECTION__KEY`.
//!
//! Each key is declared once; [`Key::env`] spells its variable with the same prefix and
//! separator the loader reads variables with.

use std::fmt;

/// The variable that picks the environment file.
pub const ENVIRONMENT_VAR: &str = "APP_ENVIRONMENT";
/// The variable naming a folder of override files.
pub const CONFIG_DIR_VAR: &str = "APP_CONFIG_DIR";
/// `APP__SECTION__KEY`: the prefix, and the separator both after it and between levels.
pub(crate) const PREFIX: &str = "APP";
pub(crate) const SEPARATOR: &str = "__";

/// A setting's key in the configuration files, such as `database.url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(&'static str);

impl Key {
    /// The dotted key as the files spell it.
    pub const fn path(self) -> &'static str {
        self.0
    }

    /// The environment variable that overrides it: `database.url` -> `APP__DATABASE__URL`.
    pub fn env(self) -> String {
        format!(
            "{PREFIX}{SEPARATOR}{}",
            self.0.to_uppercase().replace('.', SEPARATOR)
        )
    }
}

impl fmt::Display for Key {
    /// `database.url / APP__DATABASE__URL`, for messages that tell an operator what to set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {}", self.0, self.env())
    }
}

pub const HOST: Key = Key("application.host");
pub const PORT: Key = Key("application.port");
pub const SERVER_ID: Key = Key("application.server_id");
pub const API_KEY: Key = Key("application.api_key");
pub const BODY_LIMIT_BYTES: Key = Key("application.body_limit_bytes");
pub const DRAIN_SECONDS: Key = Key("application.drain_seconds");
pub const TRUSTED_PROXY_HOPS: Key = Key("application.trusted_proxy_hops");
pub const DATABASE_URL: Key = Key("database.url");
pub const MAX_CONNECTIONS: Key = Key("database.max_connections");
pub const MIN_CONNECTIONS: Key = Key("database.min_connections");
pub const HEALTH_TIMEOUT_MS: Key = Key("database.health_timeout_ms");
pub const RUN_MIGRATIONS: Key = Key("database.run_migrations");
pub const SCHEMA_CHECK_INTERVAL_MS: Key = Key("database.schema_check_interval_ms");
pub const STATEMENT_CACHE: Key = Key("database.statement_cache");
pub const CA_FILE: Key = Key("database.ca_file");
pub const OWNER_URL: Key = Key("database.owner_url");
pub const REQUEST_LOG: Key = Key("request_log");
pub const REQUEST_LOG_BATCH_SIZE: Key = Key("request_log.batch_size");
pub const REQUEST_LOG_SPOOL_DIR: Key = Key("request_log.spool_dir");
pub const REQUEST_LOG_SPOOL_MAX_BYTES: Key = Key("request_log.spool_max_bytes");
pub const REQUEST_LOG_RETENTION_DAYS: Key = Key("request_log.retention_days");
pub const MAINTENANCE_INTERVAL_SECONDS: Key = Key("request_log.maintenance_interval_seconds");
pub const STATS_RETENTION_DAYS: Key = Key("stats.retention_days");
pub const STATS_MINUTE_RETENTION_HOURS: Key = Key("stats.minute_retention_hours");
pub const LOG_LEVEL: Key = Key("telemetry.log_level");

/// Which embedded environment file applies on top of the base file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// A laptop: human-readable logs on 127.0.0.1.
    #[default]
    Local,
    /// Droplets and the local stack's instances: 0.0.0.0, JSON logs.
    Production,
}

impl Environment {
    /// The value of `APP_ENVIRONMENT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Production => "production",
        }
    }

    /// Parses `APP_ENVIRONMENT`; `None` for anything but `local` and `production`.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Local, Self::Production]
            .into_iter()
            .find(|e| e.as_str() == value)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_prefixed_upper_case_variables() {
        assert_eq!(DATABASE_URL.env(), "APP__DATABASE__URL");
        assert_eq!(BODY_LIMIT_BYTES.env(), "APP__APPLICATION__BODY_LIMIT_BYTES");
        assert_eq!(
            RUN_MIGRATIONS.to_string(),
            "database.run_migrations / APP__DATABASE__RUN_MIGRATIONS"
        );
        assert_eq!(
            Environment::parse("production"),
            Some(Environment::Production)
        );
        assert_eq!(Environment::parse("staging"), None);
    }
}
