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

/// What the droplets are built from: the resources created before them.
pub struct Sources<'a> {
    /// VPC and tags.
    pub net: &'a Network,
    /// The database URLs.
    pub db: &'a Database,
    /// The downloads.
    pub store: &'a Artifacts,
    /// SSH keys.
    pub access: &'a Access,
    /// The firewall every droplet waits for.
    pub wall: &'a Firewall,
}

/// Creates both pools' droplets.
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    src: &Sources,
    inputs: &Inputs,
) -> Vec<AppDroplet> {
    let fleet = Fleet::new(ctx, cfg, graph, src);
    let mut droplets = Vec::new();
    for color in Color::ALL {
        let sha = pool_sha(cfg, inputs, color);
        for index in 1..=cfg.pool(color).count {
            droplets.push(fleet.droplet(color, index, &sha));
        }
    }
    droplets
}

/// What all droplets of the stack share.
struct Fleet<'a> {
    ctx: &'a Context,
    cfg: &'a StackConfig,
    graph: &'a Graph,
    src: &'a Sources<'a>,
    api_key: Output<String>,
    ca_url: Output<Option<String>>,
    deploy: Deploy,
    options: Options,
}

impl<'a> Fleet<'a> {
    fn new(ctx: &'a Context, cfg: &'a StackConfig, graph: &'a Graph, src: &'a Sources<'a>) -> Self {
        let api_key = ctx.new_secret(
            &cfg.api_key()
                .map(|k| k.expose_secret().to_string())
                .unwrap_or_else(|| SECRET_PLACEHOLDER.to_string()),
        );
        let ca_url: Output<Option<String>> = match &src.store.ca_url {
            Some(url) => url.map(Some),
            None => Output::new(None),
        };
        let deploy = Deploy::of(cfg);
        // A graceful delete waits for the drain, so the provider must wait longer than it does.
        let options = Options {
            delete_timeout: Some(droplet_delete_timeout(deploy.drain_seconds())),
            ..Options::default()
        };
        Fleet {
            ctx,
            cfg,
            graph,
            src,
            api_key,
            ca_url,
            deploy,
            options,
        }
    }

    /// The whole cloud-config of one droplet. It carries the database URLs and the API key, so
    /// the whole document is secret.
    fn user_data(&self, server_id: &str, index: u32, sha: &str) -> Output<String> {
        let reboot_at = self
            .cfg
            .maintenance_window
            .as_ref()
            .map(|w| w.on_calendar(index));
        let (db, url) = (self.src.db, self.src.store.urls[sha].clone());
        let (deploy, server_id, sha) = (self.deploy.clone(), server_id.to_owned(), sha.to_owned());
        pulumi_combine!(
            url,
            db.app_url.clone(),
            db.owner_url.clone(),
            self.api_key.clone(),
            self.ca_url.clone()
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
                reboot_at: reboot_at.clone(),
            }
            .render()
        })
        .secret()
    }

    /// Declares what a droplet uses: the user data names the database (pool, users) and the
    /// downloads (bucket, objects); the tags wait for the firewall; the keys it gets.
    fn declare(&self, name: &str, color: Color) -> Ref {
        let (net, src) = (self.src.net, self.src);
        let mut boot: Vec<&Ref> =
            vec![&src.db.pool, &src.db.user, &src.db.owner, &src.store.bucket];
        boot.extend(src.store.objects.iter());
        let mut node = self
            .graph
            .node(token::DROPLET, name)
            .uses("vpcUuid", &[&net.vpc])
            .uses("userData", &boot)
            .secret("userData")
            .uses(
                "tags",
                &[
                    &net.app_tag_ref,
                    net.color_tag_ref(color),
                    &src.wall.declared,
                ],
            )
            .options(self.options.clone());
        let uploaded: Vec<&Ref> = src.access.uploaded.iter().collect();
        if !uploaded.is_empty() {
            node = node.uses("sshKeys", &uploaded);
        }
        node.declare()
    }

    fn droplet(&self, color: Color, index: u32, sha: &str) -> AppDroplet {
        let (cfg, net) = (self.cfg, self.src.net);
        let name = cfg.name(&format!("{}-{index}", color.as_str()));
        let declared = self.declare(&name, color);
        // Waiting for the firewall's id orders the droplet after it: none boots unprotected.
        let tags = pulumi_combine!(
            net.app_tag.clone(),
            net.color_tag(color).clone(),
            self.src.wall.id.clone()
        )
        .map(|(a, b, _)| vec![a, b]);
        let mut args = droplet::DropletArgs::builder()
            .name(name.clone())
            .image(cfg.droplet_image.clone())
            .size(cfg.droplet_size.clone())
            .region(cfg.region.clone())
            .vpc_uuid(net.vpc_id.clone())
            .user_data(self.user_data(&name, index, sha))
            .tags(tags)
            .monitoring(true)
            .ipv6(false)
            .graceful_shutdown(true)
            .build_struct();
        if let Some(keys) = &self.src.access.keys {
            args.ssh_keys = keys.clone().into();
        }
        let d = droplet::create(self.ctx, &name, args);
        AppDroplet {
            color,
            name,
            public_ip: d.ipv4_address,
            private_ip: d.ipv4_address_private,
            droplet_urn: d.droplet_urn,
            declared,
        }
    }
}
