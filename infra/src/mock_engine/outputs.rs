//! The stand-in provider's outputs: plausible values after `pulumi up`, readable placeholders in a preview.

use crate::wire::{SECRET_PLACEHOLDER, secret};
use serde_json::{Map, Value, json};

/// Plausible provider outputs for a resource, so the program can finish like after `pulumi up`.
pub(super) fn computed_outputs(
    type_: &str,
    name: &str,
    n: u32,
    inputs: &Value,
) -> Map<String, Value> {
    let kind = type_.rsplit(':').next().unwrap_or_default();
    let host = format!("{name}-do-user-0.db.ondigitalocean.com");
    let private = format!("private-{host}");
    let urn = |k: &str| json!(format!("do:{k}:{name}"));
    let out = match kind {
        "Vpc" => json!({ "vpcUrn": urn("vpc") }),
        "Droplet" => json!({
            "ipv4Address": format!("203.0.113.{}", n % 250 + 1),
            "ipv4AddressPrivate": format!("10.110.0.{}", n % 250 + 2),
            "dropletUrn": format!("do:droplet:{}", 400_000 + n),
            "status": "active",
        }),
        "LoadBalancer" => json!({
            "ip": "198.51.100.10",
            "loadBalancerUrn": urn("loadbalancer"),
            "status": "active",
        }),
        "DatabaseCluster" => json!({
            "host": host, "privateHost": private, "port": 25060, "database": "defaultdb",
            "user": "doadmin", "password": secret(json!("mock-admin-password")),
            "uri": secret(json!(format!("postgresql://doadmin:mock-admin-password@{host}:25060/defaultdb?sslmode=require"))),
            "privateUri": secret(json!(format!("postgresql://doadmin:mock-admin-password@{private}:25060/defaultdb?sslmode=require"))),
            "clusterUrn": urn("dbaas"),
        }),
        "DatabaseUser" => {
            json!({ "password": secret(json!("mock-user-password")), "role": "normal" })
        }
        "DatabaseConnectionPool" => json!({
            "host": "pool-host.db.ondigitalocean.com",
            "privateHost": "private-pool-host.db.ondigitalocean.com",
            "port": 25061, "password": secret(json!("mock-user-password")),
            "uri": secret(json!("postgresql://app:mock-user-password@pool-host.db.ondigitalocean.com:25061/pool?sslmode=require")),
            "privateUri": secret(json!("postgresql://app:mock-user-password@private-pool-host.db.ondigitalocean.com:25061/pool?sslmode=require")),
        }),
        "SpacesBucket" => json!({
            "bucketDomainName": format!(
                "{}.{}.digitaloceanspaces.com",
                inputs["name"].as_str().unwrap_or(name),
                inputs["region"].as_str().unwrap_or("nyc3")
            ),
            "bucketUrn": urn("space"),
        }),
        "SpacesBucketObject" => json!({ "etag": "mock-etag" }),
        "Certificate" => json!({ "uuid": format!("cert-{n}"), "state": "verified" }),
        "Firewall" => json!({ "status": "succeeded" }),
        "SshKey" => {
            json!({ "fingerprint": format!("3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:{:02x}", n % 256) })
        }
        _ => json!({}),
    };
    let mut out = match out {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    // Every other output the provider declares gets a value of its type.
    for (prop, spec) in crate::provider_schema::digitalocean()
        .outputs(type_)
        .into_iter()
        .flatten()
    {
        if !out.contains_key(prop)
            && let Some(v) = typed_value(spec, &format!("{prop}-of-{name}"))
        {
            out.insert(prop.clone(), v);
        }
    }
    out
}

/// Readable stand-ins for outputs that do not exist before `pulumi up` (offline preview).
pub(super) fn placeholder_outputs(type_: &str, name: &str) -> Map<String, Value> {
    // Numbers cannot read `<port of ...>`: take the values DigitalOcean documents (ports).
    let documented = computed_outputs(type_, name, 0, &Value::Null);
    let mut out = Map::new();
    for (prop, spec) in crate::provider_schema::digitalocean()
        .outputs(type_)
        .into_iter()
        .flatten()
    {
        let value = if spec["secret"] == true {
            Some(secret(json!(SECRET_PLACEHOLDER)))
        } else if let Some(n) = documented.get(prop).filter(|v| v.is_number()) {
            Some(n.clone())
        } else {
            typed_value(spec, &format!("<{prop} of {name}>"))
        };
        if let Some(v) = value {
            out.insert(prop.clone(), v);
        }
    }
    out
}

/// A value of the spec's type: `text` for strings, zero or false or empty otherwise.
fn typed_value(spec: &Value, text: &str) -> Option<Value> {
    match spec["type"].as_str() {
        Some("string") => Some(json!(text)),
        Some("integer") | Some("number") => Some(json!(0)),
        Some("boolean") => Some(json!(false)),
        Some("array") => Some(json!([])),
        _ => None,
    }
}
