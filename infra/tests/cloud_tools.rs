//! The droplets' boot documents checked by the tools that will read them: `cloud-init schema` and `systemd-analyze verify`.
//!
//! Both come from Debian (`.ci/run` installs cloud-init). The tests are `#[ignore]`d, so a plain
//! `cargo test` lists them as not run, with the tool they need; `-- --include-ignored` runs them,
//! and then a missing tool fails them rather than letting them pass unchecked.

mod tools;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn require(tool: &str, package: &str) {
    tools::require(
        tool,
        tools::runs(tool),
        &format!("apt-get install {package}"),
    );
}

/// Every droplet's user data from `infra preview --stack <stack> --json`.
fn user_data(stack: &str) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_infra"))
        .args(["preview", "--stack", stack, "--json"])
        .current_dir(repo_root())
        .env_remove("PULUMI_MONITOR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "digitalocean:index/droplet:Droplet")
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["inputs"]["userData"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cloud_init_schema(path: &Path) -> std::process::Output {
    Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs cloud-init: apt-get install cloud-init"]
fn every_droplets_user_data_is_valid_cloud_config() {
    require("cloud-init", "cloud-init");
    let dir = tempfile::tempdir().unwrap();
    // The tool must be able to say no, or a pass means nothing.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "#cloud-config\nwrite_files:\n  - content: x\n").unwrap();
    assert!(
        !cloud_init_schema(&broken).status.success(),
        "a write_files entry without a path must fail"
    );
    for stack in ["dev", "staging", "prod"] {
        for (name, text) in user_data(stack) {
            let path = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&path, &text).unwrap();
            let out = cloud_init_schema(&path);
            assert!(
                out.status.success(),
                "{name}: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Keys `systemd-analyze` from Debian 12 (systemd 252) does not know yet; Ubuntu 24.04, which
/// the droplets run, has systemd 255, where they set the restart backoff (added in 254).
const NEWER_THAN_252: &[&str] = &["RestartSteps", "RestartMaxDelaySec"];

#[test]
#[ignore = "needs systemd-analyze: apt-get install systemd"]
fn the_service_unit_passes_systemd_analyze_verify() {
    require("systemd-analyze", "systemd");
    let (_, text) = user_data("prod").remove(0);
    let unit = infra::cloud_init::written_file(
        &text,
        &format!("/etc/systemd/system/{}", infra::cloud_init::SERVICE_NAME),
    )
    .expect("the unit is written");
    let dir = tempfile::tempdir().unwrap();
    // The binary only exists on a droplet; verify checks that ExecStart is executable.
    let path = dir.path().join("rustlb-app.service");
    std::fs::write(
        &path,
        unit.replace("ExecStart=/usr/local/bin/rustlb-app", "ExecStart=/bin/true"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // verify exits 0 on unknown keys and bad values: every warning counts.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !NEWER_THAN_252
                .iter()
                .any(|k| l.contains(&format!("Unknown key '{k}'")))
        })
        .collect();
    assert!(
        warnings.is_empty(),
        "systemd-analyze warns:\n{}",
        warnings.join("\n")
    );
    // A unit with a mistake must produce a warning, or the check above proves nothing.
    std::fs::write(
        &path,
        unit.replace("Restart=always", "Restart=sometimes")
            .replace("ExecStart=/usr/local/bin/rustlb-app", "ExecStart=/bin/true"),
    )
    .unwrap();
    let bad = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Restart"),
        "no warning for a bad value"
    );
}

#[test]
#[ignore = "needs systemd-analyze: apt-get install systemd"]
fn the_maintenance_reboot_timer_and_unit_pass_systemd_analyze_verify() {
    require("systemd-analyze", "systemd");
    // prod has a maintenance window, so its droplets carry the reboot timer.
    let (_, text) = user_data("prod").remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in [
        infra::cloud_init::REBOOT_SERVICE,
        infra::cloud_init::REBOOT_TIMER,
    ] {
        let content =
            infra::cloud_init::written_file(&text, &format!("/etc/systemd/system/{name}"))
                .unwrap_or_else(|| panic!("{name} is written"));
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        warnings.is_empty(),
        "systemd-analyze warns:\n{}",
        warnings.join("\n")
    );
    // The calendar must be one systemd understands.
    let timer = std::fs::read_to_string(&paths[1]).unwrap();
    let calendar = timer
        .lines()
        .find_map(|l| l.strip_prefix("OnCalendar="))
        .unwrap();
    let check = Command::new("systemd-analyze")
        .args(["calendar", calendar])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{calendar}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}
