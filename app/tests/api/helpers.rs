//! `spawn_app()` and friends: start the real application on port 0 with a fresh database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use app::testing::Probe;
use app::{Application, MigrationsMode, Settings};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database a test runs against.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// The server URL from `TEST_DATABASE_URL`; each app gets its own fresh database on it.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL from `TEST_DATABASE_URL`. In CI its absence fails the test; elsewhere the
    /// test is skipped with a notice.
    pub fn postgres() -> Option<Self> {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Postgres(url)),
            _ if std::env::var_os("CI").is_some() => {
                panic!("TEST_DATABASE_URL must be set in CI: PostgreSQL tests may not be skipped")
            }
            _ => {
                static NOTICE: AtomicBool = AtomicBool::new(false);
                if !NOTICE.swap(true, Ordering::Relaxed) {
                    eprintln!("notice: TEST_DATABASE_URL is not set; skipping PostgreSQL tests");
                }
                None
            }
        }
    }
}

/// Knobs tests turn; everything else is the embedded defaults.
#[derive(Clone, Debug)]
pub struct Options {
    pub api_key: Option<String>,
    pub body_limit_bytes: u64,
    pub request_log: bool,
    pub log_health_checks: bool,
    pub flush_interval_ms: u64,
    /// `request_log.spool_max_bytes`.
    pub spool_max_bytes: u64,
    /// `request_log.spool_dir`; `None`: a folder of the test's own.
    pub spool_dir: Option<std::path::PathBuf>,
    /// 0 in tests unless a test is about the cache: most assert on fresh numbers.
    pub stats_cache_ms: u64,
    pub max_connections: u32,
    pub health_timeout_ms: u64,
    pub server_id: String,
    /// Off: the app starts on an empty database, as PostgreSQL instances do by default.
    pub run_migrations: bool,
    pub schema_check_interval_ms: u64,
    pub trusted_proxy_hops: u32,
    /// 0 in tests unless a test is about the schedule: tests run maintenance themselves, as of
    /// the times they need.
    pub maintenance_interval_seconds: u64,
    /// A database the test prepared (`database.url`), instead of a fresh one.
    pub database_url: Option<String>,
    /// `database.owner_url`: the schema owner, when `database_url`'s role reads and writes rows only.
    pub owner_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_key: None,
            body_limit_bytes: 16 * 1024,
            request_log: true,
            log_health_checks: false,
            flush_interval_ms: 50,
            spool_max_bytes: 64 * 1024 * 1024,
            spool_dir: None,
            stats_cache_ms: 0,
            max_connections: 10,
            health_timeout_ms: 1000,
            server_id: format!("test-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]),
            run_migrations: true,
            schema_check_interval_ms: 100,
            trusted_proxy_hops: 1,
            maintenance_interval_seconds: 0,
            database_url: None,
            owner_url: None,
        }
    }
}

/// A running application and what tests need to talk to it.
pub struct TestApp {
    pub address: String,
    pub server_id: String,
    pub api_key: Option<String>,
    pub client: reqwest::Client,
    /// What HTTP cannot reach: the app's own pool and counters.
    pub probe: Probe,
    /// Where the database is, so tests can look at it even after the app stopped.
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Starts the app with default options.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

/// An app that logs none of its own requests, so only the rows a test writes count.
pub async fn spawn_unlogged_app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            request_log: false,
            ..Options::default()
        },
    )
    .await
}

/// Starts the app on 127.0.0.1:0 with a database nobody else uses.
pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    try_spawn_app_with(backend, options)
        .await
        .expect("app builds")
}

/// Like [`spawn_app_with`], for tests about an app that refuses to start.
pub async fn try_spawn_app_with(backend: Backend, options: Options) -> anyhow::Result<TestApp> {
    init_logs();
    let (fresh_url, dir) = match &options.database_url {
        Some(url) => (url.clone(), tempfile::tempdir().expect("temp dir")),
        None => fresh_database(&backend).await,
    };
    let database_url = fresh_url;
    // Tests set no APP__ variables, so this is the embedded defaults.
    let mut settings = Settings::load().expect("embedded configuration loads");
    settings.application.host = "127.0.0.1".into();
    settings.application.port = 0;
    settings.application.server_id = options.server_id.clone();
    settings.application.api_key = options.api_key.clone().map(SecretString::from);
    settings.application.body_limit_bytes = options.body_limit_bytes;
    settings.application.trusted_proxy_hops = options.trusted_proxy_hops;
    settings.application.shutdown_grace_seconds = 5;
    settings.database.url = SecretString::from(database_url.clone());
    settings.database.run_migrations = if options.run_migrations {
        MigrationsMode::Always
    } else {
        MigrationsMode::Never
    };
    settings.database.schema_check_interval_ms = options.schema_check_interval_ms;
    settings.database.max_connections = options.max_connections;
    settings.database.min_connections = 1;
    settings.database.acquire_timeout_seconds = 30;
    settings.database.health_timeout_ms = options.health_timeout_ms;
    settings.request_log.enabled = options.request_log;
    settings.request_log.log_health_checks = options.log_health_checks;
    settings.request_log.flush_interval_ms = options.flush_interval_ms;
    settings.request_log.spool_max_bytes = options.spool_max_bytes;
    settings.request_log.spool_dir = options
        .spool_dir
        .clone()
        .unwrap_or_else(|| dir.path().join("spool"));
    settings.stats.cache_ms = options.stats_cache_ms;
    settings.request_log.maintenance_interval_seconds = options.maintenance_interval_seconds;
    settings.database.owner_url = options.owner_url.clone().map(SecretString::from);
    settings.resolve().expect("test settings are valid");

    let app = Application::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let probe = Probe::of(&app);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    Ok(TestApp {
        address,
        server_id: options.server_id,
        api_key: options.api_key,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        probe,
        database_url,
        stop: Some(stop_tx),
        task: Some(task),
        _dir: dir,
    })
}

