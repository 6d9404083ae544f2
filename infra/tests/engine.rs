//! Runs the real program against the mock engine, per stack, and checks what a user would notice.

use infra::mock_engine::{self, Registration, Run, RunSpec, is_secret, is_unknown, reveal};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const API_KEY: &str = "test-api-key-9f3b7c1d";
const SSH_KEY: &str = "aa:bb:cc:dd:ee:ff:00:11";
const VPC: &str = "digitalocean:index/vpc:Vpc";
const TAG: &str = "digitalocean:index/tag:Tag";
const CLUSTER: &str = "digitalocean:index/databaseCluster:DatabaseCluster";
const DB: &str = "digitalocean:index/databaseDb:DatabaseDb";
const USER: &str = "digitalocean:index/databaseUser:DatabaseUser";
const POOL: &str = "digitalocean:index/databaseConnectionPool:DatabaseConnectionPool";
const DB_FIREWALL: &str = "digitalocean:index/databaseFirewall:DatabaseFirewall";
const BUCKET: &str = "digitalocean:index/spacesBucket:SpacesBucket";
const OBJECT: &str = "digitalocean:index/spacesBucketObject:SpacesBucketObject";
const DROPLET: &str = "digitalocean:index/droplet:Droplet";
const CERT: &str = "digitalocean:index/certificate:Certificate";
const LB: &str = "digitalocean:index/loadBalancer:LoadBalancer";
const FIREWALL: &str = "digitalocean:index/firewall:Firewall";
const PROJECT: &str = "digitalocean:index/project:Project";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A throwaway repository: the real Pulumi.yaml and stack files, plus a fake app build.
struct Fixture {
    dir: tempfile::TempDir,
    sha256: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        std::fs::copy(root.join("Pulumi.yaml"), dir.path().join("Pulumi.yaml")).unwrap();
        std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
        for stack in ["dev", "staging", "prod", "local"] {
            let name = format!("Pulumi.{stack}.yaml");
            std::fs::copy(
                root.join("stacks").join(&name),
                dir.path().join("stacks").join(&name),
            )
            .unwrap();
        }
        let binary = b"\x7fELF pretend app build";
        std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
        std::fs::write(dir.path().join("target/release/app"), binary).unwrap();
        let sha256 = Sha256::digest(binary)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Fixture { dir, sha256 }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write_stack(&self, stack: &str, yaml: &str) {
        std::fs::write(
            self.root()
                .join("stacks")
                .join(format!("Pulumi.{stack}.yaml")),
            yaml,
        )
        .unwrap();
    }

    /// Runs `pulumi up` (or preview) of a stack with its secrets set, as the engine would.
    fn run(&self, stack: &str, dry_run: bool) -> Run {
        let (mut config, _) = infra::preview::engine_config(self.root(), stack).unwrap();
        config.insert("rustlb:apiKey".into(), API_KEY.into());
        config.insert("rustlb:sshKeys".into(), json!([SSH_KEY]).to_string());
        config.insert("digitalocean:token".into(), "dop_v1_secret_token".into());
        let run = mock_engine::run(&RunSpec {
            program: PathBuf::from(env!("CARGO_BIN_EXE_infra")),
            root: self.root().to_path_buf(),
            project: "rustlb".into(),
            stack: stack.into(),
            config,
            secret_keys: vec![
                "rustlb:apiKey".into(),
                "rustlb:sshKeys".into(),
                "digitalocean:token".into(),
            ],
            env: vec![],
            dry_run,
        })
        .unwrap();
        assert!(
            run.success(),
            "program failed: {}\n{}",
            run.stderr,
            run.stdout
        );
        run
    }
}

fn one<'a>(run: &'a Run, type_: &str, name: &str) -> &'a Registration {
    run.find(type_, name)
        .unwrap_or_else(|| panic!("no {type_} named {name}; got {:?}", names(run)))
}

fn names(run: &Run) -> Vec<(String, String)> {
    run.resources
        .iter()
        .map(|r| (r.type_.clone(), r.name.clone()))
        .collect()
}

fn input<'a>(r: &'a Registration, key: &str) -> &'a Value {
    r.inputs.get(key).unwrap_or(&Value::Null)
}

fn user_data(r: &Registration) -> String {
    let v = input(r, "userData");
    assert!(
        is_secret(v),
        "userData of {} must be sent as a secret",
        r.name
    );
    reveal(v).as_str().unwrap().to_string()
}

