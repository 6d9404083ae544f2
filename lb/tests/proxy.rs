//! End-to-end tests of the load balancer over real sockets on 127.0.0.1.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use lb::{BackendState, StickyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn exact_round_robin_across_three_backends() {
    let b = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let lb = start_lb(fast_config(&[&b[0], &b[1], &b[2]])).await;
    let c = client();
    let mut ids = Vec::new();
    for _ in 0..9 {
        let (status, body) = get_json(&c, &lb, "/").await;
        assert_eq!(status, 200);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for w in ids.chunks(3) {
        let mut sorted = w.to_vec();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "{ids:?}");
    }
    assert_eq!(ids[0..3], ids[3..6], "{ids:?}");
    assert_eq!(ids[3..6], ids[6..9], "{ids:?}");
    for s in lb.status() {
        assert_eq!(s.requests, 3);
        assert_eq!(s.state, BackendState::Up);
    }
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn killed_backend_costs_no_errors_and_comes_back() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let k = TestBackend::start("k").await;
    let lb = start_lb(fast_config(&[&a, &b, &k])).await;
    let c = client();
    // Warm pooled connections to every backend, including the one about to die.
    for _ in 0..6 {
        assert_eq!(get_json(&c, &lb, "/").await.0, 200);
    }
    let (k_addr, k_seen) = k.kill().await;
    let killed_at = Instant::now();
    let mut errors = 0;
    for _ in 0..60 {
        let (status, _) = get_json(&c, &lb, "/").await;
        if status != 200 {
            errors += 1;
        }
        if backend_status(&lb, "k").state == BackendState::Down {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(errors, 0, "a dead backend must not cost GETs errors");
    wait_until(Duration::from_secs(2), || {
        backend_status(&lb, "k").state == BackendState::Down
    })
    .await;
    let st = backend_status(&lb, "k");
    assert!(st.consecutive_failures >= 3, "{st:?}");
    assert!(st.last_error.is_some());
    // Three failed checks 100 ms apart: well under a second, but not on the first failure.
    assert!(
        killed_at.elapsed() >= Duration::from_millis(150),
        "{:?}",
        killed_at.elapsed()
    );

    let k = TestBackend::start_on("k", k_addr, k_seen).await;
    let up_at = Instant::now();
    wait_until(Duration::from_secs(2), || {
        backend_status(&lb, "k").state == BackendState::Up
    })
    .await;
    assert!(backend_status(&lb, "k").consecutive_successes >= 2);
    assert!(up_at.elapsed() >= Duration::from_millis(50));
    let before = k.seen.hits.load(Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(get_json(&c, &lb, "/").await.0, 200);
    }
    assert_eq!(k.seen.hits.load(Ordering::SeqCst) - before, 2);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn new_backends_start_down_and_get_nothing_until_healthy() {
    let a = TestBackend::start("a").await;
    let n = TestBackend::start("n").await;
    n.seen.healthy.store(false, Ordering::SeqCst);
    let mut cfg = fast_config(&[&a, &n]);
    cfg.health_check.interval = Duration::from_millis(150);
    let lb = lb::LoadBalancer::bind(cfg).await.unwrap();
    // Before any backend passed two checks, nothing is in rotation.
    assert!(lb.status().iter().all(|s| s.state == BackendState::Down));
    let c = client();
    let (status, body) = get_json(&c, &lb, "/").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_healthy_backend");

    wait_until(Duration::from_secs(2), || {
        backend_status(&lb, "a").state == BackendState::Up
    })
    .await;
    for _ in 0..6 {
        let (status, body) = get_json(&c, &lb, "/").await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], "a");
    }
    assert_eq!(n.seen.hits.load(Ordering::SeqCst), 0);

    n.seen.healthy.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(2), || {
        backend_status(&lb, "n").state == BackendState::Up
    })
    .await;
    for _ in 0..4 {
        assert_eq!(get_json(&c, &lb, "/").await.0, 200);
    }
    assert_eq!(n.seen.hits.load(Ordering::SeqCst), 2);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn all_down_answers_503_json() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let lb = start_lb(fast_config(&[&a, &b])).await;
    a.seen.healthy.store(false, Ordering::SeqCst);
    b.seen.healthy.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(2), || {
        lb.status().iter().all(|s| s.state == BackendState::Down)
    })
    .await;
    let res = client().get(url(&lb, "/")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_backend");
    assert!(body["error"]["message"].is_string());
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn supervisor_can_mark_a_backend_down() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let mut cfg = fast_config(&[&a, &b]);
    cfg.health_check.interval = Duration::from_secs(5);
    cfg.health_check.healthy_threshold = 1;
    let lb = start_lb(cfg).await;
    assert!(lb.mark_down("a"));
    assert!(!lb.mark_down("nope"));
    assert_eq!(backend_status(&lb, "a").state, BackendState::Down);
    let c = client();
    for _ in 0..4 {
        assert_eq!(get_json(&c, &lb, "/").await.1["id"], "b");
    }
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn sticky_cookie_pins_is_stripped_and_repins() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let mut cfg = fast_config(&[&a, &b]);
    cfg.sticky = Some(StickyConfig {
        cookie_name: "DO-LB".into(),
        ttl: Duration::from_secs(300),
    });
    let lb = start_lb(cfg).await;
    let c = client();

    let res = c.get(url(&lb, "/")).send().await.unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("DO-LB="), "{set}");
    assert!(set.contains("Max-Age=300") && set.contains("Path=/") && set.contains("HttpOnly"));
    let first: serde_json::Value = res.json().await.unwrap();
    let pinned = first["id"].as_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();

    for _ in 0..5 {
        let res = c
            .get(url(&lb, "/"))
            .header("cookie", format!("theme=dark; {cookie}; lang=en"))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["id"], pinned.as_str());
        assert_eq!(body["headers"]["cookie"], "theme=dark; lang=en");
    }
    // Only the load balancer's cookie: the backend gets no Cookie header at all.
    let body: serde_json::Value = c
        .get(url(&lb, "/"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["headers"].get("cookie").is_none(), "{body}");

    lb.mark_down(&pinned);
    let res = c
        .get(url(&lb, "/"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    let new_set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_ne!(body["id"], pinned.as_str());
    assert_ne!(new_set.split(';').next().unwrap(), cookie);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn forwarding_headers_reach_the_backend() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let c = client();
    let port = lb.local_addr().port().to_string();

    let (_, body) = get_json(&c, &lb, "/x?y=1").await;
    let h = &body["headers"];
    assert_eq!(body["path"], "/x?y=1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], port.as_str());
    let id1 = h["x-request-id"].as_str().unwrap().to_owned();
    assert!(id1.len() >= 16, "{id1}");
    assert_eq!(h["host"], lb.local_addr().to_string());

    let (_, body) = get_json(&c, &lb, "/").await;
    assert_ne!(body["headers"]["x-request-id"], id1.as_str());

    let body: serde_json::Value = c
        .get(url(&lb, "/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "mine-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["headers"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(body["headers"]["x-request-id"], "mine-1");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let res = client()
        .get(url(&lb, "/"))
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .unwrap();
    for h in ["x-backend-hop", "keep-alive"] {
        assert!(!res.headers().contains_key(h), "{h} leaked to the client");
    }
    let body: serde_json::Value = res.json().await.unwrap();
    let h = body["headers"].as_object().unwrap();
    for name in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(!h.contains_key(name), "{name} reached the backend: {h:?}");
    }
    assert_eq!(h["x-end-to-end"], "kept");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn slow_backend_gives_504_json_within_the_timeout() {
    let a = TestBackend::start("a").await;
    let mut cfg = fast_config(&[&a]);
    cfg.response_timeout = Duration::from_millis(300);
    let lb = start_lb(cfg).await;
    let started = Instant::now();
    let res = client()
        .get(url(&lb, "/sleep?ms=3000"))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(res.status(), 504);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "gateway_timeout");
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(1),
        "{elapsed:?}"
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let addr = lb.local_addr();
    let c = client();
    let u = url(&lb, "/sleep?ms=500");
    let inflight = tokio::spawn(async move { c.get(u).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    lb.shutdown(Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(inflight.await.unwrap().unwrap(), 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn shutdown_grace_is_bounded() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let c = client();
    let u = url(&lb, "/sleep?ms=4000");
    let inflight = tokio::spawn(async move { c.get(u).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    lb.shutdown(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        inflight.await.unwrap().is_err(),
        "the cut-off request must fail"
    );
}

#[tokio::test]
async fn post_is_not_replayed_after_reaching_a_backend() {
    let bad = TestBackend::start_hangup("bad").await;
    let good = TestBackend::start("good").await;
    let lb = start_lb(fast_config(&[&bad, &good])).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let res = c
            .post(url(&lb, "/items"))
            .header("content-type", "application/json")
            .body(r#"{"name":"x"}"#)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if status == 502 {
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "bad_gateway");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 502]);
    assert_eq!(bad.seen.posts.load(Ordering::SeqCst), 1);
    assert_eq!(
        good.seen.posts.load(Ordering::SeqCst),
        1,
        "the failed POST was replayed"
    );

    // The same failure on an idempotent GET moves on to the other backend.
    for _ in 0..2 {
        let (status, body) = get_json(&c, &lb, "/").await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], "good");
    }
    assert_eq!(bad.seen.hits.load(Ordering::SeqCst), 2);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn post_is_retried_after_a_refused_connect() {
    post_after_a_refused_connect(b"{}".to_vec()).await;
}

#[tokio::test]
async fn oversized_body_gets_413_json() {
    let a = TestBackend::start("a").await;
    let mut cfg = fast_config(&[&a]);
    cfg.max_request_body_bytes = 1024;
    let lb = start_lb(cfg).await;
    let c = client();
    let res = c
        .post(url(&lb, "/"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(a.seen.hits.load(Ordering::SeqCst), 0);

    // Chunked bodies have no Content-Length: the limit applies while reading.
    let mut s = tokio::net::TcpStream::connect(lb.local_addr())
        .await
        .unwrap();
    let chunk = "x".repeat(2000);
    let req = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    let res = c
        .post(url(&lb, "/"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn idle_client_connections_are_closed() {
    let a = TestBackend::start("a").await;
    let mut cfg = fast_config(&[&a]);
    cfg.client_idle_timeout = Duration::from_millis(300);
    let lb = start_lb(cfg).await;
    let mut s = tokio::net::TcpStream::connect(lb.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("idle connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_configs_are_rejected() {
    let mut cfg = lb::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        sticky: Some(StickyConfig {
            cookie_name: "x".into(),
            ttl: Duration::from_secs(1),
        }),
        ..lb::Config::default()
    };
    assert!(matches!(
        lb::LoadBalancer::bind(cfg.clone()).await,
        Err(lb::Error::Config(_))
    ));
    cfg.sticky = None;
    let addr = "127.0.0.1:1".parse().unwrap();
    cfg.backends = vec![
        lb::BackendConfig::new("a", addr),
        lb::BackendConfig::new("a", addr),
    ];
    assert!(matches!(
        lb::LoadBalancer::bind(cfg).await,
        Err(lb::Error::Config(_))
    ));
}

#[tokio::test]
async fn dedicated_io_threads_share_the_rotation_and_drain_on_shutdown() {
    let b = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let mut config = fast_config(&[&b[0], &b[1], &b[2]]);
    config.io_threads = 2;
    let lb = start_lb(config).await;
    // Separate clients, so connections land on both I/O threads.
    let mut ids = Vec::new();
    for _ in 0..9 {
        let (status, body) = get_json(&client(), &lb, "/").await;
        assert_eq!(status, 200);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for w in ids.chunks(3) {
        let mut sorted = w.to_vec();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "{ids:?}");
    }
    let addr = lb.local_addr();
    let c = client();
    let u = url(&lb, "/sleep?ms=400");
    let inflight = tokio::spawn(async move { c.get(u).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(150)).await;
    lb.shutdown(Duration::from_secs(3)).await;
    assert_eq!(inflight.await.unwrap().unwrap(), 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn backends_added_at_runtime_wait_for_health_and_removed_ones_get_nothing_more() {
    let a = TestBackend::start("a").await;
    let lb = start_lb(fast_config(&[&a])).await;
    let b = TestBackend::start("b").await;
    b.seen.healthy.store(false, Ordering::SeqCst);
    lb.add_backend(b.config()).unwrap();
    assert!(lb.add_backend(b.config()).is_err(), "ids stay unique");
    let c = client();
    for _ in 0..6 {
        assert_eq!(get_json(&c, &lb, "/").await.1["id"], "a");
    }
    assert_eq!(b.seen.hits.load(Ordering::SeqCst), 0, "down until healthy");

    b.seen.healthy.store(true, Ordering::SeqCst);
    let lb2 = lb.clone();
    wait_until(Duration::from_secs(3), move || {
        backend_status(&lb2, "b").state == BackendState::Up
    })
    .await;
    assert!(lb.remove_backend("a"));
    assert!(!lb.remove_backend("a"), "gone already");
    let a_hits = a.seen.hits.load(Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(get_json(&c, &lb, "/").await.1["id"], "b");
    }
    assert_eq!(a.seen.hits.load(Ordering::SeqCst), a_hits);
    let ids: Vec<String> = lb.status().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["b"]);
}

#[tokio::test]
async fn a_draining_backend_leaves_on_its_first_check_only_when_asked() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let mut config = fast_config(&[&a, &b]);
    config.health_check.interval = Duration::from_millis(200);
    config.health_check.leave_on_draining = true;
    let lb = start_lb(config).await;
    a.seen.draining.store(true, Ordering::SeqCst);
    // A plain failure still needs the threshold's three checks.
    b.seen.healthy.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(3), || {
        backend_status(&lb, "a").state == BackendState::Down
    })
    .await;
    let st = backend_status(&lb, "a");
    assert!(st.consecutive_failures < 3, "{st:?}");
    assert_eq!(backend_status(&lb, "b").state, BackendState::Up);
    wait_until(Duration::from_secs(3), || {
        backend_status(&lb, "b").state == BackendState::Down
    })
    .await;
    assert!(backend_status(&lb, "b").consecutive_failures >= 3);

    // Without the option, `draining` is one more failed check, as on DigitalOcean.
    let c = TestBackend::start("c").await;
    let mut config = fast_config(&[&c]);
    config.health_check.interval = Duration::from_millis(200);
    let lb = start_lb(config).await;
    c.seen.draining.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(3), || {
        backend_status(&lb, "c").consecutive_failures >= 1
    })
    .await;
    assert_eq!(backend_status(&lb, "c").state, BackendState::Up);
}

#[tokio::test]
async fn a_frozen_backend_holds_few_requests_with_least_outstanding_and_is_ejected() {
    const CLIENTS: usize = 12;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let f = TestBackend::start("f").await;
    let mut config = fast_config(&[&a, &b, &f]);
    // Health checks alone would take seconds: the ejection must do it.
    config.health_check.interval = Duration::from_secs(5);
    config.health_check.healthy_threshold = 1;
    config.response_timeout = Duration::from_millis(500);
    config.balance = lb::Balance::LeastOutstanding;
    config.eject_after_timeouts = 2;
    let lb = start_lb(config).await;
    f.seen.frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (c, url) = (client(), url(&lb, "/"));
        clients.spawn(async move {
            let mut statuses = Vec::new();
            while started.elapsed() < Duration::from_millis(1500) {
                let r = c.get(&url).send().await.unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = clients.join_all().await.into_iter().flatten().collect();
    let timeouts = statuses.iter().filter(|&&s| s == 504).count();
    // About a third of the clients, those it held when it froze (round robin: all of them).
    assert!(timeouts <= CLIENTS / 2, "{timeouts} timeouts");
    assert!(statuses.iter().all(|&s| s == 200 || s == 504));
    assert!(
        statuses.len() - timeouts > 200,
        "the others kept serving: {} answers",
        statuses.len()
    );
    let st = backend_status(&lb, "f");
    assert_eq!(st.state, BackendState::Down, "{st:?}");
    assert!(st.last_error.unwrap().contains("ejected"));
}
