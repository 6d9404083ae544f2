//! Runs the real program against the mock engine, per stack, and checks what a user would notice.

mod common;

use common::*;
use infra::mock_engine::{
    self, MockAccount, Registration, Run, RunSpec, is_secret, is_unknown, reveal,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[test]
fn dev_stack_registers_the_whole_deployment_once() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let expected = [
        (VPC, 1),
        (TAG, 3),
        (CLUSTER, 1),
        (DB, 1),
        (USER, 2),
        (POOL, 1),
        (DB_FIREWALL, 1),
        (BUCKET, 1),
        (OBJECT, 2),
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
    assert_eq!(run.resources.iter().filter(|r| r.custom).count(), 18);
    // Gestalt sends no dependencies: every one comes from the stack transform.
    assert!(
        run.resources
            .iter()
            .filter(|r| !r.dependencies.is_empty())
            .all(|r| r.transformed)
    );
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
    assert_eq!(input(vpc, "ipRange"), "10.110.0.0/20");
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
    // DigitalOcean's only timeout for a droplet that does not answer, which the local load
    // balancer copies; `algorithm` is deprecated (always round robin) and left unset.
    assert_eq!(input(lb, "httpIdleTimeoutSeconds"), 60);
    assert_eq!(input(lb, "algorithm"), &Value::Null);
}

#[test]
fn prod_runs_an_ha_database_and_three_droplets_over_http_until_it_has_a_domain() {
    let fx = Fixture::new();
    let run = fx.run("prod", false);
    assert_eq!(run.of_type(DROPLET).len(), 3);
    assert_eq!(input(one(&run, CLUSTER, "rustlb-prod-db"), "nodeCount"), 2);
    assert!(run.of_type(CERT).is_empty());
    assert_eq!(
        input(one(&run, PROJECT, "rustlb-prod-project"), "environment"),
        "Production"
    );
    assert_eq!(run.outputs.as_ref().unwrap()["url"], "http://198.51.100.10");
}

#[test]
fn a_domain_gets_a_lets_encrypt_certificate_and_https() {
    let fx = Fixture::new();
    let prod = std::fs::read_to_string(fx.root().join("stacks/Pulumi.prod.yaml")).unwrap();
    fx.write_stack("prod", &format!("{prod}  rustlb:domain: api.rustlb.dev\n"));
    let run = fx.run("prod", false);
    let cert = one(&run, CERT, "rustlb-prod-cert");
    assert_eq!(input(cert, "type"), "lets_encrypt");
    assert_eq!(input(cert, "domains"), &json!(["api.rustlb.dev"]));
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
        run.outputs.as_ref().unwrap()["url"],
        "https://api.rustlb.dev"
    );
}

#[test]
fn pulumi_up_refuses_placeholder_domains_and_preview_only_warns() {
    let fx = Fixture::new();
    for domain in [
        "api.example.com",
        "staging.example.net",
        "app.test",
        "x.invalid",
    ] {
        fx.write_stack(
            "staging",
            &format!("config:\n  rustlb:region: nyc1\n  rustlb:vpcCidr: 10.120.0.0/20\n  rustlb:domain: {domain}\n"),
        );
        let up = fx.try_run("staging", false);
        assert!(!up.success(), "{domain} must be refused");
        assert!(up.stderr.contains("rustlb:domain"), "{}", up.stderr);
        assert!(up.stderr.contains(domain), "{}", up.stderr);
        assert!(up.resources.is_empty(), "refused before any resource");
        assert!(
            fx.try_run("staging", true).success(),
            "a preview of {domain} still runs"
        );
    }
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
fn database_trusts_only_the_app_tag_and_the_admin_networks() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let fw = one(&run, DB_FIREWALL, "rustlb-dev-db-firewall");
    assert_eq!(
        input(fw, "rules"),
        &json!([
            {"type": "tag", "value": "rustlb-dev-app"},
            {"type": "ip_addr", "value": "203.0.113.0/24"},
        ])
    );
    assert_eq!(input(fw, "clusterId"), "rustlb-dev-db-id");
}

