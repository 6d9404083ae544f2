//! Which stack this is: local or DigitalOcean, its file, and the resource names built from its name.

use super::keys::PROJECT;
use crate::limits;
use std::path::{Path, PathBuf};

/// The stack that runs on this machine instead of DigitalOcean.
pub const LOCAL_STACK: &str = "local";

/// Where a stack runs: `local` on this machine, every other stack on DigitalOcean through Pulumi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// The local stack (`infra up|status|destroy --stack local`).
    Local,
    /// A DigitalOcean stack (`pulumi up|destroy -s <stack>`, `infra preview --stack <stack>`).
    Cloud,
}

impl StackKind {
    /// The kind of a stack name.
    pub fn of(stack: &str) -> StackKind {
        if stack == LOCAL_STACK {
            StackKind::Local
        } else {
            StackKind::Cloud
        }
    }

    /// Refuses a command meant for the other kind of stack, saying which commands fit `stack`.
    pub fn require(self, stack: &str) -> anyhow::Result<()> {
        match (self, StackKind::of(stack)) {
            (StackKind::Local, StackKind::Cloud) => anyhow::bail!(
                "`{stack}` is a DigitalOcean stack: deploy it with `pulumi up -s {stack}`, remove it with \
                 `pulumi destroy -s {stack}`, look first with `infra preview --stack {stack}`; only the \
                 `{LOCAL_STACK}` stack runs on this machine"
            ),
            (StackKind::Cloud, StackKind::Local) => anyhow::bail!(
                "the `{LOCAL_STACK}` stack runs on this machine, not on DigitalOcean: use \
                 `cargo run --release -p infra -- up --stack {LOCAL_STACK}` (and `status`, `destroy`)"
            ),
            _ => Ok(()),
        }
    }
}

/// `stacks/Pulumi.<stack>.yaml` under the repository root.
pub fn stack_file(root: &Path, stack: &str) -> PathBuf {
    root.join("stacks").join(format!("Pulumi.{stack}.yaml"))
}

/// `{project}-{stack}-{role}`.
pub fn resource_name(stack: &str, role: &str) -> String {
    format!("{PROJECT}-{stack}-{role}")
}

/// `{project}-{stack}-{role}-{8 hex digits of sha256(replaced_by)}`.
pub fn replaceable_name(stack: &str, role: &str, replaced_by: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(replaced_by.join("\0").as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    resource_name(stack, &format!("{role}-{hash}"))
}

/// Why the stack's name cannot be part of DigitalOcean resource names, checked on the longest
/// names the program generates.
pub(super) fn stack_name_problems(stack: &str) -> Vec<String> {
    let longest_droplet = resource_name(stack, "green-50");
    let longest_pool = replaceable_name(stack, "pool", &[]);
    let mut problems: Vec<String> = [
        limits::hostname_problem(&longest_droplet),
        limits::tag_problem(&resource_name(stack, "green")),
        limits::range_problem(longest_pool.len(), &limits::POOL_NAME_CHARS)
            .map(|p| format!("the connection pool name {longest_pool:?} {p} characters")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !problems.is_empty() {
        problems.insert(
            0,
            format!(
                "stack name {stack:?} does not fit DigitalOcean's names; use a short lowercase name like dev or prod:"
            ),
        );
    }
    problems
}
