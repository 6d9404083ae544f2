//! The maintenance schedule: a run soon after start, then every interval, on every instance.

use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use super::footprint;
use super::policy::Policy;
use super::report::Report;
use super::run::run_once;
use crate::schema::Schema;

/// The first run comes this soon after start (or after the interval, if that is shorter).
const FIRST_RUN: Duration = Duration::from_secs(5);

/// The running schedule; stopping it abandons a run midway, which the next run (of any
/// instance) finishes.
pub struct MaintenanceTask(Option<JoinHandle<()>>);

impl MaintenanceTask {
    pub fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
        }
    }
}

/// Runs maintenance on `db` every `interval` (never when zero), once `schema` is migrated.
pub fn spawn(
    db: DatabaseConnection,
    mut schema: Schema,
    policy: Policy,
    interval: Duration,
) -> MaintenanceTask {
    if interval.is_zero() {
        return MaintenanceTask(None);
    }
    MaintenanceTask(Some(tokio::spawn(async move {
        let mut pause = FIRST_RUN.min(interval);
        loop {
            tokio::time::sleep(pause).await;
            pause = interval;
            schema.migrated().await;
            let started = Instant::now();
            match run_once(&db, &policy, Utc::now()).await {
                Ok(report) => record(&report, started.elapsed()),
                Err(err) => {
                    metrics::counter!("request_log_maintenance_runs_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(error = %err, "request log maintenance failed; the next run tries again");
                }
            }
            if let Err(err) = footprint::refresh(&db).await {
                tracing::debug!(error = %err, "could not read the log tables' sizes");
            }
        }
    })))
}

/// Logs a run and counts what it did.
fn record(report: &Report, took: Duration) {
    let outcome = if report.skipped { "skipped" } else { "done" };
    metrics::counter!("request_log_maintenance_runs_total", "outcome" => outcome).increment(1);
    metrics::counter!("request_log_partitions_created_total").increment(report.partitions_created);
    metrics::counter!("request_log_partitions_dropped_total").increment(report.partitions_dropped);
    metrics::counter!("request_log_rows_removed_total", "table" => "requests_log")
        .increment(report.log_rows_removed);
    metrics::counter!("request_log_rows_removed_total", "table" => "request_stats")
        .increment(report.rollup_rows_removed);
    metrics::counter!("request_log_rows_moved_total").increment(report.log_rows_moved);
    if report.changed_anything() || !report.skipped {
        metrics::gauge!("request_log_maintenance_last_run_timestamp_seconds")
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        metrics::gauge!("request_log_maintenance_last_duration_seconds").set(took.as_secs_f64());
    }
    if report.changed_anything() {
        tracing::info!(
            partitions_created = report.partitions_created,
            partitions_dropped = report.partitions_dropped,
            log_rows_removed = report.log_rows_removed,
            log_rows_moved = report.log_rows_moved,
            rollup_rows_removed = report.rollup_rows_removed,
            skipped_rest = report.skipped,
            took_ms = took.as_millis() as u64,
            "request log maintenance"
        );
    } else {
        tracing::debug!(
            skipped = report.skipped,
            "request log maintenance: nothing to do"
        );
    }
}
