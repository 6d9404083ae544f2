//! Day-2 operations of the cloud stacks under the stand-in engine: alerts and uptime checks, restore from a backup, security updates.

mod common;

use common::*;
use infra::config::StackConfig;
use serde_json::json;

const MONITOR: &str = "digitalocean:index/monitorAlert:MonitorAlert";
const UPTIME_CHECK: &str = "digitalocean:index/uptimeCheck:UptimeCheck";
const UPTIME_ALERT: &str = "digitalocean:index/uptimeAlert:UptimeAlert";
const WEBHOOK: &str = "https://hooks.slack.test/services/T0/B0/s3cr3t-webhook";

/// The stack file with `extra` lines added to its config.
fn with(fx: &Fixture, stack: &str, extra: &str) {
    let text =
        std::fs::read_to_string(fx.root().join(format!("stacks/Pulumi.{stack}.yaml"))).unwrap();
    fx.write_stack(stack, &format!("{text}{extra}"));
}

const ALERTS: &str = "  rustlb:alerts:\n    emails: [ops@rustlb.dev]\n    slack:\n      channel: \"#ops\"\n      url: WEBHOOK\n    diskPercent: 70\n";

fn alerts_yaml() -> String {
    ALERTS.replace("WEBHOOK", WEBHOOK)
}

/// A run of `stack` with the Slack webhook arriving as the engine hands a secret over.
fn run_with_alerts(fx: &Fixture, stack: &str, dry_run: bool) -> Run {
    with(fx, stack, &alerts_yaml());
    let run = fx.try_run_secret(stack, dry_run, &["rustlb:alerts"]);
    assert!(run.success(), "{}", run.stderr);
    let problems = run.provider_problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    run
}

#[test]
fn alerts_watch_droplets_database_load_balancer_and_the_site() {
    let fx = Fixture::new();
    with(&fx, "prod", "  rustlb:domain: api.rustlb-prod.dev\n");
    let run = run_with_alerts(&fx, "prod", false);
    let policies = run.of_type(MONITOR);
    let metric = |m: &str| {
        policies
            .iter()
            .find(|p| input(p, "type") == m)
            .unwrap_or_else(|| panic!("no {m} policy"))
    };
    for m in [
        "v1/insights/droplet/cpu",
        "v1/insights/droplet/memory_utilization_percent",
        "v1/insights/droplet/load_5",
    ] {
        assert_eq!(input(metric(m), "tags"), &json!(["rustlb-prod-app"]), "{m}");
    }
    let disk = metric("v1/insights/droplet/disk_utilization_percent");
    assert_eq!(input(disk, "value"), &json!(70), "the stack's threshold");
    assert_eq!(input(disk, "window"), "5m", "the default window");
    assert_eq!(
        input(metric("v1/dbaas/alerts/cpu_alerts"), "entities"),
        &json!(["rustlb-prod-db-id"])
    );
    assert_eq!(
        input(metric("v1/insights/lbaas/droplet_health"), "entities"),
        &json!(["rustlb-prod-lb-id"])
    );
    // The webhook is a secret everywhere it goes.
    for p in &policies {
        assert!(is_secret(input(p, "alerts")), "{}", p.name);
        let alerts = reveal(input(p, "alerts"));
        assert_eq!(alerts["slacks"][0]["url"], WEBHOOK);
        assert_eq!(alerts["emails"], json!(["ops@rustlb.dev"]));
    }
    let check = one(&run, UPTIME_CHECK, "rustlb-prod-uptime");
    assert_eq!(input(check, "target"), "https://api.rustlb-prod.dev/health");
    let mut kinds: Vec<String> = run
        .of_type(UPTIME_ALERT)
        .iter()
        .map(|a| input(a, "type").as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["down", "latency", "sslExpiry"]);
    for a in run.of_type(UPTIME_ALERT) {
        assert_eq!(input(a, "checkId"), "rustlb-prod-uptime-id");
        assert!(is_secret(input(a, "notifications")));
    }
    assert!(
        run.undeclared_uses().is_empty(),
        "{:#?}",
        run.undeclared_uses()
    );
    assert!(!format!("{:?}", run.logs).contains(WEBHOOK));
}

#[test]
fn a_stack_without_a_domain_checks_the_load_balancer_ip_and_no_certificate() {
    let fx = Fixture::new();
    let run = run_with_alerts(&fx, "dev", false);
    let check = one(&run, UPTIME_CHECK, "rustlb-dev-uptime");
    assert!(
        input(check, "target")
            .as_str()
            .unwrap()
            .starts_with("http://"),
        "{}",
        input(check, "target")
    );
    assert_eq!(run.of_type(UPTIME_ALERT).len(), 2, "down and latency only");
}

#[test]
fn no_alerts_means_no_alert_resources_and_a_note() {
    let fx = Fixture::new();
    let run = fx.run("dev", true);
    for t in [MONITOR, UPTIME_CHECK, UPTIME_ALERT] {
        assert!(run.of_type(t).is_empty(), "{t}");
    }
    assert!(
        run.logs
            .iter()
            .any(|l| l.contains("rustlb:alerts is not set")),
        "{:?}",
        run.logs
    );
}

