//! SSH access: the stack's OpenSSH public keys on the account (uploaded, or reused when already there), plus keys named by id.

use super::account::{Account, owner_of};
use super::gather::all;
use crate::config::{SecretValue, SshPublicKey, StackConfig};
use crate::digitalocean::ssh_key;
use crate::graph::{Graph, Ref, token};
use crate::wire::SECRET_PLACEHOLDER;
use pulumi_gestalt_rust::{Context, Output, pulumi_combine};
use secrecy::ExposeSecret;

/// What droplets get for SSH.
pub struct Access {
    /// The `sshKeys` every droplet gets (ids or fingerprints), or none when the stack has no keys.
    pub keys: Option<Output<Vec<String>>>,
    /// The keys this stack uploads (the droplets must wait for them).
    pub uploaded: Vec<Ref>,
}

/// What becomes of one of the stack's public keys.
pub enum KeyPlan<'a> {
    /// This stack uploads it (or uploaded it earlier, under this name) and manages it.
    Upload {
        /// The key.
        key: &'a SshPublicKey,
        /// Its name on the account and in the stack.
        name: String,
    },
    /// It is on the account under another name: droplets use it by fingerprint.
    Reuse {
        /// Its fingerprint.
        fingerprint: String,
        /// Who manages it, for the engine's log.
        note: String,
    },
}

/// DigitalOcean refuses to upload a public key the account already has ("SSH Key is already in
/// use on your account"), so such a key is used by its fingerprint unless this stack uploaded it
/// itself (its name is the one this stack gives it).
pub fn plan<'a>(cfg: &'a StackConfig, account: &Account) -> Vec<KeyPlan<'a>> {
    cfg.ssh_public_keys
        .iter()
        .map(|key| {
            // Named after the key material, so reordering the list replaces nothing.
            let name = cfg.name(&format!("ssh-{}", key.short_id()));
            let fingerprint = key.fingerprint();
            match account.ssh_key(&fingerprint) {
                Some(found) if found.name != name => KeyPlan::Reuse {
                    note: format!(
                        "SSH key {fingerprint} is already on the account as {:?} ({}); droplets use it by fingerprint and this stack does not manage it",
                        found.name,
                        owner_of(&found.name)
                    ),
                    fingerprint,
                },
                _ => KeyPlan::Upload { key, name },
            }
        })
        .collect()
}

/// Declares the stack's keys as [`plan`] decides.
pub fn create(ctx: &Context, cfg: &StackConfig, graph: &Graph, account: &Account) -> Access {
    let mut fingerprints: Vec<Output<String>> = Vec::new();
    let mut uploaded = Vec::new();
    for step in plan(cfg, account) {
        match step {
            KeyPlan::Reuse { fingerprint, .. } => fingerprints.push(Output::new(fingerprint)),
            KeyPlan::Upload { key, name } => {
                uploaded.push(graph.node(token::SSH_KEY, &name).declare());
                let created = ssh_key::create(
                    ctx,
                    &name,
                    ssh_key::SshKeyArgs::builder()
                        .name(name.clone())
                        .public_key(key.line())
                        .build_struct(),
                );
                fingerprints.push(created.fingerprint);
            }
        }
    }
    let existing: Option<Output<Vec<String>>> = match &cfg.ssh_keys {
        SecretValue::Known(keys) => Some(ctx.new_secret(keys.expose_secret())),
        SecretValue::Encrypted => Some(ctx.new_secret(&vec![SECRET_PLACEHOLDER.to_string()])),
        SecretValue::Unset => None,
    };
    let keys = match (existing, fingerprints.is_empty()) {
        (None, true) => None,
        (None, false) => Some(all(fingerprints)),
        (Some(existing), true) => Some(existing),
        (Some(existing), false) => Some(pulumi_combine!(existing, all(fingerprints)).map(
            |(mut ids, fingerprints)| {
                ids.extend(fingerprints);
                ids
            },
        )),
    };
    Access { keys, uploaded }
}
