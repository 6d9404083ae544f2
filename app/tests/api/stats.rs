//! `/api/stats`: the cluster's request distribution, read from the shared database.

use std::sync::Arc;

use app::testing::{LogRecord, write_request_log};
use chrono::{Duration, Utc};
use serde_json::Value;

use crate::helpers::{Backend, Options, error_code, spawn_app, spawn_app_with, spawn_unlogged_app};

fn record(status: u16, duration_us: u64, minutes_ago: i64) -> LogRecord {
    LogRecord {
        method: "GET",
        route: "/server-info",
        status,
        duration_us,
        client_ip: None,
        request_id: Arc::from("stats-test"),
        at: Utc::now() - Duration::minutes(minutes_ago),
    }
}

async fn stats_split_requests_per_server_with_percentages_adding_to_100(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let db = app.db();
    let a: Vec<_> = (0..4)
        .map(|i| record(if i == 0 { 503 } else { 200 }, 1_000, 0))
        .collect();
    let b: Vec<_> = (0..2).map(|_| record(200, 3_000, 0)).collect();
    let c = vec![record(200, 2_000, 0)];
    write_request_log(db, "node-a", &a).await.unwrap();
    write_request_log(db, "node-b", &b).await.unwrap();
    write_request_log(db, "node-c", &c).await.unwrap();
    app.create_user("Ann", "ann@example.com").await;

    let response = app.get("/api/stats").await;
    assert_eq!(response.status(), 200);
    let stats: Value = response.json().await.unwrap();
    assert_eq!(stats["window"], "all");
    assert_eq!(stats["total_requests"], 7);
    assert_eq!(stats["total_users"], 1);
    assert_eq!(stats["server_id"], app.server_id.as_str());
    let servers = stats["servers"].as_array().unwrap();
    let ids: Vec<&str> = servers
        .iter()
        .map(|s| s["server_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node-a", "node-b", "node-c"], "busiest first");
    let percents: Vec<f64> = servers
        .iter()
        .map(|s| s["percent"].as_f64().unwrap())
        .collect();
    assert_eq!(percents, [57.14, 28.57, 14.29]);
    assert!((percents.iter().sum::<f64>() - 100.0).abs() < 1e-9);
    assert_eq!(servers[0]["requests"], 4);
    assert_eq!(servers[0]["errors"], 1);
    assert_eq!(servers[0]["error_rate"], 0.25);
    assert_eq!(servers[0]["avg_latency_ms"], 1.0);
    assert_eq!(servers[1]["avg_latency_ms"], 3.0);
    let p95 = servers[1]["p95_latency_ms"].as_f64().unwrap();
    assert!((p95 - 3.0).abs() < 0.3, "p95 {p95}");
    assert_eq!(servers[2]["errors"], 0);
}

