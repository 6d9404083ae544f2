//! The typed stack configuration: read once from a stack file or the engine, validated before any resource exists.
//!
//! One module per section of the stack file, each reading and checking its own keys (named in
//! the table of `keys`); `StackConfig` puts the sections together.

mod access;
mod alerts;
mod api_key;
mod database;
mod domain;
mod environment;
mod error;
mod health;
mod keys;
mod load_balancer;
mod local;
mod network;
mod pools;
mod raw;
mod reader;
mod retention;
mod ssh_key;
mod stack;
mod sticky;
mod updates;

pub use alerts::{Alerts, Slack, UPTIME_REGIONS, WINDOWS};
pub use database::{BACKUP_RETENTION_DAYS, DatabaseSettings, RestoreFrom, SSL_MODES};
pub use environment::Environment;
pub use error::{ConfigError, KeyError};
pub use health::{APP_PORT, HealthCheck};
pub use keys::{DefaultValue, KEYS, KNOWN_KEYS, Key, PROJECT, Section, defaults};
pub use local::LocalLb;
pub use pools::{Build, Color, Pool};
pub use raw::{
    ENCRYPTED_KEYS_ENV, RawConfig, RawValue, SecretValue, raw_from_engine, raw_from_stack_file,
};
pub use ssh_key::SshPublicKey;
pub use stack::{LOCAL_STACK, StackKind, replaceable_name, resource_name, stack_file};
pub use sticky::StickySessions;
pub use updates::{MaintenanceWindow, STAGGER_MINUTES};

use access::Access;
use ipnet::IpNet;
use load_balancer::LoadBalancer;
use local::Local;
use network::Network;
use pools::Pools;
use reader::Reader;
use retention::Retention;
use secrecy::{SecretBox, SecretString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Local stack: the load balancer's HTTPS address (with `up --https`).
    pub lb_https_address: SocketAddr,
    /// Local stack: backend N listens on this port + N - 1.
    pub first_backend_port: u16,
    /// Local stack: the database URL the app instances share.
    pub database_url: String,
    /// Local stack: where its load balancer departs from DigitalOcean's.
    pub local_lb: LocalLb,
    /// Monitoring alerts and uptime checks, if the stack asks for them.
    pub alerts: Option<Alerts>,
    /// When droplets may reboot for security updates; none: never by themselves.
    pub maintenance_window: Option<MaintenanceWindow>,
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
        if cfg.is_local() {
            return Ok(cfg);
        }
        let clashes = network::clashes(root, &cfg.stack, &cfg.region, cfg.vpc_cidr);
        if clashes.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                source: shown,
                errors: clashes,
            })
        }
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

    /// Validates raw `key -> value` pairs (keys without namespace): every section reads its
    /// own keys, in the order of the stack file's documentation, and every problem is kept.
    pub fn from_raw(stack: &str, source: &str, raw: RawConfig) -> Result<StackConfig, ConfigError> {
        let mut r = Reader::new(raw);
        let is_local = StackKind::of(stack) == StackKind::Local;
        if !is_local {
            for problem in stack::stack_name_problems(stack) {
                r.err("", problem);
            }
        }
        let environment = Environment::parse(&mut r, stack);
        let is_prod = environment.is_prod(stack);
        let network = Network::parse(&mut r);
        let pools = Pools::parse(&mut r);
        let access = Access::parse(&mut r, network.vpc_cidr, is_prod);
        let domain = domain::parse(&mut r);
        let load_balancer = LoadBalancer::parse(&mut r);
        let health_check = HealthCheck::parse(&mut r, is_local);
        let sticky_sessions = StickySessions::parse(&mut r);
        let database = DatabaseSettings::parse(&mut r, is_prod);
        let api_key = api_key::parse(&mut r, is_local);
        let retention = Retention::parse(&mut r);
        let alerts = alerts::parse(&mut r);
        let maintenance_window = updates::parse(&mut r);
        let local = Local::parse(&mut r);
        r.finish(source)?;
        Ok(StackConfig {
            project: PROJECT.into(),
            stack: stack.into(),
            source: source.into(),
            environment,
            region: network.region,
            vpc_cidr: network.vpc_cidr.expect("a refused range is an error above"),
            droplet_size: pools.droplet_size,
            droplet_image: pools.droplet_image,
            active_color: pools.active_color,
            blue: pools.blue,
            green: pools.green,
            app_binary: pools.app_binary,
            artifacts_region: pools.artifacts_region,
            ssh_keys: access.ssh_keys,
            ssh_public_keys: access.ssh_public_keys,
            admin_cidrs: access.admin_cidrs,
            allow_ssh_from_anywhere: access.allow_ssh_from_anywhere,
            domain,
            load_balancer_size_unit: load_balancer.size_unit,
            http_idle_timeout_seconds: load_balancer.http_idle_timeout_seconds,
            health_check,
            sticky_sessions,
            database,
            api_key,
            request_log_retention_days: retention.request_log_days,
            stats_retention_days: retention.stats_days,
            lb_address: local.lb_address,
            lb_https_address: local.lb_https_address,
            first_backend_port: local.first_backend_port,
            database_url: local.database_url,
            local_lb: local.lb,
            alerts,
            maintenance_window,
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
    /// accepting: as long as the load balancer takes to stop choosing it, whoever sent the
    /// signal. DigitalOcean's load balancer removes a droplet after `unhealthyThreshold`
    /// failed checks `checkIntervalSeconds` apart, the last allowed `responseTimeoutSeconds`.
    /// The local one, with `lbLeaveOnDraining`, removes it on the first check that sees the
    /// drain: within one interval and one timeout.
    pub fn drain_seconds(&self) -> u64 {
        let h = &self.health_check;
        u64::from(self.checks_to_leave_rotation()) * u64::from(h.check_interval_seconds)
            + u64::from(h.response_timeout_seconds)
    }

    /// Failed health checks after which the load balancer stops choosing a draining instance.
    pub fn checks_to_leave_rotation(&self) -> u32 {
        if self.is_local() && self.local_lb.leave_on_draining {
            1
        } else {
            self.health_check.unhealthy_threshold
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

    /// Local stack: the load balancer's HTTPS address.
    pub fn lb_https_address(&self) -> SocketAddr {
        self.lb_https_address
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
