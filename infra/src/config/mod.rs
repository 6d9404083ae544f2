//! The typed stack configuration: read once from a stack file or the engine, validated before any resource exists.

use crate::limits;
use ipnet::IpNet;
use secrecy::{SecretBox, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The Pulumi project name; also the config namespace (`rustlb:<key>`).
pub const PROJECT: &str = "rustlb";

/// The stack that runs on this machine instead of DigitalOcean.
pub const LOCAL_STACK: &str = "local";

/// Every key this program reads, without the `rustlb:` namespace; anything else is a typo.
pub const KNOWN_KEYS: &[&str] = &[
    "environment",
    "region",
    "vpcCidr",
    "dropletSize",
    "dropletImage",
    "dropletCount",
    "activeColor",
    "blue",
    "green",
    "appBinary",
    "artifactsRegion",
    "sshKeys",
    "sshPublicKeys",
    "adminCidrs",
    "allowSshFromAnywhere",
    "domain",
    "loadBalancerSizeUnit",
    "httpIdleTimeoutSeconds",
    "requestLogRetentionDays",
    "statsRetentionDays",
    "healthCheck",
    "stickySessions",
    "database",
    "apiKey",
    "lbAddress",
    "firstBackendPort",
    "databaseUrl",
];

/// Defaults shared by the code and the `config` block of Pulumi.yaml (a test keeps them equal).
pub mod defaults {
    /// `rustlb:region`.
    pub const REGION: &str = "nyc1";
    /// `rustlb:vpcCidr`.
    pub const VPC_CIDR: &str = "10.110.0.0/20";
    /// `rustlb:dropletSize`.
    pub const DROPLET_SIZE: &str = "s-1vcpu-1gb";
    /// `rustlb:dropletImage`: Ubuntu 24.04 LTS.
    pub const DROPLET_IMAGE: &str = "ubuntu-24-04-x64";
    /// `rustlb:dropletCount`.
    pub const DROPLET_COUNT: u32 = 2;
    /// `rustlb:activeColor`.
    pub const ACTIVE_COLOR: &str = "blue";
    /// `rustlb:appBinary`, relative to the repository root.
    pub const APP_BINARY: &str = "target/release/app";
    /// `rustlb:artifactsRegion`: Spaces exists only in some regions (nyc3, sfo3, ams3, fra1, sgp1, syd1...).
    pub const ARTIFACTS_REGION: &str = "nyc3";
    /// `rustlb:allowSshFromAnywhere`.
    pub const ALLOW_SSH_FROM_ANYWHERE: bool = false;
    /// `rustlb:loadBalancerSizeUnit`.
    pub const LB_SIZE_UNIT: u32 = 1;
    /// `rustlb:httpIdleTimeoutSeconds`.
    pub const HTTP_IDLE_TIMEOUT_SECONDS: u32 = 60;
    /// `rustlb:requestLogRetentionDays`: whole UTC days of `requests_log` rows kept (0: all).
    pub const REQUEST_LOG_RETENTION_DAYS: u32 = 7;
    /// `rustlb:statsRetentionDays`: whole UTC days of hourly `/api/stats` rollups kept (0: all).
    pub const STATS_RETENTION_DAYS: u32 = 400;
    /// `rustlb:lbAddress` (local stack).
    pub const LB_ADDRESS: &str = "127.0.0.1:8080";
    /// `rustlb:firstBackendPort` (local stack).
    pub const FIRST_BACKEND_PORT: u16 = 3001;
    /// `rustlb:databaseUrl` (local stack).
    pub const DATABASE_URL: &str = "sqlite://data/local.sqlite?mode=rwc";
}

/// Where a stack runs: `local` on this machine, every other stack on DigitalOcean through Pulumi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// The local stack (`infra up|status|destroy --stack local`).
    Local,
    /// A DigitalOcean stack (`pulumi up|destroy -s <stack>`, `infra preview --stack <stack>`).
    Cloud,
}

impl StackKind {
    /// The kind of a stack name.
    pub fn of(stack: &str) -> StackKind {
        if stack == LOCAL_STACK {
            StackKind::Local
        } else {
            StackKind::Cloud
        }
    }

    /// Refuses a command meant for the other kind of stack, saying which commands fit `stack`.
    pub fn require(self, stack: &str) -> anyhow::Result<()> {
        match (self, StackKind::of(stack)) {
            (StackKind::Local, StackKind::Cloud) => anyhow::bail!(
                "`{stack}` is a DigitalOcean stack: deploy it with `pulumi up -s {stack}`, remove it with \
                 `pulumi destroy -s {stack}`, look first with `infra preview --stack {stack}`; only the \
                 `{LOCAL_STACK}` stack runs on this machine"
            ),
            (StackKind::Cloud, StackKind::Local) => anyhow::bail!(
                "the `{LOCAL_STACK}` stack runs on this machine, not on DigitalOcean: use \
                 `cargo run --release -p infra -- up --stack {LOCAL_STACK}` (and `status`, `destroy`)"
            ),
            _ => Ok(()),
        }
    }
}

/// Set by the offline preview: keys (without namespace) whose values are encrypted in the stack file.
pub const ENCRYPTED_KEYS_ENV: &str = "RUSTLB_PREVIEW_ENCRYPTED_KEYS";

/// Retention a stack may ask of the app, in days: ten years at most.
const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 0..=3650;

