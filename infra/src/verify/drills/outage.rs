//! The database outage drill: PostgreSQL refuses every connection for 40 s under reads and writes.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::super::load::{Mix, Outcome};
use super::super::options::Options;
use super::harness::{LogStore, Running};
use super::result::{DrillResult, tally};
use crate::config::StackConfig;

/// How long the database refuses connections in the outage drill: longer than the 30 s after
/// which `/health` once gave up on the database and took every instance out of rotation.
const OUTAGE: Duration = Duration::from_secs(40);
/// A fast 503 is one answered in less than this.
const FAST: Duration = Duration::from_millis(100);
/// The database must be serving writes again within this after it returns.
const RECOVERY_GOAL: Duration = Duration::from_secs(3);

/// The database refuses every connection for [`OUTAGE`] (new sessions forbidden, existing
/// ones terminated) while reads and writes continue.
pub(super) async fn database_outage(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
) -> anyhow::Result<DrillResult> {
    let outage = Outage::prepare(cfg.database_url()).await?;
    // Paced so that the whole outage and the recovery fit in the drill's request bound.
    let running = Running::start_paced(
        root,
        cfg,
        opts,
        Mix::ReadsAndWrites,
        OUTAGE + Duration::from_secs(8),
        Duration::from_millis(10),
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
        "database outage, 40 s",
        Mix::ReadsAndWrites,
        &outcomes,
        lost,
        "reads answer throughout; writes get only fast 503s; 0 lost rows; writes back within 3 s",
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