#[test]
fn dev_stack_registers_the_whole_deployment_once() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let expected = [
        (VPC, 1),
        (TAG, 3),
        (CLUSTER, 1),
        (DB, 1),
        (USER, 1),
        (POOL, 1),
        (DB_FIREWALL, 1),
        (BUCKET, 1),
        (OBJECT, 1),
        (DROPLET, 2),
        (CERT, 0),
        (LB, 1),
        (FIREWALL, 1),
        (PROJECT, 1),
    ];
    for (type_, count) in expected {
        assert_eq!(
            run.of_type(type_).len(),
            count,
            "{type_}: {:?}",
            names(&run)
        );
    }
    assert_eq!(run.resources.iter().filter(|r| r.custom).count(), 16);
    // Gestalt 0.0.12 declares no dependencies: ordering rests on outputs (see Known limitations).
    assert!(run.resources.iter().all(|r| r.dependencies.is_empty()));
    let stack = run
        .find("pulumi:pulumi:Stack", "rustlb-dev")
        .expect("stack resource");
    assert!(!stack.custom);
    for name in ["rustlb-dev-blue-1", "rustlb-dev-blue-2"] {
        let d = one(&run, DROPLET, name);
        assert_eq!(input(d, "image"), "ubuntu-24-04-x64");
        assert_eq!(input(d, "monitoring"), true);
        assert_eq!(input(d, "vpcUuid"), "rustlb-dev-vpc-id");
        assert_eq!(
            reveal(input(d, "tags")),
            json!(["rustlb-dev-app", "rustlb-dev-blue"])
        );
        assert!(is_secret(input(d, "sshKeys")));
        assert_eq!(reveal(input(d, "sshKeys")), json!([SSH_KEY]));
    }
    let vpc = one(&run, VPC, "rustlb-dev-vpc");
    assert_eq!(input(vpc, "ipRange"), "10.10.0.0/20");
    let project = one(&run, PROJECT, "rustlb-dev-project");
    assert_eq!(input(project, "environment"), "Development");
    let grouped = input(project, "resources").as_array().unwrap();
    assert_eq!(
        grouped.len(),
        5,
        "lb, db, bucket and 2 droplets: {grouped:?}"
    );
}

#[test]
fn load_balancer_forwards_80_to_3000_with_every_health_check_field_set() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let lb = one(&run, LB, "rustlb-dev-lb");
    assert_eq!(input(lb, "dropletTag"), "rustlb-dev-blue");
    assert_eq!(input(lb, "vpcUuid"), "rustlb-dev-vpc-id");
    let rules = input(lb, "forwardingRules").as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["entryPort"], 80);
    assert_eq!(rules[0]["entryProtocol"], "http");
    assert_eq!(rules[0]["targetPort"], 3000);
    assert_eq!(rules[0]["targetProtocol"], "http");
    assert_eq!(
        input(lb, "healthcheck"),
        &json!({
            "protocol": "http", "port": 3000, "path": "/health",
            "checkIntervalSeconds": 30, "responseTimeoutSeconds": 5,
            "unhealthyThreshold": 3, "healthyThreshold": 2
        })
    );
    assert_eq!(input(lb, "stickySessions")["type"], "none");
    assert_eq!(input(lb, "enableBackendKeepalive"), true);
    assert_eq!(input(lb, "redirectHttpToHttps"), false);
}

#[test]
fn prod_serves_https_with_ha_database_and_three_droplets() {
    let fx = Fixture::new();
    let run = fx.run("prod", false);
    assert_eq!(run.of_type(DROPLET).len(), 3);
    assert_eq!(input(one(&run, CLUSTER, "rustlb-prod-db"), "nodeCount"), 2);
    let cert = one(&run, CERT, "rustlb-prod-cert");
    assert_eq!(input(cert, "type"), "lets_encrypt");
    assert_eq!(input(cert, "domains"), &json!(["api.example.com"]));
    let lb = one(&run, LB, "rustlb-prod-lb");
    let rules = input(lb, "forwardingRules").as_array().unwrap();
    let https = rules
        .iter()
        .find(|r| r["entryPort"] == 443)
        .expect("443 rule");
    assert_eq!(https["entryProtocol"], "https");
    assert_eq!(https["targetPort"], 3000);
    assert!(
        https["certificateName"]
            .as_str()
            .unwrap()
            .starts_with("rustlb-prod-cert-")
    );
    assert_eq!(https["certificateName"], input(cert, "name").clone());
    assert!(rules.iter().any(|r| r["entryPort"] == 80));
    assert_eq!(input(lb, "redirectHttpToHttps"), true);
    assert_eq!(
        input(one(&run, PROJECT, "rustlb-prod-project"), "environment"),
        "Production"
    );
    assert_eq!(
        run.outputs.as_ref().unwrap()["url"],
        "https://api.example.com"
    );
}

