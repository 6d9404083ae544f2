//! The table of stack keys: each key's name, its default and the section that reads it.
//!
//! `KNOWN_KEYS` and `defaults` are derived from `KEYS`, and a test compares the table with the
//! `config` block of Pulumi.yaml, so a key or default changes here and nowhere else.

/// The Pulumi project name; also the config namespace (`rustlb:<key>`).
pub const PROJECT: &str = "rustlb";

/// The part of the stack file a key belongs to: the module of `config` that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `environment`.
    Environment,
    /// Region and VPC range.
    Network,
    /// Droplet pools, colours and builds.
    Pools,
    /// SSH keys and admin networks.
    Access,
    /// The HTTPS domain.
    Domain,
    /// The load balancer's size and timeout.
    LoadBalancer,
    /// The load balancer's health check.
    HealthCheck,
    /// Sticky sessions.
    StickySessions,
    /// The managed database.
    Database,
    /// The API key.
    ApiKey,
    /// Request-log and stats retention.
    Retention,
    /// Keys only the local stack reads.
    Local,
    /// Monitoring alerts and uptime checks.
    Alerts,
    /// Security updates and when droplets may reboot for them.
    Updates,
}

/// A key's default as Pulumi.yaml declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// `type: string`.
    Text(&'static str),
    /// `type: integer`.
    Integer(u32),
    /// `type: boolean`.
    Boolean(bool),
}

impl DefaultValue {
    /// The value as YAML scalar text, which is how the Pulumi CLI hands defaults to the program.
    pub fn text(self) -> String {
        match self {
            DefaultValue::Text(s) => s.to_string(),
            DefaultValue::Integer(n) => n.to_string(),
            DefaultValue::Boolean(b) => b.to_string(),
        }
    }

    /// The Pulumi.yaml `type` of the value.
    pub fn yaml_type(self) -> &'static str {
        match self {
            DefaultValue::Text(_) => "string",
            DefaultValue::Integer(_) => "integer",
            DefaultValue::Boolean(_) => "boolean",
        }
    }

    const fn as_text(self) -> &'static str {
        match self {
            DefaultValue::Text(s) => s,
            _ => panic!("the key's default is not text"),
        }
    }

    const fn as_integer(self) -> u32 {
        match self {
            DefaultValue::Integer(n) => n,
            _ => panic!("the key's default is not an integer"),
        }
    }

    const fn as_boolean(self) -> bool {
        match self {
            DefaultValue::Boolean(b) => b,
            _ => panic!("the key's default is not a boolean"),
        }
    }
}

/// One stack key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The name without the `rustlb:` namespace.
    pub name: &'static str,
    /// The default; a key without one is optional and documented in Pulumi.yaml's comment
    /// (the CLI refuses a stack that lacks a declared key with no default).
    pub default: Option<DefaultValue>,
    /// The section that reads it.
    pub section: Section,
}

const fn key(name: &'static str, default: Option<DefaultValue>, section: Section) -> Key {
    Key {
        name,
        default,
        section,
    }
}

use DefaultValue::{Boolean, Integer, Text};

/// Every key this program reads, in the order the sections read them.
pub const KEYS: &[Key] = &[
    key("environment", None, Section::Environment),
    key("region", Some(Text("nyc1")), Section::Network),
    key("vpcCidr", Some(Text("10.110.0.0/20")), Section::Network),
    key("dropletSize", Some(Text("s-1vcpu-1gb")), Section::Pools),
    key(
        "dropletImage",
        Some(Text("ubuntu-24-04-x64")),
        Section::Pools,
    ),
    key("dropletCount", Some(Integer(2)), Section::Pools),
    key("activeColor", Some(Text("blue")), Section::Pools),
    key("blue", None, Section::Pools),
    key("green", None, Section::Pools),
    key(
        "appBinary",
        Some(Text("target/release/app")),
        Section::Pools,
    ),
    key("artifactsRegion", Some(Text("nyc3")), Section::Pools),
    key("sshKeys", None, Section::Access),
    key("sshPublicKeys", None, Section::Access),
    key("adminCidrs", None, Section::Access),
    key(
        "allowSshFromAnywhere",
        Some(Boolean(false)),
        Section::Access,
    ),
    key("domain", None, Section::Domain),
    key(
        "loadBalancerSizeUnit",
        Some(Integer(1)),
        Section::LoadBalancer,
    ),
    key(
        "httpIdleTimeoutSeconds",
        Some(Integer(60)),
        Section::LoadBalancer,
    ),
    key("healthCheck", None, Section::HealthCheck),
    key("stickySessions", None, Section::StickySessions),
    key("database", None, Section::Database),
    key("apiKey", None, Section::ApiKey),
    key(
        "requestLogRetentionDays",
        Some(Integer(7)),
        Section::Retention,
    ),
    key("statsRetentionDays", Some(Integer(400)), Section::Retention),
    key("alerts", None, Section::Alerts),
    key("maintenanceWindow", None, Section::Updates),
    key("lbAddress", Some(Text("127.0.0.1:8080")), Section::Local),
    key(
        "lbHttpsAddress",
        Some(Text("127.0.0.1:8443")),
        Section::Local,
    ),
    key("firstBackendPort", Some(Integer(3001)), Section::Local),
    key(
        "databaseUrl",
        Some(Text("sqlite://data/local.sqlite?mode=rwc")),
        Section::Local,
    ),
    key("lbLeaveOnDraining", Some(Boolean(false)), Section::Local),
    key("lbLeastOutstanding", Some(Boolean(false)), Section::Local),
    key("lbResponseTimeoutSeconds", Some(Integer(0)), Section::Local),
    key("lbEjectAfterTimeouts", Some(Integer(0)), Section::Local),
];