impl TestApp {
    /// The pool the app's requests use.
    pub fn db(&self) -> &DatabaseConnection {
        self.probe.database()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs JSON with the app's API key (if any).
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.authorized(self.client.post(self.url(path)))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.authorized(self.client.put(self.url(path)))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.authorized(self.client.delete(self.url(path)))
            .send()
            .await
            .expect("request sent")
    }

    pub fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Creates a user and returns its JSON.
    pub async fn create_user(&self, name: &str, email: &str) -> Value {
        let response = self
            .post_json(
                "/api/users",
                &serde_json::json!({"name": name, "email": email}),
            )
            .await;
        assert_eq!(response.status(), 201, "creating {email}");
        response.json::<Value>().await.unwrap()["user"].clone()
    }

    /// A fresh connection to the app's database (usable after the app stopped).
    pub async fn connect_db(&self) -> DatabaseConnection {
        Database::connect(&self.database_url)
            .await
            .expect("test database reachable")
    }

    /// `SELECT count(*) FROM ... WHERE ...` on a fresh connection.
    pub async fn count(&self, db: &DatabaseConnection, from_where: &str) -> i64 {
        let backend = db.get_database_backend();
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT count(*) AS n FROM {from_where}"),
            ))
            .await
            .expect("count query")
            .expect("one row");
        row.try_get::<i64>("", "n").expect("count column")
    }

    /// Waits (bounded) until `from_where` counts at least `n` rows.
    pub async fn wait_for_rows(&self, from_where: &str, n: i64) -> i64 {
        let db = self.connect_db().await;
        let mut seen = 0;
        for _ in 0..100 {
            seen = self.count(&db, from_where).await;
            if seen >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    }

    /// Triggers graceful shutdown and waits for it to finish.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("shutdown finishes in time")
                .expect("server task did not panic")
                .expect("server stopped cleanly");
        }
    }
}

/// An empty database nobody else uses, and the folder that holds it (SQLite).
pub async fn fresh_database(backend: &Backend) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}/test.sqlite?mode=rwc", dir.path().display()),
        Backend::Postgres(server) => fresh_postgres_database(server).await,
    };
    (url, dir)
}

fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Creates `rustlb_test_<pid>_<random>` on the server and returns its URL. Databases left by
/// test processes that are gone are dropped first (once per process).
async fn fresh_postgres_database(server_url: &str) -> String {
    let admin = Database::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at TEST_DATABASE_URL: {e}"));
    static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CLEANED
        .get_or_init(|| async {
            let rows = admin
                .query_all_raw(Statement::from_string(
                    admin.get_database_backend(),
                    "SELECT datname FROM pg_database WHERE datname LIKE 'rustlb_test_%'".to_owned(),
                ))
                .await
                .unwrap_or_default();
            for row in rows {
                let Ok(name) = row.try_get::<String>("", "datname") else {
                    continue;
                };
                let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                let alive =
                    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                }
            }
        })
        .await;
    let name = test_database_name();
    create_database_on(&admin, &name).await;
    let _ = admin.close().await;
    with_database(server_url, &name)
}

/// A database name no test has used, which the next test process drops once this one is gone.
pub fn test_database_name() -> String {
    format!(
        "rustlb_test_{}_{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}

/// Creates database `name` on the server of `server_url`.
pub async fn create_postgres_database(server_url: &str, name: &str) {
    let admin = Database::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at TEST_DATABASE_URL: {e}"));
    create_database_on(&admin, name).await;
    let _ = admin.close().await;
}

async fn create_database_on(admin: &DatabaseConnection, name: &str) {
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// The `error.code` of an error response, checking the envelope on the way.
pub async fn error_code(response: reqwest::Response, server_id: &str) -> String {
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(
        body["server_id"], server_id,
        "error envelope names the server: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message: {body}"
    );
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}
