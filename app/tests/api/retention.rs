//! Retention: old log rows and rollups go, newer ones and the stats over them stay right.
//!
//! Maintenance runs "as of" chosen times here, so days pass without waiting for them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use app::testing::{
    LogRecord, RetentionPolicy, hold_maintenance_lock, run_maintenance, stats_as_of,
    write_request_log,
};
use chrono::{DateTime, Duration, DurationRound, NaiveTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, spawn_app_with, spawn_unlogged_app};

const POLICY: RetentionPolicy = RetentionPolicy {
    log_days: 7,
    stats_days: 400,
    minute_retention: TimeDelta::hours(48),
};

fn row(id: &str, at: DateTime<Utc>) -> LogRecord {
    LogRecord {
        method: "GET",
        route: "/server-info",
        status: 200,
        duration_us: 1_500,
        client_ip: None,
        request_id: Arc::from(id),
        at,
    }
}

fn midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The request ids in `requests_log`.
async fn logged_ids(db: &DatabaseConnection) -> BTreeSet<String> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT request_id FROM requests_log",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "request_id").unwrap())
    .collect()
}

/// PostgreSQL: the partition holding each request id.
async fn partitions_of(db: &DatabaseConnection) -> Vec<(String, String)> {
    db.query_all_raw(Statement::from_string(
        DatabaseBackend::Postgres,
        "SELECT request_id, tableoid::regclass::text AS part FROM requests_log ORDER BY created_at",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get::<String>("", "request_id").unwrap(),
            r.try_get::<String>("", "part").unwrap(),
        )
    })
    .collect()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn stats(app: &TestApp, window: &str) -> Value {
    let response = app.get(&format!("/api/stats?window={window}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn rows_older_than_the_retention_are_gone_after_a_maintenance_run(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let db = app.connect_db().await;
    let now = Utc::now();
    let first_kept = midnight(now) - Duration::days(7);
    write_request_log(
        &db,
        "node-a",
        &[
            row("nine-days", now - Duration::days(9)),
            row("eight-days", now - Duration::days(8)),
            row("just-before", first_kept - Duration::seconds(1)),
            row("just-after", first_kept + Duration::seconds(1)),
            row("hour-ago", now - Duration::hours(1)),
            row("now", now),
        ],
    )
    .await
    .unwrap();
    let postgres = db.get_database_backend() == DatabaseBackend::Postgres;

    // Nine days ago, a run made that time's partitions, taking in the rows of its days that
    // waited in the default partition.
    let then = run_maintenance(&db, &POLICY, now - Duration::days(9))
        .await
        .unwrap();
    assert!(!then.skipped);
    if postgres {
        assert_eq!(then.partitions_created, 4, "{then:?}");
        assert_eq!(then.log_rows_moved, 4, "{then:?}");
        let parts = partitions_of(&db).await;
        assert!(
            parts.iter().all(|(_, part)| part != "requests_log_default"),
            "{parts:?}"
        );
    }

    let report = run_maintenance(&db, &POLICY, now).await.unwrap();
    assert!(!report.skipped, "{report:?}");
    assert_eq!(
        logged_ids(&db).await,
        ids(&["just-after", "hour-ago", "now"]),
        "{report:?}"
    );
    if postgres {
        assert_eq!(
            report.partitions_dropped, 3,
            "days -10, -9 and -8: {report:?}"
        );
    } else {
        assert_eq!(report.log_rows_removed, 3, "{report:?}");
    }
    let again = run_maintenance(&db, &POLICY, now).await.unwrap();
    assert!(
        !again.changed_anything(),
        "a second run finds nothing: {again:?}"
    );

    // The rollups keep what the log no longer holds.
    let all = stats(&app, "all").await;
    assert_eq!(all["total_requests"], 6);
    let days = stats(&app, "8d").await;
    assert_eq!(
        days["total_requests"], 5,
        "all but nine-days, three of them gone from the log: {days}"
    );
}

async fn windows_reaching_past_the_minute_rows_are_read_from_hour_rows(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let db = app.connect_db().await;
    let now = Utc::now();
    let at = |ago: Duration, id: &str| row(id, now - ago);
    write_request_log(
        &db,
        "node-a",
        &[
            at(Duration::minutes(5), "a"),
            at(Duration::minutes(6), "b"),
            at(Duration::hours(3), "c"),
            at(Duration::hours(50), "d"),
            at(Duration::hours(70), "e"),
            at(Duration::days(30), "f"),
        ],
    )
    .await
    .unwrap();
    write_request_log(&db, "node-b", &[at(Duration::hours(50), "g")])
        .await
        .unwrap();
    let policy = RetentionPolicy {
        stats_days: 20,
        ..POLICY
    };
    let report = run_maintenance(&db, &policy, now).await.unwrap();
    assert!(report.rollup_rows_removed >= 5, "{report:?}");

    let horizon = (now - Duration::hours(48))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    let old_minutes = app
        .count(
            &db,
            &format!(
                "request_stats WHERE span_seconds = 60 AND bucket_start < '{}'",
                sql_time(&db, horizon)
            ),
        )
        .await;
    assert_eq!(old_minutes, 0, "minute rows past 48 h are gone");
    let minutes = app
        .count(&db, "request_stats WHERE span_seconds = 60")
        .await;
    assert!(
        (2..=3).contains(&minutes),
        "minute rows of a, b, c: {minutes}"
    );

    // Within the minute rows: exact to the minute.
    assert_eq!(stats(&app, "1h").await["total_requests"], 2);
    assert_eq!(stats(&app, "24h").await["total_requests"], 3);
    // Past them: from hour rows, starting on the hour, and `since` says so.
    let three_days = stats(&app, "72h").await;
    assert_eq!(three_days["total_requests"], 6, "{three_days}");
    let since = three_days["since"].as_str().unwrap();
    assert!(since.ends_with(":00:00Z"), "{since}");
    let servers = three_days["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    let percents: f64 = servers.iter().map(|s| s["percent"].as_f64().unwrap()).sum();
    assert!((percents - 100.0).abs() < 1e-9);
    assert!((servers[0]["p95_latency_ms"].as_f64().unwrap() - 1.5).abs() < 0.1);
    // The hour a window starts in is counted whole: 49 h starts after "d", 51 h before it.
    assert_eq!(stats(&app, "49h").await["total_requests"], 3);
    assert_eq!(stats(&app, "51h").await["total_requests"], 5);
    // Hour rows past `stats_days` are gone too: "f" (30 days) is no longer counted.
    assert_eq!(stats(&app, "all").await["total_requests"], 6);
}

async fn a_window_starting_inside_an_hour_adds_or_subtracts_its_minutes(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let db = app.connect_db().await;
    let ten = midnight(Utc::now()) - Duration::hours(14);
    let at = |minutes: i64, seconds: i64, ms: u64| LogRecord {
        duration_us: ms * 1000,
        ..row(
            "r",
            ten + Duration::minutes(minutes) + Duration::seconds(seconds),
        )
    };
    write_request_log(
        &db,
        "node-a",
        &[
            at(0, 30, 1),
            at(19, 30, 2),
            at(20, 30, 3),
            at(40, 30, 50),
            at(65, 0, 1),
            at(119, 0, 1),
        ],
    )
    .await
    .unwrap();
    let now = ten + Duration::minutes(119) + Duration::seconds(59);
    let total = |body: &Value| body["total_requests"].as_u64().unwrap();
    // Starts at 10:19: the 10:00 hour row less its first 19 minutes.
    let hundred = stats_as_of(&db, "100m", POLICY.minute_retention, now)
        .await
        .unwrap();
    assert_eq!(total(&hundred), 5, "{hundred}");
    assert_eq!(hundred["servers"][0]["avg_latency_ms"], 11.4, "{hundred}");
    let p95 = hundred["servers"][0]["p95_latency_ms"].as_f64().unwrap();
    assert!((p95 - 50.0).abs() < 3.0, "{hundred}");
    // Starts at 10:39: its 21 minutes to 11:00 added to the 11:00 hour row.
    let eighty = stats_as_of(&db, "80m", POLICY.minute_retention, now)
        .await
        .unwrap();
    assert_eq!(total(&eighty), 3, "{eighty}");
    // Starts at 09:59, a minute before the first row.
    let two_hours = stats_as_of(&db, "2h", POLICY.minute_retention, now)
        .await
        .unwrap();
    assert_eq!(total(&two_hours), 6, "{two_hours}");
    // Exactly on the hour: hour rows only.
    let on_the_hour = stats_as_of(
        &db,
        "60m",
        POLICY.minute_retention,
        now - Duration::seconds(59),
    )
    .await
    .unwrap();
    assert_eq!(total(&on_the_hour), 2, "{on_the_hour}");
    // Without minute rows that far back the window starts on the hour: 10:00, all six.
    let hours_only = stats_as_of(&db, "100m", TimeDelta::minutes(30), now)
        .await
        .unwrap();
    assert_eq!(total(&hours_only), 6, "{hours_only}");
    assert_eq!(
        hours_only["since"].as_str().unwrap(),
        ten.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
}

async fn two_instances_maintaining_at_once_do_not_collide(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let setup = app.connect_db().await;
    let now = Utc::now();
    write_request_log(
        &setup,
        "node-a",
        &[
            row("old", now - Duration::days(9)),
            row("three-days", now - Duration::days(3)),
            row("two-days", now - Duration::days(2)),
            row("now", now),
        ],
    )
    .await
    .unwrap();
    let postgres = setup.get_database_backend() == DatabaseBackend::Postgres;

    if postgres {
        // An instance in the middle of a run holds the lock: the other leaves the run to it.
        let held = hold_maintenance_lock(&setup)
            .await
            .unwrap()
            .expect("the lock is free");
        let other = app.connect_db().await;
        let report = run_maintenance(&other, &POLICY, now).await.unwrap();
        assert!(report.skipped && !report.changed_anything(), "{report:?}");
        held.rollback().await.unwrap();
    }

    let (one, two) = (app.connect_db().await, app.connect_db().await);
    let mut created = 0;
    let mut skipped = 0;
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            run_maintenance(&one, &POLICY, now),
            run_maintenance(&two, &POLICY, now)
        );
        for report in [a.expect("instance one"), b.expect("instance two")] {
            created += report.partitions_created;
            skipped += u64::from(report.skipped);
        }
    }
    assert_eq!(
        logged_ids(&setup).await,
        ids(&["three-days", "two-days", "now"])
    );
    if postgres {
        assert_eq!(created, 2, "days -3 and -2, each made once");
        let parts = partitions_of(&setup).await;
        assert!(
            parts
                .iter()
                .all(|(_, part)| part.starts_with("requests_log_p")),
            "{parts:?}"
        );
    }
    eprintln!("concurrent runs skipped: {skipped} of 6");
}

async fn inserts_succeed_across_a_day_boundary_without_a_partition(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let db = app.connect_db().await;
    // A month ahead: no partition covers either day yet.
    let midnight = midnight(Utc::now()) + Duration::days(30);
    let before = midnight - Duration::milliseconds(100);
    let after = midnight + Duration::milliseconds(100);
    write_request_log(
        &db,
        "node-a",
        &[row("23:59:59.9", before), row("00:00:00.1", after)],
    )
    .await
    .expect("rows without a partition are written");
    assert_eq!(logged_ids(&db).await, ids(&["23:59:59.9", "00:00:00.1"]));
    let stamps: Vec<DateTime<Utc>> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT created_at FROM requests_log ORDER BY created_at",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("", "created_at").unwrap())
        .collect();
    assert_eq!(stamps, [before, after]);
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    let waiting = partitions_of(&db).await;
    assert!(
        waiting.iter().all(|(_, p)| p == "requests_log_default"),
        "{waiting:?}"
    );
    // The day comes: maintenance makes its partitions and moves the rows into them.
    let report = run_maintenance(&db, &POLICY, before - Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(report.log_rows_moved, 2, "{report:?}");
    let day = |at: DateTime<Utc>| format!("requests_log_p{}", at.format("%Y%m%d"));
    assert_eq!(
        partitions_of(&db).await,
        [
            ("23:59:59.9".to_owned(), day(before)),
            ("00:00:00.1".to_owned(), day(after)),
        ]
    );
    // And with the partitions there, rows go straight into them.
    write_request_log(
        &db,
        "node-a",
        &[row("noon", midnight + Duration::hours(12))],
    )
    .await
    .unwrap();
    assert_eq!(partitions_of(&db).await[2].1, day(after));
    // Eight days later both days are past the retention.
    let report = run_maintenance(&db, &POLICY, midnight + Duration::days(8))
        .await
        .unwrap();
    assert!(report.partitions_dropped >= 2, "{report:?}");
    assert!(logged_ids(&db).await.is_empty());
}

async fn the_schedule_runs_maintenance_and_metrics_show_it(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            request_log: false,
            maintenance_interval_seconds: 1,
            ..Options::default()
        },
    )
    .await;
    let db = app.connect_db().await;
    write_request_log(
        &db,
        "node-a",
        &[
            row("old", Utc::now() - Duration::days(9)),
            row("new", Utc::now()),
        ],
    )
    .await
    .unwrap();
    let mut ids_now = logged_ids(&db).await;
    for _ in 0..100 {
        if ids_now.len() == 1 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        ids_now = logged_ids(&db).await;
    }
    assert_eq!(
        ids_now,
        ids(&["new"]),
        "the scheduled run applied the retention"
    );
    let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
    let mut wanted = vec![
        "request_log_maintenance_last_run_timestamp_seconds",
        "request_log_maintenance_runs_total{outcome=\"done\"}",
        "request_log_rows_removed_total{table=\"requests_log\"}",
        "request_log_partitions_dropped_total",
        "request_log_table_rows{table=\"requests_log\"}",
        "request_log_table_rows{table=\"request_stats\"}",
        "database_size_bytes",
    ];
    if postgres {
        wanted.extend([
            "request_log_table_bytes{table=\"requests_log\"}",
            "request_log_table_bytes{table=\"request_stats\"}",
            "request_log_partitions",
        ]);
    }
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = app.get("/metrics").await.text().await.unwrap();
        if wanted
            .iter()
            .all(|name| metrics.lines().any(|l| l.starts_with(&format!("{name} "))))
        {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    for name in wanted {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= 0.0, "{line}");
        if name.starts_with("request_log_partitions") && !name.contains("dropped") {
            assert!(value >= 4.0, "yesterday to two days ahead: {line}");
        }
    }
}

/// `at` as the database stores it, for a literal in SQL.
fn sql_time(db: &DatabaseConnection, at: DateTime<Utc>) -> String {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => at.to_rfc3339(),
        // What sqlx binds a timestamp as on SQLite, and so the text the column holds.
        _ => at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
    }
}

on_both_databases!(
    rows_older_than_the_retention_are_gone_after_a_maintenance_run,
    a_window_starting_inside_an_hour_adds_or_subtracts_its_minutes,
    windows_reaching_past_the_minute_rows_are_read_from_hour_rows,
    two_instances_maintaining_at_once_do_not_collide,
    inserts_succeed_across_a_day_boundary_without_a_partition,
    the_schedule_runs_maintenance_and_metrics_show_it,
);
