//! DigitalOcean's documented limits and the provider's validation rules that its schema cannot express.
//!
//! Sources (read 2026-12):
//! - terraform-provider-digitalocean v2.99.1 (the provider pulumi-digitalocean bridges; its
//!   validators run during `pulumi preview`): load balancer health check, sticky sessions and
//!   size unit; connection pool name; tag names.
//! - DigitalOcean API reference: connection pool names 3-60 characters (stricter than the
//!   provider's 3-63), load balancer `http_idle_timeout_seconds` 30-600, VPC ranges /16 to /28.
//! - DigitalOcean docs, "VPC limits": the ranges reserved in every region and per region.
//! - DigitalOcean docs, managed databases: "standby nodes are only supported for plans with
//!   2 GB of RAM or more".

use ipnet::Ipv4Net;
use serde_json::Value;
use std::ops::RangeInclusive;

/// `healthcheck.checkIntervalSeconds` and `responseTimeoutSeconds` (provider: IntBetween(3, 300)).
pub const HEALTH_CHECK_SECONDS: RangeInclusive<u32> = 3..=300;
/// `healthcheck.healthyThreshold` and `unhealthyThreshold` (provider: IntBetween(2, 10)).
pub const HEALTH_CHECK_THRESHOLD: RangeInclusive<u32> = 2..=10;
/// `stickySessions.cookieName` length (provider: StringLenBetween(2, 40)).
pub const COOKIE_NAME_CHARS: RangeInclusive<usize> = 2..=40;
/// `sizeUnit` of a load balancer (provider: IntBetween(1, 200)).
pub const LB_SIZE_UNIT: RangeInclusive<u32> = 1..=200;
/// `httpIdleTimeoutSeconds` of a load balancer (API: 30-600).
pub const LB_IDLE_TIMEOUT_SECONDS: RangeInclusive<u32> = 30..=600;
/// Connection pool `name` length (API: 3-60; the provider allows 63).
pub const POOL_NAME_CHARS: RangeInclusive<usize> = 3..=60;
/// Connection pool `size` as this program allows it (the provider only requires non-zero).
pub const POOL_SIZE: RangeInclusive<u32> = 1..=100;
/// Nodes of a managed database cluster (API: 1 primary plus up to 2 standbys).
pub const DATABASE_NODES: RangeInclusive<u32> = 1..=3;
/// Standby nodes need a plan with at least this much memory.
pub const STANDBY_MIN_RAM_GB: u32 = 2;
/// VPC prefix lengths DigitalOcean accepts.
pub const VPC_PREFIX: RangeInclusive<u8> = 16..=28;
/// Longest tag name (provider: `^[a-zA-Z0-9:\-_]{1,255}$`).
pub const TAG_MAX_CHARS: usize = 255;

/// Ranges reserved in every region (DigitalOcean Kubernetes and internal services).
pub const RESERVED_EVERYWHERE: &[&str] = &[
    "10.244.0.0/16",
    "10.245.0.0/16",
    "10.246.0.0/24",
    "10.229.0.0/16",
];

/// The /16 each region keeps for its default network.
pub const RESERVED_PER_REGION: &[(&str, &str)] = &[
    ("ams2", "10.14.0.0/16"),
    ("ams3", "10.18.0.0/16"),
    ("atl1", "10.50.0.0/16"),
    ("blr1", "10.47.0.0/16"),
    ("fra1", "10.19.0.0/16"),
    ("lon1", "10.16.0.0/16"),
    ("nyc1", "10.10.0.0/16"),
    ("nyc2", "10.13.0.0/16"),
    ("nyc3", "10.17.0.0/16"),
    ("sfo1", "10.12.0.0/16"),
    ("sfo2", "10.46.0.0/16"),
    ("sfo3", "10.48.0.0/16"),
    ("sgp1", "10.15.0.0/16"),
    ("syd1", "10.49.0.0/16"),
    ("tor1", "10.20.0.0/16"),
];

/// Why `range` cannot be a VPC in `region`, if it cannot.
pub fn vpc_range_problem(region: &str, range: Ipv4Net) -> Option<String> {
    if !range.addr().is_private() {
        return Some(format!("{range} is not a private (RFC 1918) range"));
    }
    if !VPC_PREFIX.contains(&range.prefix_len()) {
        return Some(format!(
            "DigitalOcean VPCs are /{} to /{} (got /{})",
            VPC_PREFIX.start(),
            VPC_PREFIX.end(),
            range.prefix_len()
        ));
    }
    let overlaps = |reserved: &str| {
        let reserved: Ipv4Net = reserved.parse().expect("reserved ranges parse");
        (reserved.contains(&range) || range.contains(&reserved)).then_some(reserved)
    };
    if let Some(r) = RESERVED_EVERYWHERE.iter().find_map(|r| overlaps(r)) {
        return Some(format!(
            "{range} overlaps {r}, which DigitalOcean reserves in every region"
        ));
    }
    RESERVED_PER_REGION
        .iter()
        .filter(|(reg, _)| *reg == region)
        .find_map(|(_, r)| overlaps(r))
        .map(|r| format!("{range} overlaps {r}, which DigitalOcean reserves in {region}"))
}

