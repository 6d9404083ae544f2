//! The Pulumi program: every DigitalOcean resource of one stack, wired by outputs.

mod artifacts;
mod compute;
mod database;
mod firewall;
mod loadbalancer;
mod network;
mod outputs;
mod project;

use crate::build::AppBuild;
use crate::config::StackConfig;
use pulumi_gestalt_rust::{Context, Output};
use std::path::PathBuf;

/// Stand-in sent instead of a secret that cannot be read (offline preview, `pulumi preview` without it).
pub const SECRET_PLACEHOLDER: &str = "[placeholder: secret not available in preview]";

/// What the program needs besides the stack config.
pub struct Inputs {
    /// The repository root.
    pub root: PathBuf,
    /// The local app build (may be the placeholder).
    pub build: AppBuild,
    /// True under `pulumi preview` and the offline preview.
    pub dry_run: bool,
}

/// Checks what only a real deployment needs, before any resource is registered.
pub fn check_deployable(cfg: &StackConfig, inputs: &Inputs) -> anyhow::Result<()> {
    if inputs.dry_run {
        return Ok(());
    }
    let mut problems = Vec::new();
    if cfg.api_key().is_none() {
        problems.push(format!(
            "{}:apiKey is not set; run `pulumi config set --secret {}:apiKey <key> -s {}`",
            cfg.project, cfg.project, cfg.stack
        ));
    }
    let uses_local = crate::config::Color::ALL
        .iter()
        .any(|c| cfg.pool(*c).count > 0 && cfg.pool(*c).build == crate::config::Build::Local);
    if uses_local && !inputs.build.exists {
        problems.push(format!(
            "no app build at {}; run `cargo build --release -p app` first",
            inputs.build.path.display()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("\n"))
    }
}

/// Registers the stack's resources and outputs.
pub fn run(ctx: &Context, cfg: &StackConfig, inputs: &Inputs) -> anyhow::Result<()> {
    check_deployable(cfg, inputs)?;
    let net = network::create(ctx, cfg);
    let db = database::create(ctx, cfg, &net);
    let store = artifacts::create(ctx, cfg, inputs)?;
    let pools = compute::create(ctx, cfg, &net, &db, &store, inputs);
    let lb = loadbalancer::create(ctx, cfg, &net);
    firewall::create(ctx, cfg, &net, &lb);
    project::create(ctx, cfg, &db, &lb, &pools, &store);
    outputs::export(ctx, cfg, &db, &lb, &pools, &store);
    Ok(())
}

/// Collects outputs into one output of a list (unknown if any is unknown, secret if any is).
pub(crate) fn all<T: Clone + Send + Sync + 'static>(items: Vec<Output<T>>) -> Output<Vec<T>> {
    let mut acc: Output<Vec<T>> = Output::new(Vec::new());
    for item in items {
        acc = pulumi_gestalt_rust::__private::output::combine2(acc, item).map(|(mut v, x)| {
            v.push(x);
            v
        });
    }
    acc
}
