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
    /// Create the cluster from another cluster's backup (`backupRestore`).
    pub restore_from: Option<RestoreFrom>,
}

/// `database.restoreFrom`: the cluster whose backup a new cluster starts from, and the moment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreFrom {
    /// The name of the existing cluster (e.g. `rustlb-prod-db-1a2b3c4d`).
    pub cluster: String,
    /// The backup's time (ISO 8601, UTC); the newest backup when left out.
    pub at: Option<String>,
}

/// How long DigitalOcean keeps a cluster's daily backups and point-in-time recovery.
pub const BACKUP_RETENTION_DAYS: i64 = 7;

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
            restore_from: None,
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
    if let Some(restore) = &d.restore_from {
        check_restore(r, restore);
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

/// A backup exists for a cluster that exists, at a moment in the last week (the time is checked
/// against this machine's clock).
fn check_restore(r: &mut Reader, restore: &RestoreFrom) {
    if restore.cluster.trim().is_empty() {
        r.err("database.restoreFrom.cluster", "names no cluster");
    }
    let Some(at) = &restore.at else { return };
    match chrono::DateTime::parse_from_rfc3339(at) {
        Err(_) => r.err(
            "database.restoreFrom.at",
            format!("must be an ISO 8601 time like 2026-12-05T03:00:00Z (got {at:?})"),
        ),
        Ok(t) => {
            let age = chrono::Utc::now().signed_duration_since(t);
            if age < chrono::TimeDelta::zero() {
                r.err("database.restoreFrom.at", format!("{at} is in the future"));
            } else if age > chrono::TimeDelta::days(BACKUP_RETENTION_DAYS) {
                r.err(
                    "database.restoreFrom.at",
                    format!(
                        "{at} is more than {BACKUP_RETENTION_DAYS} days ago: DigitalOcean keeps backups that long"
                    ),
                );
            }
        }
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