/// A local instance's drain: the supervisor has already taken it out of rotation, so this only
/// covers requests the load balancer sent just before.
pub const LOCAL_DRAIN_SECONDS: u64 = 1;

/// The port the app listens on inside every droplet.
pub const APP_PORT: u16 = 3000;

/// The stack's environment, as DigitalOcean projects name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Development.
    Development,
    /// Staging.
    Staging,
    /// Production.
    Production,
}

impl Environment {
    /// The value DigitalOcean expects in a project's `environment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "Development",
            Environment::Staging => "Staging",
            Environment::Production => "Production",
        }
    }
}

/// A droplet pool colour for blue/green releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// The blue pool.
    Blue,
    /// The green pool.
    Green,
}

impl Color {
    /// Both colours, blue first.
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    /// `blue` or `green`.
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}

/// Which app build a pool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    /// Whatever `cargo build --release -p app` produced last (`rustlb:appBinary`).
    Local,
    /// A build pinned by the sha256 of its binary, already uploaded by an earlier `pulumi up`.
    Pinned(String),
}

/// One droplet pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Number of droplets.
    pub count: u32,
    /// The build the droplets run.
    pub build: Build,
}

/// The load balancer's health check, in DigitalOcean's terms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthCheck {
    /// `http`, `https` or `tcp`.
    pub protocol: String,
    /// Port checked on each droplet.
    pub port: u16,
    /// Path requested (http/https).
    pub path: String,
    /// Seconds between checks.
    pub check_interval_seconds: u32,
    /// Seconds before a check counts as failed.
    pub response_timeout_seconds: u32,
    /// Consecutive failures that take a droplet out.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that bring it back.
    pub healthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        // Every 30 s, out after 3 failures, back after 2 passes. The provider's defaults differ from
        // the API's, so every field is set explicitly.
        HealthCheck {
            protocol: "http".into(),
            port: APP_PORT,
            path: "/health".into(),
            check_interval_seconds: 30,
            response_timeout_seconds: 5,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }
}

/// Sticky sessions at the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StickySessions {
    /// `none` or `cookies`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Cookie name (2-40 chars) when `kind` is `cookies`.
    pub cookie_name: Option<String>,
    /// Cookie lifetime when `kind` is `cookies`.
    pub cookie_ttl_seconds: Option<u32>,
}

impl Default for StickySessions {
    fn default() -> Self {
        StickySessions {
            kind: "none".into(),
            cookie_name: None,
            cookie_ttl_seconds: None,
        }
    }
}

impl StickySessions {
    /// True when the load balancer pins clients with a cookie.
    pub fn enabled(&self) -> bool {
        self.kind == "cookies"
    }
}

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

/// A secret setting: absent, present but encrypted (stack file read offline), or known.
pub enum SecretValue<T> {
    /// Not set.
    Unset,
    /// Set with `pulumi config set --secret`; only the Pulumi CLI can decrypt it.
    Encrypted,
    /// The value (from the engine, or a plain value in the local stack file).
    Known(T),
}

impl<T> SecretValue<T> {
    /// The value when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            SecretValue::Known(v) => Some(v),
            _ => None,
        }
    }

    /// True unless the key is absent.
    pub fn is_set(&self) -> bool {
        !matches!(self, SecretValue::Unset)
    }
}

impl<T> fmt::Debug for SecretValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Unset => f.write_str("Unset"),
            SecretValue::Encrypted => f.write_str("Encrypted"),
            SecretValue::Known(_) => f.write_str("[secret]"),
        }
    }
}

/// One stack's configuration, validated.
#[derive(Debug)]
pub struct StackConfig {
    /// Pulumi project name.
    pub project: String,
    /// Stack name.
    pub stack: String,
    /// Where the values came from (stack file path, or `PULUMI_CONFIG`).
    pub source: String,
    /// DigitalOcean project environment.
    pub environment: Environment,
    /// DigitalOcean region slug.
    pub region: String,
    /// The VPC's private range.
    pub vpc_cidr: IpNet,
    /// Droplet size slug.
    pub droplet_size: String,
    /// Droplet image slug.
    pub droplet_image: String,
    /// The colour the load balancer sends traffic to.
    pub active_color: Color,
    /// The blue pool.
    pub blue: Pool,
    /// The green pool.
    pub green: Pool,
    /// The app binary `Build::Local` refers to, relative to the repository root.
    pub app_binary: PathBuf,
    /// Spaces region of the artifacts bucket.
    pub artifacts_region: String,
    /// SSH key ids or fingerprints, already uploaded to DigitalOcean, for the droplets.
    pub ssh_keys: SecretValue<SecretBox<Vec<String>>>,
    /// OpenSSH public keys the program uploads and puts on the droplets.
    pub ssh_public_keys: Vec<SshPublicKey>,
    /// Networks allowed to reach port 22.
    pub admin_cidrs: Vec<IpNet>,
    /// Whether 0.0.0.0/0 may reach port 22 (never in prod).
    pub allow_ssh_from_anywhere: bool,
    /// Domain served over HTTPS (DNS hosted on DigitalOcean); none means HTTP only.
    pub domain: Option<String>,
    /// Load balancer size units.
    pub load_balancer_size_unit: u32,
    /// Load balancer idle timeout.
    pub http_idle_timeout_seconds: u32,
    /// The load balancer health check.
    pub health_check: HealthCheck,
    /// Sticky sessions.
    pub sticky_sessions: StickySessions,
    /// Managed database.
    pub database: DatabaseSettings,
    /// The API key the app requires on write endpoints.
    pub api_key: SecretValue<SecretString>,
    /// Days of request-log rows the app keeps.
    pub request_log_retention_days: u32,
    /// Days of hourly stats rollups the app keeps.
    pub stats_retention_days: u32,
    /// Local stack: the load balancer's listen address.
    pub lb_address: SocketAddr,
    /// Local stack: backend N listens on this port + N - 1.
    pub first_backend_port: u16,
    /// Local stack: the database URL the app instances share.
    pub database_url: String,
}

