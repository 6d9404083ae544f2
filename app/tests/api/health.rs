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

async fn health_answers_503_when_the_database_is_gone(backend: Backend) {
    let options = Options {
        outage_grace_seconds: 0,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    app.db().clone().close().await.unwrap();
    let response = app.get("/health").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"]["status"], "down");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

async fn health_gives_up_after_the_configured_timeout(backend: Backend) {
    // One pooled connection, held by the test: the health check cannot get it.
    let options = Options {
        max_connections: 1,
        health_timeout_ms: 300,
        outage_grace_seconds: 0,
        request_log: false,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let held = sea_orm::TransactionTrait::begin(app.db()).await.unwrap();
    let started = Instant::now();
    let response = app.get("/health").await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(
        waited < Duration::from_millis(1500),
        "health blocked for {waited:?}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("300 ms"),
        "{body}"
    );
    drop(held);
}

async fn a_young_database_outage_keeps_the_instance_in_rotation_as_degraded(backend: Backend) {
    // Every instance shares the database: failing every /health would take all of them out
    // of rotation and keep them out after the database returns.
    let app = spawn_app(backend).await;
    app.db().clone().close().await.unwrap();
    let started = Instant::now();
    let response = app.get("/health").await;
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["database"]["status"], "down");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    // Requests that need no database are still served.
    assert_eq!(app.get("/server-info").await.status(), 200);
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
    health_answers_503_when_the_database_is_gone,
    health_gives_up_after_the_configured_timeout,
    a_young_database_outage_keeps_the_instance_in_rotation_as_degraded,
    server_info_names_the_answering_instance,
);