/// Memory of a database size slug in GB, read from its `-<n>gb` part (`db-s-2vcpu-4gb` is 4).
pub fn database_ram_gb(size: &str) -> Option<u32> {
    size.rsplit('-')
        .find_map(|part| part.strip_suffix("gb").and_then(|n| n.parse().ok()))
}

/// Why `name` is not a valid DigitalOcean tag name, if it is not.
pub fn tag_problem(name: &str) -> Option<String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'));
    if name.is_empty() || name.len() > TAG_MAX_CHARS || !valid_chars {
        Some(format!(
            "tag {name:?} must be 1-{TAG_MAX_CHARS} letters, digits, ':', '-' or '_'"
        ))
    } else {
        None
    }
}

/// Why `name` is not usable as a droplet hostname (RFC 1123 label rules), if it is not.
pub fn hostname_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then(|| {
        format!(
            "{name:?} is not a valid droplet hostname (lowercase letters, digits, '-', at most 63)"
        )
    })
}

/// Why `value` is outside `range`, if it is.
pub fn range_problem<T: PartialOrd + std::fmt::Display>(
    value: T,
    range: &RangeInclusive<T>,
) -> Option<String> {
    (!range.contains(&value)).then(|| {
        format!(
            "must be between {} and {} (got {value})",
            range.start(),
            range.end()
        )
    })
}

/// Domains that can never get a certificate: RFC 2606 and RFC 6761 names for examples and tests.
pub fn placeholder_domain(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    const ZONES: &[&str] = &[
        "example.com",
        "example.net",
        "example.org",
        "example",
        "test",
        "invalid",
        "localhost",
    ];
    ZONES
        .iter()
        .any(|z| d == *z || d.ends_with(&format!(".{z}")))
}

/// The provider's rules that its schema cannot express, applied to the inputs the program
/// registered for one resource (secrets revealed, unknowns skipped); empty when all hold.
pub fn check_registration(type_: &str, inputs: &Value) -> Vec<String> {
    let inputs = crate::wire::reveal(inputs);
    let check: fn(&Value) -> Vec<String> = match type_.rsplit(':').next().unwrap_or_default() {
        "LoadBalancer" => load_balancer_problems,
        "DatabaseConnectionPool" => connection_pool_problems,
        "DatabaseCluster" => database_cluster_problems,
        "Vpc" => vpc_problems,
        "Tag" => tag_resource_problems,
        "Droplet" => droplet_problems,
        _ => return Vec::new(),
    };
    check(&inputs)
}

/// Whether an input has a value to judge: outputs of other resources are unknown in a preview.
fn known(v: &Value) -> bool {
    !v.is_null() && !crate::wire::is_unknown(v)
}