impl StackConfig {
    /// Reads and validates `stacks/Pulumi.<stack>.yaml` under the repository root.
    pub fn load(root: &Path, stack: &str) -> Result<StackConfig, ConfigError> {
        let path = stack_file(root, stack);
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::single(&shown, "", format!("cannot read the stack file: {e}"))
        })?;
        let raw = raw_from_stack_file(&text).map_err(|m| ConfigError::single(&shown, "", m))?;
        let cfg = Self::from_raw(stack, &shown, raw)?;
        let clashes = cfg.vpc_clashes(root);
        if clashes.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                source: shown,
                errors: clashes,
            })
        }
    }

    /// DigitalOcean refuses overlapping VPC ranges in one region, so sibling stacks must not clash.
    fn vpc_clashes(&self, root: &Path) -> Vec<KeyError> {
        let mut errors = Vec::new();
        if self.is_local() {
            return errors;
        }
        let Ok(entries) = std::fs::read_dir(root.join("stacks")) else {
            return errors;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for path in files {
            let Some(other) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("Pulumi."))
                .and_then(|n| n.strip_suffix(".yaml"))
            else {
                continue;
            };
            if other == self.stack || other == LOCAL_STACK {
                continue;
            }
            let Some(raw) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| raw_from_stack_file(&t).ok())
            else {
                continue;
            };
            let text = |key: &str, default: &str| match raw.get(key) {
                Some(RawValue::Plain(Value::String(s))) => s.clone(),
                _ => default.to_string(),
            };
            let Ok(net) = text("vpcCidr", defaults::VPC_CIDR).parse::<IpNet>() else {
                continue;
            };
            if text("region", defaults::REGION) == self.region
                && (net.contains(&self.vpc_cidr) || self.vpc_cidr.contains(&net))
            {
                errors.push(KeyError::new(
                    "vpcCidr",
                    format!(
                        "{} overlaps {net} of stacks/Pulumi.{other}.yaml in region {}; give each stack its own range",
                        self.vpc_cidr, self.region
                    ),
                ));
            }
        }
        errors
    }

    /// Reads and validates the configuration the Pulumi engine passes in `PULUMI_CONFIG`.
    pub fn from_engine_env() -> Result<StackConfig, ConfigError> {
        let stack = std::env::var("PULUMI_STACK").unwrap_or_default();
        let source = format!("PULUMI_CONFIG (stacks/Pulumi.{stack}.yaml)");
        let config = std::env::var("PULUMI_CONFIG").unwrap_or_else(|_| "{}".into());
        let secret_keys =
            std::env::var("PULUMI_CONFIG_SECRET_KEYS").unwrap_or_else(|_| "[]".into());
        let mut raw = raw_from_engine(&config, &secret_keys)
            .map_err(|m| ConfigError::single(&source, "", m))?;
        // The offline preview cannot decrypt `secure:` values; it names them here instead.
        if let Ok(list) = std::env::var(ENCRYPTED_KEYS_ENV)
            && let Ok(keys) = serde_json::from_str::<Vec<String>>(&list)
        {
            for key in keys {
                raw.insert(key, RawValue::Encrypted);
            }
        }
        Self::from_raw(&stack, &source, raw)
    }

    /// Validates raw `key -> value` pairs (keys without namespace).
    pub fn from_raw(stack: &str, source: &str, raw: RawConfig) -> Result<StackConfig, ConfigError> {
        let mut r = Reader {
            raw,
            errors: Vec::new(),
        };
        for key in r.raw.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                r.errors.push(KeyError::new(
                    key,
                    "unknown key (see the config block of Pulumi.yaml)",
                ));
            }
        }
        let is_local = StackKind::of(stack) == StackKind::Local;
        if !is_local {
            for problem in stack_name_problems(stack) {
                r.err("", problem);
            }
        }

        let environment = match r.string("environment", None) {
            Some(e) => match e.as_str() {
                "Development" => Environment::Development,
                "Staging" => Environment::Staging,
                "Production" => Environment::Production,
                other => {
                    r.err(
                        "environment",
                        format!("must be Development, Staging or Production (got {other:?})"),
                    );
                    Environment::Development
                }
            },
            None => match stack {
                "prod" | "production" => Environment::Production,
                "staging" => Environment::Staging,
                _ => Environment::Development,
            },
        };
        let is_prod = environment == Environment::Production || stack == "prod";

        let region = r
            .string("region", Some(defaults::REGION))
            .unwrap_or_default();
        let vpc_cidr = r.vpc_range("vpcCidr", defaults::VPC_CIDR, &region);
        let droplet_size = r
            .string("dropletSize", Some(defaults::DROPLET_SIZE))
            .unwrap_or_default();
        let droplet_image = r
            .string("dropletImage", Some(defaults::DROPLET_IMAGE))
            .unwrap_or_default();
        let droplet_count = r.uint("dropletCount", defaults::DROPLET_COUNT);
        if !(1..=50).contains(&droplet_count) {
            r.err(
                "dropletCount",
                format!("must be between 1 and 50 (got {droplet_count})"),
            );
        }
        let active_color = match r
            .string("activeColor", Some(defaults::ACTIVE_COLOR))
            .as_deref()
        {
            Some("green") => Color::Green,
            Some("blue") | None => Color::Blue,
            Some(other) => {
                r.err(
                    "activeColor",
                    format!("must be blue or green (got {other:?})"),
                );
                Color::Blue
            }
        };
        let blue = r.pool("blue", active_color == Color::Blue, droplet_count);
        let green = r.pool("green", active_color == Color::Green, droplet_count);
        let app_binary = PathBuf::from(
            r.string("appBinary", Some(defaults::APP_BINARY))
                .unwrap_or_default(),
        );
        let artifacts_region = r
            .string("artifactsRegion", Some(defaults::ARTIFACTS_REGION))
            .unwrap_or_default();

        let ssh_keys = match r.raw.get("sshKeys") {
            None => SecretValue::Unset,
            Some(RawValue::Encrypted) => SecretValue::Encrypted,
            Some(RawValue::Plain(v) | RawValue::Secret(v)) => match string_list(v) {
                Ok(keys) => SecretValue::Known(SecretBox::new(Box::new(keys))),
                Err(m) => {
                    r.err("sshKeys", m);
                    SecretValue::Unset
                }
            },
        };
        let ssh_public_keys = match r.value("sshPublicKeys") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => match string_list(&v) {
                Ok(lines) => {
                    let mut keys: Vec<SshPublicKey> = Vec::new();
                    for (i, line) in lines.iter().enumerate() {
                        match SshPublicKey::parse(line) {
                            Ok(k) if keys.iter().any(|o| o.blob == k.blob) => r.err(
                                &format!("sshPublicKeys[{i}]"),
                                "repeats an earlier key (DigitalOcean stores each key once)",
                            ),
                            Ok(k) => keys.push(k),
                            Err(m) => r.err(&format!("sshPublicKeys[{i}]"), m),
                        }
                    }
                    keys
                }
                Err(m) => {
                    r.err("sshPublicKeys", m);
                    Vec::new()
                }
            },
        };
        let admin_cidrs = r.nets("adminCidrs");
        let allow_ssh_from_anywhere =
            r.boolean("allowSshFromAnywhere", defaults::ALLOW_SSH_FROM_ANYWHERE);
        let open_to_world = admin_cidrs.iter().any(|n| n.prefix_len() == 0);
        if open_to_world && is_prod {
            r.err(
                "adminCidrs",
                "SSH from 0.0.0.0/0 or ::/0 is refused in prod; list your admin networks",
            );
        } else if open_to_world && !allow_ssh_from_anywhere {
            r.err(
                "adminCidrs",
                "SSH from 0.0.0.0/0 or ::/0 is refused unless rustlb:allowSshFromAnywhere is true",
            );
        }
        if allow_ssh_from_anywhere && is_prod {
            r.err("allowSshFromAnywhere", "must not be true in prod");
        }
        for net in &admin_cidrs {
            if let (Some(vpc), true) = (vpc_cidr, net.prefix_len() > 0)
                && (vpc.contains(net) || net.contains(&vpc))
            {
                r.err(
                    "adminCidrs",
                    format!("{net} overlaps the VPC range {vpc}; admin networks are public ranges"),
                );
            }
        }
        for (i, a) in admin_cidrs.iter().enumerate() {
            for b in &admin_cidrs[i + 1..] {
                if a.contains(b) || b.contains(a) {
                    r.err("adminCidrs", format!("{a} and {b} overlap"));
                }
            }
        }

        let domain = r.string("domain", None).filter(|d| !d.is_empty());
        if let Some(d) = &domain
            && (!d.contains('.') || d.contains('/') || d.contains(':'))
        {
            r.err(
                "domain",
                format!("must be a bare domain name like api.example.com (got {d:?})"),
            );
        }
        let load_balancer_size_unit = r.uint("loadBalancerSizeUnit", defaults::LB_SIZE_UNIT);
        if let Some(problem) = limits::range_problem(load_balancer_size_unit, &limits::LB_SIZE_UNIT)
        {
            r.err("loadBalancerSizeUnit", problem);
        }
        let http_idle_timeout_seconds = r.uint(
            "httpIdleTimeoutSeconds",
            defaults::HTTP_IDLE_TIMEOUT_SECONDS,
        );
        if let Some(problem) =
            limits::range_problem(http_idle_timeout_seconds, &limits::LB_IDLE_TIMEOUT_SECONDS)
        {
            r.err("httpIdleTimeoutSeconds", problem);
        }

        let health_check: HealthCheck = r.object("healthCheck");
        check_health(&mut r, &health_check, is_local);
        let sticky_sessions: StickySessions = r.object("stickySessions");
        check_sticky(&mut r, &sticky_sessions);
        let database: DatabaseSettings = r.object("database");
        check_database(&mut r, &database, is_prod);

        let api_key = match r.raw.get("apiKey") {
            None => SecretValue::Unset,
            Some(RawValue::Encrypted) => SecretValue::Encrypted,
            Some(RawValue::Plain(v) | RawValue::Secret(v)) => match v {
                // The key lands in a systemd environment file: printable, no quotes or backslashes.
                Value::String(s)
                    if s.len() >= 16
                        && s.chars()
                            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'')) =>
                {
                    SecretValue::Known(SecretString::from(s.clone()))
                }
                _ => {
                    r.err(
                        "apiKey",
                        "must be at least 16 printable ASCII characters without quotes or backslashes \
                         (e.g. `openssl rand -hex 32`)",
                    );
                    SecretValue::Unset
                }
            },
        };
        if !is_local && matches!(r.raw.get("apiKey"), Some(RawValue::Plain(_))) {
            r.err(
                "apiKey",
                "is in plain text; set it with `pulumi config set --secret rustlb:apiKey`",
            );
        }

        let request_log_retention_days = r.uint(
            "requestLogRetentionDays",
            defaults::REQUEST_LOG_RETENTION_DAYS,
        );
        let stats_retention_days = r.uint("statsRetentionDays", defaults::STATS_RETENTION_DAYS);
        for (key, days) in [
            ("requestLogRetentionDays", request_log_retention_days),
            ("statsRetentionDays", stats_retention_days),
        ] {
            if let Some(problem) = limits::range_problem(days, &RETENTION_DAYS) {
                r.err(key, format!("{problem} (0 keeps everything)"));
            }
        }

        let lb_address = r
            .string("lbAddress", Some(defaults::LB_ADDRESS))
            .unwrap_or_default();
        let lb_address = lb_address.parse::<SocketAddr>().unwrap_or_else(|_| {
            r.err(
                "lbAddress",
                format!("must be host:port like 127.0.0.1:8080 (got {lb_address:?})"),
            );
            defaults::LB_ADDRESS
                .parse()
                .expect("default address parses")
        });
        let first_backend_port =
            r.uint("firstBackendPort", u32::from(defaults::FIRST_BACKEND_PORT));
        let first_backend_port = match u16::try_from(first_backend_port) {
            Ok(p) if p >= 1024 && u32::from(p) + 50 <= 65535 => p,
            _ => {
                r.err(
                    "firstBackendPort",
                    format!("must be between 1024 and 65485 (got {first_backend_port})"),
                );
                defaults::FIRST_BACKEND_PORT
            }
        };
        let database_url = r
            .string("databaseUrl", Some(defaults::DATABASE_URL))
            .unwrap_or_default();
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            r.err("databaseUrl", "must be a sqlite:// or postgres:// URL");
        }

        if !r.errors.is_empty() {
            return Err(ConfigError {
                source: source.to_string(),
                errors: r.errors,
            });
        }
        Ok(StackConfig {
            project: PROJECT.into(),
            stack: stack.into(),
            source: source.into(),
            environment,
            region,
            vpc_cidr: vpc_cidr.expect("checked above"),
            droplet_size,
            droplet_image,
            active_color,
            blue,
            green,
            app_binary,
            artifacts_region,
            ssh_keys,
            ssh_public_keys,
            admin_cidrs,
            allow_ssh_from_anywhere,
            domain,
            load_balancer_size_unit,
            http_idle_timeout_seconds,
            health_check,
            sticky_sessions,
            database,
            api_key,
            request_log_retention_days,
            stats_retention_days,
            lb_address,
            first_backend_port,
            database_url,
        })
    }

    /// `{project}-{stack}-{role}`, the name of every resource.
    pub fn name(&self, role: &str) -> String {
        resource_name(&self.stack, role)
    }

    /// `{project}-{stack}-{role}-{hash}` for a resource DigitalOcean keeps unique by name and
    /// whose `replaced_by` inputs force a replacement: a change gives the replacement a new
    /// name, so Pulumi can create it before deleting the old one.
    pub fn replaceable_name(&self, role: &str, replaced_by: &[&str]) -> String {
        replaceable_name(&self.stack, role, replaced_by)
    }

    /// Seconds an instance keeps serving after SIGTERM, `/health` failing, before it stops
    /// accepting: as long as the load balancer takes to stop choosing it. DigitalOcean's load
    /// balancer removes a droplet after `unhealthyThreshold` failed checks `checkIntervalSeconds`
    /// apart, each allowed `responseTimeoutSeconds`. The local supervisor takes an instance out
    /// of rotation itself before signalling it, so only requests already on their way remain.
    pub fn drain_seconds(&self) -> u64 {
        if self.is_local() {
            LOCAL_DRAIN_SECONDS
        } else {
            let h = &self.health_check;
            u64::from(h.unhealthy_threshold) * u64::from(h.check_interval_seconds)
                + u64::from(h.response_timeout_seconds)
        }
    }

    /// How long the app keeps its request log and its stats rollups.
    pub fn log_retention(&self) -> app::LogRetention {
        app::LogRetention {
            request_log_days: Some(self.request_log_retention_days),
            stats_days: Some(self.stats_retention_days),
            maintenance_interval_seconds: None,
        }
    }

    /// How long the app's `/health` waits for the database: half the load balancer's check
    /// timeout, at most a second, so a slow database reads as a 503 rather than as a timeout.
    pub fn app_health_timeout_ms(&self) -> u64 {
        (u64::from(self.health_check.response_timeout_seconds) * 1000 / 2).min(1000)
    }

    /// True when droplets get at least one SSH key (uploaded or already on DigitalOcean).
    pub fn has_ssh_access(&self) -> bool {
        self.ssh_keys.is_set() || !self.ssh_public_keys.is_empty()
    }

    /// True for the stack that runs on this machine.
    pub fn is_local(&self) -> bool {
        StackKind::of(&self.stack) == StackKind::Local
    }

    /// A pool by colour.
    pub fn pool(&self, color: Color) -> &Pool {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    /// Droplets (or local instances) serving traffic: the active pool's size.
    pub fn droplet_count(&self) -> u32 {
        self.pool(self.active_color).count
    }

    /// The health check.
    pub fn health_check(&self) -> &HealthCheck {
        &self.health_check
    }

    /// Sticky session settings.
    pub fn sticky_sessions(&self) -> &StickySessions {
        &self.sticky_sessions
    }

    /// The API key, when set and readable.
    pub fn api_key(&self) -> Option<&SecretString> {
        self.api_key.known()
    }

    /// Local stack: load balancer address.
    pub fn lb_address(&self) -> SocketAddr {
        self.lb_address
    }

    /// Local stack: first backend port.
    pub fn first_backend_port(&self) -> u16 {
        self.first_backend_port
    }

    /// Local stack: database URL.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }
}

