//! The stack outputs: where to call the API and what runs behind it.

use super::artifacts::Artifacts;
use super::compute::AppDroplet;
use super::database::Database;
use super::gather::all;
use super::loadbalancer::LoadBalancer;
use crate::config::StackConfig;
use pulumi_gestalt_rust::{Context, Output};

/// Exports `url`, `loadBalancerIp`, droplets with their public and private IPs, database host,
/// the (secret) database URIs, and the build each colour runs (`colorBuilds`, which `infra
/// rollout` pins before it starts the other colour).
pub fn export(
    ctx: &Context,
    cfg: &StackConfig,
    db: &Database,
    lb: &LoadBalancer,
    droplets: &[AppDroplet],
    store: &Artifacts,
    builds: &std::collections::BTreeMap<String, String>,
) {
    let url: Output<String> = match &cfg.domain {
        Some(domain) => Output::new(format!("https://{domain}")),
        None => lb.ip.map(|ip| format!("http://{ip}")),
    };
    ctx.add_export("url", &url);
    ctx.add_export("loadBalancerIp", &lb.ip);
    ctx.add_export(
        "activeColor",
        &Output::new(cfg.active_color.as_str().to_string()),
    );
    let names: Vec<String> = droplets.iter().map(|d| d.name.clone()).collect();
    ctx.add_export("dropletNames", &Output::new(names));
    let active: Vec<String> = droplets
        .iter()
        .filter(|d| d.color == cfg.active_color)
        .map(|d| d.name.clone())
        .collect();
    ctx.add_export("activeDropletNames", &Output::new(active));
    ctx.add_export(
        "dropletPublicIps",
        &all(droplets.iter().map(|d| d.public_ip.clone()).collect()),
    );
    ctx.add_export(
        "dropletPrivateIps",
        &all(droplets.iter().map(|d| d.private_ip.clone()).collect()),
    );
    ctx.add_export("databasePrivateHost", &db.private_host);
    ctx.add_export("databaseUri", &db.app_url.secret());
    ctx.add_export("databaseAdminUri", &db.admin_url.secret());
    ctx.add_export("databaseOwnerRole", &Output::new(db.owner_role.clone()));
    ctx.add_export(
        "appBuilds",
        &Output::new(store.urls.keys().cloned().collect::<Vec<_>>()),
    );
    ctx.add_export("colorBuilds", &Output::new(builds.clone()));
}
