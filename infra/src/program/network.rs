//! The VPC and the tags that tie droplets to the load balancer and the firewalls.

use crate::config::{Color, StackConfig};
use crate::digitalocean::{tag, vpc};
use crate::graph::{Graph, Ref, token};
use pulumi_gestalt_rust::{Context, Output};

/// The stack's network identity.
pub struct Network {
    /// VPC id.
    pub vpc_id: Output<String>,
    /// VPC name; it changes exactly when the VPC is replaced, so resources inside it hash it
    /// into their own names.
    pub vpc_name: String,
    /// Tag on every app droplet (firewalls and the database trust it).
    pub app_tag: Output<String>,
    /// Tag per colour (the load balancer targets the active one).
    pub color_tags: [Output<String>; 2],
    /// The VPC, for the graph.
    pub vpc: Ref,
    /// The app tag, for the graph.
    pub app_tag_ref: Ref,
    /// The colour tags, for the graph.
    pub color_tag_refs: [Ref; 2],
}

impl Network {
    /// The tag of one colour.
    pub fn color_tag(&self, color: Color) -> &Output<String> {
        &self.color_tags[color as usize]
    }

    /// The tag resource of one colour.
    pub fn color_tag_ref(&self, color: Color) -> &Ref {
        &self.color_tag_refs[color as usize]
    }
}

/// Creates the VPC and tags.
pub fn create(ctx: &Context, cfg: &StackConfig, graph: &Graph) -> Network {
    let cidr = cfg.vpc_cidr.to_string();
    // region and ipRange replace the VPC, and VPC names are unique per account.
    let vpc_name = cfg.replaceable_name("vpc", &[&cfg.region, &cidr]);
    let vpc_ref = graph.node(token::VPC, &cfg.name("vpc")).declare();
    let vpc = vpc::create(
        ctx,
        &cfg.name("vpc"),
        vpc::VpcArgs::builder()
            .name(vpc_name.clone())
            .region(cfg.region.clone())
            .ip_range(cidr)
            .description(format!("{} {} private network", cfg.project, cfg.stack))
            .build_struct(),
    );
    // Explicit tags: the load balancer's dropletTag must exist before the first droplet does,
    // and reading the tag's output makes the load balancer wait for it.
    let mk_tag = |role: &str| {
        let name = cfg.name(&format!("tag-{role}"));
        let declared = graph.node(token::TAG, &name).declare();
        let tag = tag::create(
            ctx,
            &name,
            tag::TagArgs::builder().name(cfg.name(role)).build_struct(),
        );
        (tag.name, declared)
    };
    let (app_tag, app_tag_ref) = mk_tag("app");
    let (blue, blue_ref) = mk_tag(Color::Blue.as_str());
    let (green, green_ref) = mk_tag(Color::Green.as_str());
    Network {
        vpc_id: vpc.id,
        vpc_name,
        app_tag,
        color_tags: [blue, green],
        vpc: vpc_ref,
        app_tag_ref,
        color_tag_refs: [blue_ref, green_ref],
    }
}