#[test]
fn droplet_firewall_admits_the_app_port_from_the_load_balancer_and_ssh_from_admins_only() {
    let fx = Fixture::new();
    for stack in ["dev", "staging", "prod"] {
        let run = fx.run(stack, false);
        let lb_id = format!("rustlb-{stack}-lb-id");
        let fw = one(&run, FIREWALL, &format!("rustlb-{stack}-firewall"));
        assert_eq!(input(fw, "tags"), &json!([format!("rustlb-{stack}-app")]));
        let inbound = input(fw, "inboundRules").as_array().unwrap();
        let app = inbound
            .iter()
            .find(|r| r["portRange"] == "3000")
            .expect("3000 rule");
        let uids = app["sourceLoadBalancerUids"].as_array().unwrap();
        assert_eq!(uids.len(), 1);
        assert_eq!(uids[0], lb_id.as_str());
        assert!(
            app["sourceAddresses"].is_null(),
            "3000 must not be open to addresses"
        );
        let ssh = inbound
            .iter()
            .find(|r| r["portRange"] == "22")
            .expect("22 rule");
        for addr in ssh["sourceAddresses"].as_array().unwrap() {
            assert!(
                !addr.as_str().unwrap().ends_with("/0"),
                "{stack}: SSH open to {addr}"
            );
        }
        assert_eq!(inbound.len(), 2, "{stack}: only 3000 and 22 are open");
        let outbound = input(fw, "outboundRules").as_array().unwrap();
        let db = outbound
            .iter()
            .find(|r| r["portRange"] == "25060-25061")
            .expect("db rule");
        assert_eq!(db["destinationAddresses"].as_array().unwrap().len(), 1);
        let ports: Vec<&str> = outbound
            .iter()
            .map(|r| r["portRange"].as_str().unwrap())
            .collect();
        assert!(
            ports
                .iter()
                .all(|p| ["53", "123", "80", "443", "25060-25061"].contains(p)),
            "{ports:?}"
        );
    }
    let prod = Fixture::new().run("prod", false);
    let fw = one(&prod, FIREWALL, "rustlb-prod-firewall");
    let ssh = input(fw, "inboundRules")
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["portRange"] == "22")
        .cloned()
        .unwrap();
    assert_eq!(ssh["sourceAddresses"], json!(["198.51.100.0/28"]));
}

#[test]
fn database_trusts_only_the_app_tag_and_the_app_uses_its_own_user_through_the_pool() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let fw = one(&run, DB_FIREWALL, "rustlb-dev-db-firewall");
    assert_eq!(
        input(fw, "rules"),
        &json!([{"type": "tag", "value": "rustlb-dev-app"}])
    );
    assert_eq!(input(fw, "clusterId"), "rustlb-dev-db-id");
}

#[test]
fn database_pool_is_transaction_mode_for_the_app_user() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let cluster = one(&run, CLUSTER, "rustlb-dev-db");
    assert_eq!(input(cluster, "engine"), "pg");
    assert!(
        input(cluster, "privateNetworkUuid")
            .as_str()
            .unwrap()
            .starts_with("rustlb-dev-vpc-id")
    );
    let user = one(&run, USER, "rustlb-dev-db-user");
    assert_eq!(input(user, "name"), "app");
    let pool = one(&run, POOL, "rustlb-dev-db-pool");
    assert_eq!(input(pool, "mode"), "transaction");
    assert_eq!(input(pool, "user"), "app");
    assert_eq!(input(pool, "dbName"), "app");
}