#[test]
fn requests_run_as_a_role_without_ddl_and_no_admin_credential_reaches_a_droplet() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let owner = one(&run, USER, "rustlb-dev-db-owner");
    assert_eq!(input(owner, "name"), "app_owner");
    let text = user_data(one(&run, DROPLET, "rustlb-dev-blue-1"));
    let env = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
            .trim_matches('"')
            .to_string()
    };
    // Requests through the pool as `app`; migrations and maintenance straight to the cluster
    // as the owner; the admin (`doadmin`) nowhere.
    let runtime = env("APP__DATABASE__URL");
    assert!(
        runtime.starts_with("postgresql://app:mock-user-password@private-pool-host"),
        "{runtime}"
    );
    let owner_url = env("APP__DATABASE__OWNER_URL");
    assert!(
        owner_url.starts_with("postgresql://app_owner:"),
        "{owner_url}"
    );
    assert!(
        owner_url.contains(":25060/app?sslmode=verify-full"),
        "{owner_url}"
    );
    assert!(
        !text.contains("doadmin") && !text.contains("mock-admin-password"),
        "{text}"
    );
    // The admin's URL is only a secret stack output, for `infra db-bootstrap`.
    let outputs = run.outputs.as_ref().unwrap();
    assert!(is_secret(&outputs["databaseAdminUri"]));
    let admin = reveal(&outputs["databaseAdminUri"]);
    assert!(
        admin.as_str().unwrap().starts_with("postgresql://doadmin:"),
        "{admin}"
    );
    assert!(
        admin.as_str().unwrap().ends_with("/app?sslmode=require"),
        "{admin}"
    );
    assert_eq!(outputs["databaseOwnerRole"], "app_owner");
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
        &format!(
            "APP__DATABASE__URL=\"postgresql://app:mock-user-password@private-pool-host.db.ondigitalocean.com:25061/{}?sslmode=verify-full\"",
            input(one(&run, POOL, "rustlb-dev-db-pool"), "name")
                .as_str()
                .unwrap()
        ),
    ] {
        assert!(text.contains(line), "cloud-init lacks {line:?}:\n{text}");
    }
    assert!(text.contains(&format!(
        "{}  /usr/local/bin/rustlb-app.download' | sha256sum -c",
        fx.sha256
    )));
    let bucket = input(one(&run, BUCKET, "rustlb-dev-artifacts"), "name")
        .as_str()
        .unwrap();
    assert!(text.contains(&format!(
        "https://{bucket}.nyc3.digitaloceanspaces.com/app/{}/rustlb-app",
        fx.sha256
    )));
    let object = one(
        &run,
        OBJECT,
        &format!("rustlb-dev-build-{}", &fx.sha256[..12]),
    );
    assert_eq!(
        input(object, "key"),
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
        minimal_elf(b"the next build"),
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
                .contains("sslmode=verify-full")
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
    let public = out["dropletPublicIps"].as_array().unwrap();
    assert_eq!(public.len(), 2);
    assert!(
        public
            .iter()
            .all(|ip| ip.as_str().unwrap().starts_with("203.0.113.")),
        "{public:?}"
    );
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
    let builds: Vec<&str> = run
        .of_type(OBJECT)
        .into_iter()
        .filter_map(|o| input(o, "key").as_str())
        .filter(|k| k.starts_with("app/"))
        .collect();
    assert_eq!(builds.len(), 2, "both builds stay uploaded for rollback");
    assert_eq!(
        run.outputs.as_ref().unwrap()["activeDropletNames"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // What `infra rollout` pins before it starts the other colour.
    assert_eq!(
        run.outputs.as_ref().unwrap()["colorBuilds"],
        json!({"blue": old, "green": fx.sha256})
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
        program: PathBuf::from(env!("CARGO_BIN_EXE_rustlb-program")),
        root: fx.root().to_path_buf(),
        project: "rustlb".into(),
        stack: "dev".into(),
        config,
        secret_keys: vec![],
        env: vec![],
        dry_run: false,
        placeholders: false,
        account: Default::default(),
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
        program: PathBuf::from(env!("CARGO_BIN_EXE_rustlb-program")),
        root: fx.root().to_path_buf(),
        project: "rustlb".into(),
        stack: "local".into(),
        config: Default::default(),
        secret_keys: vec![],
        env: vec![],
        dry_run: true,
        placeholders: false,
        account: Default::default(),
    })
    .unwrap();
    assert!(!run.success());
    assert!(run.stderr.contains("up --stack local"), "{}", run.stderr);
}

#[test]
fn droplets_verify_the_database_with_the_ca_read_from_digitalocean() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let cluster_id = "rustlb-dev-db-id";
    let ca_reads: Vec<_> = run
        .invokes
        .iter()
        .filter(|i| i.token == GET_DATABASE_CA)
        .collect();
    assert_eq!(ca_reads.len(), 1, "{:?}", run.invokes);
    assert_eq!(reveal(&ca_reads[0].args["clusterId"]), cluster_id);
    let ca = one(&run, OBJECT, "rustlb-dev-db-ca");
    assert_eq!(
        input(ca, "content"),
        &json!(format!(
            "-----BEGIN CERTIFICATE-----\nMOCK-CA-OF-{cluster_id}\n-----END CERTIFICATE-----\n"
        ))
    );
    assert_eq!(
        input(ca, "acl"),
        "public-read",
        "a CA certificate is public"
    );
    let key = input(ca, "key").as_str().unwrap();
    let text = user_data(one(&run, DROPLET, "rustlb-dev-blue-1"));
    assert!(text.contains("sslmode=verify-full"), "{text}");
    assert!(
        text.contains("APP__DATABASE__CA_FILE=\"/etc/rustlb/db-ca.crt\""),
        "{text}"
    );
    // The droplet fetches the CA and refuses anything that is not a certificate.
    assert!(
        text.contains(&format!("digitaloceanspaces.com/{key}'")),
        "{text}"
    );
    assert!(
        text.contains("grep -q 'BEGIN CERTIFICATE' /etc/rustlb/db-ca.crt.download"),
        "{text}"
    );
    // The CA is not in userData, so a preview that cannot read it yet replaces no droplet.
    let preview = fx.run("dev", true);
    assert!(
        preview.invokes.iter().all(|i| i.token != GET_DATABASE_CA),
        "no CA lookup with an unknown cluster id"
    );
    assert!(
        text.contains("IPAddressDeny=169.254.169.254/32"),
        "the app must not read user-data back"
    );
}