/// `{project}-{stack}-{role}`.
pub fn resource_name(stack: &str, role: &str) -> String {
    format!("{PROJECT}-{stack}-{role}")
}

/// `{project}-{stack}-{role}-{8 hex digits of sha256(replaced_by)}`.
pub fn replaceable_name(stack: &str, role: &str, replaced_by: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(replaced_by.join("\0").as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    resource_name(stack, &format!("{role}-{hash}"))
}

/// Why the stack's name cannot be part of DigitalOcean resource names, checked on the longest
/// names the program generates.
fn stack_name_problems(stack: &str) -> Vec<String> {
    let longest_droplet = resource_name(stack, "green-50");
    let longest_pool = replaceable_name(stack, "pool", &[]);
    let mut problems: Vec<String> = [
        limits::hostname_problem(&longest_droplet),
        limits::tag_problem(&resource_name(stack, "green")),
        limits::range_problem(longest_pool.len(), &limits::POOL_NAME_CHARS)
            .map(|p| format!("the connection pool name {longest_pool:?} {p} characters")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !problems.is_empty() {
        problems.insert(
            0,
            format!(
                "stack name {stack:?} does not fit DigitalOcean's names; use a short lowercase name like dev or prod:"
            ),
        );
    }
    problems
}

/// `stacks/Pulumi.<stack>.yaml` under the repository root.
pub fn stack_file(root: &Path, stack: &str) -> PathBuf {
    root.join("stacks").join(format!("Pulumi.{stack}.yaml"))
}

fn check_health(r: &mut Reader, h: &HealthCheck, is_local: bool) {
    let key = |f: &str| format!("healthCheck.{f}");
    if !["http", "https", "tcp"].contains(&h.protocol.as_str()) {
        r.err(
            &key("protocol"),
            format!("must be http, https or tcp (got {:?})", h.protocol),
        );
    }
    if h.port == 0 {
        r.err(&key("port"), "must be between 1 and 65535");
    }
    if h.protocol != "tcp" && !h.path.starts_with('/') {
        r.err(
            &key("path"),
            format!("must start with / (got {:?})", h.path),
        );
    }
    // DigitalOcean's floor is 3 s; the local load balancer accepts 1 s so local runs converge fast.
    let seconds = if is_local {
        1..=*limits::HEALTH_CHECK_SECONDS.end()
    } else {
        limits::HEALTH_CHECK_SECONDS
    };
    let checks = [
        ("checkIntervalSeconds", h.check_interval_seconds, &seconds),
        (
            "responseTimeoutSeconds",
            h.response_timeout_seconds,
            &seconds,
        ),
        (
            "unhealthyThreshold",
            h.unhealthy_threshold,
            &limits::HEALTH_CHECK_THRESHOLD,
        ),
        (
            "healthyThreshold",
            h.healthy_threshold,
            &limits::HEALTH_CHECK_THRESHOLD,
        ),
    ];
    for (field, value, range) in checks {
        if let Some(problem) = limits::range_problem(value, range) {
            r.err(&key(field), problem);
        }
    }
}

fn check_sticky(r: &mut Reader, s: &StickySessions) {
    match s.kind.as_str() {
        "none" => {}
        "cookies" => {
            match &s.cookie_name {
                Some(n) => {
                    if let Some(problem) =
                        limits::range_problem(n.chars().count(), &limits::COOKIE_NAME_CHARS)
                    {
                        r.err("stickySessions.cookieName", format!("length {problem}"));
                    }
                }
                None => r.err(
                    "stickySessions.cookieName",
                    "is required when type is cookies",
                ),
            }
            match s.cookie_ttl_seconds {
                Some(t) if t >= 1 => {}
                Some(_) => r.err("stickySessions.cookieTtlSeconds", "must be at least 1"),
                None => r.err(
                    "stickySessions.cookieTtlSeconds",
                    "is required when type is cookies",
                ),
            }
        }
        other => r.err(
            "stickySessions.type",
            format!("must be none or cookies (got {other:?})"),
        ),
    }
}

fn check_database(r: &mut Reader, d: &DatabaseSettings, is_prod: bool) {
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

/// The TLS modes droplets may use towards the database; `verify-full` checks the certificate.
pub const SSL_MODES: &[&str] = &["verify-full", "require"];

/// A raw config value before typing.
#[derive(Debug, Clone)]
pub enum RawValue {
    /// A plain value.
    Plain(Value),
    /// A decrypted secret (from the engine).
    Secret(Value),
    /// A `secure:` value in a stack file: set, but unreadable without the Pulumi CLI.
    Encrypted,
}

/// Config keys without the `rustlb:` namespace.
pub type RawConfig = BTreeMap<String, RawValue>;

/// Parses a stack file's `config:` block.
pub fn raw_from_stack_file(text: &str) -> Result<RawConfig, String> {
    #[derive(Deserialize)]
    struct StackFile {
        #[serde(default)]
        config: BTreeMap<String, serde_yaml::Value>,
    }
    let file: StackFile =
        serde_yaml::from_str(text).map_err(|e| format!("not a valid stack file: {e}"))?;
    let mut raw = RawConfig::new();
    for (key, value) in file.config {
        let Some(short) = key.strip_prefix(&format!("{PROJECT}:")) else {
            continue; // provider keys such as digitalocean:token belong to the provider
        };
        let json: Value =
            serde_json::to_value(&value).map_err(|e| format!("{PROJECT}:{short}: {e}"))?;
        // `pulumi config set --secret --path 'k[0]'` encrypts inside a structure.
        let entry = if contains_secure(&json) {
            RawValue::Encrypted
        } else {
            RawValue::Plain(json)
        };
        raw.insert(short.to_string(), entry);
    }
    Ok(raw)
}

fn contains_secure(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("secure") || m.values().any(contains_secure),
        Value::Array(a) => a.iter().any(contains_secure),
        _ => false,
    }
}

/// Parses the engine's `PULUMI_CONFIG` and `PULUMI_CONFIG_SECRET_KEYS`.
pub fn raw_from_engine(config: &str, secret_keys: &str) -> Result<RawConfig, String> {
    let map: BTreeMap<String, String> = serde_json::from_str(config)
        .map_err(|e| format!("PULUMI_CONFIG is not a JSON object of strings: {e}"))?;
    let secrets: Vec<String> = serde_json::from_str(secret_keys)
        .map_err(|e| format!("PULUMI_CONFIG_SECRET_KEYS is not a JSON array: {e}"))?;
    let mut raw = RawConfig::new();
    for (key, value) in map {
        let Some(short) = key.strip_prefix(&format!("{PROJECT}:")) else {
            continue;
        };
        // Structured values arrive as JSON text; scalars as plain strings.
        let json = match serde_json::from_str::<Value>(&value) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
            _ => Value::String(value),
        };
        let entry = if secrets.contains(&key) {
            RawValue::Secret(json)
        } else {
            RawValue::Plain(json)
        };
        raw.insert(short.to_string(), entry);
    }
    Ok(raw)
}

fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let v = match v {
        Value::String(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str(s).map_err(|_| "must be a list of strings".to_string())?
        }
        Value::String(s) => {
            return Ok(s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect());
        }
        other => other.clone(),
    };
    serde_json::from_value::<Vec<Value>>(v)
        .map_err(|_| "must be a list of strings".to_string())?
        .into_iter()
        .map(|e| match e {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("must be a list of strings".to_string()),
        })
        .collect()
}

struct Reader {
    raw: RawConfig,
    errors: Vec<KeyError>,
}

impl Reader {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(KeyError::new(key, message));
    }

    fn value(&mut self, key: &str) -> Option<Value> {
        match self.raw.get(key) {
            None => None,
            Some(RawValue::Plain(v) | RawValue::Secret(v)) => Some(v.clone()),
            Some(RawValue::Encrypted) => {
                self.err(key, "is a secret but this setting must be plain text");
                None
            }
        }
    }

    fn string(&mut self, key: &str, default: Option<&str>) -> Option<String> {
        match self.value(key) {
            None | Some(Value::Null) => default.map(str::to_string),
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.err(key, format!("must be a string (got {other})"));
                default.map(str::to_string)
            }
        }
    }

    fn uint(&mut self, key: &str, default: u32) -> u32 {
        match self.value(key) {
            None => default,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => {
                n.as_u64().unwrap_or(0) as u32
            }
            Some(Value::String(s)) if s.trim().parse::<u32>().is_ok() => {
                s.trim().parse().unwrap_or(default)
            }
            Some(other) => {
                self.err(key, format!("must be a whole number (got {other})"));
                default
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.value(key) {
            None => default,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                self.err(key, format!("must be true or false (got {other})"));
                default
            }
        }
    }

    /// The VPC range: a private IPv4 CIDR DigitalOcean accepts in `region`.
    fn vpc_range(&mut self, key: &str, default: &str, region: &str) -> Option<IpNet> {
        let text = self.string(key, Some(default)).unwrap_or_default();
        match text.parse::<IpNet>() {
            Ok(n) if n != n.trunc() => {
                self.err(
                    key,
                    format!("{text} has host bits set; did you mean {}?", n.trunc()),
                );
                None
            }
            Ok(IpNet::V6(_)) => {
                self.err(key, "must be an IPv4 range");
                None
            }
            Ok(IpNet::V4(n)) => match limits::vpc_range_problem(region, n) {
                Some(problem) => {
                    self.err(key, problem);
                    None
                }
                None => Some(IpNet::V4(n)),
            },
            Err(_) => {
                self.err(
                    key,
                    format!("is not a CIDR like {} (got {text:?})", defaults::VPC_CIDR),
                );
                None
            }
        }
    }

    fn nets(&mut self, key: &str) -> Vec<IpNet> {
        let Some(v) = self.value(key) else {
            return Vec::new();
        };
        let items = match string_list(&v) {
            Ok(items) => items,
            Err(m) => {
                self.err(key, m);
                return Vec::new();
            }
        };
        let mut nets = Vec::new();
        for item in items {
            match item.parse::<IpNet>() {
                Ok(n) => nets.push(n),
                Err(_) => match item.parse::<std::net::IpAddr>() {
                    Ok(ip) => nets.push(IpNet::from(ip)),
                    Err(_) => self.err(key, format!("{item:?} is not a CIDR")),
                },
            }
        }
        nets
    }

    fn object<T: for<'de> Deserialize<'de> + Default>(&mut self, key: &str) -> T {
        let value = match self.value(key) {
            None | Some(Value::Null) => return T::default(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                Ok(v) => v,
                Err(_) => {
                    self.err(key, "must be an object");
                    return T::default();
                }
            },
            Some(v) => v,
        };
        match serde_json::from_value::<T>(value) {
            Ok(t) => t,
            Err(e) => {
                self.err(key, e.to_string());
                T::default()
            }
        }
    }

    fn pool(&mut self, key: &str, active: bool, droplet_count: u32) -> Pool {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct RawPool {
            count: Option<u32>,
            build: Option<String>,
        }
        let raw: RawPool = self.object(key);
        // The active pool defaults to dropletCount so a stack without blue/green keys still works.
        let count = raw.count.unwrap_or(if active { droplet_count } else { 0 });
        if count > 50 {
            self.err(
                &format!("{key}.count"),
                format!("must be between 0 and 50 (got {count})"),
            );
        }
        if active && count == 0 {
            self.err(
                &format!("{key}.count"),
                "the active colour needs at least 1 droplet",
            );
        }
        let build = match raw.build.as_deref() {
            None | Some("local") => Build::Local,
            Some(sha) => {
                let sha = sha
                    .strip_prefix("sha256:")
                    .unwrap_or(sha)
                    .to_ascii_lowercase();
                if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                    self.err(
                        &format!("{key}.build"),
                        "must be `local` or the 64-hex sha256 of an app build",
                    );
                }
                Build::Pinned(sha)
            }
        };
        Pool { count, build }
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

/// One invalid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The full key, e.g. `rustlb:healthCheck.checkIntervalSeconds`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl KeyError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        KeyError {
            key: if key.is_empty() {
                String::new()
            } else {
                format!("{PROJECT}:{key}")
            },
            message: message.into(),
        }
    }
}