#[test]
fn alert_settings_are_checked_before_anything_is_created() {
    let fx = Fixture::new();
    for (extra, key) in [
        ("  rustlb:alerts:\n    cpuPercent: 70\n", "names nobody"),
        (
            "  rustlb:alerts:\n    emails: [ops]\n",
            "not an email address",
        ),
        (
            "  rustlb:alerts:\n    emails: [a@b.dev]\n    window: 2m\n",
            "alerts.window",
        ),
        (
            "  rustlb:alerts:\n    emails: [a@b.dev]\n    regions: [mars]\n",
            "alerts.regions",
        ),
        (
            "  rustlb:alerts:\n    emails: [a@b.dev]\n    diskPercent: 120\n",
            "alerts.diskPercent",
        ),
        (
            "  rustlb:alerts:\n    emails: [a@b.dev]\n    slack: {channel: '#x', url: https://hooks.test/x}\n",
            "--secret",
        ),
        ("  rustlb:maintenanceWindow: someday\n", "maintenanceWindow"),
    ] {
        let fx2 = Fixture::new();
        with(&fx2, "dev", extra);
        let err = StackConfig::load(fx2.root(), "dev")
            .expect_err(extra)
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
        assert!(
            !err.contains("hooks.test/x"),
            "the webhook is never shown: {err}"
        );
    }
    drop(fx);
}

#[test]
fn a_restore_creates_a_new_cluster_from_the_backup_and_moves_the_droplets() {
    let fx = Fixture::new();
    let before = fx.run("prod", false);
    let old = input(one(&before, CLUSTER, "rustlb-prod-db"), "name")
        .as_str()
        .unwrap()
        .to_string();
    let at = (chrono::Utc::now() - chrono::Duration::hours(20))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let prod = std::fs::read_to_string(fx.root().join("stacks/Pulumi.prod.yaml")).unwrap();
    fx.write_stack(
        "prod",
        &prod.replace(
            "    poolSize: 40\n",
            &format!(
                "    poolSize: 40\n    restoreFrom:\n      cluster: {old}\n      at: \"{at}\"\n"
            ),
        ),
    );
    let after = fx.run("prod", false);
    let clusters = after.of_type(CLUSTER);
    assert_eq!(clusters.len(), 1);
    let cluster = clusters[0];
    assert_eq!(
        input(cluster, "backupRestore"),
        &json!({"databaseName": old, "backupCreatedAt": at})
    );
    let new = input(cluster, "name").as_str().unwrap();
    assert_ne!(new, old, "the new cluster is made beside the old one");
    assert!(
        cluster.options.protect,
        "the restored production data is protected too"
    );
    // A new generation of logical names: the old resources leave the program, so Pulumi deletes
    // them only after the new ones exist, and refuses to for the protected cluster and database,
    // which stay until retired on purpose. Under the old names the engine would refuse to
    // replace protected resources at all.
    let names = |run: &Run, t: &str| -> Vec<String> {
        run.of_type(t).iter().map(|r| r.name.clone()).collect()
    };
    for t in [CLUSTER, DB, USER, POOL, DB_FIREWALL] {
        for name in names(&after, t) {
            assert!(!names(&before, t).contains(&name), "{t} {name} is not new");
        }
    }
    // The droplets' database URLs name the new pool: they move with the same `pulumi up`.
    let pool = |run: &Run| input(run.of_type(POOL)[0], "name").clone();
    assert_ne!(pool(&before), pool(&after));
    assert!(
        after.undeclared_uses().is_empty(),
        "{:#?}",
        after.undeclared_uses()
    );
    // Too old, or not a time: refused, naming the key.
    for bad in ["2020-01-01T00:00:00Z", "last tuesday"] {
        let text = prod.replace(
            "    poolSize: 40\n",
            &format!(
                "    poolSize: 40\n    restoreFrom:\n      cluster: {old}\n      at: \"{bad}\"\n"
            ),
        );
        fx.write_stack("prod", &text);
        let err = StackConfig::load(fx.root(), "prod")
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.restoreFrom.at"), "{err}");
    }
}

#[test]
fn security_updates_install_daily_and_reboots_wait_for_the_window_one_droplet_at_a_time() {
    let fx = Fixture::new();
    let prod = fx.run("prod", false);
    let mut slots = Vec::new();
    for d in prod.of_type(DROPLET) {
        let text = user_data(d);
        let upgrades = infra::cloud_init::written_file(
            &text,
            "/etc/apt/apt.conf.d/52rustlb-unattended-upgrades",
        )
        .expect("unattended-upgrades settings");
        assert!(upgrades.contains("#clear Unattended-Upgrade::Allowed-Origins;"));
        assert!(upgrades.contains("-security\""));
        assert!(!upgrades.contains("-updates"), "security only");
        assert!(upgrades.contains("Automatic-Reboot \"false\""));
        let timer = infra::cloud_init::written_file(
            &text,
            &format!("/etc/systemd/system/{}", infra::cloud_init::REBOOT_TIMER),
        )
        .expect("prod has a maintenance window");
        let slot = timer
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap()
            .to_string();
        slots.push((d.name.clone(), slot));
        assert!(text.contains("systemctl enable --now rustlb-reboot.timer"));
    }
    slots.sort();
    assert_eq!(
        slots.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        [
            "Sun *-*-* 03:00:00",
            "Sun *-*-* 03:15:00",
            "Sun *-*-* 03:30:00"
        ],
        "{slots:?}"
    );
    // Without a window: updates still install, and nothing reboots by itself.
    let dev = fx.run("dev", false);
    for d in dev.of_type(DROPLET) {
        let text = user_data(d);
        assert!(
            infra::cloud_init::written_file(&text, "/etc/apt/apt.conf.d/20auto-upgrades").is_some()
        );
        assert!(
            !text.contains(infra::cloud_init::REBOOT_TIMER),
            "{}",
            d.name
        );
    }
}