#[test]
fn require_stays_an_explicit_choice_without_a_ca() {
    let fx = Fixture::new();
    fx.write_stack(
        "dev",
        "config:\n  rustlb:vpcCidr: 10.110.0.0/20\n  rustlb:database:\n    sslMode: require\n",
    );
    let run = fx.run("dev", false);
    let text = user_data(one(&run, DROPLET, "rustlb-dev-blue-1"));
    assert!(text.contains("sslmode=require"), "{text}");
    assert!(!text.contains("CA_FILE"), "{text}");
    assert!(run.find(OBJECT, "rustlb-dev-db-ca").is_none());
}

#[test]
fn ssh_public_keys_become_digitalocean_keys_on_every_droplet() {
    let fx = Fixture::new();
    let dev = std::fs::read_to_string(fx.root().join("stacks/Pulumi.dev.yaml")).unwrap();
    fx.write_stack(
        "dev",
        &format!("{dev}  rustlb:sshPublicKeys:\n    - {ED25519}\n"),
    );
    let run = fx.run("dev", false);
    let keys = run.of_type(SSH_KEY_RESOURCE);
    assert_eq!(keys.len(), 1);
    assert_eq!(input(keys[0], "publicKey"), ED25519);
    for d in run.of_type(DROPLET) {
        let ids = reveal(input(d, "sshKeys"));
        let ids = ids.as_array().unwrap();
        assert_eq!(
            ids.len(),
            2,
            "the uploaded key and the existing one: {ids:?}"
        );
        assert_eq!(ids[0], SSH_KEY);
        assert!(ids[1].as_str().unwrap().starts_with("3b:16:"), "{ids:?}");
    }
}

