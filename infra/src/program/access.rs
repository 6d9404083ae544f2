//! SSH access: the stack's OpenSSH public keys uploaded as DigitalOcean keys, plus keys already there.

use crate::config::{SecretValue, StackConfig};
use crate::digitalocean::ssh_key;
use pulumi_gestalt_rust::{Context, Output, pulumi_combine};
use secrecy::ExposeSecret;

use super::gather::all;
use crate::wire::SECRET_PLACEHOLDER;

/// The `sshKeys` every droplet gets (ids or fingerprints), or none when the stack has no keys.
pub fn create(ctx: &Context, cfg: &StackConfig) -> Option<Output<Vec<String>>> {
    let uploaded: Vec<Output<String>> = cfg
        .ssh_public_keys
        .iter()
        .map(|key| {
            // Named after the key material, so reordering the list replaces nothing.
            let name = cfg.name(&format!("ssh-{}", key.short_id()));
            ssh_key::create(
                ctx,
                &name,
                ssh_key::SshKeyArgs::builder()
                    .name(name.clone())
                    .public_key(key.line())
                    .build_struct(),
            )
            .fingerprint
        })
        .collect();
    let existing: Option<Output<Vec<String>>> = match &cfg.ssh_keys {
        SecretValue::Known(keys) => Some(ctx.new_secret(keys.expose_secret())),
        SecretValue::Encrypted => Some(ctx.new_secret(&vec![SECRET_PLACEHOLDER.to_string()])),
        SecretValue::Unset => None,
    };
    match (existing, uploaded.is_empty()) {
        (None, true) => None,
        (None, false) => Some(all(uploaded)),
        (Some(existing), true) => Some(existing),
        (Some(existing), false) => Some(pulumi_combine!(existing, all(uploaded)).map(
            |(mut ids, fingerprints)| {
                ids.extend(fingerprints);
                ids
            },
        )),
    }
}
