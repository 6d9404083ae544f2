//! One app instance of the local stack: its port and its environment.

use anyhow::Context as _;

use crate::config::StackConfig;

/// The port of instance `index` (0-based): `firstBackendPort + index`.
pub fn backend_port(cfg: &StackConfig, index: u32) -> anyhow::Result<u16> {
    u16::try_from(u32::from(cfg.first_backend_port()) + index).with_context(|| {
        format!(
            "{}: rustlb:firstBackendPort + rustlb:dropletCount passes 65535",
            cfg.source
        )
    })
}

/// The instance's environment: production config on loopback, the stack's database and key.
pub fn instance_env(cfg: &StackConfig, server_id: &str, port: u16) -> Vec<(String, String)> {
    app::DeploySettings {
        environment: app::Environment::Production,
        host: std::net::Ipv4Addr::LOCALHOST.into(),
        port,
        server_id: server_id.to_owned(),
        api_key: cfg.api_key().cloned(),
        database_url: cfg.database_url().into(),
        owner_url: None,
        statement_cache: true,
        // Migrations ran once before the instances started; N racing migrators would collide.
        run_migrations: false,
        ca_file: None,
        drain_seconds: Some(cfg.drain_seconds()),
        health_timeout_ms: Some(cfg.app_health_timeout_ms()),
        // The local load balancer appends the client's address: the last hop.
        trusted_proxy_hops: Some(1),
        retention: cfg.log_retention(),
    }
    .to_env()
}
