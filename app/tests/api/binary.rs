//! The real `app` binary: configuration errors, secrets kept out of logs, SIGTERM, waiting.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, create_postgres_database, test_database_name, with_database};

pub(crate) const APP: &str = env!("CARGO_BIN_EXE_app");

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn app_command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(APP);
    command
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("APP_ENVIRONMENT", "production")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// What `command` printed and how it exited, if it exits by itself within 20 s (a run that
/// does not, like an app that starts serving, is killed and fails the test).
fn output_within_20s(command: &mut Command) -> std::process::Output {
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after 20 s: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The app serving on 127.0.0.1:`port`, run in `dir`.
pub(crate) fn serving(dir: &std::path::Path, port: u16) -> Command {
    let mut command = app_command(dir);
    command
        .env("APP__APPLICATION__HOST", "127.0.0.1")
        .env("APP__APPLICATION__PORT", port.to_string());
    command
}

/// The first answer to `GET url`, waiting (bounded) for the app to start.
fn first_answer(client: &reqwest::blocking::Client, url: &str) -> reqwest::blocking::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(url).send() {
            return response;
        }
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_setting_stops_the_app_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, key) in [
        ("APP__APPLICATION__PORT", "eighty", "application.port"),
        (
            "APP__APPLICATION__SERVER_ID",
            "has spaces",
            "application.server_id",
        ),
        ("APP__TELEMETRY__LOG_FORMAT", "xml", "telemetry.log_format"),
        (
            "APP__DATABASE__URL",
            "mysql://u:hunter2@db/x",
            "database.url",
        ),
    ] {
        let out = output_within_20s(app_command(dir.path()).env(var, value));
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{var}={value}: {err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
    }
    let out = output_within_20s(app_command(dir.path()).env("APP_ENVIRONMENT", "staging"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APP_ENVIRONMENT"));
}

#[test]
fn a_short_api_key_stops_the_app_naming_the_key_but_not_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_within_20s(
        app_command(dir.path()).env("APP__APPLICATION__API_KEY", "short-s3cret\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("application.api_key"), "{err}");
    assert!(err.contains("16"), "{err}");
    assert!(!err.contains("short-s3cret"), "the key leaked: {err}");
}

#[test]
fn an_api_key_read_from_a_file_with_a_trailing_newline_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serving(dir.path(), port)
        .env("APP__APPLICATION__API_KEY", "0123456789abcdef\n")
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/users");
    first_answer(&client, &url);
    let created = client
        .post(&url)
        .bearer_auth("0123456789abcdef")
        .json(&serde_json::json!({"name": "Key", "email": "key@example.com"}))
        .send()
        .unwrap()
        .status();
    assert_eq!(
        terminate(&mut child, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert_eq!(created, 201, "the key without its newline is the key");
}

#[test]
fn the_binary_serves_on_sqlite_keeps_secrets_out_of_logs_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serving(dir.path(), port)
        .env("APP__APPLICATION__SERVER_ID", "bin-1")
        // All digits with leading zeros: must stay text, not become the number 12345678901234.
        .env("APP__APPLICATION__API_KEY", "0012345678901234")
        .env("APP__TELEMETRY__LOG_LEVEL", "debug,sqlx=debug")
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let health = first_answer(&client, &format!("{url}/health"));
    assert_eq!(health.status(), 200);
    let created = client
        .post(format!("{url}/api/users"))
        .bearer_auth("0012345678901234")
        .json(&serde_json::json!({"name": "Bin", "email": "bin@example.com"}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(
        dir.path().join("data/app.sqlite").exists(),
        "the default SQLite file under data/"
    );

    let status = terminate(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("\"server_id\":\"bin-1\"") || logs.contains("bin-1"),
        "{logs}"
    );
    assert!(
        logs.contains("request log flushed"),
        "shutdown flushed the request log: {logs}"
    );
    assert!(
        !logs.contains("0012345678901234"),
        "the API key leaked into the logs"
    );
}

/// A child's stderr as it is written, read on a thread of its own.
pub(crate) struct Logs(Arc<Mutex<String>>);

impl Logs {
    pub(crate) fn follow(child: &mut Child) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self(text)
    }

    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until `needle` has been logged `n` times.
    pub(crate) fn wait_for(&self, needle: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.text().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {n} times:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM, then the exit status (bounded).
pub(crate) fn terminate(child: &mut Child, within: Duration) -> ExitStatus {
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const RETRYING: &str = "cannot connect to the database; retrying";

#[test]
fn the_binary_waits_for_an_unreachable_database_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let database_port = free_port();
    let mut child = app_command(dir.path())
        .env("APP__APPLICATION__PORT", free_port().to_string())
        .env(
            "APP__DATABASE__URL",
            format!("postgres://app:hunter2@127.0.0.1:{database_port}/rustlb?sslmode=disable"),
        )
        .spawn()
        .unwrap();
    let logs = Logs::follow(&mut child);
    // 0.5 s, then 1 s: a third failure shows the app kept waiting.
    logs.wait_for(RETRYING, 3, Duration::from_secs(15));
    assert!(child.try_wait().unwrap().is_none(), "the app gave up");
    let status = terminate(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", logs.text());
    let text = logs.text();
    assert!(text.contains("\"error\""), "the reason is logged: {text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[test]
fn the_binary_heals_once_its_database_exists() {
    let Some(Backend::Postgres(server)) = Backend::postgres() else {
        return;
    };
    let name = test_database_name();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = app_command(dir.path())
        .env("APP__APPLICATION__PORT", port.to_string())
        .env("APP__DATABASE__URL", with_database(&server, &name))
        .env("APP__DATABASE__RUN_MIGRATIONS", "true")
        .spawn()
        .unwrap();
    let logs = Logs::follow(&mut child);
    logs.wait_for(RETRYING, 2, Duration::from_secs(15));
    assert!(
        logs.text().contains("does not exist"),
        "the reason is logged: {}",
        logs.text()
    );

    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(create_postgres_database(&server, &name));
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .map(|r| r.status().as_u16())
            .ok();
        if status == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy 30 s after the database appeared ({status:?}):\n{}",
            logs.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        terminate(&mut child, Duration::from_secs(20)).code(),
        Some(0)
    );
}
