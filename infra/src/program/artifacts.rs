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

/// The bucket, for the objects in it.
struct Bucket {
    outputs: spaces_bucket::SpacesBucketResult,
    declared: Ref,
}

impl Bucket {
    /// The HTTPS URL of an object.
    fn url_of(&self, object_key: Output<String>) -> Output<String> {
        pulumi_combine!(self.outputs.bucket_domain_name.clone(), object_key)
            .map(|(domain, key)| format!("https://{domain}/{key}"))
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
    let declared = graph.node(token::BUCKET, &cfg.name("artifacts")).declare();
    let outputs = spaces_bucket::create(
        ctx,
        &cfg.name("artifacts"),
        spaces_bucket::SpacesBucketArgs::builder()
            .name(bucket_name(cfg, account))
            .region(cfg.artifacts_region.clone())
            .acl("private")
            .force_destroy(true)
            .build_struct(),
    );
    let bucket = Bucket { outputs, declared };
    let mut urls = BTreeMap::new();
    let mut objects = Vec::new();
    for color in Color::ALL {
        let sha = pool_sha(cfg, inputs, color);
        if let std::collections::btree_map::Entry::Vacant(slot) = urls.entry(sha) {
            let (url, declared) = build_object(ctx, cfg, graph, inputs, &bucket, slot.key())?;
            objects.push(declared);
            slot.insert(url);
        }
    }
    let ca_url = (cfg.database.ssl_mode == "verify-full").then(|| {
        let (url, declared) = ca_object(ctx, cfg, graph, db, &bucket);
        objects.push(declared);
        url
    });
    Ok(Artifacts {
        bucket_urn: bucket.outputs.bucket_urn,
        urls,
        ca_url,
        bucket: bucket.declared,
        objects,
    })
}

/// Uploads one build under its sha256: content-addressed copies keep an older build available
/// for the other colour.
fn build_object(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    inputs: &Inputs,
    bucket: &Bucket,
    sha: &str,
) -> anyhow::Result<(Output<String>, Ref)> {
    let source = if !inputs.dry_run && sha == inputs.build.sha256 && inputs.build.exists {
        inputs.build.archive(&inputs.root)?
    } else {
        artifact_path(&inputs.root, sha)
    };
    let name = cfg.name(&format!("build-{}", &sha[..12]));
    let declared = graph
        .node(token::BUCKET_OBJECT, &name)
        .uses("bucket", &[&bucket.declared])
        .declare();
    let object = spaces_bucket_object::create(
        ctx,
        &name,
        spaces_bucket_object::SpacesBucketObjectArgs::builder()
            .bucket(bucket.outputs.name.clone())
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
    Ok((bucket.url_of(object.key), declared))
}

/// The database CA, public by nature. Keeping it out of userData means a CA rotation never
/// replaces a droplet. Its key names the cluster and its content is the cluster's CA.
fn ca_object(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    db: &Database,
    bucket: &Bucket,
) -> (Output<String>, Ref) {
    let declared = graph
        .node(token::BUCKET_OBJECT, &cfg.name("db-ca"))
        .uses("bucket", &[&bucket.declared])
        .uses("key", &[&db.cluster])
        .uses("content", &[&db.cluster])
        .declare();
    let object = spaces_bucket_object::create(
        ctx,
        &cfg.name("db-ca"),
        spaces_bucket_object::SpacesBucketObjectArgs::builder()
            .bucket(bucket.outputs.name.clone())
            .key(format!("db/{}/ca.crt", db.cluster_name))
            .region(cfg.artifacts_region.clone())
            .content(db.ca_certificate.clone())
            .content_type("application/x-pem-file")
            .acl("public-read")
            .build_struct(),
    );
    (bucket.url_of(object.key), declared)
}

/// Bucket names are global across all DigitalOcean customers: the account's uuid makes the name
/// unique to the account, the stack name (in every name) unique to the stack, and the region
/// replaces the bucket.
pub fn bucket_name(cfg: &StackConfig, account: &Account) -> String {
    cfg.replaceable_name("artifacts", &[&cfg.artifacts_region, &account.uuid])
}