/// Why a stack's configuration was refused; lists every problem at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The stack file (or engine config) the values came from.
    pub source: String,
    /// The problems, one per key.
    pub errors: Vec<KeyError>,
}

impl ConfigError {
    fn single(source: &str, key: &str, message: String) -> Self {
        ConfigError {
            source: source.to_string(),
            errors: vec![KeyError::new(key, message)],
        }
    }

    /// True when some error names `key` (with or without the namespace).
    pub fn mentions(&self, key: &str) -> bool {
        let full = if key.contains(':') {
            key.to_string()
        } else {
            format!("{PROJECT}:{key}")
        };
        self.errors.iter().any(|e| e.key == full)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid stack configuration in {}:", self.source)?;
        for e in &self.errors {
            if e.key.is_empty() {
                write!(f, "\n  {}", e.message)?;
            } else {
                write!(f, "\n  {}: {}", e.key, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// An OpenSSH public key from `rustlb:sshPublicKeys`, checked so a typo fails before `pulumi up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    /// Key type, e.g. `ssh-ed25519`.
    pub kind: String,
    /// The base64 key blob.
    pub blob: String,
    /// The comment after the key, if any.
    pub comment: Option<String>,
}

/// Key types DigitalOcean accepts for droplet access.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    /// Parses one `authorized_keys`-style line: `<type> <base64> [comment]`.
    pub fn parse(line: &str) -> Result<SshPublicKey, String> {
        use base64::Engine as _;
        let line = line.trim();
        if line.contains("PRIVATE KEY") {
            return Err("this is a private key; give the public key (the .pub file)".into());
        }
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            return Err("must look like `ssh-ed25519 AAAA... comment`".into());
        };
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(format!(
                "key type {kind:?} is not one of {}",
                SSH_KEY_TYPES.join(", ")
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| format!("the {kind} key data is not valid base64"))?;
        // The blob starts with its own type as an SSH string: a u32 length, then the name.
        let inner = bytes
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| bytes.get(4..4 + n));
        if inner != Some(kind.as_bytes()) {
            return Err(format!(
                "the key data does not hold a {kind} key (copied incompletely?)"
            ));
        }
        let comment: Vec<&str> = parts.collect();
        Ok(SshPublicKey {
            kind: kind.to_string(),
            blob: blob.to_string(),
            comment: (!comment.is_empty()).then(|| comment.join(" ")),
        })
    }

    /// The key as one line, the way DigitalOcean stores it.
    pub fn line(&self) -> String {
        match &self.comment {
            Some(c) => format!("{} {} {c}", self.kind, self.blob),
            None => format!("{} {}", self.kind, self.blob),
        }
    }

    /// The MD5 fingerprint DigitalOcean shows and accepts in a droplet's `sshKeys` (`aa:bb:...`).
    pub fn fingerprint(&self) -> String {
        use base64::Engine as _;
        use md5::{Digest, Md5};
        // `parse` checked that the blob decodes.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.blob)
            .unwrap_or_default();
        Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// A short stable id of the key material (not of the comment), for resource names.
    pub fn short_id(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.blob.as_bytes())
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
