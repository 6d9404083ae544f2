//! `infra preview` as a user runs it: offline, on a fresh clone, text or JSON.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn infra(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_infra"))
        .args(args)
        .current_dir(dir)
        .env_remove("PULUMI_MONITOR")
        .output()
        .unwrap()
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn json_preview_lists_resources_with_camel_case_inputs_and_outputs() {
    // Run from a sub-folder: the root is found by walking up to Pulumi.yaml.
    let out = infra(
        &["preview", "--stack", "prod", "--json"],
        &repo_root().join("infra"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["stack"], "prod");
    let resources = doc["resources"].as_array().unwrap();
    let lb = resources
        .iter()
        .find(|r| r["name"] == "rustlb-prod-lb")
        .unwrap();
    assert_eq!(lb["type"], "digitalocean:index/loadBalancer:LoadBalancer");
    assert_eq!(lb["inputs"]["healthcheck"]["unhealthyThreshold"], 3);
    assert_eq!(lb["inputs"]["enableBackendKeepalive"], true);
    let droplets = resources
        .iter()
        .filter(|r| r["type"] == "digitalocean:index/droplet:Droplet")
        .count();
    assert_eq!(droplets, 3);
    assert_eq!(doc["outputs"]["url"], "http://<ip of rustlb-prod-lb>");
    assert_eq!(doc["outputs"]["loadBalancerIp"], "<ip of rustlb-prod-lb>");
    assert_eq!(doc["outputs"]["databaseUri"], "[secret]");
}

/// `infra preview --stack <stack> --json` from the repository, parsed.
fn json_preview(stack: &str) -> Value {
    let out = infra(&["preview", "--stack", stack, "--json"], repo_root());
    assert!(
        out.status.success(),
        "{stack}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_cloud_stack_previews_inputs_the_real_provider_schema_accepts() {
    let schema = infra::provider_schema::digitalocean();
    for stack in ["dev", "staging", "prod"] {
        let doc = json_preview(stack);
        let resources = doc["resources"].as_array().unwrap();
        assert!(resources.len() >= 16, "{stack}: {}", resources.len());
        for r in resources {
            let type_ = r["type"].as_str().unwrap();
            let problems = schema.check_resource(type_, &r["inputs"]);
            assert!(problems.is_empty(), "{stack} {}: {problems:?}", r["name"]);
            let rules = infra::limits::check_registration(type_, &r["inputs"]);
            assert!(rules.is_empty(), "{stack} {}: {rules:?}", r["name"]);
        }
    }
}

#[test]
fn the_preview_shows_firewall_rules_and_user_data_a_reviewer_must_read() {
    for stack in ["dev", "staging", "prod"] {
        let doc = json_preview(stack);
        let resources = doc["resources"].as_array().unwrap();
        let fw = resources
            .iter()
            .find(|r| r["name"] == format!("rustlb-{stack}-firewall"))
            .unwrap();
        let inbound = fw["inputs"]["inboundRules"]
            .as_array()
            .expect("a real list");
        let app = inbound.iter().find(|r| r["portRange"] == "3000").unwrap();
        assert_eq!(
            app["sourceLoadBalancerUids"],
            serde_json::json!([format!("<id of rustlb-{stack}-lb>")])
        );
        for droplet in resources
            .iter()
            .filter(|r| r["type"] == "digitalocean:index/droplet:Droplet")
        {
            let user_data = droplet["inputs"]["userData"].as_str().expect("a document");
            assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
            assert!(user_data.contains("[Service]\n"), "{user_data}");
            assert!(user_data.contains("ExecStart=/usr/local/bin/rustlb-app"));
            assert!(
                user_data.contains("APP__APPLICATION__API_KEY=\"[secret]\""),
                "{user_data}"
            );
            assert!(
                user_data.contains("postgresql://app:[secret]@<privateHost of rustlb-"),
                "{user_data}"
            );
            assert!(
                !user_data.contains("%5B"),
                "placeholders read as written: {user_data}"
            );
        }
    }
}

#[test]
fn a_placeholder_domain_previews_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("Pulumi.yaml"),
        dir.path().join("Pulumi.yaml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
    std::fs::write(
        dir.path().join("stacks/Pulumi.staging.yaml"),
        "config:\n  rustlb:domain: api.example.com\n",
    )
    .unwrap();
    let out = infra(&["preview", "--stack", "staging"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warning = text
        .lines()
        .find(|l| l.contains("warning:") && l.contains("rustlb:domain"))
        .unwrap_or_else(|| panic!("no warning in\n{text}"));
    assert!(warning.contains("api.example.com"), "{warning}");
}

#[test]
fn text_preview_has_one_line_per_resource_and_names_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("Pulumi.yaml"),
        dir.path().join("Pulumi.yaml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
    // An encrypted secret, as `pulumi config set --secret` leaves it.
    let dev = std::fs::read_to_string(repo_root().join("stacks/Pulumi.dev.yaml")).unwrap();
    std::fs::write(
        dir.path().join("stacks/Pulumi.dev.yaml"),
        format!("{dev}  rustlb:apiKey:\n    secure: v1:Zm9vYmFy\n  rustlb:sshKeys:\n    - secure: v1:YmF6\n"),
    )
    .unwrap();
    let out = infra(&["preview", "--stack", "dev"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("+ "))
        .collect();
    assert_eq!(lines.len(), 18, "{text}");
    let droplet = lines
        .iter()
        .find(|l| l.contains("rustlb-dev-blue-1"))
        .unwrap();
    assert!(droplet.contains(r#"sshKeys=["[secret]"]"#), "{droplet}");
    assert!(
        text.contains("placeholder"),
        "fresh clone: the missing build is called out\n{text}"
    );
    assert!(!text.contains("Zm9vYmFy"));
}

#[test]
fn preview_fails_with_the_validation_errors_of_a_bad_stack_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("Pulumi.yaml"),
        dir.path().join("Pulumi.yaml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
    std::fs::write(
        dir.path().join("stacks/Pulumi.dev.yaml"),
        "config:\n  rustlb:healthCheck:\n    checkIntervalSeconds: 1\n",
    )
    .unwrap();
    let out = infra(&["preview", "--stack", "dev"], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rustlb:healthCheck.checkIntervalSeconds"),
        "{err}"
    );
    assert!(err.contains("stacks/Pulumi.dev.yaml"), "{err}");
}

#[test]
fn local_commands_refuse_cloud_stacks() {
    let out = infra(&["up", "--stack", "dev"], repo_root());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pulumi up -s dev"));
}
