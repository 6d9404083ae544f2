//! An unmigrated database: 503s that say what to run, log rows kept, recovery once migrated.

use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, error_code, spawn_app_with};

async fn an_unmigrated_database_answers_503_until_migrated_and_loses_no_log_rows(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            run_migrations: false,
            ..Options::default()
        },
    )
    .await;

    let health = app.get("/health").await;
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"]["status"], "up");
    let pending = body["database"]["pending_migrations"].as_array().unwrap();
    assert_eq!(pending.len(), Migrator::migrations().len());
    let reason = body["reason"].as_str().unwrap();
    for needle in [
        "m20261129_000001_create_users",
        "m20261129_000004_drop_request_id_index",
        "cargo run -p migration -- up",
        "APP__DATABASE__RUN_MIGRATIONS=true",
    ] {
        assert!(reason.contains(needle), "{needle} missing from {reason:?}");
    }

    let user = json!({"name": "Ann", "email": "ann@example.com"});
    let id = uuid::Uuid::now_v7();
    for response in [
        app.get("/api/users").await,
        app.post_json("/api/users", &user).await,
        app.get(&format!("/api/users/{id}")).await,
        app.put_json(&format!("/api/users/{id}"), &user).await,
        app.delete(&format!("/api/users/{id}")).await,
        app.get("/api/stats?window=1h").await,
    ] {
        let url = response.url().to_string();
        assert_eq!(response.status(), 503, "{url}");
        assert_eq!(
            error_code(response, &app.server_id).await,
            "schema_not_migrated",
            "{url}"
        );
    }
    // What needs no tables still works, and is logged later.
    for _ in 0..3 {
        assert_eq!(app.get("/server-info").await.status(), 200);
    }

    app::migrate_database(&app.database_url)
        .await
        .expect("migrations apply");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/health").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "still unhealthy 10 s after migrating"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.post_json("/api/users", &user).await.status(), 201);
    assert_eq!(
        app.wait_for_rows("requests_log WHERE path = '/server-info'", 3)
            .await,
        3,
        "rows queued before the migration were written after it"
    );
    assert_eq!(
        app.wait_for_rows(
            "requests_log WHERE status = 503 AND path = '/api/users/:id'",
            3
        )
        .await,
        3
    );
    assert_eq!(app.probe.request_log_dropped(), 0);
}

on_both_databases!(an_unmigrated_database_answers_503_until_migrated_and_loses_no_log_rows);
