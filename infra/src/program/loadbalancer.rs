//! The load balancer in front of the active colour, with an optional Let's Encrypt certificate.

use super::network::Network;
use crate::config::{APP_PORT, StackConfig};
use crate::digitalocean::types::{
    LoadBalancerForwardingRule, LoadBalancerHealthcheck, LoadBalancerStickySessions,
};
use crate::digitalocean::{certificate, load_balancer};
use pulumi_gestalt_rust::{Context, Output};
use sha2::{Digest, Sha256};

/// What the rest of the program reads from the load balancer.
pub struct LoadBalancer {
    /// Its id (a droplet firewall rule allows traffic from it).
    pub id: Output<String>,
    /// Public IPv4.
    pub ip: Output<String>,
    /// DigitalOcean URN (for the project).
    pub urn: Output<String>,
}

fn http_rule() -> LoadBalancerForwardingRule {
    LoadBalancerForwardingRule {
        entry_port: 80,
        entry_protocol: "http".into(),
        target_port: i32::from(APP_PORT),
        target_protocol: "http".into(),
        certificate_name: None,
        tls_passthrough: None,
    }
}

/// Creates the load balancer (and certificate when the stack has a domain).
pub fn create(ctx: &Context, cfg: &StackConfig, net: &Network) -> LoadBalancer {
    let rules: Output<Vec<LoadBalancerForwardingRule>> = match &cfg.domain {
        None => Output::new(vec![http_rule()]),
        Some(domain) => {
            // Names are unique per account and Gestalt cannot ask for delete-before-replace, so a
            // new domain gets a new certificate name and the replacement can be created first.
            let suffix: String = Sha256::digest(domain.as_bytes())
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect();
            let cert = certificate::create(
                ctx,
                &cfg.name("cert"),
                certificate::CertificateArgs::builder()
                    .name(cfg.name(&format!("cert-{suffix}")))
                    .type_("lets_encrypt")
                    .domains(vec![domain.clone()])
                    .build_struct(),
            );
            // TLS ends at the load balancer; droplets only ever speak plain HTTP on the VPC.
            cert.name.map(|cert_name| {
                vec![
                    http_rule(),
                    LoadBalancerForwardingRule {
                        entry_port: 443,
                        entry_protocol: "https".into(),
                        target_port: i32::from(APP_PORT),
                        target_protocol: "http".into(),
                        certificate_name: Some(cert_name),
                        tls_passthrough: Some(false),
                    },
                ]
            })
        }
    };
    let h = &cfg.health_check;
    let healthcheck = LoadBalancerHealthcheck {
        protocol: h.protocol.clone(),
        port: i32::from(h.port),
        path: (h.protocol != "tcp").then(|| h.path.clone()),
        check_interval_seconds: Some(h.check_interval_seconds as i32),
        response_timeout_seconds: Some(h.response_timeout_seconds as i32),
        unhealthy_threshold: Some(h.unhealthy_threshold as i32),
        healthy_threshold: Some(h.healthy_threshold as i32),
    };
    let s = &cfg.sticky_sessions;
    let sticky = if s.enabled() {
        LoadBalancerStickySessions {
            type_: Some("cookies".into()),
            cookie_name: s.cookie_name.clone(),
            cookie_ttl_seconds: s.cookie_ttl_seconds.map(|t| t as i32),
        }
    } else {
        LoadBalancerStickySessions {
            type_: Some("none".into()),
            cookie_name: None,
            cookie_ttl_seconds: None,
        }
    };
    let lb = load_balancer::create(
        ctx,
        &cfg.name("lb"),
        load_balancer::LoadBalancerArgs::builder()
            .name(cfg.name("lb"))
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
    }
}
