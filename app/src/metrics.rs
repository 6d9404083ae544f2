//! Prometheus metrics: the process-wide recorder and the gauges refreshed on each scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::request_log::DropReason;
use crate::state::AppState;

/// Installs the global recorder once per process and returns its handle.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &buckets,
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histograms keep every sample until they are folded into their buckets, which
            // happens on a scrape or an upkeep. Without this, a server nobody scrapes would
            // grow by 8 bytes per request for ever.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        upkeep.run_upkeep();
                    }
                });
            // Another recorder may already be installed (e.g. by an embedding program); the
            // handle still renders what this one records.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "Requests answered, by route, method and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from request to response head, by route and method"
    );
    metrics::describe_gauge!("db_pool_connections", "Open database connections");
    metrics::describe_gauge!("db_pool_idle_connections", "Idle database connections");
    metrics::describe_gauge!(
        "request_log_queue_depth",
        "Request-log rows of this process waiting in its spool for the database"
    );
    metrics::describe_gauge!(
        "request_log_spool_bytes",
        metrics::Unit::Bytes,
        "Bytes of request-log spool files on disk (this process's and those it replays)"
    );
    metrics::describe_counter!(
        "request_log_dropped_total",
        "Request-log rows lost, by reason: spool_full (request_log.spool_max_bytes reached), \
         spool_error (the spool's file system refused it), corrupt (a damaged spool line), \
         rejected (the database refused the row itself), shutdown (answered after the final \
         flush began)"
    );
    metrics::describe_counter!(
        "request_log_rows_written_total",
        "Request-log rows written to the database"
    );
    metrics::describe_counter!(
        "user_creates_total",
        "User creates written through the group commit (PostgreSQL)"
    );
    metrics::describe_counter!(
        "user_create_statements_total",
        "INSERT statements those creates took: creates / statements is the mean batch"
    );
    metrics::describe_counter!(
        "user_create_batch_retries_total",
        "Batches of creates whose statement failed as a whole, each create then retried alone"
    );
    metrics::describe_counter!(
        "auth_rejected_total",
        "Writes refused for their API key, by reason: missing or invalid"
    );
    metrics::describe_gauge!(
        "request_log_table_rows",
        "Rows of requests_log and request_stats (PostgreSQL: the planner's estimate)"
    );
    metrics::describe_gauge!(
        "request_log_table_bytes",
        metrics::Unit::Bytes,
        "Disk used by requests_log (all partitions) and request_stats, indexes included"
    );
    metrics::describe_gauge!(
        "request_log_partitions",
        "Day partitions of requests_log (PostgreSQL), the default partition not counted"
    );
    metrics::describe_gauge!(
        "database_size_bytes",
        metrics::Unit::Bytes,
        "Size of the whole database"
    );
    metrics::describe_counter!(
        "request_log_maintenance_runs_total",
        "Maintenance runs of this instance, by outcome (done, skipped: another instance held the lock, failed)"
    );
    metrics::describe_gauge!(
        "request_log_maintenance_last_run_timestamp_seconds",
        "When this instance last finished a maintenance run (Unix time)"
    );
    metrics::describe_gauge!(
        "request_log_maintenance_last_duration_seconds",
        metrics::Unit::Seconds,
        "How long this instance's last maintenance run took"
    );
    metrics::describe_counter!(
        "request_log_rows_removed_total",
        "Rows removed by retention, by table (dropped partitions count their estimated rows)"
    );
    metrics::describe_counter!(
        "request_log_partitions_dropped_total",
        "Day partitions of requests_log dropped by retention"
    );
    metrics::describe_counter!(
        "request_log_partitions_created_total",
        "Day partitions of requests_log created by maintenance"
    );
    metrics::describe_counter!(
        "request_log_rows_moved_total",
        "Rows moved out of requests_log's default partition into their day's partition"
    );
}

/// Sets the gauges that are cheaper to read at scrape time than to track.
pub fn refresh_gauges(state: &AppState) {
    let (size, idle) = pool_state(state.db());
    metrics::gauge!("db_pool_connections").set(size as f64);
    metrics::gauge!("db_pool_idle_connections").set(idle as f64);
    metrics::gauge!("request_log_queue_depth").set(state.request_log().queue_depth() as f64);
    metrics::gauge!("request_log_spool_bytes").set(state.request_log().spool_bytes() as f64);
    // Registers the counters so a scrape shows 0 rather than nothing before the first drop.
    for reason in DropReason::ALL {
        metrics::counter!("request_log_dropped_total", "reason" => reason.label()).increment(0);
    }
    for reason in ["missing", "invalid"] {
        metrics::counter!("auth_rejected_total", "reason" => reason).increment(0);
    }
    // Registers the counters so a scrape shows 0 rather than nothing before the first event.
    metrics::counter!("request_log_partitions_dropped_total").increment(0);
    for table in ["requests_log", "request_stats"] {
        metrics::counter!("request_log_rows_removed_total", "table" => table).increment(0);
    }
}

fn pool_state(db: &sea_orm::DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        sea_orm::DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => (0, 0),
    }
}
