//! What infra repeats of the app (paths, defaults, the settings it renders), tied to the app's own values.

use infra::config::{APP_PORT, HealthCheck, StackConfig, defaults};
use infra::deploy::{Deploy, Instance};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The app's settings when started with `vars` and nothing else.
fn app_settings(vars: Vec<(String, String)>) -> app::Settings {
    app::Settings::from_vars(vars).expect("the rendered settings load in the app")
}

#[test]
fn the_health_check_path_is_the_apps_health_route_everywhere() {
    assert_eq!(HealthCheck::default().path, app::paths::HEALTH);
    assert_eq!(lb::HealthCheckConfig::default().path, app::paths::HEALTH);
    for stack in ["local", "dev", "staging", "prod"] {
        let cfg = StackConfig::load(&repo_root(), stack).unwrap();
        assert_eq!(cfg.health_check().path, app::paths::HEALTH, "{stack}");
    }
}

#[test]
fn retention_defaults_and_the_port_are_the_apps() {
    let app = app_settings(vec![]);
    assert_eq!(
        app.request_log.retention_days,
        defaults::REQUEST_LOG_RETENTION_DAYS
    );
    assert_eq!(app.stats.retention_days, defaults::STATS_RETENTION_DAYS);
    let production = app_settings(vec![("APP_ENVIRONMENT".into(), "production".into())]);
    assert_eq!(production.application.port, APP_PORT);
}

#[test]
fn what_the_deploy_builder_renders_the_app_reads_back() {
    let root = repo_root();
    let local = StackConfig::load(&root, "local").unwrap();
    let deploy = Deploy::of(&local);
    let settings = app_settings(
        deploy
            .settings(Instance::Local {
                server_id: "local-2".into(),
                port: 3002,
            })
            .to_env(),
    );
    assert_eq!(settings.application.server_id, "local-2");
    assert_eq!(settings.application.port, 3002);
    assert_eq!(settings.application.host, "127.0.0.1");
    assert_eq!(settings.application.drain_seconds, local.drain_seconds());
    assert_eq!(
        settings.database.health_timeout_ms,
        local.app_health_timeout_ms()
    );
    assert!(settings.database.owner_url.is_none());

    let dev = StackConfig::load(&root, "dev").unwrap();
    let settings = app_settings(
        Deploy::of(&dev)
            .settings(Instance::Droplet {
                server_id: "rustlb-dev-blue-1".into(),
                database_url: "postgresql://app:pw@pool:25061/pool?sslmode=require".into(),
                owner_url: "postgresql://app_owner:pw@db:25060/app?sslmode=require".into(),
                api_key: "a-key-of-sixteen-chars".into(),
                verify_ca: false,
            })
            .to_env(),
    );
    assert_eq!(settings.application.port, APP_PORT);
    assert_eq!(settings.application.host, "0.0.0.0");
    assert_eq!(settings.application.drain_seconds, dev.drain_seconds());
    assert_eq!(settings.application.trusted_proxy_hops, 1);
    assert!(!settings.database.statement_cache);
    assert!(settings.database.owner_url.is_some());
    assert_eq!(
        settings.request_log.retention_days,
        dev.log_retention().request_log_days.unwrap()
    );
}
