//! The database away (PostgreSQL): fast 503s with Retry-After, back within 3 s, no log row lost.
//!
//! Two kinds of outage, both bounded to a few seconds on 127.0.0.1: the database refusing new
//! sessions (`ALLOW_CONNECTIONS false` and its sessions terminated, like a bad password, a
//! pooler's refusal or an operator killing sessions), and the server gone (a proxy in front
//! of it stops listening and drops its connections, like a stopped or restarting server).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{Backend, Options, TestApp, error_code, spawn_app_with};

/// What "fast" means for a 503 while the database is known to be away.
const FAST: Duration = Duration::from_millis(100);
/// How long into an outage the app may take to notice it, and the most a request answered
/// meanwhile may take (the first requests are how it notices; a debug build's TLS handshake
/// with the database alone takes tens of milliseconds).
const NOTICING: Duration = Duration::from_millis(500);
const NOTICE: Duration = Duration::from_millis(1000);
/// How soon writes must work again once the database is back.
const RECOVERY: Duration = Duration::from_secs(3);

/// The server URL from `TEST_DATABASE_URL`, or `None` when PostgreSQL tests are skipped.
fn postgres_server() -> Option<String> {
    match Backend::postgres()? {
        Backend::Postgres(url) => Some(url),
        Backend::Sqlite => None,
    }
}

/// The app on a fresh PostgreSQL database with one user, and the server's URL; `None` when
/// PostgreSQL tests are skipped.
async fn app_with_a_user() -> Option<(TestApp, String)> {
    let server = postgres_server()?;
    let app = spawn_app_with(Backend::Postgres(server.clone()), Options::default()).await;
    app.create_user("Before", "before@example.com").await;
    Some((app, server))
}

/// The database name of a PostgreSQL URL.
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

/// Makes the app's database refuse (or accept again) new sessions, ending the open ones, from
/// a connection to the server's own `postgres` database.
async fn refuse_sessions(server: &str, app: &TestApp, refuse: bool) {
    let admin = Database::connect(crate::helpers::with_database(server, "postgres"))
        .await
        .unwrap();
    let name = database_name(&app.database_url);
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {}",
            !refuse
        ))
        .await
        .unwrap();
    if refuse {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
    }
    let _ = admin.close().await;
}

/// POSTs a user and returns the status, the error code (if any), whether `Retry-After` was
/// set, and how long the answer took.
async fn timed_post(app: &TestApp, i: usize) -> (u16, Option<String>, bool, Duration) {
    let started = Instant::now();
    let response = app
        .post_json(
            "/api/users",
            &json!({"name": format!("W{i}"), "email": format!("w{i}@example.com")}),
        )
        .await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").is_some();
    let code = if status >= 400 {
        Some(error_code(response, &app.server_id).await)
    } else {
        None
    };
    (status, code, retry_after, took)
}