async fn a_window_counts_only_recent_requests(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let db = app.db();
    let rows = [
        record(200, 500, 0),
        record(200, 500, 30),
        record(200, 500, 120),
        record(500, 500, 2000),
    ];
    write_request_log(db, "node-a", &rows).await.unwrap();

    let hour: Value = app.get("/api/stats?window=1h").await.json().await.unwrap();
    assert_eq!(hour["window"], "1h");
    assert!(hour["since"].is_string());
    assert_eq!(hour["total_requests"], 2);
    let day: Value = app.get("/api/stats?window=24h").await.json().await.unwrap();
    assert_eq!(day["total_requests"], 3);
    assert_eq!(day["servers"][0]["errors"], 0);
    let all: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!(all["total_requests"], 4);
    assert_eq!(all["servers"][0]["errors"], 1);

    for bad in ["window=1y", "window=abc", "window=0h", "span=1h"] {
        let response = app.get(&format!("/api/stats?{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(error_code(response, &app.server_id).await, "invalid_query");
    }
}

async fn stats_count_the_requests_this_server_answered(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..10 {
        app.get("/server-info").await;
    }
    app.wait_for_rows("requests_log", 10).await;
    let stats: Value = app.get("/api/stats?window=5m").await.json().await.unwrap();
    assert_eq!(stats["total_requests"], 10);
    assert_eq!(stats["servers"][0]["server_id"], app.server_id.as_str());
    assert_eq!(stats["servers"][0]["percent"], 100.0);
}

/// An app that caches stats answers for `cache_ms` and logs none of its own requests, with
/// one request logged.
async fn spawn_caching_app(backend: Backend, cache_ms: u64) -> crate::helpers::TestApp {
    let options = Options {
        request_log: false,
        stats_cache_ms: cache_ms,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    write_request_log(app.db(), "node-a", &[record(200, 500, 0)])
        .await
        .unwrap();
    app
}

async fn stats_answers_are_reused_for_the_cache_period(backend: Backend) {
    let app = spawn_caching_app(backend, 600).await;
    let first: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!(first["total_requests"], 1);
    write_request_log(app.db(), "node-a", &[record(200, 500, 0)])
        .await
        .unwrap();
    let cached: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!(cached, first, "answered from the cache");
    let other_window: Value = app.get("/api/stats?window=1h").await.json().await.unwrap();
    assert_eq!(
        other_window["total_requests"], 2,
        "each window has its own entry"
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let fresh: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!(fresh["total_requests"], 2);
    assert_ne!(fresh["generated_at"], first["generated_at"]);
}

async fn a_popular_window_stays_cached_however_many_others_are_asked_for(backend: Backend) {
    let app = spawn_caching_app(backend, 600_000).await;
    let get = |query: String| {
        let app = &app;
        async move {
            let response = app.get(&format!("/api/stats?{query}")).await;
            assert_eq!(response.status(), 200, "{query}");
            response.json::<Value>().await.unwrap()
        }
    };
    // More distinct windows than the cache has room for, all before the popular one.
    for minutes in 1..=70 {
        get(format!("window={minutes}m")).await;
    }
    let first = get("window=24h".into()).await;
    assert_eq!(first["total_requests"], 1);
    write_request_log(app.db(), "node-a", &[record(200, 500, 0)])
        .await
        .unwrap();
    for minutes in 71..=140 {
        get(format!("window={minutes}m")).await;
        let again = get("window=24h".into()).await;
        assert_eq!(again, first, "24h recomputed after {minutes} other windows");
    }
    // The same window spelled otherwise is the same entry, named as asked.
    let spelled = get("window=1440m".into()).await;
    assert_eq!(spelled["window"], "1440m");
    assert_eq!(spelled["generated_at"], first["generated_at"]);
    assert_eq!(spelled["total_requests"], 1);
}

async fn a_backlog_of_5000_rows_is_written_as_one_batch(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let rows: Vec<_> = (0..5000)
        .map(|i| record(if i % 10 == 0 { 500 } else { 200 }, 300 + i, 0))
        .collect();
    write_request_log(app.db(), "node-a", &rows).await.unwrap();
    let db = app.connect_db().await;
    assert_eq!(app.count(&db, "requests_log").await, 5000);
    let stats: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!(stats["total_requests"], 5000);
    assert_eq!(stats["servers"][0]["errors"], 500);
}

async fn total_users_follows_concurrent_creates_and_deletes(backend: Backend) {
    let app = spawn_unlogged_app(backend).await;
    let creates = (0..40).map(|i| {
        let app = &app;
        async move {
            app.create_user(&format!("User {i}"), &format!("u{i}@example.com"))
                .await
        }
    });
    let users = futures_util::future::join_all(creates).await;
    let deletes = users.iter().take(15).map(|user| {
        let app = &app;
        async move {
            let id = user["id"].as_str().unwrap();
            let response = app.delete(&format!("/api/users/{id}")).await;
            assert_eq!(response.status(), 204);
        }
    });
    futures_util::future::join_all(deletes).await;
    // A failed insert (duplicate email) must not count either.
    let taken = app
        .post_json(
            "/api/users",
            &serde_json::json!({"name": "Again", "email": "U20@example.com"}),
        )
        .await;
    assert_eq!(taken.status(), 409);

    let stats: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!(stats["total_users"], 25);
    let listed: Value = app.get("/api/users?limit=1").await.json().await.unwrap();
    assert_eq!(listed["total"], 25, "the counter agrees with count(*)");
}

on_both_databases!(
    total_users_follows_concurrent_creates_and_deletes,
    a_backlog_of_5000_rows_is_written_as_one_batch,
    a_popular_window_stays_cached_however_many_others_are_asked_for,
    stats_answers_are_reused_for_the_cache_period,
    stats_split_requests_per_server_with_percentages_adding_to_100,
    a_window_counts_only_recent_requests,
    stats_count_the_requests_this_server_answered,
);