/// Every key this program reads, without the `rustlb:` namespace; anything else is a typo.
pub const KNOWN_KEYS: &[&str] = &names();

const fn names() -> [&'static str; KEYS.len()] {
    let mut out = [""; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        out[i] = KEYS[i].name;
        i += 1;
    }
    out
}

/// The table's row for `name`.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The default of `name`; a name missing from the table, or without a default, stops the
/// build when used in a constant.
const fn default_of(name: &str) -> DefaultValue {
    let mut i = 0;
    while i < KEYS.len() {
        if same(KEYS[i].name, name) {
            match KEYS[i].default {
                Some(d) => return d,
                None => panic!("the key has no default"),
            }
        }
        i += 1;
    }
    panic!("no such key in the table")
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Defaults shared by the code and the `config` block of Pulumi.yaml, taken from `KEYS`.
pub mod defaults {
    use super::default_of;

    /// `rustlb:region`.
    pub const REGION: &str = default_of("region").as_text();
    /// `rustlb:vpcCidr`.
    pub const VPC_CIDR: &str = default_of("vpcCidr").as_text();
    /// `rustlb:dropletSize`.
    pub const DROPLET_SIZE: &str = default_of("dropletSize").as_text();
    /// `rustlb:dropletImage`: Ubuntu 24.04 LTS.
    pub const DROPLET_IMAGE: &str = default_of("dropletImage").as_text();
    /// `rustlb:dropletCount`.
    pub const DROPLET_COUNT: u32 = default_of("dropletCount").as_integer();
    /// `rustlb:activeColor`.
    pub const ACTIVE_COLOR: &str = default_of("activeColor").as_text();
    /// `rustlb:appBinary`, relative to the repository root.
    pub const APP_BINARY: &str = default_of("appBinary").as_text();
    /// `rustlb:artifactsRegion`: Spaces exists only in some regions (nyc3, sfo3, ams3, fra1, sgp1, syd1...).
    pub const ARTIFACTS_REGION: &str = default_of("artifactsRegion").as_text();
    /// `rustlb:allowSshFromAnywhere`.
    pub const ALLOW_SSH_FROM_ANYWHERE: bool = default_of("allowSshFromAnywhere").as_boolean();
    /// `rustlb:loadBalancerSizeUnit`.
    pub const LB_SIZE_UNIT: u32 = default_of("loadBalancerSizeUnit").as_integer();
    /// `rustlb:httpIdleTimeoutSeconds`.
    pub const HTTP_IDLE_TIMEOUT_SECONDS: u32 = default_of("httpIdleTimeoutSeconds").as_integer();
    /// `rustlb:requestLogRetentionDays`: whole UTC days of `requests_log` rows kept (0: all).
    pub const REQUEST_LOG_RETENTION_DAYS: u32 = default_of("requestLogRetentionDays").as_integer();
    /// `rustlb:statsRetentionDays`: whole UTC days of hourly `/api/stats` rollups kept (0: all).
    pub const STATS_RETENTION_DAYS: u32 = default_of("statsRetentionDays").as_integer();
    /// `rustlb:lbAddress` (local stack).
    pub const LB_ADDRESS: &str = default_of("lbAddress").as_text();
    /// `rustlb:lbHttpsAddress` (local stack).
    pub const LB_HTTPS_ADDRESS: &str = default_of("lbHttpsAddress").as_text();
    /// `rustlb:firstBackendPort` (local stack).
    pub const FIRST_BACKEND_PORT: u16 = {
        let port = default_of("firstBackendPort").as_integer();
        assert!(
            port <= u16::MAX as u32,
            "firstBackendPort's default is a port"
        );
        port as u16
    };
    /// `rustlb:databaseUrl` (local stack).
    pub const DATABASE_URL: &str = default_of("databaseUrl").as_text();
}
