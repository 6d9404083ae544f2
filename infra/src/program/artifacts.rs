//! The Spaces bucket droplets boot from: one object per app build (by sha256) and the database CA.

use super::account::Account;
use super::database::Database;
use super::inputs::Inputs;
use crate::build::artifact_path;
use crate::config::{Build, Color, StackConfig};
use crate::digitalocean::{spaces_bucket, spaces_bucket_object};
use crate::graph::{Graph, Ref, token};
use pulumi_gestalt_rust::{Context, Output, pulumi_combine};
use std::collections::BTreeMap;

/// What droplets download at boot.
pub struct Artifacts {
    /// DigitalOcean URN of the bucket (for the project).
    pub bucket_urn: Output<String>,
    /// Download URL per build sha256.
    pub urls: BTreeMap<String, Output<String>>,
    /// Download URL of the database CA certificate, when droplets verify the database.
    pub ca_url: Option<Output<String>>,
    /// The bucket, for the graph.
    pub bucket: Ref,
    /// Every object droplets download at boot, for the graph.
    pub objects: Vec<Ref>,
}

/// The sha256 a pool runs.
pub fn pool_sha(cfg: &StackConfig, inputs: &Inputs, color: Color) -> String {
    match &cfg.pool(color).build {
        Build::Local => inputs.build.sha256.clone(),
        Build::Pinned(sha) => sha.clone(),
    }
}

/// Creates the bucket and uploads every build a pool refers to, and the database CA.
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    inputs: &Inputs,
    db: &Database,
    account: &Account,
) -> anyhow::Result<Artifacts> {
    let bucket_name = bucket_name(cfg, account);
    let bucket_ref = graph.node(token::BUCKET, &cfg.name("artifacts")).declare();
    let bucket = spaces_bucket::create(
        ctx,
        &cfg.name("artifacts"),
        spaces_bucket::SpacesBucketArgs::builder()
            .name(bucket_name)
            .region(cfg.artifacts_region.clone())
            .acl("private")
            .force_destroy(true)
            .build_struct(),
    );
    let url_of = |object_key: Output<String>| {
        pulumi_combine!(bucket.bucket_domain_name.clone(), object_key)
            .map(|(domain, key)| format!("https://{domain}/{key}"))
    };
    let mut urls = BTreeMap::new();
    let mut objects = Vec::new();
    for color in Color::ALL {
        let sha = pool_sha(cfg, inputs, color);
        if urls.contains_key(&sha) {
            continue;
        }
        // Content-addressed copies keep an older build available for the other colour.
        let source = if !inputs.dry_run && sha == inputs.build.sha256 && inputs.build.exists {
            inputs.build.archive(&inputs.root)?
        } else {
            artifact_path(&inputs.root, &sha)
        };
        let name = cfg.name(&format!("build-{}", &sha[..12]));
        objects.push(
            graph
                .node(token::BUCKET_OBJECT, &name)
                .uses("bucket", &[&bucket_ref])
                .declare(),
        );
        let object = spaces_bucket_object::create(
            ctx,
            &name,
            spaces_bucket_object::SpacesBucketObjectArgs::builder()
                .bucket(bucket.name.clone())
                .key(format!("app/{sha}/rustlb-app"))
                .region(cfg.artifacts_region.clone())
                // Relative to the project folder, where the engine runs the provider: an
                // absolute path would differ between machines and show as a change.
                .source(
                    source
                        .strip_prefix(&inputs.root)
                        .unwrap_or(&source)
                        .display()
                        .to_string(),
                )
                .content_type("application/octet-stream")
                // Droplets fetch it without credentials; the sha256 check on the droplet guards integrity.
                .acl("public-read")
                .build_struct(),
        );
        urls.insert(sha, url_of(object.key));
    }
    // A CA certificate is public by nature. Keeping it out of userData means a CA rotation, or
    // a preview that cannot read it yet, never replaces a droplet.
    let ca_url = (cfg.database.ssl_mode == "verify-full").then(|| {
        // Its key names the cluster and its content is the cluster's CA.
        objects.push(
            graph
                .node(token::BUCKET_OBJECT, &cfg.name("db-ca"))
                .uses("bucket", &[&bucket_ref])
                .uses("key", &[&db.cluster])
                .uses("content", &[&db.cluster])
                .declare(),
        );
        let object = spaces_bucket_object::create(
            ctx,
            &cfg.name("db-ca"),
            spaces_bucket_object::SpacesBucketObjectArgs::builder()
                .bucket(bucket.name.clone())
                .key(format!("db/{}/ca.crt", db.cluster_name))
                .region(cfg.artifacts_region.clone())
                .content(db.ca_certificate.clone())
                .content_type("application/x-pem-file")
                .acl("public-read")
                .build_struct(),
        );
        url_of(object.key)
    });
    Ok(Artifacts {
        bucket_urn: bucket.bucket_urn,
        urls,
        ca_url,
        bucket: bucket_ref,
        objects,
    })
}

/// Bucket names are global across all DigitalOcean customers: the account's uuid makes the name
/// unique to the account, the stack name (in every name) unique to the stack, and the region
/// replaces the bucket.
pub fn bucket_name(cfg: &StackConfig, account: &Account) -> String {
    cfg.replaceable_name("artifacts", &[&cfg.artifacts_region, &account.uuid])
}
