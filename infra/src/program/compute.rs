//! App droplets in two colour pools, each booting its build through cloud-init.

use super::access::Access;
use super::artifacts::{Artifacts, pool_sha};
use super::database::Database;
use super::firewall::Firewall;
use super::inputs::Inputs;
use super::network::Network;
use crate::cloud_init::{CloudInit, droplet_delete_timeout};
use crate::config::{Color, StackConfig};
use crate::deploy::{Deploy, Instance};
use crate::digitalocean::droplet;
use crate::graph::{Graph, Options, Ref, token};
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
    /// The droplet, for the graph.
    pub declared: Ref,
}

/// Creates both pools' droplets.
#[allow(clippy::too_many_arguments)]
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    net: &Network,
    db: &Database,
    store: &Artifacts,
    access: &Access,
    wall: &Firewall,
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
    let deploy = Deploy::of(cfg);
    // A graceful delete waits for the drain, so the provider must wait longer than it does.
    let options = Options {
        delete_timeout: Some(droplet_delete_timeout(deploy.drain_seconds())),
        ..Options::default()
    };
    // What the user data names: the database URL (pool, user), the downloads (bucket, objects).
    let mut boot: Vec<&Ref> = vec![&db.pool, &db.user, &db.owner, &store.bucket];
    boot.extend(store.objects.iter());
    let uploaded_keys: Vec<&Ref> = access.uploaded.iter().collect();
    let mut droplets = Vec::new();
    for color in Color::ALL {
        let sha = pool_sha(cfg, inputs, color);
        let url = store.urls[&sha].clone();
        for index in 1..=cfg.pool(color).count {
            let name = cfg.name(&format!("{}-{index}", color.as_str()));
            // userData carries the database URL and API key, so the whole document is secret.
            let (deploy, server_id, sha) = (deploy.clone(), name.clone(), sha.clone());
            // userData carries the database URLs and API key, so the whole document is secret.
            let user_data = pulumi_combine!(
                url.clone(),
                db.app_url.clone(),
                db.owner_url.clone(),
                api_key.clone(),
                ca_url.clone()
            )
            .map(move |(url, database_url, owner_url, api_key, ca_url)| {
                CloudInit {
                    settings: deploy.settings(Instance::Droplet {
                        server_id: server_id.clone(),
                        database_url,
                        owner_url,
                        api_key,
                        verify_ca: ca_url.is_some(),
                    }),
                    binary_url: &url,
                    binary_sha256: &sha,
                    database_ca_url: ca_url.as_deref(),
                }
                .render()
            })
            .secret();
            // Waiting for the firewall's id orders the droplet after it: none boots unprotected.
            let tags = pulumi_combine!(
                net.app_tag.clone(),
                net.color_tag(color).clone(),
                wall.id.clone()
            )
            .map(|(a, b, _)| vec![a, b]);
            let mut node = graph
                .node(token::DROPLET, &name)
                .uses("vpcUuid", &[&net.vpc])
                .uses("userData", &boot)
                .secret("userData")
                .uses(
                    "tags",
                    &[&net.app_tag_ref, net.color_tag_ref(color), &wall.declared],
                )
                .options(options.clone());
            if !uploaded_keys.is_empty() {
                node = node.uses("sshKeys", &uploaded_keys);
            }
            let declared = node.declare();
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
            if let Some(keys) = &access.keys {
                args.ssh_keys = keys.clone().into();
            }
            let d = droplet::create(ctx, &name, args);
            droplets.push(AppDroplet {
                color,
                name,
                public_ip: d.ipv4_address,
                private_ip: d.ipv4_address_private,
                droplet_urn: d.droplet_urn,
                declared,
            });
        }
    }
    droplets
}
