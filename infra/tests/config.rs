//! Stack files: the committed ones validate, and every bad value is refused with its key and file named.

use infra::config::{
    Build, Color, ConfigError, Environment, KEYS, KNOWN_KEYS, StackConfig, defaults,
};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Loads `body` as stacks/Pulumi.<stack>.yaml of a scratch repository.
fn load(stack: &str, body: &str) -> Result<StackConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
    std::fs::write(dir.path().join("Pulumi.yaml"), "name: rustlb\n").unwrap();
    std::fs::write(
        dir.path().join(format!("stacks/Pulumi.{stack}.yaml")),
        format!("config:\n{body}"),
    )
    .unwrap();
    StackConfig::load(dir.path(), stack)
}

fn refused(stack: &str, body: &str, key: &str) -> String {
    let err = load(stack, body).expect_err("must be refused");
    assert!(err.mentions(key), "expected an error on {key}, got: {err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("stacks/Pulumi.{stack}.yaml")),
        "error must name the file: {text}"
    );
    assert!(
        text.contains(&format!("rustlb:{key}")),
        "error must name the key: {text}"
    );
    text
}

#[test]
fn committed_stacks_validate_with_per_environment_values() {
    let root = repo_root();
    let dev = StackConfig::load(&root, "dev").unwrap();
    assert_eq!(dev.environment, Environment::Development);
    assert_eq!(dev.droplet_count(), 2);
    assert!(dev.domain.is_none());
    assert_eq!(dev.database.node_count, 1);

    let prod = StackConfig::load(&root, "prod").unwrap();
    assert_eq!(prod.environment, Environment::Production);
    assert!(prod.droplet_count() >= 3);
    assert!(prod.database.node_count >= 2);
    assert!(prod.admin_cidrs.iter().all(|n| n.prefix_len() > 0));

    let staging = StackConfig::load(&root, "staging").unwrap();
    assert_eq!(staging.environment, Environment::Staging);
    // Shipped stacks serve HTTP until their owner sets a domain they control.
    for cfg in [&dev, &staging, &prod] {
        assert!(cfg.domain.is_none(), "{}: {:?}", cfg.stack, cfg.domain);
        assert_eq!(cfg.database.ssl_mode, "verify-full");
    }
    let cidrs = [dev.vpc_cidr, staging.vpc_cidr, prod.vpc_cidr];
    for (i, a) in cidrs.iter().enumerate() {
        for b in &cidrs[i + 1..] {
            assert!(
                !a.contains(b) && !b.contains(a),
                "stack VPCs {a} and {b} overlap"
            );
        }
    }
}

#[test]
fn local_stack_validates_and_exposes_what_the_runner_needs() {
    let local = StackConfig::load(&repo_root(), "local").unwrap();
    assert!(local.is_local());
    assert_eq!(local.lb_address().to_string(), defaults::LB_ADDRESS);
    assert_eq!(local.first_backend_port(), defaults::FIRST_BACKEND_PORT);
    assert_eq!(local.database_url(), defaults::DATABASE_URL);
    assert_eq!(local.droplet_count(), 3);
    assert!(
        local.health_check().check_interval_seconds < 3,
        "local allows short intervals"
    );
    assert!(!local.sticky_sessions().enabled());
    assert!(local.api_key().is_none());
}

#[test]
fn an_empty_stack_gets_the_documented_defaults() {
    let cfg = load("dev", "  rustlb:region: nyc1\n").unwrap();
    let h = cfg.health_check();
    assert_eq!(
        (h.protocol.as_str(), h.port, h.path.as_str()),
        ("http", 3000, "/health")
    );
    assert_eq!(
        (
            h.check_interval_seconds,
            h.response_timeout_seconds,
            h.unhealthy_threshold,
            h.healthy_threshold
        ),
        (30, 5, 3, 2)
    );
    assert_eq!(cfg.droplet_count(), defaults::DROPLET_COUNT);
    assert_eq!(cfg.active_color, Color::Blue);
    assert_eq!(cfg.green.count, 0);
    assert_eq!(cfg.blue.build, Build::Local);
}

