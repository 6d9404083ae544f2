//! Failure drills on the local stack, each under bounded load: kill -9, rolling restarts, and a database outage.
//!
//! Every drill counts the requests that failed and the `requests_log` rows that never
//! arrived: each answer from an instance carries its `X-Request-Id`, which is the key of the
//! row that instance must write.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    Statement,
};
use serde::Serialize;

use super::load::{self, Load, Mix, Outcome};
use super::options::Options;
use crate::config::StackConfig;
use crate::local::{self, ControlCommand};

/// What one drill measured.
#[derive(Debug, Clone, Serialize)]
pub struct DrillResult {
    pub name: &'static str,
    /// The traffic during the drill.
    pub load: &'static str,
    pub requests: usize,
    /// Requests without a usable answer, by status (`"no response"` for none), counting a
    /// fast 503 `database_unavailable` separately.
    pub failed: usize,
    pub failures: BTreeMap<String, usize>,
    /// Rows missing from `requests_log` for requests an instance answered.
    pub lost_log_rows: usize,
    /// The slowest 503 `database_unavailable` (database outage only).
    pub slowest_503_ms: Option<u64>,
    /// From the database's return to the first of an unbroken run of successful writes.
    pub recovery_ms: Option<u64>,
    pub goal: String,
    pub passed: bool,
    pub note: String,
}

/// Clients sending at once during a drill (the machine has two cores; this keeps the stack busy
/// without starving it).
const CLIENTS: usize = 8;
/// Bound on the requests of one drill, whatever its duration.
const MAX_REQUESTS: u64 = 50_000;
/// How long the database refuses connections in the outage drill.
const OUTAGE: Duration = Duration::from_secs(5);
/// A fast 503 is one answered in less than this.
const FAST: Duration = Duration::from_millis(100);
/// The database must be serving writes again within this after it returns.
const RECOVERY_GOAL: Duration = Duration::from_secs(3);

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
    let log = LogStore::connect(root, cfg.database_url()).await?;
    let mut results = vec![
        kill_9(root, cfg, opts, &log).await?,
        rolling_restart(root, cfg, opts, &log, Mix::Reads).await?,
        rolling_restart(root, cfg, opts, &log, Mix::ReadsAndWrites).await?,
    ];
    if cfg.database_url().starts_with("postgres") {
        results.push(database_outage(root, cfg, opts, &log).await?);
    }
    Ok(results)
}

/// Load running in the background, and what the drill needs to judge it afterwards.
pub(super) struct Running {
    /// When it started, by the clock `requests_log.created_at` uses.
    pub(super) since: chrono::DateTime<chrono::Utc>,
    /// When it started, by the clock outcome times count from.
    started: Instant,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<Outcome>>>,
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
        wait_all_up(root, cfg).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let load = Load {
            url: opts.url.clone(),
            api_key: opts.api_key.clone(),
            clients: CLIENTS,
            mix,
            duration,
            max_requests: MAX_REQUESTS,
            pace: Duration::from_millis(2),
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

fn mix_name(mix: Mix) -> &'static str {
    match mix {
        Mix::Reads => "GET /server-info",
        Mix::ReadsAndWrites => "GET /server-info + POST /api/users",
    }
}

/// kill -9 of one instance under read load: the load balancer must hide it.
async fn kill_9(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
) -> anyhow::Result<DrillResult> {
    let running = Running::start(root, cfg, opts, Mix::Reads, Duration::from_secs(6)).await?;
    let since = running.since;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = local::fetch_report(root, cfg)?
        .backends
        .into_iter()
        .nth(1)
        .and_then(|b| b.pid.map(|p| (b.server_id, p)))
        .context("no running second instance to kill")?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(victim.1 as libc::pid_t, libc::SIGKILL) };
    // The load runs its course: the rest of its 6 s.
    let outcomes = running.task.await??;
    wait_all_up(root, cfg).await?;
    let lost = log.missing(&outcomes, since).await?;
    let mut r = tally(
        "kill -9 one instance",
        Mix::Reads,
        &outcomes,
        lost,
        "0 failed requests",
    );
    r.passed = r.failed == 0;
    r.note = format!(
        "killed {} (pid {}); lost log rows are its unflushed queue (the SIGKILL window)",
        victim.0, victim.1
    );
    Ok(r)
}

