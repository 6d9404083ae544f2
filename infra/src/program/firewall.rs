//! The droplets' cloud firewall: app port from the load balancer only, SSH from admin networks only.

use super::loadbalancer::LoadBalancer;
use super::network::Network;
use crate::config::{APP_PORT, StackConfig};
use crate::digitalocean::firewall;
use crate::digitalocean::types::{FirewallInboundRule, FirewallOutboundRule};
use crate::graph::{Graph, Ref, token};
use pulumi_gestalt_rust::{Context, Output};

const ANYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

fn outbound(protocol: &str, ports: &str, to: Vec<String>) -> FirewallOutboundRule {
    FirewallOutboundRule::builder()
        .protocol(protocol)
        .port_range(ports)
        .destination_addresses(to)
        .build_struct()
}

/// The outbound rules: DNS, NTP, HTTP/HTTPS (packages, the binary download) and the database in the VPC.
pub fn outbound_rules(cfg: &StackConfig) -> Vec<FirewallOutboundRule> {
    let anywhere: Vec<String> = ANYWHERE.iter().map(|s| s.to_string()).collect();
    vec![
        outbound("udp", "53", anywhere.clone()),
        outbound("tcp", "53", anywhere.clone()),
        outbound("udp", "123", anywhere.clone()),
        outbound("tcp", "80", anywhere.clone()),
        outbound("tcp", "443", anywhere),
        // 25060 is the cluster, 25061 the PgBouncer pools; both only on private addresses.
        outbound("tcp", "25060-25061", vec![cfg.vpc_cidr.to_string()]),
    ]
}

/// The droplets' firewall: droplets wait for it, so none boots unprotected.
pub struct Firewall {
    /// Its id, which droplets' inputs wait for.
    pub id: Output<String>,
    /// The firewall, for the graph.
    pub declared: Ref,
}

/// Creates the firewall on every app droplet (by tag, so new droplets are covered at birth).
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    net: &Network,
    lb: &LoadBalancer,
) -> Firewall {
    let admin: Vec<String> = cfg.admin_cidrs.iter().map(|n| n.to_string()).collect();
    let inbound = lb.id.map(move |lb_id| {
        let mut rules = vec![
            FirewallInboundRule::builder()
                .protocol("tcp")
                .port_range(APP_PORT.to_string())
                .source_load_balancer_uids(vec![lb_id])
                .build_struct(),
        ];
        if !admin.is_empty() {
            rules.push(
                FirewallInboundRule::builder()
                    .protocol("tcp")
                    .port_range("22")
                    .source_addresses(admin.clone())
                    .build_struct(),
            );
        }
        rules
    });
    let declared = graph
        .node(token::FIREWALL, &cfg.name("firewall"))
        .uses("tags", &[&net.app_tag_ref])
        .uses("inboundRules", &[&lb.declared])
        .declare();
    let wall = firewall::create(
        ctx,
        &cfg.name("firewall"),
        firewall::FirewallArgs::builder()
            .name(cfg.name("firewall"))
            .tags(net.app_tag.map(|t| vec![t]))
            .inbound_rules(inbound)
            .outbound_rules(outbound_rules(cfg))
            .build_struct(),
    );
    Firewall {
        id: wall.id,
        declared,
    }
}