#[test]
fn droplet_count_must_be_1_to_50() {
    refused("dev", "  rustlb:dropletCount: 0\n", "dropletCount");
    refused("dev", "  rustlb:dropletCount: 51\n", "dropletCount");
    assert_eq!(
        load("dev", "  rustlb:dropletCount: 50\n")
            .unwrap()
            .droplet_count(),
        50
    );
    refused("dev", "  rustlb:blue:\n    count: 51\n", "blue.count");
    refused(
        "dev",
        "  rustlb:activeColor: green\n  rustlb:green:\n    count: 0\n",
        "green.count",
    );
}

#[test]
fn health_check_values_must_be_inside_digitaloceans_ranges() {
    let hc = |field: &str, value: u32| format!("  rustlb:healthCheck:\n    {field}: {value}\n");
    for (field, bad) in [
        ("checkIntervalSeconds", 2),
        ("checkIntervalSeconds", 301),
        ("responseTimeoutSeconds", 2),
        ("responseTimeoutSeconds", 301),
        ("unhealthyThreshold", 1),
        ("unhealthyThreshold", 11),
        ("healthyThreshold", 1),
        ("healthyThreshold", 11),
    ] {
        refused("dev", &hc(field, bad), &format!("healthCheck.{field}"));
    }
    assert!(load("dev", &hc("checkIntervalSeconds", 3)).is_ok());
    assert!(load("dev", &hc("checkIntervalSeconds", 300)).is_ok());
    // The local load balancer may probe every second; DigitalOcean may not.
    assert!(load("local", &hc("checkIntervalSeconds", 1)).is_ok());
    refused(
        "local",
        &hc("checkIntervalSeconds", 0),
        "healthCheck.checkIntervalSeconds",
    );
    refused(
        "dev",
        "  rustlb:healthCheck:\n    protocol: grpc\n",
        "healthCheck.protocol",
    );
    refused(
        "dev",
        "  rustlb:healthCheck:\n    intervall: 5\n",
        "healthCheck",
    );
}

#[test]
fn cidrs_must_parse_and_not_overlap() {
    refused("dev", "  rustlb:vpcCidr: 10.10.0.0/33\n", "vpcCidr");
    refused("dev", "  rustlb:vpcCidr: not-a-cidr\n", "vpcCidr");
    refused("dev", "  rustlb:vpcCidr: 8.8.0.0/20\n", "vpcCidr");
    refused(
        "dev",
        "  rustlb:adminCidrs: [203.0.113.0/24, 203.0.113.128/25]\n",
        "adminCidrs",
    );
    refused(
        "dev",
        "  rustlb:adminCidrs: [10.110.1.0/24]\n",
        "adminCidrs",
    );
    refused("dev", "  rustlb:adminCidrs: [999.1.1.1/32]\n", "adminCidrs");
    let ok = load(
        "dev",
        "  rustlb:adminCidrs: [203.0.113.0/24, 198.51.100.7]\n",
    )
    .unwrap();
    assert_eq!(ok.admin_cidrs.len(), 2);
}

#[test]
fn vpc_ranges_of_stacks_in_one_region_must_not_overlap() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
    std::fs::write(dir.path().join("Pulumi.yaml"), "name: rustlb\n").unwrap();
    let write = |stack: &str, cidr: &str| {
        std::fs::write(
            dir.path().join(format!("stacks/Pulumi.{stack}.yaml")),
            format!("config:\n  rustlb:region: nyc1\n  rustlb:vpcCidr: {cidr}\n"),
        )
        .unwrap()
    };
    write("dev", "10.110.0.0/20");
    write("staging", "10.110.8.0/24");
    let err = StackConfig::load(dir.path(), "dev").unwrap_err();
    assert!(err.mentions("vpcCidr"), "{err}");
    assert!(err.to_string().contains("Pulumi.staging.yaml"), "{err}");
    write("staging", "10.120.0.0/20");
    assert!(StackConfig::load(dir.path(), "dev").is_ok());
}