/// Every instance restarted in turn (out of rotation, SIGTERM, started, back in rotation)
/// while the load runs.
async fn rolling_restart(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
    mix: Mix,
) -> anyhow::Result<DrillResult> {
    let running = Running::start(root, cfg, opts, mix, Duration::from_secs(120)).await?;
    let since = running.since;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let control = local::control_address(root, cfg)?;
    let restarted = tokio::task::spawn_blocking(move || {
        local::control_request(
            control,
            &ControlCommand::Restart(None),
            Duration::from_secs(110),
        )
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = running.finish().await?;
    restarted.context("the rolling restart failed")?;
    let lost = log.missing(&outcomes, since).await?;
    let name = match mix {
        Mix::Reads => "rolling restart, reads",
        Mix::ReadsAndWrites => "rolling restart, writes",
    };
    let mut r = tally(name, mix, &outcomes, lost, "0 failed requests, 0 lost rows");
    r.passed = r.failed == 0 && r.lost_log_rows == 0;
    r.note = format!("{} instances, one at a time", cfg.droplet_count());
    Ok(r)
}

/// The database refuses every connection for [`OUTAGE`] (new sessions forbidden, existing
/// ones terminated) while reads and writes continue.
async fn database_outage(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
) -> anyhow::Result<DrillResult> {
    let outage = Outage::prepare(cfg.database_url()).await?;
    let running = Running::start(
        root,
        cfg,
        opts,
        Mix::ReadsAndWrites,
        OUTAGE + Duration::from_secs(8),
    )
    .await?;
    let (since, started) = (running.since, running.started);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let began = started.elapsed();
    outage.begin().await?;
    tokio::time::sleep(OUTAGE).await;
    outage.end().await?;
    let ended = started.elapsed();
    let outcomes = running.task.await??;
    let lost = log.missing(&outcomes, since).await?;
    let mut r = tally(
        "database outage",
        Mix::ReadsAndWrites,
        &outcomes,
        lost,
        "only fast 503s, 0 lost rows, writes back within 3 s",
    );
    // The load started just before `started`; outcome times are close enough to compare.
    let unavailable: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status == Some(503) && o.code.as_deref() == Some("database_unavailable"))
        .collect();
    r.slowest_503_ms = unavailable
        .iter()
        .map(|o| o.latency.as_millis() as u64)
        .max();
    r.recovery_ms = recovery(&outcomes, ended).map(|d| d.as_millis() as u64);
    let other_failures: usize = r
        .failures
        .iter()
        .filter(|(k, _)| k.as_str() != "503 database_unavailable")
        .map(|(_, n)| n)
        .sum();
    r.passed = other_failures == 0
        && r.lost_log_rows == 0
        && r.slowest_503_ms
            .is_none_or(|ms| ms < FAST.as_millis() as u64)
        && r.recovery_ms
            .is_some_and(|ms| ms < RECOVERY_GOAL.as_millis() as u64);
    r.note = format!(
        "refused from {:.1} s to {:.1} s; {} fast 503s",
        began.as_secs_f64(),
        ended.as_secs_f64(),
        unavailable.len()
    );
    Ok(r)
}

/// When writes work again: the first successful write after `ended` from which every later
/// write succeeded, measured from `ended`.
fn recovery(outcomes: &[Outcome], ended: Duration) -> Option<Duration> {
    let writes: Vec<&Outcome> = outcomes.iter().filter(|o| o.write).collect();
    let last_failure = writes.iter().rposition(|o| !o.ok());
    let first_good = match last_failure {
        Some(i) => writes.get(i + 1)?,
        None => writes.first()?,
    };
    Some((first_good.at + first_good.latency).saturating_sub(ended))
}

pub(super) fn tally(
    name: &'static str,
    mix: Mix,
    outcomes: &[Outcome],
    lost_log_rows: usize,
    goal: &str,
) -> DrillResult {
    let mut failures = BTreeMap::new();
    for o in outcomes.iter().filter(|o| !o.ok()) {
        let key = match (o.status, o.code.as_deref()) {
            (None, _) => "no response".to_owned(),
            (Some(s), Some(code)) => format!("{s} {code}"),
            (Some(s), None) => s.to_string(),
        };
        *failures.entry(key).or_insert(0) += 1;
    }
    DrillResult {
        name,
        load: mix_name(mix),
        requests: outcomes.len(),
        failed: failures.values().sum(),
        failures,
        lost_log_rows,
        slowest_503_ms: None,
        recovery_ms: None,
        goal: goal.to_owned(),
        passed: false,
        note: String::new(),
    }
}

/// Waits until the load balancer has every instance in rotation (after an earlier drill).
async fn wait_all_up(root: &Path, cfg: &StackConfig) -> anyhow::Result<()> {
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

    /// How many answered requests have no row yet, waiting for the writers to flush.
    pub(super) async fn missing(
        &self,
        outcomes: &[Outcome],
        since: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<usize> {
        use entity::requests_log::{Column, Entity};
        let expected: HashSet<&str> = outcomes
            .iter()
            .filter(|o| o.from_instance)
            .filter_map(|o| o.request_id.as_deref())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut missing = expected.len();
        loop {
            let found: Vec<String> = Entity::find()
                .select_only()
                .column(Column::RequestId)
                .filter(Column::CreatedAt.gte(since - chrono::Duration::seconds(5)))
                .into_tuple()
                .all(&self.db)
                .await?;
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

/// A PostgreSQL database that stops accepting connections, the way a bad password, a
/// PgBouncer refusal or an administrator killing sessions looks to the app.
struct Outage {
    admin: DatabaseConnection,
    database: String,
}

impl Outage {
    async fn prepare(url: &str) -> anyhow::Result<Outage> {
        let (admin_url, database) = admin_url(url).context("reading the stack's database URL")?;
        let admin = app::connect_database(&admin_url)
            .await
            .context("connecting to the server's postgres database")?;
        Ok(Outage { admin, database })
    }

    async fn run(&self, sql: String) -> anyhow::Result<()> {
        let backend = self.admin.get_database_backend();
        self.admin
            .execute_raw(Statement::from_string(backend, sql))
            .await?;
        Ok(())
    }

    async fn begin(&self) -> anyhow::Result<()> {
        let db = self.database.replace('"', "\"\"");
        self.run(format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
            .await?;
        let lit = self.database.replace('\'', "''");
        self.run(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{lit}' AND pid <> pg_backend_pid()"
        ))
        .await
    }

    async fn end(&self) -> anyhow::Result<()> {
        let db = self.database.replace('"', "\"\"");
        self.run(format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
            .await
    }
}

/// The same server's `postgres` database (for `ALTER DATABASE`), and the stack's database name.
fn admin_url(url: &str) -> Option<(String, String)> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("//")? + 2;
    let slash = base.rfind('/').filter(|&i| i >= authority_start)?;
    let database = base[slash + 1..].to_owned();
    let mut admin = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        admin.push('?');
        admin.push_str(q);
    }
    (!database.is_empty()).then_some((admin, database))
}

/// The drills as a markdown table (also what the terminal report shows).
pub fn table(drills: &[DrillResult]) -> String {
    let mut out = String::from(
        "| drill | load | requests | failed | lost log rows | slowest 503 | recovery | goal | result |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for d in drills {
        let failed = if d.failures.is_empty() {
            "0".to_owned()
        } else {
            d.failures
                .iter()
                .map(|(k, n)| format!("{n} ({k})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
        out.push_str(&format!(
            "| {} | {} | {} | {failed} | {} | {} | {} | {} | {} |\n",
            d.name,
            d.load,
            d.requests,
            d.lost_log_rows,
            ms(d.slowest_503_ms),
            ms(d.recovery_ms),
            d.goal,
            if d.passed { "PASS" } else { "FAIL" }
        ));
    }
    for d in drills.iter().filter(|d| !d.note.is_empty()) {
        out.push_str(&format!("\n- {}: {}", d.name, d.note));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_url_points_at_the_postgres_database_of_the_same_server() {
        assert_eq!(
            admin_url("postgres://u:p@127.0.0.1:5432/app?sslmode=disable"),
            Some((
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable".into(),
                "app".into()
            ))
        );
        assert_eq!(admin_url("postgres://127.0.0.1:5432"), None);
    }

    #[test]
    fn recovery_is_measured_to_the_start_of_the_last_unbroken_run_of_writes() {
        let o = |at_ms: u64, ok: bool| Outcome {
            at: Duration::from_millis(at_ms),
            latency: Duration::from_millis(5),
            write: true,
            status: Some(if ok { 201 } else { 503 }),
            request_id: None,
            code: None,
            from_instance: true,
        };
        let outcomes = [
            o(0, true),
            o(1000, false),
            o(5200, false),
            o(5400, true),
            o(6000, true),
        ];
        assert_eq!(
            recovery(&outcomes, Duration::from_millis(5000)),
            Some(Duration::from_millis(405))
        );
    }
}
