//! What a run records: each registration and invocation, and the account the stand-in provider answers for.

use crate::graph::Options;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One RegisterResource call.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Resource type token.
    pub type_: String,
    /// Logical name.
    pub name: String,
    /// Custom resource (a provider resource) or component/stack.
    pub custom: bool,
    /// Inputs as sent: secrets keep Pulumi's wrapper, unknowns the sentinel string.
    pub inputs: Value,
    /// Its URN.
    pub urn: String,
    /// Every URN it depends on: the request's `dependencies` and those the output values of
    /// its (transformed) inputs carry, as the engine records them in the state.
    pub dependencies: Vec<String>,
    /// Input name -> URNs, from the output values of the transformed inputs.
    pub property_dependencies: BTreeMap<String, Vec<String>>,
    /// The options in effect after the stack transform.
    pub options: Options,
    /// True when it passed through a stack transform.
    pub transformed: bool,
    /// The id the engine answered (empty in a dry run without placeholders).
    pub id: String,
    /// Outputs the provider computed (those that are not echoes of inputs).
    pub computed: Value,
}

/// The account the stand-in provider answers for.
#[derive(Debug, Clone)]
pub struct MockAccount {
    /// Its uuid.
    pub uuid: String,
    /// SSH keys already uploaded: (name, public key line).
    pub ssh_keys: Vec<(String, String)>,
}

impl Default for MockAccount {
    fn default() -> MockAccount {
        MockAccount {
            uuid: "a1b2c3d4-0000-4000-8000-00000000000a".into(),
            ssh_keys: Vec::new(),
        }
    }
}

impl MockAccount {
    /// The keys as `getSshKeys` lists them.
    pub(super) fn listed(&self) -> Vec<Value> {
        self.ssh_keys
            .iter()
            .enumerate()
            .filter_map(|(i, (name, line))| {
                let key = crate::config::SshPublicKey::parse(line).ok()?;
                Some(json!({
                    "id": 41_000_000 + i as i64,
                    "name": name,
                    "fingerprint": key.fingerprint(),
                    "publicKey": key.line(),
                }))
            })
            .collect()
    }
}

/// One Invoke call (a provider function such as getDatabaseCa).
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Function token.
    pub token: String,
    /// Arguments as sent.
    pub args: Value,
}

/// Everything the engine was told, until the run ends.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) resources: Vec<Registration>,
    pub(super) outputs: Option<Value>,
    pub(super) invokes: Vec<Invocation>,
    pub(super) logs: Vec<String>,
}
