//! `/health` and `/server-info`: what the load balancer and a curious user see.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, Options, spawn_app, spawn_app_with};

async fn health_reports_healthy_with_the_database_check(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-server-id"], app.server_id.as_str());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["server_id"], app.server_id.as_str());
    assert_eq!(body["database"]["status"], "up");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());
}

async fn health_reports_healthy_with_writable_storage(backend: Backend) {
    let app = spawn_app(backend).await;
    let body: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(body["storage"]["status"], "writable", "{body}");
    assert!(body["storage"].get("problems").is_none(), "{body}");
}

/// The routes that need no database, each answered 200 whatever the database does.
const WITHOUT_DATABASE: [&str; 5] = [
    "/server-info",
    "/health",
    "/",
    "/openapi.json",
    "/dashboard",
];

async fn a_database_outage_of_any_length_keeps_the_instance_in_rotation(backend: Backend) {
    // Every instance shares the database: failing every /health would take all of them out
    // of rotation (what needs no database too) and keep them out after it returns. No timer
    // turns the answer into a 503: it is checked here over repeated checks.
    let app = spawn_app(backend).await;
    app.db().clone().close().await.unwrap();
    let started = Instant::now();
    let mut checks = 0;
    while checks < 3 || started.elapsed() < Duration::from_millis(1500) {
        checks += 1;
        let asked = Instant::now();
        let response = app.get("/health").await;
        assert!(asked.elapsed() < Duration::from_millis(1000));
        assert_eq!(response.status(), 200, "check {checks}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["database"]["status"], "down", "{body}");
        assert!(
            body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
        for path in WITHOUT_DATABASE {
            assert_eq!(
                app.get(path).await.status(),
                200,
                "{path} during the outage"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get("/api/users").await.status(), 503);
}

async fn health_gives_up_after_the_configured_timeout(backend: Backend) {
    // One pooled connection, held by the test: the health check cannot get it.
    let options = Options {
        max_connections: 1,
        health_timeout_ms: 300,
        request_log: false,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let held = sea_orm::TransactionTrait::begin(app.db()).await.unwrap();
    let started = Instant::now();
    let response = app.get("/health").await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "health blocked for {waited:?}"
    );
    // A database that does not answer is the shared database's trouble: degraded, not out.
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("300 ms"),
        "{body}"
    );
    drop(held);
}

async fn server_info_names_the_answering_instance(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/server-info").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-server-id"], app.server_id.as_str());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["server_id"], app.server_id.as_str());
    assert_eq!(body["pid"], std::process::id());
    assert!(body["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    for key in ["version", "started_at", "uptime_seconds", "request_time"] {
        assert!(!body[key].is_null(), "{key} missing in {body}");
    }
}

on_both_databases!(
    health_reports_healthy_with_the_database_check,
    health_reports_healthy_with_writable_storage,
    a_database_outage_of_any_length_keeps_the_instance_in_rotation,
    health_gives_up_after_the_configured_timeout,
    server_info_names_the_answering_instance,
);
