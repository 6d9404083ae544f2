//! The Spaces bucket the program uploads app builds to, one object per build sha256.

use super::Inputs;
use crate::build::artifact_path;
use crate::config::{Build, Color, StackConfig};
use crate::digitalocean::{spaces_bucket, spaces_bucket_object};
use pulumi_gestalt_rust::{Context, Output};
use std::collections::BTreeMap;

/// Uploaded builds.
pub struct Artifacts {
    /// DigitalOcean URN of the bucket (for the project).
    pub bucket_urn: Output<String>,
    /// Download URL per build sha256.
    pub urls: BTreeMap<String, Output<String>>,
}

/// The sha256 a pool runs.
pub fn pool_sha(cfg: &StackConfig, inputs: &Inputs, color: Color) -> String {
    match &cfg.pool(color).build {
        Build::Local => inputs.build.sha256.clone(),
        Build::Pinned(sha) => sha.clone(),
    }
}

/// Creates the bucket and uploads every build a pool refers to.
pub fn create(ctx: &Context, cfg: &StackConfig, inputs: &Inputs) -> anyhow::Result<Artifacts> {
    let bucket_name = cfg.name("artifacts");
    let bucket = spaces_bucket::create(
        ctx,
        &bucket_name,
        spaces_bucket::SpacesBucketArgs::builder()
            .name(bucket_name.clone())
            .region(cfg.artifacts_region.clone())
            .acl("private")
            .force_destroy(true)
            .build_struct(),
    );
    let mut urls = BTreeMap::new();
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
        let key = format!("app/{sha}/rustlb-app");
        let object = spaces_bucket_object::create(
            ctx,
            &cfg.name(&format!("build-{}", &sha[..12])),
            spaces_bucket_object::SpacesBucketObjectArgs::builder()
                .bucket(bucket.name.clone())
                .key(key.clone())
                .region(cfg.artifacts_region.clone())
                .source(source.display().to_string())
                .content_type("application/octet-stream")
                // Droplets fetch it without credentials; the sha256 check on the droplet guards integrity.
                .acl("public-read")
                .build_struct(),
        );
        let url = pulumi_gestalt_rust::__private::output::combine2(
            bucket.bucket_domain_name.clone(),
            object.key,
        )
        .map(|(domain, key)| format!("https://{domain}/{key}"));
        urls.insert(sha, url);
    }
    Ok(Artifacts {
        bucket_urn: bucket.bucket_urn,
        urls,
    })
}