/// Writes during an outage: each must be a 503 `database_unavailable` with `Retry-After`,
/// fast once the app has noticed, and never a wait for the pool.
async fn assert_fast_503s_for(app: &TestApp, window: Duration) {
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < window {
        i += 1;
        let (status, code, retry_after, took) = timed_post(app, i).await;
        assert_eq!(status, 503, "write {i} during the outage");
        assert_eq!(code.as_deref(), Some("database_unavailable"), "write {i}");
        assert!(retry_after, "write {i}: 503 without Retry-After");
        let bound = if started.elapsed() > NOTICING {
            FAST
        } else {
            NOTICE
        };
        assert!(took < bound, "write {i} took {took:?} to get its 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries a write until it succeeds; how long that took.
async fn time_to_recover(app: &TestApp) -> Duration {
    let started = Instant::now();
    for i in 1000.. {
        let (status, ..) = timed_post(app, i).await;
        if status == 201 {
            break;
        }
        assert!(
            started.elapsed() < RECOVERY * 3,
            "writes still fail {:?} after the database came back",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_refuses_sessions_writes_get_fast_503s_and_recover_within_3s() {
    let Some((app, server)) = app_with_a_user().await else {
        return;
    };

    refuse_sessions(&server, &app, true).await;
    let health_started = Instant::now();
    let health = app.get("/health").await;
    let health_took = health_started.elapsed();
    // Checked after the sessions are allowed again, so a failure cannot leave them refused.
    let outage = tokio::time::timeout(
        Duration::from_secs(10),
        assert_fast_503s_for(&app, Duration::from_millis(1500)),
    )
    .await;
    refuse_sessions(&server, &app, false).await;
    let recovered = time_to_recover(&app).await;

    outage.expect("the outage checks finished in time");
    // The database is shared: the instance stays in rotation, degraded.
    assert_eq!(health.status(), 200);
    assert!(
        health_took < Duration::from_millis(1000),
        "/health took {health_took:?}"
    );
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["database"]["status"], "down", "{body}");
    assert!(recovered < RECOVERY, "writes back only after {recovered:?}");
    let listed: Value = app.get("/api/users").await.json().await.unwrap();
    assert_eq!(listed["total"], 2, "the user from before and the one after");
}

/// A TCP relay to PostgreSQL that can go away (stop listening and drop its connections, so
/// new connections are refused) and come back on the same port.
struct Relay {
    port: u16,
    upstream: String,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut relay = Self {
            port,
            upstream,
            accept: None,
            connections: Arc::default(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let connections = self.connections.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let relayed = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().unwrap().push(relayed);
            }
        }));
    }

    fn go_away(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    async fn come_back(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    /// `url` with its host and port replaced by the relay's.
    fn route(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (format!("{userinfo}@"), rest),
            None => (String::new(), rest),
        };
        let tail = rest.find(['/', '?']).map_or("", |at| &rest[at..]);
        format!("{scheme}://{userinfo}127.0.0.1:{}{tail}", self.port)
    }
}

/// `host:port` of a PostgreSQL URL.
fn address(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_database_server_goes_away_requests_fail_fast_instead_of_waiting_for_the_pool() {
    let Some(server) = postgres_server() else {
        return;
    };
    let mut relay = Relay::start(address(&server)).await;
    // The helpers give the pool a 30 s acquire timeout: without the fast path, every
    // request during the outage would wait that long.
    let app = spawn_app_with(Backend::Postgres(relay.route(&server)), Options::default()).await;
    app.create_user("Before", "before@example.com").await;

    relay.go_away();
    let outage = tokio::time::timeout(
        Duration::from_secs(10),
        assert_fast_503s_for(&app, Duration::from_millis(1500)),
    )
    .await;
    let reads = app.get("/api/users").await.status();
    relay.come_back().await;
    let recovered = time_to_recover(&app).await;

    outage.expect("no request waited for the pool's acquire timeout");
    assert_eq!(reads, 503);
    assert!(recovered < RECOVERY, "writes back only after {recovered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_rows_of_a_refusal_window_all_arrive_afterwards() {
    let Some((app, server)) = app_with_a_user().await else {
        return;
    };
    assert_eq!(app.wait_for_rows("requests_log", 1).await, 1);

    refuse_sessions(&server, &app, true).await;
    let started = Instant::now();
    let mut answered = 0;
    for i in 0..30 {
        let response = app
            .client
            .get(app.url("/server-info"))
            .header("x-request-id", format!("outage-{i}"))
            .send()
            .await
            .unwrap();
        answered += u32::from(response.status() == 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for a writer that gives up on a refused batch to have given up.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    refuse_sessions(&server, &app, false).await;

    assert_eq!(answered, 30, "/server-info needs no database");
    assert_eq!(
        app.wait_for_rows("requests_log WHERE request_id LIKE 'outage-%'", 30)
            .await,
        30,
        "every row logged during the refusal arrives"
    );
    assert_eq!(app.probe.request_log_dropped(), 0);
}

/// More rows than a batch, or the in-memory queue the spool replaced, would hold in the
/// same memory: during the outage they wait on disk, and after it each arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_an_outage_wait_on_disk_and_each_arrives_once_after_it() {
    let Some(server) = postgres_server() else {
        return;
    };
    let app = spawn_app_with(
        Backend::Postgres(server.clone()),
        Options {
            // A small spool still holds them all: about 60 bytes a row.
            spool_max_bytes: 4 * 1024 * 1024,
            ..Options::default()
        },
    )
    .await;
    refuse_sessions(&server, &app, true).await;
    let sent = 4000;
    let mut answered = 0;
    for wave in 0..sent / 50 {
        let requests = (0..50).map(|i| {
            app.client
                .get(app.url("/server-info"))
                .header("x-request-id", format!("long-{}", wave * 50 + i))
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            answered += u32::from(response.unwrap().status() == 200);
        }
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    refuse_sessions(&server, &app, false).await;

    assert_eq!(answered, sent, "/server-info needs no database");
    let spooled: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("request_log_spool_bytes "))
        .expect("the spool's size is a metric")
        .parse()
        .unwrap();
    assert!(spooled > 100_000.0, "{spooled} bytes spooled");
    let db = app.connect_db().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app
        .count(&db, "requests_log WHERE request_id LIKE 'long-%'")
        .await
        < i64::from(sent)
    {
        assert!(Instant::now() < deadline, "rows still missing after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.count(
            &db,
            "(SELECT DISTINCT request_id FROM requests_log WHERE request_id LIKE 'long-%') AS d"
        )
        .await,
        i64::from(sent),
        "no row twice"
    );
    assert_eq!(app.probe.request_log_dropped(), 0);
}

/// Not just once the app knows: the 503s of an outage that starts under load, the first ones
/// included (those are how the app finds out), come within [`FAST`].
async fn every_503_of_an_outage_that_starts_under_load_is_fast(app: TestApp, mut outage: Outage) {
    // One such outage at a time: two loads side by side would measure each other.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = Arc::new(app);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<JoinHandle<Vec<Duration>>> = (0..4)
        .map(|w| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut slow_503s = Vec::new();
                let mut i = w * 100_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let (status, _, _, took) = timed_post(&app, i).await;
                    if status == 503 {
                        slow_503s.push(took);
                    }
                    // Load, not a flood: 4 clients in tight loops would starve this 2-core
                    // machine's threads (the app's and the test's), and a stall is not what
                    // is measured here.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                slow_503s
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    outage.start(&app).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    outage.end(&app).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut took: Vec<Duration> = Vec::new();
    for writer in writers {
        took.extend(writer.await.unwrap());
    }
    took.sort();
    assert!(took.len() > 20, "only {} 503s", took.len());
    // The app's own time, from its log rows: what the client measures adds its own
    // scheduling on this shared machine (tests run side by side on 2 cores).
    let rows = app
        .wait_for_rows(
            "requests_log WHERE status = 503 AND path = '/api/users'",
            took.len() as i64,
        )
        .await;
    assert_eq!(rows, took.len() as i64, "every 503 logged");
    let db = app.connect_db().await;
    let durations: Vec<i64> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT duration_us FROM requests_log WHERE status = 503 AND path = '/api/users' \
             ORDER BY created_at",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<i64>("", "duration_us").unwrap())
        .collect();
    // The first ones are how the app finds out: each waits for what tells it (its own
    // failure, or the probe a slow request asks for), which must come within FAST.
    let noticing = *durations[..20].iter().max().unwrap();
    // Once it knows, a 503 is immediate; a slow one then is this machine's scheduling (a
    // stall of every thread, client and server), so the bound is on all but the slowest
    // 0.1 % of them.
    let mut sorted = durations;
    sorted.sort_unstable();
    let p999 = sorted[sorted.len() * 999 / 1000];
    eprintln!(
        "503s: {} answered; in the app: first 20 at most {noticing} us, p99.9 {p999} us, \
         slowest {} us; as the client saw it: slowest {:?}",
        took.len(),
        sorted.last().unwrap(),
        took.last().unwrap()
    );
    let fast = FAST.as_micros() as i64;
    assert!(
        noticing < fast,
        "one of the first 503s of the outage took {noticing} us"
    );
    assert!(p999 < fast, "p99.9 of the 503s: {p999} us");
}

/// How the database goes away.
enum Outage {
    /// It refuses sessions (the server at this URL).
    Refused(String),
    /// The server is gone: connections are refused, which the pool would retry.
    ServerGone(Relay),
}

impl Outage {
    async fn start(&mut self, app: &TestApp) {
        match self {
            Self::Refused(server) => refuse_sessions(server, app, true).await,
            Self::ServerGone(relay) => relay.go_away(),
        }
    }

    async fn end(&mut self, app: &TestApp) {
        match self {
            Self::Refused(server) => refuse_sessions(server, app, false).await,
            Self::ServerGone(relay) => relay.come_back().await,
        }
    }
}

/// A fresh database on `server` (through `relay` when given) without TLS, as on loopback in
/// production: the probe that confirms an outage opens a connection, and a debug build's TLS
/// handshake alone takes about 100 ms on this machine (a release build's, a few).
async fn app_without_tls(server: &str, relay: Option<&Relay>) -> TestApp {
    let name = crate::helpers::test_database_name();
    crate::helpers::create_postgres_database(server, &name).await;
    let url = crate::helpers::with_database(server, &name);
    let url = format!(
        "{url}{}sslmode=disable",
        if url.contains('?') { '&' } else { '?' }
    );
    let url = relay.map_or(url.clone(), |relay| relay.route(&url));
    let app = spawn_app_with(
        Backend::Postgres(server.to_owned()),
        Options {
            database_url: Some(url),
            ..Options::default()
        },
    )
    .await;
    app.create_user("Before", "before@example.com").await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_503_of_sessions_refused_under_load_is_fast() {
    let Some(server) = postgres_server() else {
        return;
    };
    let app = app_without_tls(&server, None).await;
    every_503_of_an_outage_that_starts_under_load_is_fast(app, Outage::Refused(server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_503_of_a_server_gone_under_load_is_fast() {
    let Some(server) = postgres_server() else {
        return;
    };
    let relay = Relay::start(address(&server)).await;
    let app = app_without_tls(&server, Some(&relay)).await;
    every_503_of_an_outage_that_starts_under_load_is_fast(app, Outage::ServerGone(relay)).await;
}
