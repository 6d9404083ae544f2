//! `requests_log`: a row per request, written off the request path, none lost at shutdown.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};

use crate::helpers::{Backend, Options, TestApp, spawn_app, spawn_app_with};

async fn each_request_is_logged_with_server_route_status_and_duration(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("Ann", "ann@example.com").await;
    let id = user["id"].as_str().unwrap();
    app.client
        .get(app.url(&format!("/api/users/{id}")))
        .header("x-request-id", "req-log-1")
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
        .send()
        .await
        .unwrap();
    app.get("/api/users/not-a-uuid").await;

    assert!(app.wait_for_rows("requests_log", 3).await >= 3);
    let db = app.connect_db().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT server_id, method, path, status, duration_us, client_ip FROM requests_log \
             WHERE request_id = 'req-log-1'"
                .to_owned(),
        ))
        .await
        .unwrap()
        .expect("the request with id req-log-1 was logged");
    assert_eq!(
        row.try_get::<String>("", "server_id").unwrap(),
        app.server_id
    );
    assert_eq!(row.try_get::<String>("", "method").unwrap(), "GET");
    assert_eq!(row.try_get::<String>("", "path").unwrap(), "/api/users/:id");
    assert_eq!(row.try_get::<i32>("", "status").unwrap(), 200);
    assert!(row.try_get::<i64>("", "duration_us").unwrap() > 0);
    assert_eq!(
        row.try_get::<Option<String>>("", "client_ip")
            .unwrap()
            .as_deref(),
        Some("203.0.113.9")
    );

    let where_400 = "requests_log WHERE status = 400 AND path = '/api/users/:id'";
    assert_eq!(app.count(&db, where_400).await, 1);
    assert_eq!(
        app.count(&db, "requests_log WHERE method = 'POST' AND status = 201")
            .await,
        1
    );
}