#[test]
fn prod_without_any_ssh_key_is_refused_by_pulumi_up() {
    let fx = Fixture::new();
    let (config, _) = infra::preview::engine_config(fx.root(), "prod").unwrap();
    let mut config = config;
    config.insert("rustlb:apiKey".into(), API_KEY.into());
    let spec = |dry_run| RunSpec {
        program: PathBuf::from(env!("CARGO_BIN_EXE_rustlb-program")),
        root: fx.root().to_path_buf(),
        project: "rustlb".into(),
        stack: "prod".into(),
        config: config.clone(),
        secret_keys: vec!["rustlb:apiKey".into()],
        env: vec![],
        dry_run,
        placeholders: false,
        account: Default::default(),
    };
    let up = mock_engine::run(&spec(false)).unwrap();
    assert!(!up.success());
    assert!(up.stderr.contains("rustlb:sshPublicKeys"), "{}", up.stderr);
    assert!(up.resources.is_empty());
    assert!(
        mock_engine::run(&spec(true)).unwrap().success(),
        "preview still runs"
    );
}

/// Resource types DigitalOcean keeps unique by name, and the input that scopes the name
/// (None: the whole account, or for buckets every account). Droplets, tags, SSH keys and
/// database firewalls are not in the list: their names may repeat or they have none.
const UNIQUE_NAMES: &[(&str, Option<&str>)] = &[
    (VPC, None),
    (CLUSTER, None),
    (POOL, Some("clusterId")),
    (DB, Some("clusterId")),
    (USER, Some("clusterId")),
    (BUCKET, None),
    (LB, None),
    (CERT, None),
    (FIREWALL, None),
    (PROJECT, None),
];

/// The resources of `after` that the provider replaces, given what `before` registered: those
/// whose replacement-forcing inputs (from the schema cut) changed, or that read the id of a
/// replaced resource in such an input.
fn replaced(before: &Run, after: &Run) -> Vec<String> {
    let schema = infra::provider_schema::digitalocean();
    let mut replaced: Vec<String> = Vec::new();
    loop {
        let mut grew = false;
        for new in after.resources.iter().filter(|r| r.custom) {
            if replaced.contains(&new.name) {
                continue;
            }
            let Some(old) = before.find(&new.type_, &new.name) else {
                continue;
            };
            let forced = schema.replaced_by(&new.type_).iter().any(|input| {
                let (a, b) = (reveal(&old.inputs[input]), reveal(&new.inputs[input]));
                let reads_replaced = replaced
                    .iter()
                    .any(|r| b.to_string().contains(&format!("{r}-id")));
                a != b || reads_replaced
            });
            if forced {
                replaced.push(new.name.clone());
                grew = true;
            }
        }
        if !grew {
            return replaced;
        }
    }
}

#[test]
fn every_replacement_gets_a_new_name_so_create_before_delete_cannot_collide() {
    let base = "config:\n  rustlb:region: nyc1\n  rustlb:vpcCidr: 10.110.0.0/20\n  rustlb:domain: api.rustlb.dev\n  rustlb:database:\n    poolSize: 10\n";
    let changes = [
        (
            "pool size",
            base.replace("poolSize: 10", "poolSize: 20"),
            vec![POOL],
        ),
        (
            "VPC range",
            base.replace("10.110.0.0/20", "10.111.0.0/20"),
            vec![VPC, CLUSTER, POOL, LB],
        ),
        (
            "region",
            base.replace("region: nyc1", "region: sfo3"),
            vec![VPC, CLUSTER, POOL, LB],
        ),
        (
            "domain",
            base.replace("api.rustlb.dev", "www.rustlb.dev"),
            vec![CERT],
        ),
    ];
    for (what, changed, must_replace) in changes {
        let fx = Fixture::new();
        fx.write_stack("dev", base);
        let before = fx.run("dev", false);
        fx.write_stack("dev", &changed);
        let after = fx.run("dev", false);
        let replaced = replaced(&before, &after);
        for type_ in must_replace {
            assert!(
                after
                    .of_type(type_)
                    .iter()
                    .any(|r| replaced.contains(&r.name)),
                "{what}: expected a replaced {type_}, got {replaced:?}"
            );
        }
        for (type_, scope) in UNIQUE_NAMES {
            for new in after.of_type(type_) {
                if !replaced.contains(&new.name) {
                    continue;
                }
                let old = before.find(type_, &new.name).unwrap();
                let same_scope = scope.is_none_or(|s| {
                    let moved = replaced
                        .iter()
                        .any(|r| new.inputs[s].to_string().contains(&format!("{r}-id")));
                    old.inputs[s] == new.inputs[s] && !moved
                });
                assert!(
                    !(same_scope && old.inputs["name"] == new.inputs["name"]),
                    "{what}: {} is replaced but keeps the name {}: creating the replacement first would collide",
                    new.name,
                    new.inputs["name"]
                );
            }
        }
    }
}

