//! The load balancer in front of the active colour, with an optional Let's Encrypt certificate.

use super::network::Network;
use crate::config::{APP_PORT, StackConfig};
use crate::digitalocean::types::{
    LoadBalancerForwardingRule, LoadBalancerHealthcheck, LoadBalancerStickySessions,
};
use crate::digitalocean::{certificate, load_balancer};
use crate::graph::{Graph, Ref, token};
use pulumi_gestalt_rust::{Context, Output};

/// Let's Encrypt, validated through the domain's DNS on DigitalOcean.
const CERT_TYPE: &str = "lets_encrypt";

/// What the rest of the program reads from the load balancer.
pub struct LoadBalancer {
    /// Its id (a droplet firewall rule allows traffic from it).
    pub id: Output<String>,
    /// Public IPv4.
    pub ip: Output<String>,
    /// DigitalOcean URN (for the project).
    pub urn: Output<String>,
    /// The load balancer, for the graph.
    pub declared: Ref,
}

fn rule(entry_port: i32, entry_protocol: &str) -> LoadBalancerForwardingRule {
    // TLS ends at the load balancer; droplets only ever speak plain HTTP on the VPC.
    LoadBalancerForwardingRule::builder()
        .entry_port(entry_port)
        .entry_protocol(entry_protocol)
        .target_port(i32::from(APP_PORT))
        .target_protocol("http")
        .build_struct()
}

/// Creates the load balancer (and certificate when the stack has a domain).
pub fn create(ctx: &Context, cfg: &StackConfig, graph: &Graph, net: &Network) -> LoadBalancer {
    let (rules, cert_ref) = forwarding_rules(ctx, cfg, graph);
    let (healthcheck, sticky) = (healthcheck(cfg), sticky_sessions(cfg));
    let mut node = graph
        .node(token::LOAD_BALANCER, &cfg.name("lb"))
        .uses("vpcUuid", &[&net.vpc])
        .uses("dropletTag", &[net.color_tag_ref(cfg.active_color)]);
    if let Some(cert) = &cert_ref {
        node = node.uses("forwardingRules", &[cert]);
    }
    let declared = node.declare();
    let lb = load_balancer::create(
        ctx,
        &cfg.name("lb"),
        load_balancer::LoadBalancerArgs::builder()
            // region and vpcUuid replace the load balancer.
            .name(cfg.replaceable_name("lb", &[&cfg.region, &net.vpc_name]))
            .region(cfg.region.clone())
            .vpc_uuid(net.vpc_id.clone())
            .size_unit(cfg.load_balancer_size_unit as i32)
            // Switching colours is this one input: the tag of the active pool.
            .droplet_tag(net.color_tag(cfg.active_color).clone())
            .forwarding_rules(rules)
            .healthcheck(healthcheck)
            .sticky_sessions(sticky)
            .redirect_http_to_https(cfg.domain.is_some())
            .enable_proxy_protocol(false)
            .enable_backend_keepalive(true)
            .http_idle_timeout_seconds(cfg.http_idle_timeout_seconds as i32)
            .build_struct(),
    );
    LoadBalancer {
        id: lb.id,
        ip: lb.ip,
        urn: lb.load_balancer_urn,
        declared,
    }
}

/// HTTP 80 -> 3000, and with a domain a Let's Encrypt certificate and HTTPS 443 -> 3000.
fn forwarding_rules(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
) -> (Output<Vec<LoadBalancerForwardingRule>>, Option<Ref>) {
    let mut cert_ref = None;
    let rules: Output<Vec<LoadBalancerForwardingRule>> = match &cfg.domain {
        None => Output::new(vec![rule(80, "http")]),
        Some(domain) => {
            cert_ref = Some(graph.node(token::CERTIFICATE, &cfg.name("cert")).declare());
            // Certificate names are unique per account and its type and domains replace it.
            let cert = certificate::create(
                ctx,
                &cfg.name("cert"),
                certificate::CertificateArgs::builder()
                    .name(cfg.replaceable_name("cert", &[CERT_TYPE, domain]))
                    .type_(CERT_TYPE)
                    .domains(vec![domain.clone()])
                    .build_struct(),
            );
            cert.name.map(|cert_name| {
                let mut https = rule(443, "https");
                https.certificate_name = Some(cert_name);
                https.tls_passthrough = Some(false);
                vec![rule(80, "http"), https]
            })
        }
    };
    (rules, cert_ref)
}

/// Every field set: the provider's defaults differ from the API's.
fn healthcheck(cfg: &StackConfig) -> LoadBalancerHealthcheck {
    let h = &cfg.health_check;
    LoadBalancerHealthcheck::builder()
        .protocol(h.protocol.clone())
        .port(i32::from(h.port))
        .maybe_path((h.protocol != "tcp").then(|| h.path.clone()))
        .check_interval_seconds(h.check_interval_seconds as i32)
        .response_timeout_seconds(h.response_timeout_seconds as i32)
        .unhealthy_threshold(h.unhealthy_threshold as i32)
        .healthy_threshold(h.healthy_threshold as i32)
        .build_struct()
}

fn sticky_sessions(cfg: &StackConfig) -> LoadBalancerStickySessions {
    let s = &cfg.sticky_sessions;
    if s.enabled() {
        LoadBalancerStickySessions::builder()
            .type_("cookies")
            .maybe_cookie_name(s.cookie_name.clone())
            .maybe_cookie_ttl_seconds(s.cookie_ttl_seconds.map(|t| t as i32))
            .build_struct()
    } else {
        LoadBalancerStickySessions::builder()
            .type_("none")
            .build_struct()
    }
}
