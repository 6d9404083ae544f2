//! Failure drills on the local stack, each under bounded load: kill -9, rolling restarts, SIGTERM from outside the supervisor, a frozen instance, a database outage, a full disk, and rollouts of a good and two bad builds.
//!
//! Every drill counts the requests that failed and the `requests_log` rows that never
//! arrived: each answer from an instance carries its `X-Request-Id`, which is the key of the
//! row that instance must write.

mod frozen;
mod full_disk;
mod harness;
mod outage;
mod restarts;
mod result;
mod rollout;

use std::path::Path;

use super::load::Mix;
use super::options::Options;
use crate::config::StackConfig;
pub use result::{DrillResult, table};

/// Runs every drill that fits the stack, one after the other.
pub async fn run_all(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
) -> anyhow::Result<Vec<DrillResult>> {
    anyhow::ensure!(
        cfg.droplet_count() >= 2,
        "the drills need at least 2 instances (rustlb:dropletCount)"
    );
    let log = harness::LogStore::connect(root, cfg.database_url()).await?;
    let mut results = vec![
        restarts::kill_9(root, cfg, opts, &log, Mix::Reads).await?,
        restarts::kill_9(root, cfg, opts, &log, Mix::ReadsAndWrites).await?,
        restarts::rolling_restart(root, cfg, opts, &log, Mix::Reads).await?,
        restarts::rolling_restart(root, cfg, opts, &log, Mix::ReadsAndWrites).await?,
        restarts::outside_sigterm_roll(root, cfg, opts, &log).await?,
        frozen::frozen_backend(root, cfg, opts, &log).await?,
    ];
    if cfg.database_url().starts_with("postgres") {
        results.push(outage::database_outage(root, cfg, opts, &log).await?);
    }
    // Needs root to mount a small file system; left out otherwise.
    if full_disk::possible() {
        results.push(full_disk::full_disk(root, &cfg.stack).await?);
    }
    // Last: the good rollout leaves the stack on a new generation of instances.
    results.extend(rollout::run(root, cfg, opts, &log).await?);
    Ok(results)
}