#[test]
fn the_service_unit_never_gives_up_restarting() {
    let fx = Fixture::new();
    let text = user_data(one(&fx.run("dev", false), DROPLET, "rustlb-dev-blue-1"));
    let unit = infra::cloud_init::written_file(
        &text,
        &format!("/etc/systemd/system/{}", infra::cloud_init::SERVICE_NAME),
    )
    .expect("the unit is written");
    let section = |name: &str| -> String {
        unit.split(&format!("[{name}]\n"))
            .nth(1)
            .unwrap_or_default()
            .split("\n[")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    // StartLimitIntervalSec is a [Unit] setting; in [Service] systemd ignores it.
    assert!(
        section("Unit").contains("StartLimitIntervalSec=0\n"),
        "{unit}"
    );
    assert!(section("Service").contains("Restart=always\n"), "{unit}");
    assert!(section("Service").contains("RestartMaxDelaySec="), "{unit}");
}

#[test]
fn a_stopping_droplet_drains_until_the_load_balancer_has_taken_it_out() {
    let fx = Fixture::new();
    let text = user_data(one(&fx.run("dev", false), DROPLET, "rustlb-dev-blue-1"));
    // dev checks every 30 s, out after 3 failures, 5 s timeout: 95 s until DigitalOcean's load
    // balancer stops choosing a droplet whose /health fails.
    assert!(
        text.contains("APP__APPLICATION__DRAIN_SECONDS=\"95\""),
        "{text}"
    );
    // systemd waits for the drain, then the app's grace and flush, before SIGKILL.
    assert!(text.contains("TimeoutStopSec=135\n"), "{text}");
    // /health gives up on the database before the check (5 s) gives up on /health.
    assert!(
        text.contains("APP__DATABASE__HEALTH_TIMEOUT_MS=\"1000\""),
        "{text}"
    );
}

/// The stack files with a domain and an uploaded SSH key, so every kind of resource is there.
fn with_everything(fx: &Fixture, stack: &str) {
    let text =
        std::fs::read_to_string(fx.root().join(format!("stacks/Pulumi.{stack}.yaml"))).unwrap();
    fx.write_stack(
        stack,
        &format!(
            "{text}  rustlb:domain: api.rustlb-{stack}.dev\n  rustlb:sshPublicKeys:\n    - {ED25519}\n"
        ),
    );
}

fn position(order: &[String], name: &str) -> usize {
    order
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("{name} is not in the destroy order {order:?}"))
}

