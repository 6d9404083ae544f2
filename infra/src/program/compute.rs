//! App droplets in two colour pools, each booting its build through cloud-init.

use super::artifacts::{Artifacts, pool_sha};
use super::database::Database;
use super::inputs::Inputs;
use super::network::Network;
use crate::cloud_init::CloudInit;
use crate::config::{Color, StackConfig};
use crate::digitalocean::droplet;
use crate::wire::SECRET_PLACEHOLDER;
use pulumi_gestalt_rust::{Context, Output, pulumi_combine};
use secrecy::ExposeSecret;

/// One created droplet.
pub struct AppDroplet {
    /// Its colour.
    pub color: Color,
    /// Droplet name (also the app's server_id).
    pub name: String,
    /// Public IPv4.
    pub public_ip: Output<String>,
    /// Private IPv4.
    pub private_ip: Output<String>,
    /// DigitalOcean URN (for the project).
    pub droplet_urn: Output<String>,
}

/// Creates both pools' droplets.
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    net: &Network,
    db: &Database,
    store: &Artifacts,
    ssh_keys: &Option<Output<Vec<String>>>,
    inputs: &Inputs,
) -> Vec<AppDroplet> {
    let api_key = ctx.new_secret(
        &cfg.api_key()
            .map(|k| k.expose_secret().to_string())
            .unwrap_or_else(|| SECRET_PLACEHOLDER.to_string()),
    );
    let ca_url: Output<Option<String>> = match &store.ca_url {
        Some(url) => url.map(Some),
        None => Output::new(None),
    };
    let (drain_seconds, health_timeout_ms) = (cfg.drain_seconds(), cfg.app_health_timeout_ms());
    let retention = cfg.log_retention();
    let mut droplets = Vec::new();
    for color in Color::ALL {
        let sha = pool_sha(cfg, inputs, color);
        let url = store.urls[&sha].clone();
        for index in 1..=cfg.pool(color).count {
            let name = cfg.name(&format!("{}-{index}", color.as_str()));
            let (server_id, sha) = (name.clone(), sha.clone());
            // userData carries the database URL and API key, so the whole document is secret.
            let user_data = pulumi_combine!(
                url.clone(),
                db.app_url.clone(),
                api_key.clone(),
                ca_url.clone()
            )
            .map(move |(url, db_url, key, ca_url)| {
                CloudInit {
                    server_id: &server_id,
                    binary_url: &url,
                    binary_sha256: &sha,
                    database_url: &db_url,
                    api_key: &key,
                    database_ca_url: ca_url.as_deref(),
                    drain_seconds,
                    health_timeout_ms,
                    retention,
                }
                .render()
            })
            .secret();
            let tags = pulumi_combine!(net.app_tag.clone(), net.color_tag(color).clone())
                .map(|(a, b)| vec![a, b]);
            let mut args = droplet::DropletArgs::builder()
                .name(name.clone())
                .image(cfg.droplet_image.clone())
                .size(cfg.droplet_size.clone())
                .region(cfg.region.clone())
                .vpc_uuid(net.vpc_id.clone())
                .user_data(user_data)
                .tags(tags)
                .monitoring(true)
                .ipv6(false)
                .graceful_shutdown(true)
                .build_struct();
            if let Some(keys) = ssh_keys {
                args.ssh_keys = keys.clone().into();
            }
            let d = droplet::create(ctx, &name, args);
            droplets.push(AppDroplet {
                color,
                name,
                public_ip: d.ipv4_address,
                private_ip: d.ipv4_address_private,
                droplet_urn: d.droplet_urn,
            });
        }
    }
    droplets
}