/// The client IP each request was logged with, by request id.
async fn logged_ips(app: &TestApp, sent: &[(&str, &[&str])]) -> Vec<String> {
    for (id, forwarded) in sent {
        let mut request = app
            .client
            .get(app.url("/server-info"))
            .header("x-request-id", *id);
        for line in *forwarded {
            request = request.header("x-forwarded-for", *line);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    let rows = "requests_log WHERE request_id LIKE 'ip-%'";
    assert_eq!(
        app.wait_for_rows(rows, sent.len() as i64).await,
        sent.len() as i64
    );
    let db = app.connect_db().await;
    let mut ips = Vec::new();
    for (id, _) in sent {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT client_ip FROM requests_log WHERE request_id = '{id}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        ips.push(row.try_get::<String>("", "client_ip").unwrap());
    }
    ips
}

async fn the_client_ip_is_what_the_load_balancer_saw_not_what_the_client_claims(backend: Backend) {
    let app = spawn_app(backend.clone()).await;
    let ips = logged_ips(
        &app,
        &[
            // The load balancer appends the address it got the request from.
            ("ip-spoofed", &["6.6.6.6, 203.0.113.9"]),
            ("ip-garbage-first", &["not-an-ip, 198.51.100.7"]),
            ("ip-two-lines", &["6.6.6.6", "203.0.113.10"]),
            ("ip-garbage-last", &["198.51.100.8, garbage"]),
            ("ip-none", &[]),
        ],
    )
    .await;
    assert_eq!(
        ips,
        [
            "203.0.113.9",
            "198.51.100.7",
            "203.0.113.10",
            "127.0.0.1",
            "127.0.0.1"
        ]
    );

    let two_proxies = spawn_app_with(
        backend.clone(),
        Options {
            trusted_proxy_hops: 2,
            ..Options::default()
        },
    )
    .await;
    let ips = logged_ips(
        &two_proxies,
        &[
            ("ip-two", &["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
            ("ip-short", &["10.0.0.2"]),
        ],
    )
    .await;
    assert_eq!(ips, ["198.51.100.7", "127.0.0.1"]);

    let none_trusted = spawn_app_with(
        backend,
        Options {
            trusted_proxy_hops: 0,
            ..Options::default()
        },
    )
    .await;
    let ips = logged_ips(&none_trusted, &[("ip-peer", &["203.0.113.9"])]).await;
    assert_eq!(ips, ["127.0.0.1"]);
}

async fn health_checks_are_logged_only_when_configured(backend: Backend) {
    let quiet = spawn_app(backend.clone()).await;
    quiet.get("/health").await;
    quiet.get("/server-info").await;
    quiet.wait_for_rows("requests_log", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let db = quiet.connect_db().await;
    assert_eq!(
        quiet
            .count(&db, "requests_log WHERE path = '/health'")
            .await,
        0
    );

    let chatty = spawn_app_with(
        backend,
        Options {
            log_health_checks: true,
            ..Options::default()
        },
    )
    .await;
    chatty.get("/health").await;
    assert_eq!(
        chatty
            .wait_for_rows("requests_log WHERE path = '/health'", 1)
            .await,
        1
    );
}

async fn shutdown_flushes_queued_log_rows(backend: Backend) {
    // A flush interval far longer than the test: only the shutdown flush can write the rows.
    let options = Options {
        flush_interval_ms: 600_000,
        ..Options::default()
    };
    let mut app = spawn_app_with(backend, options).await;
    for _ in 0..25 {
        assert_eq!(app.get("/server-info").await.status(), 200);
    }
    let db = app.connect_db().await;
    assert_eq!(
        app.count(&db, "requests_log").await,
        0,
        "rows waited in the queue"
    );
    app.stop().await;
    assert_eq!(
        app.count(&db, "requests_log WHERE path = '/server-info'")
            .await,
        25
    );
}

async fn a_full_spool_drops_and_counts_rows_instead_of_blocking_requests(backend: Backend) {
    let options = Options {
        spool_max_bytes: 64 * 1024,
        flush_interval_ms: 1,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    // The database stops taking log rows (the test holds a lock on them): the writer waits
    // on its batch and the spool fills up.
    let blocker = app.connect_db().await;
    let lock = blocker.begin().await.unwrap();
    let statement = match blocker.get_database_backend() {
        DatabaseBackend::Postgres => "LOCK TABLE requests_log IN ACCESS EXCLUSIVE MODE",
        // Any write takes SQLite's one write lock until the transaction ends.
        _ => "DELETE FROM requests_log",
    };
    lock.execute_unprepared(statement).await.unwrap();
    // About 60 bytes a row: 64 KiB holds about 1,100.
    let sent = 1500;
    for i in 0..sent {
        let response = app
            .client
            .get(app.url("/server-info"))
            .header("x-request-id", format!("full-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let dropped = app.probe.request_log_dropped();
    assert!(dropped > 0 && dropped < sent, "dropped {dropped}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("request_log_dropped_total{reason=\"spool_full\"}"))
        .expect("rows dropped from a full spool are a metric");
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= dropped as f64, "{line}");
    lock.rollback().await.unwrap();
    // What the spool took is written, once each.
    let kept = (sent - dropped) as i64;
    assert_eq!(
        app.wait_for_rows("requests_log WHERE request_id LIKE 'full-%'", kept)
            .await,
        kept
    );
    let db = app.connect_db().await;
    assert_eq!(
        app.count(
            &db,
            "(SELECT DISTINCT request_id FROM requests_log WHERE request_id LIKE 'full-%') AS d"
        )
        .await,
        kept
    );
}

/// A client that hangs up while its request runs does not take the request's log row (or
/// the request) with it: the handler finishes in a task of its own.
async fn a_request_whose_client_hung_up_is_still_finished_and_logged(backend: Backend) {
    let app = spawn_app_with(backend, Options::default()).await;
    // Writes to `users` wait behind the test's lock, so the POST is still running when its
    // client gives up.
    let blocker = app.connect_db().await;
    let lock = blocker.begin().await.unwrap();
    let statement = match blocker.get_database_backend() {
        DatabaseBackend::Postgres => "LOCK TABLE users IN EXCLUSIVE MODE",
        _ => "DELETE FROM users",
    };
    lock.execute_unprepared(statement).await.unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(app.url("/api/users"))
        .header("x-request-id", "hung-up")
        .json(&serde_json::json!({"name": "Gone", "email": "gone@example.com"}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was to give up first");
    lock.rollback().await.unwrap();
    assert_eq!(
        app.wait_for_rows("requests_log WHERE request_id = 'hung-up'", 1)
            .await,
        1,
        "the abandoned request was logged"
    );
    let db = app.connect_db().await;
    let status = app
        .count(
            &db,
            "requests_log WHERE request_id = 'hung-up' AND status = 201",
        )
        .await;
    let users = app
        .count(&db, "users WHERE email = 'gone@example.com'")
        .await;
    assert_eq!(
        status, users,
        "logged as created exactly when the user was created"
    );
}

async fn a_row_the_database_refuses_is_dropped_alone_and_counted(backend: Backend) {
    let options = Options {
        // One batch for all the requests below.
        flush_interval_ms: 300,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let db = app.connect_db().await;
    let refuse_poison = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            "ALTER TABLE requests_log ADD CONSTRAINT no_poison CHECK (request_id <> 'poison')"
        }
        _ => {
            "CREATE TRIGGER no_poison BEFORE INSERT ON requests_log \
             WHEN NEW.request_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END"
        }
    };
    db.execute_unprepared(refuse_poison).await.unwrap();
    let ids: Vec<String> = (0..20)
        .map(|i| {
            if i == 7 {
                "poison".to_owned()
            } else {
                format!("fine-{i}")
            }
        })
        .collect();
    let requests = ids.iter().map(|id| {
        app.client
            .get(app.url("/server-info"))
            .header("x-request-id", id)
            .send()
    });
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let fine = "requests_log WHERE request_id LIKE 'fine-%'";
    assert_eq!(
        app.wait_for_rows(fine, 19).await,
        19,
        "every other row arrives"
    );
    assert_eq!(
        app.count(&db, "requests_log WHERE request_id = 'poison'")
            .await,
        0
    );
    assert_eq!(
        app.probe.request_log_dropped(),
        1,
        "exactly the refused row"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("request_log_dropped_total{reason=\"rejected\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

on_both_databases!(
    a_row_the_database_refuses_is_dropped_alone_and_counted,
    the_client_ip_is_what_the_load_balancer_saw_not_what_the_client_claims,
    a_full_spool_drops_and_counts_rows_instead_of_blocking_requests,
    a_request_whose_client_hung_up_is_still_finished_and_logged,
    each_request_is_logged_with_server_route_status_and_duration,
    health_checks_are_logged_only_when_configured,
    shutdown_flushes_queued_log_rows,
);