#[test]
fn every_registration_declares_what_it_uses_so_destroy_deletes_children_first() {
    for stack in ["dev", "staging", "prod"] {
        let fx = Fixture::new();
        with_everything(&fx, stack);
        for dry_run in [false, true] {
            let run = fx.run(stack, dry_run);
            let custom: Vec<&Registration> = run.resources.iter().filter(|r| r.custom).collect();
            assert!(custom.len() >= 18, "{stack}: {}", custom.len());
            for r in &custom {
                assert!(
                    r.transformed,
                    "{}: registered before the stack transform",
                    r.name
                );
            }
            let undeclared = run.undeclared_uses();
            assert!(undeclared.is_empty(), "{stack}: {undeclared:#?}");
            let order = run.destroy_order();
            let n = |role: &str| format!("rustlb-{stack}-{role}");
            let before = |child: &str, parent: &str| {
                assert!(
                    position(&order, child) < position(&order, parent),
                    "{stack}: {child} must be deleted before {parent}: {order:?}"
                );
            };
            for child in ["db-pool", "db-app", "db-user", "db-firewall", "db-ca"] {
                before(&n(child), &n("db"));
            }
            before(&n("db-pool"), &n("db-app"));
            before(&n("db-pool"), &n("db-user"));
            before(&n("db"), &n("vpc"));
            before(&n("lb"), &n("vpc"));
            before(&n("lb"), &n("cert"));
            before(&n("firewall"), &n("lb"));
            before(&n("project"), &n("lb"));
            for d in run.of_type(DROPLET) {
                before(&d.name, &n("vpc"));
                before(&d.name, &n("firewall"));
                before(&d.name, &n("db-pool"));
                before(&d.name, &n("db-ca"));
                before(&d.name, &n("tag-app"));
                before(&n("project"), &d.name);
            }
            for key in run.of_type(SSH_KEY_RESOURCE) {
                for d in run.of_type(DROPLET) {
                    before(&d.name, &key.name);
                }
            }
            for object in run.of_type(OBJECT) {
                before(&object.name, &n("artifacts"));
            }
        }
    }
}

#[test]
fn droplets_are_created_after_the_firewall_that_covers_them() {
    let fx = Fixture::new();
    let run = fx.run("dev", false);
    let at = |name: &str| run.resources.iter().position(|r| r.name == name).unwrap();
    for d in run.of_type(DROPLET) {
        assert!(
            at("rustlb-dev-firewall") < at(&d.name),
            "{} registered before the firewall",
            d.name
        );
    }
}

#[test]
fn a_use_without_a_declared_dependency_is_reported() {
    let registration = |name: &str, inputs: Value, deps: Vec<String>| Registration {
        type_: DROPLET.into(),
        name: name.into(),
        custom: true,
        inputs,
        urn: format!("urn:pulumi:dev::rustlb::{DROPLET}::{name}"),
        dependencies: deps,
        property_dependencies: Default::default(),
        options: Default::default(),
        transformed: true,
        id: format!("{name}-id"),
        computed: json!({ "ipv4Address": format!("<ipv4Address of {name}>") }),
    };
    let parent = registration("parent-thing", json!({"name": "parent-thing-name"}), vec![]);
    let by_id = registration("child-a", json!({"vpcUuid": "parent-thing-id"}), vec![]);
    let by_name = registration("child-b", json!({"tags": ["parent-thing-name"]}), vec![]);
    let by_output = registration(
        "child-c",
        json!({"userData": "connect to <ipv4Address of parent-thing> at boot"}),
        vec![],
    );
    let declared = registration(
        "child-d",
        json!({"vpcUuid": "parent-thing-id"}),
        vec![parent.urn.clone()],
    );
    let transitive = registration(
        "child-e",
        json!({"vpcUuid": "parent-thing-id"}),
        vec![declared.urn.clone()],
    );
    let run = Run {
        resources: vec![parent, by_id, by_name, by_output, declared, transitive],
        outputs: None,
        invokes: vec![],
        logs: vec![],
        exit_code: Some(0),
        stdout: String::new(),
        stderr: String::new(),
    };
    let problems = run.undeclared_uses().join("\n");
    for child in ["child-a", "child-b", "child-c"] {
        assert!(problems.contains(child), "{child} not reported: {problems}");
    }
    for fine in ["child-d", "child-e"] {
        assert!(!problems.contains(fine), "{fine} reported: {problems}");
    }
    let order = run.destroy_order();
    assert!(position(&order, "child-e") < position(&order, "child-d"));
    assert!(position(&order, "child-d") < position(&order, "parent-thing"));
}

