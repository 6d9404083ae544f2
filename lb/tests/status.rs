//! The load balancer's status page: answered by the balancer itself, it shows every backend's rotation state, its recent traffic, and when it left and rejoined.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn the_status_page_shows_traffic_per_backend_and_a_backend_leaving_and_rejoining() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let mut config = fast_config(&[&a, &b]);
    config.status_path = Some("/_lb/status".into());
    let lb = start_lb(config).await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(get_json(&c, &lb, "/x").await.0, 200);
    }

    let (status, report) = get_json(&c, &lb, "/_lb/status").await;
    assert_eq!(status, 200);
    assert_eq!(
        a.seen.hits.load(Ordering::SeqCst) + b.seen.hits.load(Ordering::SeqCst),
        10,
        "the status page is not proxied"
    );
    let backends = report["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    for view in backends {
        assert_eq!(view["state"], "up");
        assert_eq!(view["in_rotation"], true);
        assert_eq!(view["requests"], 5);
        let series = view["series"].as_array().unwrap();
        assert_eq!(series.len(), lb::BUCKETS);
        let counted: u64 = series.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
        assert_eq!(counted, 5, "{view}");
        assert!(
            series
                .iter()
                .any(|p| p["p95_ms"].as_f64().is_some_and(|ms| ms > 0.0))
        );
    }
    assert_eq!(report["step_seconds"], lb::STEP_SECONDS);

    // b goes away: the page says so, with the reason, and so again when it is back.
    let (addr, seen) = b.kill().await;
    let lb2 = lb.clone();
    wait_until(Duration::from_secs(3), move || {
        backend_status(&lb2, "b").state == lb::BackendState::Down
    })
    .await;
    let b = TestBackend::start_on("b", addr, seen).await;
    let lb2 = lb.clone();
    wait_until(Duration::from_secs(3), move || {
        backend_status(&lb2, "b").state == lb::BackendState::Up
    })
    .await;
    let (_, report) = get_json(&c, &lb, "/_lb/status").await;
    let changes: Vec<(String, String)> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["backend"] == "b")
        .map(|e| {
            (
                e["change"].as_str().unwrap().to_owned(),
                e["reason"].to_string(),
            )
        })
        .collect();
    let kinds: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["added", "up", "down", "up"], "{changes:?}");
    assert_ne!(changes[2].1, "null", "a backend going down says why");
    drop(b);
}

#[tokio::test]
async fn without_a_status_path_every_path_is_proxied() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let (status, body) = get_json(&client(), &lb, "/_lb/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "a", "{body}");
}
