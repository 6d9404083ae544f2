//! The DigitalOcean project that groups the stack's resources under its environment.

use super::artifacts::Artifacts;
use super::compute::AppDroplet;
use super::database::Database;
use super::gather::all;
use super::loadbalancer::LoadBalancer;
use crate::config::StackConfig;
use crate::digitalocean::project;
use crate::graph::{Graph, Ref, token};
use pulumi_gestalt_rust::Context;

/// Creates the project; it waits for every grouped resource's URN.
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    db: &Database,
    lb: &LoadBalancer,
    droplets: &[AppDroplet],
    store: &Artifacts,
) {
    let mut urns = vec![
        lb.urn.clone(),
        db.cluster_urn.clone(),
        store.bucket_urn.clone(),
    ];
    urns.extend(droplets.iter().map(|d| d.droplet_urn.clone()));
    let mut grouped: Vec<&Ref> = vec![&lb.declared, &db.cluster, &store.bucket];
    grouped.extend(droplets.iter().map(|d| &d.declared));
    graph
        .node(token::PROJECT, &cfg.name("project"))
        .uses("resources", &grouped)
        .declare();
    project::create(
        ctx,
        &cfg.name("project"),
        project::ProjectArgs::builder()
            .name(cfg.name("project"))
            .description(format!(
                "{} load-balanced API, stack {}",
                cfg.project, cfg.stack
            ))
            .purpose("Web Application")
            .environment(cfg.environment.as_str())
            .resources(all(urns))
            .build_struct(),
    );
}