#[test]
fn production_data_is_protected_and_droplet_deletes_outlast_the_drain() {
    let fx = Fixture::new();
    let prod = fx.run("prod", false);
    for (type_, name) in [(CLUSTER, "rustlb-prod-db"), (DB, "rustlb-prod-db-app")] {
        assert!(
            one(&prod, type_, name).options.protect,
            "{name} must be protected"
        );
    }
    let unprotected: Vec<&str> = prod
        .resources
        .iter()
        .filter(|r| r.options.protect && r.type_ != CLUSTER && r.type_ != DB)
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        unprotected.is_empty(),
        "only the data is protected: {unprotected:?}"
    );
    let dev = fx.run("dev", false);
    assert!(
        !one(&dev, CLUSTER, "rustlb-dev-db").options.protect,
        "dev can be destroyed freely"
    );
    for run in [&prod, &dev] {
        for d in run.of_type(DROPLET) {
            let unit = user_data(d);
            let stop: u64 = unit
                .lines()
                .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
                .and_then(|v| v.parse().ok())
                .expect("the unit has a TimeoutStopSec");
            let timeout = d.options.delete_timeout.clone().expect("a delete timeout");
            let minutes: u64 = timeout.strip_suffix('m').unwrap().parse().unwrap();
            // The provider's default is 60 s; the app alone may take TimeoutStopSec to stop.
            assert!(
                minutes * 60 > stop + 60,
                "{}: delete {timeout} vs stop {stop} s",
                d.name
            );
        }
    }
}

#[test]
fn a_key_already_on_the_account_is_reused_by_fingerprint_not_uploaded_again() {
    let fx = Fixture::new();
    let dev = std::fs::read_to_string(fx.root().join("stacks/Pulumi.dev.yaml")).unwrap();
    fx.write_stack(
        "dev",
        &format!("{dev}  rustlb:sshPublicKeys:\n    - {ED25519}\n"),
    );
    let fingerprint = infra::config::SshPublicKey::parse(ED25519)
        .unwrap()
        .fingerprint();
    // Uploaded by hand, or by another stack: DigitalOcean refuses the same key twice.
    for holder in ["laptop", "rustlb-staging-ssh-0a1b2c3d"] {
        let account = MockAccount {
            ssh_keys: vec![(holder.to_string(), ED25519.to_string())],
            ..MockAccount::default()
        };
        let run = fx.try_run_on("dev", false, account);
        assert!(run.success(), "{}", run.stderr);
        assert!(run.of_type(SSH_KEY_RESOURCE).is_empty(), "uploaded again");
        for d in run.of_type(DROPLET) {
            let keys = reveal(input(d, "sshKeys"));
            assert!(
                keys.as_array().unwrap().contains(&json!(fingerprint)),
                "{keys}"
            );
        }
        let log = run.logs.join("\n");
        assert!(log.contains(holder) && log.contains(&fingerprint), "{log}");
        let owner = if holder == "laptop" {
            "outside this project"
        } else {
            "stack \"staging\""
        };
        assert!(log.contains(owner), "{log}");
    }
    // A key this stack uploaded earlier keeps its resource, or `pulumi up` would delete it.
    let name = one(&fx.run("dev", false), SSH_KEY_RESOURCE, &ssh_key_name(&fx))
        .name
        .clone();
    let account = MockAccount {
        ssh_keys: vec![(name.clone(), ED25519.to_string())],
        ..MockAccount::default()
    };
    let run = fx.try_run_on("dev", false, account);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(run.of_type(SSH_KEY_RESOURCE).len(), 1);
}

fn ssh_key_name(fx: &Fixture) -> String {
    let run = fx.run("dev", false);
    run.of_type(SSH_KEY_RESOURCE)[0].name.clone()
}

