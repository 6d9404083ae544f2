//! The Pulumi program: every DigitalOcean resource of one stack, wired by outputs.

mod access;
pub mod account;
mod alerts;
mod artifacts;
mod compute;
mod database;
mod firewall;
mod gather;
mod inputs;
mod loadbalancer;
mod network;
mod outputs;
mod project;

pub use account::{Account, AccountKey};
pub use artifacts::bucket_name;
pub use inputs::Inputs;

use crate::config::{Build, Color, Environment, PROJECT, StackConfig};
use crate::graph::Graph;
use crate::limits;
use crate::transform::EngineLink;
use pulumi_gestalt_rust::Context;
use std::sync::Arc;

/// Checks what only a real deployment needs; the binary runs it before the engine sees a resource.
pub fn check_deployable(cfg: &StackConfig, inputs: &Inputs) -> anyhow::Result<()> {
    if inputs.dry_run {
        return Ok(());
    }
    let (project, stack) = (PROJECT, &cfg.stack);
    let mut problems = Vec::new();
    if cfg.api_key().is_none() {
        problems.push(format!(
            "{project}:apiKey is not set; run `pulumi config set --secret {project}:apiKey <key> -s {stack}`"
        ));
    }
    let uses_local = Color::ALL
        .iter()
        .any(|c| cfg.pool(*c).count > 0 && cfg.pool(*c).build == Build::Local);
    if uses_local && !inputs.build.exists {
        problems.push(format!(
            "no app build at {}; run `cargo build --release -p app` first",
            inputs.build.path.display()
        ));
    }
    if uses_local
        && inputs.build.exists
        && let Some(problem) = build_problem(cfg, &inputs.build.path)
    {
        problems.push(problem);
    }
    if cfg.environment == Environment::Production && !cfg.has_ssh_access() {
        problems.push(no_ssh_message(stack));
    }
    if let Some(domain) = cfg
        .domain
        .as_deref()
        .filter(|d| limits::placeholder_domain(d))
    {
        problems.push(placeholder_domain_message(domain, stack));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("\n"))
    }
}

/// Why the local app build cannot start on the stack's droplets, if it cannot.
pub fn build_problem(cfg: &StackConfig, path: &std::path::Path) -> Option<String> {
    let checked = std::fs::read(path)
        .map_err(|e| format!("cannot be read: {e}"))
        .and_then(|bytes| crate::elf::check_runs_on(&bytes, &cfg.droplet_image));
    checked.err().map(|why| {
        format!(
            "the app build {} cannot run on the droplets: {why}. Fix: {}",
            path.display(),
            crate::elf::FIX
        )
    })
}

/// What the engine's log says about the stack's choices a reader may not expect.
pub fn notes(cfg: &StackConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if cfg.alerts.is_none() {
        notes.push(format!(
            "{PROJECT}:alerts is not set: no monitoring alerts and no uptime check; nobody is told \
             when a droplet fills up or the site is down (README, \"Alerts\")"
        ));
    }
    if cfg.maintenance_window.is_none() {
        notes.push(format!(
            "{PROJECT}:maintenanceWindow is not set: security updates install daily, and a reboot \
             one needs waits for a person (README, \"Security updates\")"
        ));
    }
    notes
}

/// What the engine's log says about keys the account already has.
pub fn ssh_key_notes(cfg: &StackConfig, account: &Account) -> Vec<String> {
    access::plan(cfg, account)
        .into_iter()
        .filter_map(|step| match step {
            access::KeyPlan::Reuse { note, .. } => Some(note),
            access::KeyPlan::Upload { .. } => None,
        })
        .collect()
}

