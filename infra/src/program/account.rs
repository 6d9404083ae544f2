//! What the DigitalOcean account already holds, read before the first registration: its uuid and the stack's SSH keys.

use crate::config::{PROJECT, StackConfig};
use crate::transform::EngineLink;
use serde_json::{Value, json};

/// `getAccount`: the account the token belongs to.
pub const GET_ACCOUNT: &str = "digitalocean:index/getAccount:getAccount";
/// `getSshKeys`: keys on the account, filtered.
pub const GET_SSH_KEYS: &str = "digitalocean:index/getSshKeys:getSshKeys";

/// An SSH key already uploaded to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey {
    /// Its DigitalOcean id.
    pub id: i64,
    /// Its name on the account.
    pub name: String,
    /// Its MD5 fingerprint (`aa:bb:...`), unique per account.
    pub fingerprint: String,
}

/// The facts of the account the program depends on.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// The account's uuid: bucket names are global across all customers, so they include it.
    pub uuid: String,
    /// The stack's `sshPublicKeys` that are already on the account.
    pub ssh_keys: Vec<AccountKey>,
}

impl Account {
    /// Reads the account through the engine's provider (the token is the provider's config).
    pub fn lookup(link: &EngineLink, cfg: &StackConfig) -> anyhow::Result<Account> {
        let account = link.invoke(GET_ACCOUNT, json!({}))?;
        let uuid = account["uuid"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| anyhow::anyhow!("{GET_ACCOUNT} returned no uuid"))?
            .to_string();
        let fingerprints: Vec<String> = cfg
            .ssh_public_keys
            .iter()
            .map(|k| k.fingerprint())
            .collect();
        let ssh_keys = if fingerprints.is_empty() {
            Vec::new()
        } else {
            let found = link.invoke(
                GET_SSH_KEYS,
                json!({ "filters": [{ "key": "fingerprint", "values": fingerprints }] }),
            )?;
            found["sshKeys"]
                .as_array()
                .map(|keys| keys.iter().filter_map(account_key).collect())
                .unwrap_or_default()
        };
        Ok(Account { uuid, ssh_keys })
    }

    /// The key with this fingerprint, if the account has it.
    pub fn ssh_key(&self, fingerprint: &str) -> Option<&AccountKey> {
        self.ssh_keys.iter().find(|k| k.fingerprint == fingerprint)
    }
}

fn account_key(v: &Value) -> Option<AccountKey> {
    Some(AccountKey {
        id: v["id"].as_i64()?,
        name: v["name"].as_str()?.to_string(),
        fingerprint: v["fingerprint"].as_str()?.to_string(),
    })
}

/// Who manages a key found on the account under `name`: another stack of this project, or someone by hand.
pub fn owner_of(name: &str) -> String {
    let stack = name
        .strip_prefix(&format!("{PROJECT}-"))
        .and_then(|rest| rest.split_once("-ssh-"))
        .map(|(stack, _)| stack);
    match stack {
        Some(stack) => format!("managed by stack {stack:?} of this project"),
        None => "uploaded outside this project".to_string(),
    }
}