#[test]
fn sticky_cookie_name_must_be_2_to_40_characters() {
    let sticky = |name: &str| {
        format!(
            "  rustlb:stickySessions:\n    type: cookies\n    cookieName: {name}\n    cookieTtlSeconds: 300\n"
        )
    };
    refused("dev", &sticky("X"), "stickySessions.cookieName");
    refused("dev", &sticky(&"c".repeat(41)), "stickySessions.cookieName");
    let ok = load("dev", &sticky("DO-LB")).unwrap();
    assert!(ok.sticky_sessions().enabled());
    refused(
        "dev",
        "  rustlb:stickySessions:\n    type: cookies\n    cookieName: DO-LB\n",
        "stickySessions.cookieTtlSeconds",
    );
    refused(
        "dev",
        "  rustlb:stickySessions:\n    type: ip\n",
        "stickySessions.type",
    );
}

#[test]
fn ssh_from_anywhere_needs_explicit_consent_and_is_never_allowed_in_prod() {
    let open = "  rustlb:adminCidrs: [0.0.0.0/0]\n";
    refused("dev", open, "adminCidrs");
    let allowed = format!("{open}  rustlb:allowSshFromAnywhere: true\n");
    assert!(load("dev", &allowed).is_ok());
    let text = refused(
        "prod",
        &format!("{allowed}  rustlb:database:\n    nodeCount: 2\n"),
        "adminCidrs",
    );
    assert!(text.contains("prod"));
    refused(
        "prod",
        "  rustlb:allowSshFromAnywhere: true\n  rustlb:database:\n    nodeCount: 2\n",
        "allowSshFromAnywhere",
    );
}

#[test]
fn prod_needs_a_standby_database_node() {
    refused(
        "prod",
        "  rustlb:database:\n    nodeCount: 1\n",
        "database.nodeCount",
    );
}

#[test]
fn the_app_never_uses_the_admin_database_user() {
    refused(
        "dev",
        "  rustlb:database:\n    user: doadmin\n",
        "database.user",
    );
}

#[test]
fn every_problem_is_reported_at_once_and_typos_are_caught() {
    let err = load("dev", "  rustlb:dropletCount: 0\n  rustlb:dropletCnt: 2\n  rustlb:healthCheck:\n    healthyThreshold: 1\n").unwrap_err();
    assert!(err.mentions("dropletCount"));
    assert!(err.mentions("dropletCnt"));
    assert!(err.mentions("healthCheck.healthyThreshold"));
}

#[test]
fn plain_text_api_key_is_refused_in_cloud_stacks_and_never_echoed() {
    let text = refused("dev", "  rustlb:apiKey: hunter2-very-secret\n", "apiKey");
    assert!(!text.contains("hunter2"), "{text}");
    let encrypted = load("dev", "  rustlb:apiKey:\n    secure: v1:abcdef\n").unwrap();
    assert!(encrypted.api_key.is_set());
    assert!(encrypted.api_key().is_none());
    assert!(!format!("{encrypted:?}").contains("abcdef"));
}

#[test]
fn pulumi_yaml_declarations_have_shapes_the_cli_accepts() {
    let text = std::fs::read_to_string(repo_root().join("Pulumi.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["name"].as_str(), Some("rustlb"));
    assert_eq!(doc["stackConfigDir"].as_str(), Some("stacks"));
    assert_eq!(doc["runtime"]["name"].as_str(), Some("rust"));
    // The CLI accepts only these declaration shapes; anything else breaks every `pulumi` command.
    for (key, decl) in doc["config"].as_mapping().unwrap() {
        let t = decl["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{key:?} needs a type"));
        assert!(
            ["string", "integer", "boolean", "array"].contains(&t),
            "{key:?}: type {t}"
        );
        if t == "array" {
            assert!(
                decl["items"]["type"].is_string(),
                "{key:?}: arrays need items"
            );
        }
        for field in decl.as_mapping().unwrap().keys() {
            let f = field.as_str().unwrap();
            assert!(
                ["type", "items", "description", "secret", "default"].contains(&f),
                "{key:?}: {f}"
            );
        }
    }
}

/// A YAML scalar as text, the way the Pulumi CLI hands a default to the program.
fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What Pulumi.yaml says about the key table, one line per disagreement.
fn key_table_disagreements(pulumi_yaml: &str) -> Vec<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(pulumi_yaml).unwrap();
    let config = doc["config"].as_mapping().unwrap();
    let comment = &pulumi_yaml[..pulumi_yaml.find("\nconfig:").unwrap()];
    let mut problems = Vec::new();
    for key in KEYS {
        let name = key.name;
        match (key.default, config.get(name)) {
            (Some(default), Some(decl)) => {
                let declared = scalar_text(&decl["default"]);
                if declared.as_deref() != Some(default.text().as_str()) {
                    problems.push(format!(
                        "{name}: Pulumi.yaml's default is {declared:?}, the key table's {:?}",
                        default.text()
                    ));
                }
                if decl["type"].as_str() != Some(default.yaml_type()) {
                    problems.push(format!(
                        "{name}: Pulumi.yaml's type is {:?}, the key table's default is a {}",
                        decl["type"],
                        default.yaml_type()
                    ));
                }
            }
            (Some(_), None) => problems.push(format!(
                "{name}: has a default in the key table but is not declared in Pulumi.yaml's config block"
            )),
            (None, Some(_)) => problems.push(format!(
                "{name}: declared in Pulumi.yaml but has no default in the key table \
                 (the CLI would refuse every stack without it)"
            )),
            (None, None) if !comment.contains(&format!("#   {name}:")) => problems.push(format!(
                "{name}: has no default, so Pulumi.yaml's leading comment must document it (`#   {name}:`)"
            )),
            (None, None) => {}
        }
    }
    for name in config.keys() {
        let name = name.as_str().unwrap_or_default();
        if !KEYS.iter().any(|k| k.name == name) {
            problems.push(format!(
                "{name}: declared in Pulumi.yaml but not in the key table, so the program refuses it"
            ));
        }
    }
    problems
}

