//! The database section: the managed PostgreSQL cluster, its app user and pool, and how droplets reach it over TLS.

use super::keys::Section;
use super::reader::Reader;
use crate::limits;
use serde::Deserialize;
use serde_json::Value;

/// The TLS modes droplets may use towards the database; `verify-full` checks the certificate.
pub const SSL_MODES: &[&str] = &["verify-full", "require"];

/// The managed PostgreSQL cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// PostgreSQL major version.
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
    /// Node size slug.
    pub size: String,
    /// Nodes (1 = no standby).
    pub node_count: u32,
    /// The database the app uses.
    pub name: String,
    /// The app's own user (never the admin user).
    pub user: String,
    /// PgBouncer pool size.
    pub pool_size: u32,
    /// `verify-full` (certificate checked against the cluster CA) or `require` (encrypted only).
    pub ssl_mode: String,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            version: "16".into(),
            size: "db-s-1vcpu-1gb".into(),
            node_count: 1,
            name: "app".into(),
            user: "app".into(),
            pool_size: 10,
            ssl_mode: "verify-full".into(),
        }
    }
}

impl DatabaseSettings {
    /// `database`; prod needs a standby node.
    pub(super) fn parse(r: &mut Reader, is_prod: bool) -> DatabaseSettings {
        let r = r.enter(Section::Database);
        let database: DatabaseSettings = r.object("database");
        check(r, &database, is_prod);
        database
    }
}

fn check(r: &mut Reader, d: &DatabaseSettings, is_prod: bool) {
    if let Some(problem) = limits::range_problem(d.node_count, &limits::DATABASE_NODES) {
        r.err("database.nodeCount", problem);
    } else if is_prod && d.node_count < 2 {
        r.err("database.nodeCount", "prod needs a standby: at least 2");
    }
    match limits::database_ram_gb(&d.size) {
        None => r.err(
            "database.size",
            format!(
                "{:?} is not a database size slug like db-s-1vcpu-2gb",
                d.size
            ),
        ),
        Some(gb) if d.node_count > 1 && gb < limits::STANDBY_MIN_RAM_GB => r.err(
            "database.nodeCount",
            format!(
                "standby nodes need a plan with {} GB of RAM or more; {} has {gb} GB \
                 (use db-s-1vcpu-2gb or larger, or nodeCount 1)",
                limits::STANDBY_MIN_RAM_GB,
                d.size
            ),
        ),
        Some(_) => {}
    }
    if d.user == "doadmin" {
        r.err("database.user", "the app must not use the admin user");
    }
    for (field, value) in [("name", &d.name), ("user", &d.user)] {
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            r.err(
                &format!("database.{field}"),
                "must be letters, digits, - or _",
            );
        }
    }
    if let Some(problem) = limits::range_problem(d.pool_size, &limits::POOL_SIZE) {
        r.err("database.poolSize", problem);
    }
    if !SSL_MODES.contains(&d.ssl_mode.as_str()) {
        r.err(
            "database.sslMode",
            format!(
                "must be verify-full (the default: the cluster CA is read from DigitalOcean) or require (got {:?})",
                d.ssl_mode
            ),
        );
    }
}

/// Accepts `16` as well as `"16"` (YAML users write versions both ways).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}