#[test]
fn bucket_names_are_unique_per_account_and_per_stack() {
    let fx = Fixture::new();
    let bucket = |stack: &str, uuid: &str| {
        let run = fx.try_run_on(
            stack,
            false,
            MockAccount {
                uuid: uuid.into(),
                ..MockAccount::default()
            },
        );
        assert!(run.success(), "{}", run.stderr);
        let b = one(&run, BUCKET, &format!("rustlb-{stack}-artifacts"));
        input(b, "name").as_str().unwrap().to_string()
    };
    let mine = bucket("dev", "11111111-1111-4111-8111-111111111111");
    let theirs = bucket("dev", "22222222-2222-4222-8222-222222222222");
    let staging = bucket("staging", "11111111-1111-4111-8111-111111111111");
    assert_ne!(mine, theirs, "two accounts deploying dev would collide");
    assert_ne!(mine, staging);
    assert_eq!(
        mine,
        bucket("dev", "11111111-1111-4111-8111-111111111111"),
        "stable"
    );
    assert!(mine.len() <= 63, "{mine}");
}

#[test]
fn pulumi_up_refuses_a_build_the_droplets_cannot_run_before_registering_anything() {
    let real = std::fs::read(env!("CARGO_BIN_EXE_infra")).unwrap();
    let newest = glibc_versions(&real)
        .into_iter()
        .max()
        .expect("a dynamically linked test binary");
    let mut too_new = real.clone();
    replace_all(
        &mut too_new,
        format!("GLIBC_{newest}\0").as_bytes(),
        b"GLIBC_2.99\0",
    );
    let mut arm = minimal_elf(b"arm build");
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    let macho = [0xcfu8, 0xfa, 0xed, 0xfe, 7, 0, 0, 1].to_vec();
    for (bytes, why) in [
        (too_new, "needs glibc 2.99"),
        (arm, "ARM64"),
        (macho, "macOS"),
    ] {
        let fx = Fixture::new();
        std::fs::write(fx.root().join("target/release/app"), &bytes).unwrap();
        let run = fx.try_run("dev", false);
        assert!(!run.success(), "{why}: accepted");
        assert!(run.stderr.contains(why), "{why}: {}", run.stderr);
        assert!(
            run.stderr.contains("x86_64-unknown-linux-musl"),
            "names the fix: {}",
            run.stderr
        );
        assert!(run.resources.is_empty(), "{why}: something was registered");
    }
    // The test binary itself was built here, for x86-64 Linux with this machine's glibc.
    assert_eq!(infra::elf::check_runs_on(&real, "ubuntu-24-04-x64"), Ok(()));
}

/// `GLIBC_2.N` versions named in a binary (its dynamic string table holds them).
fn glibc_versions(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, w) in bytes.windows(8).enumerate() {
        if w == b"GLIBC_2." {
            let digits: Vec<u8> = bytes[i + 8..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if bytes.get(i + 8 + digits.len()) == Some(&0) && digits.len() == 2 {
                found.push(format!("2.{}", String::from_utf8(digits).unwrap()));
            }
        }
    }
    found
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
}

#[test]
fn every_type_the_graph_names_is_a_resource_of_the_schema_cut() {
    let schema = infra::provider_schema::digitalocean();
    for token in infra::graph::token::ALL {
        assert!(schema.resource(token).is_some(), "{token}");
    }
}

#[test]
fn user_data_is_secret_even_while_unknown_in_a_preview() {
    let fx = Fixture::new();
    let preview = fx.run("dev", true);
    for d in preview.of_type(DROPLET) {
        let user_data = input(d, "userData");
        assert!(is_secret(user_data), "{}: {user_data}", d.name);
        assert!(is_unknown(&user_data["value"]), "{}: {user_data}", d.name);
    }
}

#[test]
fn once_the_cluster_exists_previews_read_its_ca_instead_of_showing_a_change() {
    // A preview whose ids are known, as for a stack already deployed: the CA object holds the
    // certificate the provider reads, the same content `pulumi up` wrote.
    let fx = Fixture::new();
    let preview =
        infra::preview::run(fx.root(), "dev", Path::new(env!("CARGO_BIN_EXE_infra"))).unwrap();
    let ca = preview
        .resources
        .iter()
        .find(|r| r.name == "rustlb-dev-db-ca")
        .expect("the CA object");
    let content = ca.inputs["content"].as_str().unwrap();
    assert!(
        content.starts_with("-----BEGIN CERTIFICATE-----"),
        "{content}"
    );
}