fn whole_number(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Why the number in `kind.field` is outside `range`, if it is known and is.
fn field_range(kind: &str, field: &str, v: &Value, range: &RangeInclusive<u32>) -> Option<String> {
    if !known(v) {
        return None;
    }
    match whole_number(v) {
        Some(n) => range_problem(n, range).map(|p| format!("{kind}.{field} {p}")),
        None => Some(format!("{kind}.{field} must be a whole number (got {v})")),
    }
}

fn load_balancer_problems(inputs: &Value) -> Vec<String> {
    const KIND: &str = "LoadBalancer";
    let h = &inputs["healthcheck"];
    let mut problems: Vec<String> = [
        ("checkIntervalSeconds", &HEALTH_CHECK_SECONDS),
        ("responseTimeoutSeconds", &HEALTH_CHECK_SECONDS),
        ("unhealthyThreshold", &HEALTH_CHECK_THRESHOLD),
        ("healthyThreshold", &HEALTH_CHECK_THRESHOLD),
    ]
    .into_iter()
    .filter_map(|(field, range)| {
        field_range(KIND, &format!("healthcheck.{field}"), &h[field], range)
    })
    .collect();
    problems.extend(field_range(
        KIND,
        "sizeUnit",
        &inputs["sizeUnit"],
        &LB_SIZE_UNIT,
    ));
    problems.extend(field_range(
        KIND,
        "httpIdleTimeoutSeconds",
        &inputs["httpIdleTimeoutSeconds"],
        &LB_IDLE_TIMEOUT_SECONDS,
    ));
    let sticky = &inputs["stickySessions"];
    if sticky["type"] == "cookies" {
        let name = sticky["cookieName"].as_str().unwrap_or_default();
        if let Some(p) = range_problem(name.chars().count(), &COOKIE_NAME_CHARS) {
            problems.push(format!("LoadBalancer.stickySessions.cookieName length {p}"));
        }
    }
    problems
}

fn connection_pool_problems(inputs: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = inputs["name"].as_str().filter(|_| known(&inputs["name"]))
        && let Some(p) = range_problem(name.chars().count(), &POOL_NAME_CHARS)
    {
        problems.push(format!("DatabaseConnectionPool.name {name:?} length {p}"));
    }
    problems.extend(field_range(
        "DatabaseConnectionPool",
        "size",
        &inputs["size"],
        &POOL_SIZE,
    ));
    problems
}

fn database_cluster_problems(inputs: &Value) -> Vec<String> {
    let mut problems: Vec<String> = field_range(
        "DatabaseCluster",
        "nodeCount",
        &inputs["nodeCount"],
        &DATABASE_NODES,
    )
    .into_iter()
    .collect();
    let nodes = whole_number(&inputs["nodeCount"]).unwrap_or(1);
    let size = inputs["size"].as_str().unwrap_or_default();
    match database_ram_gb(size) {
        Some(gb) if nodes > 1 && gb < STANDBY_MIN_RAM_GB => problems.push(format!(
            "DatabaseCluster: {nodes} nodes need a plan with {STANDBY_MIN_RAM_GB} GB of RAM or more ({size} has {gb} GB)"
        )),
        None if known(&inputs["size"]) => {
            problems.push(format!("DatabaseCluster.size {size:?} names no memory size"))
        }
        _ => {}
    }
    problems
}

fn vpc_problems(inputs: &Value) -> Vec<String> {
    let region = inputs["region"].as_str().unwrap_or_default();
    match inputs["ipRange"].as_str().map(str::parse::<Ipv4Net>) {
        Some(Ok(net)) => vpc_range_problem(region, net).into_iter().collect(),
        Some(Err(_)) => vec![format!(
            "Vpc.ipRange {} is not an IPv4 CIDR",
            inputs["ipRange"]
        )],
        None => Vec::new(),
    }
}

fn tag_resource_problems(inputs: &Value) -> Vec<String> {
    inputs["name"]
        .as_str()
        .and_then(tag_problem)
        .into_iter()
        .collect()
}

fn droplet_problems(inputs: &Value) -> Vec<String> {
    let mut problems: Vec<String> = inputs["name"]
        .as_str()
        .and_then(hostname_problem)
        .into_iter()
        .collect();
    for tag in inputs["tags"].as_array().into_iter().flatten() {
        problems.extend(tag.as_str().and_then(tag_problem));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ranges_are_refused_per_region_and_everywhere() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(vpc_range_problem("nyc1", net("10.10.0.0/20")).is_some());
        assert!(vpc_range_problem("nyc3", net("10.10.0.0/20")).is_none());
        assert!(vpc_range_problem("nyc3", net("10.17.128.0/24")).is_some());
        assert!(vpc_range_problem("fra1", net("10.244.8.0/24")).is_some());
        assert!(
            vpc_range_problem("fra1", net("10.0.0.0/8")).is_some(),
            "/8 is too big"
        );
        assert!(vpc_range_problem("fra1", net("10.110.0.0/28")).is_none());
        assert!(vpc_range_problem("fra1", net("10.110.0.0/29")).is_some());
        assert!(vpc_range_problem("fra1", net("8.8.8.0/24")).is_some());
    }

    #[test]
    fn database_memory_comes_from_the_slug() {
        assert_eq!(database_ram_gb("db-s-1vcpu-1gb"), Some(1));
        assert_eq!(database_ram_gb("db-s-2vcpu-4gb"), Some(4));
        assert_eq!(database_ram_gb("gd-8vcpu-32gb"), Some(32));
        assert_eq!(database_ram_gb("db-amd-1vcpu-2gb"), Some(2));
        assert_eq!(database_ram_gb("custom"), None);
    }

    #[test]
    fn placeholder_domains_are_recognised() {
        for d in [
            "api.example.com",
            "example.net",
            "x.y.test",
            "a.invalid",
            "EXAMPLE.ORG.",
        ] {
            assert!(placeholder_domain(d), "{d}");
        }
        for d in ["api.rustlb.dev", "myexample.com", "example.com.au"] {
            assert!(!placeholder_domain(d), "{d}");
        }
    }
}