#[test]
fn cloud_init_installs_the_pinned_build_as_a_hardened_service_on_port_3000() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let text = user_data(one(&run, DROPLET, "rustlb-dev-blue-2"));
    assert!(text.starts_with("#cloud-config\n"));
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).expect("cloud-init must be valid YAML");
    let files = doc["write_files"].as_sequence().unwrap();
    let env = files
        .iter()
        .find(|f| f["path"] == "/etc/rustlb/app.env")
        .unwrap();
    assert_eq!(env["permissions"], "0600", "the env file holds secrets");
    assert!(
        env["content"]
            .as_str()
            .unwrap()
            .contains("APP__APPLICATION__PORT=\"3000\"\n")
    );
    let unit = files
        .iter()
        .find(|f| f["path"] == "/etc/systemd/system/rustlb-app.service")
        .unwrap();
    assert!(
        unit["content"]
            .as_str()
            .unwrap()
            .contains("[Install]\nWantedBy=multi-user.target")
    );
    let cmd = doc["runcmd"][0].as_sequence().unwrap();
    assert_eq!(cmd[0], "sh");
    assert!(
        cmd[2]
            .as_str()
            .unwrap()
            .contains("systemctl enable --now rustlb-app.service")
    );
    assert_eq!(doc["users"][0]["name"], "rustlb");
    for line in [
        "Restart=always",
        "User=rustlb",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ExecStart=/usr/local/bin/rustlb-app",
        "APP__APPLICATION__PORT=\"3000\"",
        "APP__APPLICATION__HOST=\"0.0.0.0\"",
        "APP_ENVIRONMENT=\"production\"",
        "APP__APPLICATION__SERVER_ID=\"rustlb-dev-blue-2\"",
        "APP__DATABASE__STATEMENT_CACHE=\"false\"",
        &format!("APP__APPLICATION__API_KEY=\"{API_KEY}\""),
        "APP__DATABASE__URL=\"postgresql://app:mock-user-password@private-pool-host.db.ondigitalocean.com:25061/rustlb-dev-pool?sslmode=require\"",
    ] {
        assert!(text.contains(line), "cloud-init lacks {line:?}:\n{text}");
    }
    assert!(text.contains(&format!(
        "{}  /usr/local/bin/rustlb-app.download' | sha256sum -c",
        fx.sha256
    )));
    assert!(text.contains(&format!(
        "https://rustlb-dev-artifacts.nyc3.digitaloceanspaces.com/app/{}/rustlb-app",
        fx.sha256
    )));
    let object = run.of_type(OBJECT);
    assert_eq!(
        input(object[0], "key"),
        &json!(format!("app/{}/rustlb-app", fx.sha256))
    );
    assert!(
        fx.root()
            .join(format!("target/artifacts/app-{}", fx.sha256))
            .is_file()
    );
}

#[test]
fn a_new_build_changes_every_droplets_user_data() {
    let fx = Fixture::new();
    let before = user_data(one(&fx.run("dev", false), DROPLET, "rustlb-dev-blue-1"));
    std::fs::write(
        fx.root().join("target/release/app"),
        b"\x7fELF the next build",
    )
    .unwrap();
    let after = user_data(one(&fx.run("dev", false), DROPLET, "rustlb-dev-blue-1"));
    assert_ne!(before, after, "a new build must roll the droplets");
}

#[test]
fn secrets_arrive_as_secrets_and_never_in_plain_text() {
    let fx = Fixture::new();
    for stack in ["dev", "prod"] {
        let run = fx.run(stack, false);
        let plain = [
            API_KEY,
            SSH_KEY,
            "mock-user-password",
            "mock-admin-password",
            "dop_v1_secret_token",
        ];
        let mut visible = String::new();
        for r in &run.resources {
            visible.push_str(&mock_engine::redact(&r.inputs).to_string());
        }
        visible.push_str(&mock_engine::redact(run.outputs.as_ref().unwrap()).to_string());
        visible.push_str(&run.stdout);
        visible.push_str(&run.stderr);
        visible.push_str(&run.logs.join("\n"));
        for secret in plain {
            assert!(
                !visible.contains(secret),
                "{stack}: {secret} leaked in plain text"
            );
        }
        let outputs = run.outputs.as_ref().unwrap();
        assert!(is_secret(&outputs["databaseUri"]));
        assert!(
            reveal(&outputs["databaseUri"])
                .as_str()
                .unwrap()
                .contains("sslmode=require")
        );
    }
}

#[test]
fn outputs_tell_where_to_call_the_api_and_what_runs_behind_it() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let out = run.outputs.as_ref().unwrap();
    assert_eq!(out["url"], "http://198.51.100.10");
    assert_eq!(out["loadBalancerIp"], "198.51.100.10");
    assert_eq!(
        out["dropletNames"],
        json!(["rustlb-dev-blue-1", "rustlb-dev-blue-2"])
    );
    assert_eq!(out["dropletPrivateIps"].as_array().unwrap().len(), 2);
    assert!(
        out["databasePrivateHost"]
            .as_str()
            .unwrap()
            .starts_with("private-")
    );
    assert_eq!(out["activeColor"], "blue");
}

