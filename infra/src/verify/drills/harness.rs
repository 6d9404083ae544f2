//! What every drill runs on: bounded load in the background, the wait for a whole stack, and the count of `requests_log` rows.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use super::super::load::{self, Load, Mix, Outcome};
use super::super::options::Options;
use crate::config::StackConfig;
use crate::local;

/// Clients sending at once during a drill (the machine has two cores; this keeps the stack busy
/// without starving it).
const CLIENTS: usize = 8;
/// Bound on the requests of one drill, whatever its duration.
const MAX_REQUESTS: u64 = 50_000;

/// Load running in the background, and what the drill needs to judge it afterwards.
pub(super) struct Running {
    /// When it started, by the clock `requests_log.created_at` uses.
    pub(super) since: chrono::DateTime<chrono::Utc>,
    /// When it started, by the clock outcome times count from.
    pub(super) started: Instant,
    stop: Arc<AtomicBool>,
    pub(super) task: tokio::task::JoinHandle<anyhow::Result<Vec<Outcome>>>,
}

impl Running {
    /// Starts `mix` from every instance being in rotation, for at most `duration`.
    pub(super) async fn start(
        root: &Path,
        cfg: &StackConfig,
        opts: &Options,
        mix: Mix,
        duration: Duration,
    ) -> anyhow::Result<Running> {
        Self::start_paced(root, cfg, opts, mix, duration, Duration::from_millis(2)).await
    }

    /// [`Running::start`] with each client pausing `pace` between requests, so that a long
    /// drill stays within the request bound.
    pub(super) async fn start_paced(
        root: &Path,
        cfg: &StackConfig,
        opts: &Options,
        mix: Mix,
        duration: Duration,
        pace: Duration,
    ) -> anyhow::Result<Running> {
        wait_all_up(root, cfg).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let load = Load {
            url: opts.url.clone(),
            root_certificate: opts.root_certificate.clone(),
            api_key: opts.api_key.clone(),
            clients: CLIENTS,
            mix,
            duration,
            max_requests: MAX_REQUESTS,
            pace,
            stop: stop.clone(),
        };
        Ok(Running {
            since: chrono::Utc::now(),
            started: Instant::now(),
            stop,
            task: tokio::spawn(load::run(load)),
        })
    }

    /// Ends the load now and returns every outcome.
    pub(super) async fn finish(self) -> anyhow::Result<Vec<Outcome>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// The second instance's server id and pid: the one the kill and freeze drills pick on.
pub(super) fn second_instance(root: &Path, cfg: &StackConfig) -> anyhow::Result<(String, u32)> {
    local::fetch_report(root, cfg)?
        .backends
        .into_iter()
        .nth(1)
        .and_then(|b| b.pid.map(|p| (b.server_id, p)))
        .context("no running second instance")
}

/// Waits until the load balancer has every instance in rotation (after an earlier drill).
pub(super) async fn wait_all_up(root: &Path, cfg: &StackConfig) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = local::fetch_report(root, cfg)?;
        if report.backends.iter().all(|b| b.state == "up") {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every instance is in rotation after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The drills' own connection to the stack's database, to count `requests_log` rows.
pub struct LogStore {
    db: DatabaseConnection,
}

impl LogStore {
    /// Connects to the stack's database; a relative SQLite path means the repository root,
    /// as it does for the instances.
    pub(super) async fn connect(root: &Path, url: &str) -> anyhow::Result<LogStore> {
        let url = match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') => {
                format!("sqlite://{}", root.join(rest).display())
            }
            _ => url.to_owned(),
        };
        let db = app::connect_database(&url)
            .await
            .context("connecting to the stack's database")?;
        Ok(LogStore { db })
    }

    /// How many answered requests have more than one row: a replay that wrote a row twice.
    pub(super) async fn duplicates(
        &self,
        outcomes: &[Outcome],
        since: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<usize> {
        let expected = expected(outcomes);
        let found = self.logged_since(since).await?;
        let mut seen = HashSet::new();
        Ok(found
            .iter()
            .filter(|id| expected.contains(id.as_str()) && !seen.insert(id.as_str()))
            .count())
    }

    /// The request ids of the rows written from a little before `since` on.
    async fn logged_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<String>> {
        use entity::requests_log::{Column, Entity};
        Ok(Entity::find()
            .select_only()
            .column(Column::RequestId)
            .filter(Column::CreatedAt.gte(since - chrono::Duration::seconds(5)))
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// How many answered requests have no row yet, waiting for the writers to flush.
    pub(super) async fn missing(
        &self,
        outcomes: &[Outcome],
        since: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<usize> {
        let expected = expected(outcomes);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut missing = expected.len();
        loop {
            let found = self.logged_since(since).await?;
            let found: HashSet<&str> = found.iter().map(String::as_str).collect();
            let now_missing = expected.difference(&found).count();
            // Writers flush every 250 ms; stop once nothing more arrives.
            if now_missing == 0 || (now_missing == missing && Instant::now() > deadline) {
                return Ok(now_missing);
            }
            if now_missing == missing && Instant::now() + Duration::from_secs(13) > deadline {
                // Nothing arrived for a while: give the writers' retries a last chance.
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            missing = now_missing;
        }
    }
}

/// The request ids an instance answered: each owes one row.
fn expected(outcomes: &[Outcome]) -> HashSet<&str> {
    outcomes
        .iter()
        .filter(|o| o.from_instance)
        .filter_map(|o| o.request_id.as_deref())
        .collect()
}