#[test]
fn pulumi_yaml_and_the_key_table_agree_both_ways() {
    let text = std::fs::read_to_string(repo_root().join("Pulumi.yaml")).unwrap();
    let problems = key_table_disagreements(&text);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(KNOWN_KEYS.len(), KEYS.len());

    // The check itself catches each kind of drift.
    let drifted = [
        text.replace("default: nyc1", "default: nyc3"),
        text.replace("default: 400", "default: 40"),
        text.replace("type: boolean", "type: string"),
        text.replace("  databaseUrl:", "  databaseUri:"),
        text.replace("#   domain:", "#   domains:"),
        text.replace(
            "config:\n",
            "config:\n  colour:\n    type: string\n    default: blue\n",
        ),
    ];
    for (i, yaml) in drifted.iter().enumerate() {
        assert_ne!(&text, yaml, "drift {i} changed nothing");
        assert!(
            !key_table_disagreements(yaml).is_empty(),
            "drift {i} went unnoticed"
        );
    }
}

#[test]
fn engine_config_is_read_the_same_as_the_stack_file() {
    let raw = infra::config::raw_from_engine(
        r#"{"rustlb:dropletCount":"4","rustlb:healthCheck":"{\"checkIntervalSeconds\":10}","rustlb:apiKey":"k3y-0123456789abcdef","digitalocean:token":"t"}"#,
        r#"["rustlb:apiKey","digitalocean:token"]"#,
    )
    .unwrap();
    let cfg = StackConfig::from_raw("dev", "PULUMI_CONFIG", raw).unwrap();
    assert_eq!(cfg.droplet_count(), 4);
    assert_eq!(cfg.health_check().check_interval_seconds, 10);
    assert_eq!(cfg.health_check().healthy_threshold, 2);
    assert!(cfg.api_key().is_some());
}