/// Why a production stack without SSH keys is refused, and how to add one.
pub fn no_ssh_message(stack: &str) -> String {
    format!(
        "a production stack needs SSH keys, or nobody can reach a droplet: set {PROJECT}:sshPublicKeys \
         (`pulumi config set --path '{PROJECT}:sshPublicKeys[0]' \"$(cat ~/.ssh/id_ed25519.pub)\" -s {stack}`) \
         or {PROJECT}:sshKeys (ids or fingerprints of keys already uploaded to DigitalOcean)"
    )
}

/// Why a reserved example domain cannot be deployed, and what to do instead.
pub fn placeholder_domain_message(domain: &str, stack: &str) -> String {
    format!(
        "{PROJECT}:domain is {domain:?}, a reserved example name: Let's Encrypt cannot issue a \
         certificate for it. Set a domain whose DNS is hosted on DigitalOcean \
         (`pulumi config set {PROJECT}:domain api.yourdomain.com -s {stack}`) or remove it to serve \
         HTTP only (`pulumi config rm {PROJECT}:domain -s {stack}`)"
    )
}

/// The program as the language host runs it: PULUMI_* set, no arguments.
pub fn run_under_engine() -> anyhow::Result<()> {
    let stack = std::env::var("PULUMI_STACK").unwrap_or_default();
    crate::config::StackKind::Cloud.require(&stack)?;
    let cfg = StackConfig::from_engine_env()?;
    let root = std::env::var_os("PULUMI_ROOT_DIRECTORY")
        .map(std::path::PathBuf::from)
        .filter(|p| p.join("Pulumi.yaml").is_file())
        .map(Ok)
        .unwrap_or_else(crate::root::current_root)?;
    let inputs = Inputs {
        build: crate::build::AppBuild::inspect(&root, &cfg.app_binary)?,
        dry_run: std::env::var("PULUMI_DRY_RUN").is_ok_and(|v| v == "true"),
        root,
    };
    // Refuse before the engine sees a single resource.
    check_deployable(&cfg, &inputs)?;
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    let mut link = EngineLink::connect(&env("PULUMI_MONITOR"), &env("PULUMI_ENGINE"))?;
    let account = Account::lookup(&link, &cfg)?;
    for note in ssh_key_notes(&cfg, &account).into_iter().chain(notes(&cfg)) {
        link.log_info(&note)?;
    }
    // Before Gestalt's first registration, so that every resource passes through it.
    let graph = Graph::new(&cfg.project, &stack);
    link.register_transform(graph.clone())?;
    let link = std::sync::Arc::new(link);
    pulumi_gestalt_rust::run(|ctx| run(ctx, &cfg, &inputs, &graph, &account, &link))
}

/// Registers the stack's resources and outputs, each with what it uses declared in `graph`.
///
/// The order is the creation order: the droplet firewall exists before any droplet boots.
pub fn run(
    ctx: &Context,
    cfg: &StackConfig,
    inputs: &Inputs,
    graph: &Graph,
    account: &Account,
    link: &Arc<EngineLink>,
) -> anyhow::Result<()> {
    let net = network::create(ctx, cfg, graph);
    let keys = access::create(ctx, cfg, graph, account);
    let db = database::create(ctx, cfg, graph, &net, link);
    let store = artifacts::create(ctx, cfg, graph, inputs, &db, account)?;
    let lb = loadbalancer::create(ctx, cfg, graph, &net);
    let wall = firewall::create(ctx, cfg, graph, &net, &lb);
    let sources = compute::Sources {
        net: &net,
        db: &db,
        store: &store,
        access: &keys,
        wall: &wall,
    };
    let pools = compute::create(ctx, cfg, graph, &sources, inputs);
    project::create(ctx, cfg, graph, &db, &lb, &pools, &store);
    let watched = alerts::Watched {
        net: &net,
        db: &db,
        lb: &lb,
    };
    alerts::create(ctx, cfg, graph, &watched);
    let builds = Color::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), artifacts::pool_sha(cfg, inputs, *c)))
        .collect();
    outputs::export(ctx, cfg, &db, &lb, &pools, &store, &builds);
    Ok(())
}
