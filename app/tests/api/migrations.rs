//! Migrations: idempotent, and safe when every droplet starts at once.

use chrono::{Duration, DurationRound, TimeDelta, Utc};
use migration::{Alias, Migrator, MigratorTrait, Query};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement};

use crate::helpers::{Backend, fresh_database};

async fn migrations_apply_once_when_instances_start_together(backend: Backend) {
    let (url, _dir) = fresh_database(&backend).await;
    let instances = match backend {
        // SQLite is one local file with one migrator (the app or the local stack runner);
        // running it again must simply find nothing to do.
        Backend::Sqlite => 1,
        Backend::Postgres(_) => 4,
    };
    let runs = (0..instances).map(|_| app::migrate_database(&url));
    let results = futures_util::future::join_all(runs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    app::migrate_database(&url)
        .await
        .expect("a second run finds nothing to do");

    let db = &Database::connect(&url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM seaql_migrations".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "n").unwrap(),
        Migrator::migrations().len() as i64,
        "each migration recorded once"
    );
    for table in ["users", "requests_log", "request_stats"] {
        db.execute_unprepared(&format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap();
    }
}

async fn every_migration_rolls_back_and_applies_again(backend: Backend) {
    let (url, _dir) = fresh_database(&backend).await;
    app::migrate_database(&url).await.unwrap();
    let db = Database::connect(&url).await.unwrap();

    Migrator::down(&db, None).await.expect("every down runs");
    assert!(
        db.execute_unprepared("SELECT count(*) FROM requests_log")
            .await
            .is_err(),
        "requests_log survived the rollback"
    );
    app::migrate_database(&url)
        .await
        .expect("up again after down");
    assert_eq!(
        Migrator::get_pending_migrations(&db).await.unwrap().len(),
        0
    );
    db.execute_unprepared("SELECT count(*) FROM request_stats")
        .await
        .unwrap();
}

/// Inserts a user row as an older build would have, without the canonical key.
async fn insert_old_user(db: &sea_orm::DatabaseConnection, email: &str) {
    let id = uuid::Uuid::now_v7();
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "INSERT INTO users (id, name, email, created_at, updated_at, created_by) \
                 VALUES ($1, 'Old', $2, now(), now(), 'old')"
            }
            _ => {
                "INSERT INTO users (id, name, email, created_at, updated_at, created_by) \
                 VALUES (?, 'Old', ?, '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z', 'old')"
            }
        },
        [id.into(), email.into()],
    );
    db.execute_raw(statement).await.expect("an old user row");
}

async fn existing_addresses_get_their_canonical_key_and_collisions_stop_the_migration(
    backend: Backend,
) {
    let (url, _dir) = fresh_database(&backend).await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(4)).await.unwrap();
    insert_old_user(&db, "Bob@Example.com").await;
    // The old index compared lower(email) only: these two were different users.
    insert_old_user(&db, "café@example.com").await;
    insert_old_user(&db, "cafe\u{301}@example.com").await;

    let err = app::migrate_database(&url)
        .await
        .expect_err("colliding addresses stop the migration");
    let text = err.to_string();
    // Quoted and escaped, so the operator sees how the two differ.
    for needle in [
        "\"café@example.com\"",
        r#""cafe\u{301}@example.com""#,
        "delete all but one",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text:?}");
    }
    assert_eq!(
        Migrator::get_pending_migrations(&db).await.unwrap().len(),
        Migrator::migrations().len() - 4,
        "nothing applied past the four before it"
    );
    assert!(
        db.execute_unprepared("SELECT email_key FROM users")
            .await
            .is_err(),
        "the table was left as it was"
    );

    db.execute_unprepared("DELETE FROM users WHERE name = 'Old' AND email LIKE 'cafe%'")
        .await
        .unwrap();
    app::migrate_database(&url)
        .await
        .expect("migrates once resolved");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT email, email_key FROM users WHERE email = 'Bob@Example.com'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<String>("", "email_key").unwrap(),
        "bob@example.com"
    );
    let duplicate = db
        .execute_unprepared(
            "INSERT INTO users (id, name, email, email_key, created_at, updated_at, created_by) \
             VALUES ('0190c3a4-0000-7000-8000-000000000001', 'B', 'BOB@example.com', \
             'bob@example.com', '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z', 'x')",
        )
        .await;
    assert!(duplicate.is_err(), "the key is unique");
}