#[test]
fn a_weak_api_key_is_refused_without_echoing_it() {
    let raw =
        infra::config::raw_from_engine(r#"{"rustlb:apiKey":"short-key"}"#, r#"["rustlb:apiKey"]"#)
            .unwrap();
    let err = StackConfig::from_raw("dev", "PULUMI_CONFIG", raw).unwrap_err();
    assert!(err.mentions("apiKey"), "{err}");
    assert!(!err.to_string().contains("short-key"));
}

#[test]
fn database_tls_verifies_the_certificate_unless_require_is_chosen() {
    assert_eq!(
        load("dev", "  rustlb:region: nyc1\n")
            .unwrap()
            .database
            .ssl_mode,
        "verify-full"
    );
    let require = load("dev", "  rustlb:database:\n    sslMode: require\n").unwrap();
    assert_eq!(require.database.ssl_mode, "require");
    let text = refused(
        "dev",
        "  rustlb:database:\n    sslMode: disable\n",
        "database.sslMode",
    );
    assert!(text.contains("verify-full"), "{text}");
    // The CA comes from DigitalOcean now; a hand-pasted one is an unknown field.
    refused(
        "dev",
        "  rustlb:database:\n    caCertificate: x\n",
        "database",
    );
}

#[test]
fn vpc_ranges_digitalocean_reserves_are_refused_per_region() {
    let text = refused(
        "dev",
        "  rustlb:region: nyc1\n  rustlb:vpcCidr: 10.10.0.0/20\n",
        "vpcCidr",
    );
    assert!(
        text.contains("10.10.0.0/16") && text.contains("nyc1"),
        "{text}"
    );
    // The same range is free in another region.
    assert!(
        load(
            "dev",
            "  rustlb:region: nyc3\n  rustlb:vpcCidr: 10.10.0.0/20\n"
        )
        .is_ok()
    );
    refused(
        "dev",
        "  rustlb:region: nyc3\n  rustlb:vpcCidr: 10.17.0.0/24\n",
        "vpcCidr",
    );
    let text = refused(
        "dev",
        "  rustlb:region: fra1\n  rustlb:vpcCidr: 10.244.0.0/20\n",
        "vpcCidr",
    );
    assert!(text.contains("every region"), "{text}");
    assert!(load("dev", "  rustlb:vpcCidr: 10.110.0.16/28\n").is_ok());
    refused("dev", "  rustlb:vpcCidr: 10.110.0.16/29\n", "vpcCidr");
    refused("dev", "  rustlb:vpcCidr: 10.0.0.0/8\n", "vpcCidr");
}

#[test]
fn standby_nodes_need_a_plan_with_2_gb_or_more() {
    let text = refused(
        "dev",
        "  rustlb:database:\n    size: db-s-1vcpu-1gb\n    nodeCount: 2\n",
        "database.nodeCount",
    );
    assert!(text.contains("2 GB"), "{text}");
    let ok = load(
        "dev",
        "  rustlb:database:\n    size: db-s-1vcpu-2gb\n    nodeCount: 3\n",
    )
    .unwrap();
    assert_eq!(ok.database.node_count, 3);
    refused(
        "dev",
        "  rustlb:database:\n    size: large\n",
        "database.size",
    );
    refused(
        "dev",
        "  rustlb:database:\n    size: db-s-2vcpu-4gb\n    nodeCount: 4\n",
        "database.nodeCount",
    );
}

#[test]
fn load_balancer_size_unit_is_1_to_200() {
    refused(
        "dev",
        "  rustlb:loadBalancerSizeUnit: 0\n",
        "loadBalancerSizeUnit",
    );
    refused(
        "dev",
        "  rustlb:loadBalancerSizeUnit: 201\n",
        "loadBalancerSizeUnit",
    );
    assert_eq!(
        load("dev", "  rustlb:loadBalancerSizeUnit: 200\n")
            .unwrap()
            .load_balancer_size_unit,
        200
    );
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGI2huabWGfZcbSPomuE/I2IIzvixPdr2NY7ff1cqaXL ops@rustlb";

#[test]
fn ssh_public_keys_are_checked_before_anything_is_uploaded() {
    let cfg = load(
        "dev",
        &format!("  rustlb:sshPublicKeys:\n    - {ED25519}\n"),
    )
    .unwrap();
    assert_eq!(cfg.ssh_public_keys.len(), 1);
    assert_eq!(
        cfg.ssh_public_keys[0].comment.as_deref(),
        Some("ops@rustlb")
    );
    assert!(cfg.has_ssh_access());
    let text = refused(
        "dev",
        "  rustlb:sshPublicKeys:\n    - ssh-ed25519 AAAA-not-base64\n",
        "sshPublicKeys[0]",
    );
    assert!(text.contains("base64"), "{text}");
    // A key whose data says it is another type (e.g. half of the line pasted).
    let mislabelled = ED25519.replace("ssh-ed25519 ", "ssh-rsa ");
    refused(
        "dev",
        &format!("  rustlb:sshPublicKeys:\n    - {mislabelled}\n"),
        "sshPublicKeys[0]",
    );
    let text = refused(
        "dev",
        "  rustlb:sshPublicKeys:\n    - \"-----BEGIN OPENSSH PRIVATE KEY-----\"\n",
        "sshPublicKeys[0]",
    );
    assert!(text.contains("private key"), "{text}");
    refused(
        "dev",
        &format!("  rustlb:sshPublicKeys:\n    - {ED25519}\n    - {ED25519}\n"),
        "sshPublicKeys[1]",
    );
}

#[test]
fn stack_names_must_fit_digitaloceans_resource_names() {
    let err = load("Prod_EU", "  rustlb:region: nyc1\n").unwrap_err();
    assert!(err.to_string().contains("stack name \"Prod_EU\""), "{err}");
    let long = "a".repeat(45);
    let err = load(&long, "  rustlb:region: nyc1\n").unwrap_err();
    assert!(err.to_string().contains("connection pool name"), "{err}");
    assert!(load("eu-prod2", "  rustlb:region: nyc1\n").is_ok());
}

#[test]
fn instances_drain_as_long_as_the_load_balancer_needs_and_health_answers_before_its_timeout() {
    let root = repo_root();
    for stack in ["local", "dev", "staging", "prod"] {
        let cfg = StackConfig::load(&root, stack).unwrap();
        let h = cfg.health_check();
        let lb_timeout_ms = u64::from(h.response_timeout_seconds) * 1000;
        assert!(
            cfg.app_health_timeout_ms() < lb_timeout_ms,
            "{stack}: /health must answer before the check gives up"
        );
        assert!(cfg.app_health_timeout_ms() >= 100, "{stack}");
        // Out of rotation after that many failed checks, checkIntervalSeconds apart: the
        // cloud stacks wait for unhealthyThreshold, the local one leaves on the first
        // `draining` answer.
        let checks = if stack == "local" {
            assert!(cfg.local_lb.leave_on_draining);
            1
        } else {
            assert!(!cfg.local_lb.leave_on_draining);
            h.unhealthy_threshold
        };
        assert_eq!(cfg.checks_to_leave_rotation(), checks, "{stack}");
        assert_eq!(
            cfg.drain_seconds(),
            u64::from(checks) * u64::from(h.check_interval_seconds)
                + u64::from(h.response_timeout_seconds),
            "{stack}"
        );
    }
    let short = load(
        "dev",
        "  rustlb:healthCheck:\n    responseTimeoutSeconds: 3\n    checkIntervalSeconds: 3\n",
    )
    .unwrap();
    assert_eq!(short.app_health_timeout_ms(), 1000);
    assert_eq!(short.drain_seconds(), 3 * 3 + 3);
}

#[test]
fn retention_is_stack_config_with_the_apps_defaults() {
    let cfg = load("dev", "  rustlb:region: nyc1\n").unwrap();
    assert_eq!(
        cfg.request_log_retention_days,
        defaults::REQUEST_LOG_RETENTION_DAYS
    );
    assert_eq!(cfg.stats_retention_days, defaults::STATS_RETENTION_DAYS);
    let short = load(
        "dev",
        "  rustlb:requestLogRetentionDays: 2\n  rustlb:statsRetentionDays: 0\n",
    )
    .unwrap();
    let env: Vec<(String, String)> = app::DeploySettings {
        environment: app::Environment::Production,
        host: std::net::Ipv4Addr::LOCALHOST.into(),
        port: 3000,
        server_id: "x".into(),
        api_key: None,
        database_url: "sqlite::memory:".into(),
        owner_url: None,
        statement_cache: true,
        run_migrations: false,
        ca_file: None,
        drain_seconds: None,
        health_timeout_ms: None,
        trusted_proxy_hops: None,
        retention: short.log_retention(),
        spool_dir: None,
    }
    .to_env();
    assert!(
        env.contains(&("APP__REQUEST_LOG__RETENTION_DAYS".into(), "2".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("APP__STATS__RETENTION_DAYS".into(), "0".into())),
        "{env:?}"
    );
    refused(
        "dev",
        "  rustlb:requestLogRetentionDays: 4000\n",
        "requestLogRetentionDays",
    );
    refused(
        "dev",
        "  rustlb:statsRetentionDays: -1\n",
        "statsRetentionDays",
    );
}