#[test]
fn blue_green_switches_traffic_with_one_key_and_keeps_both_builds() {
    let fx = Fixture::new();
    let old = "ab".repeat(32);
    fx.write_stack(
        "dev",
        &format!(
            "config:\n  rustlb:activeColor: green\n  rustlb:adminCidrs: [203.0.113.0/24]\n  \
             rustlb:blue:\n    count: 2\n    build: {old}\n  rustlb:green:\n    count: 3\n    build: local\n"
        ),
    );
    let run = fx.run("dev", false);
    assert_eq!(
        input(one(&run, LB, "rustlb-dev-lb"), "dropletTag"),
        "rustlb-dev-green"
    );
    assert_eq!(run.of_type(DROPLET).len(), 5);
    assert!(user_data(one(&run, DROPLET, "rustlb-dev-blue-1")).contains(&old));
    assert!(user_data(one(&run, DROPLET, "rustlb-dev-green-3")).contains(&fx.sha256));
    assert_eq!(
        run.of_type(OBJECT).len(),
        2,
        "both builds stay uploaded for rollback"
    );
    assert_eq!(
        run.outputs.as_ref().unwrap()["activeDropletNames"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn preview_mode_works_with_unknown_ids_for_every_cloud_stack() {
    let fx = Fixture::new();
    for stack in ["dev", "staging", "prod"] {
        let run = fx.run(stack, true);
        let lb = one(&run, LB, &format!("rustlb-{stack}-lb"));
        assert!(is_unknown(input(lb, "vpcUuid")));
        assert_eq!(input(lb, "healthcheck")["checkIntervalSeconds"], 30);
        assert!(is_unknown(&run.outputs.as_ref().unwrap()["loadBalancerIp"]));
        assert!(run.of_type(DROPLET).len() >= 2);
    }
}

#[test]
fn refuses_to_deploy_without_an_api_key_before_registering_anything() {
    let fx = Fixture::new();
    let (config, _) = infra::preview::engine_config(fx.root(), "dev").unwrap();
    let run = mock_engine::run(&RunSpec {
        program: PathBuf::from(env!("CARGO_BIN_EXE_infra")),
        root: fx.root().to_path_buf(),
        project: "rustlb".into(),
        stack: "dev".into(),
        config,
        secret_keys: vec![],
        env: vec![],
        dry_run: false,
    })
    .unwrap();
    assert!(!run.success());
    assert!(run.stderr.contains("rustlb:apiKey"), "{}", run.stderr);
    assert!(
        run.resources.is_empty(),
        "nothing may be registered: {:?}",
        names(&run)
    );
}

#[test]
fn the_local_stack_is_refused_under_pulumi() {
    let fx = Fixture::new();
    let run = mock_engine::run(&RunSpec {
        program: PathBuf::from(env!("CARGO_BIN_EXE_infra")),
        root: fx.root().to_path_buf(),
        project: "rustlb".into(),
        stack: "local".into(),
        config: Default::default(),
        secret_keys: vec![],
        env: vec![],
        dry_run: true,
    })
    .unwrap();
    assert!(!run.success());
    assert!(run.stderr.contains("up --stack local"), "{}", run.stderr);
}

#[test]
fn verify_full_ships_the_cluster_ca_to_the_droplets() {
    let fx = Fixture::new();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBfakecertificate\n-----END CERTIFICATE-----";
    fx.write_stack(
        "dev",
        &format!(
            "config:\n  rustlb:database:\n    sslMode: verify-full\n    caCertificate: |\n      {}\n",
            pem.replace('\n', "\n      ")
        ),
    );
    let run = fx.run("dev", false);
    let text = user_data(one(&run, DROPLET, "rustlb-dev-blue-1"));
    assert!(text.contains("sslmode=verify-full"), "{text}");
    assert!(
        text.contains("APP__DATABASE__CA_FILE=\"/etc/rustlb/db-ca.crt\""),
        "{text}"
    );
    assert!(text.contains("\n      MIIBfakecertificate\n"), "{text}");
    assert!(
        text.contains("IPAddressDeny=169.254.169.254/32"),
        "the app must not read user-data back"
    );
}