/// One number from `SELECT ... AS n`.
async fn number(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Log rows, rollup rows, and the rollup's requests, errors and latency.
async fn totals(db: &DatabaseConnection) -> [i64; 5] {
    let mut out = [0; 5];
    let queries = [
        "SELECT count(*) AS n FROM requests_log",
        "SELECT count(*) AS n FROM request_stats",
        "SELECT CAST(SUM(requests) AS BIGINT) AS n FROM request_stats",
        "SELECT CAST(SUM(errors) AS BIGINT) AS n FROM request_stats",
        "SELECT CAST(SUM(duration_sum_us) AS BIGINT) AS n FROM request_stats",
    ];
    for (slot, sql) in out.iter_mut().zip(queries) {
        *slot = number(db, sql).await;
    }
    out
}

async fn the_retention_migrations_keep_every_row_both_ways(backend: Backend) {
    let (url, _dir) = fresh_database(&backend).await;
    let db = Database::connect(&url).await.unwrap();
    // The migrations before the partitioned log, whatever came between.
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261202_000006_partition_requests_log")
        .expect("the partitioning migration is listed") as u32;
    Migrator::up(&db, Some(before)).await.unwrap();
    let backend = db.get_database_backend();
    let now = Utc::now();
    let mut log = Query::insert();
    log.into_table(Alias::new("requests_log")).columns(
        [
            "server_id",
            "method",
            "path",
            "status",
            "duration_us",
            "request_id",
            "created_at",
        ]
        .map(Alias::new),
    );
    for (i, days) in [3i64, 1, 0].into_iter().enumerate() {
        log.values_panic([
            "node-a".into(),
            "GET".into(),
            "/server-info".into(),
            200.into(),
            1000.into(),
            format!("r{i}").into(),
            (now - Duration::days(days)).into(),
        ]);
    }
    db.execute(&log).await.unwrap();
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap();
    let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap();
    let mut stats = Query::insert();
    stats.into_table(Alias::new("request_stats")).columns(
        [
            "server_id",
            "span_seconds",
            "bucket_start",
            "latency_bucket",
            "requests",
            "errors",
            "duration_sum_us",
        ]
        .map(Alias::new),
    );
    for (span, start) in [(60, minute), (3600, hour)] {
        stats.values_panic([
            "node-a".into(),
            span.into(),
            start.into(),
            10.into(),
            3.into(),
            0.into(),
            30.into(),
        ]);
        stats.values_panic([
            "node-a".into(),
            span.into(),
            start.into(),
            200.into(),
            1.into(),
            1.into(),
            5000.into(),
        ]);
    }
    db.execute(&stats).await.unwrap();
    for i in 0..3 {
        db.execute_unprepared(&format!(
            "INSERT INTO users (id, name, email, email_key, created_at, updated_at, created_by) \
             VALUES ('0190c0de-0000-7000-8000-00000000000{i}', 'U', 'u{i}@x.io', 'u{i}@x.io', \
             '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 'node-a')"
        ))
        .await
        .unwrap();
    }

    let after_up = |db: DatabaseConnection| async move {
        assert_eq!(
            totals(&db).await,
            [3, 2, 8, 2, 10_060],
            "one rollup row per span now"
        );
        let histogram: Vec<u8> = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT latency_histogram FROM request_stats WHERE span_seconds = 60",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "latency_histogram")
            .unwrap();
        assert_eq!(histogram, [10, 0, 0, 0, 3, 200, 0, 0, 0, 1]);
        assert_eq!(
            number(
                &db,
                "SELECT CAST(SUM(users) AS BIGINT) AS n FROM user_counts"
            )
            .await,
            3
        );
        if db.get_database_backend() == DatabaseBackend::Postgres {
            assert_eq!(
                number(
                    &db,
                    "SELECT count(*) AS n FROM requests_log \
                     WHERE tableoid = 'requests_log_default'::regclass"
                )
                .await,
                0,
                "every old row has its day's partition"
            );
        }
        db
    };
    app::migrate_database(&url).await.unwrap();
    let db = after_up(db).await;

    Migrator::down(&db, Some(Migrator::migrations().len() as u32 - before))
        .await
        .unwrap();
    assert_eq!(
        totals(&db).await,
        [3, 4, 8, 2, 10_060],
        "a rollup row per bucket again"
    );
    assert_eq!(
        number(
            &db,
            "SELECT CAST(SUM(requests) AS BIGINT) AS n FROM request_stats WHERE latency_bucket = 10"
        )
        .await,
        6
    );
    assert!(
        db.execute_unprepared("SELECT count(*) FROM user_counts")
            .await
            .is_err()
    );
    if backend == DatabaseBackend::Postgres {
        // The plain table numbers new rows after the old ones.
        assert_eq!(
            number(
                &db,
                "WITH r AS (INSERT INTO requests_log (server_id, method, path, status, duration_us, \
                 request_id, created_at) VALUES ('a', 'GET', '/', 200, 1, 'x', now()) RETURNING id) \
                 SELECT id AS n FROM r"
            )
            .await,
            4
        );
        db.execute_unprepared("DELETE FROM requests_log WHERE request_id = 'x'")
            .await
            .unwrap();
    }
    app::migrate_database(&url).await.unwrap();
    after_up(db).await;
}

on_both_databases!(
    existing_addresses_get_their_canonical_key_and_collisions_stop_the_migration,
    migrations_apply_once_when_instances_start_together,
    every_migration_rolls_back_and_applies_again,
    the_retention_migrations_keep_every_row_both_ways,
);
