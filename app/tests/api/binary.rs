//! The real `app` binary: configuration errors, secrets kept out of logs, SIGTERM.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = env!("CARGO_BIN_EXE_app");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn app_command(dir: &std::path::Path) -> Command {
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
        let out = app_command(dir.path()).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{var}={value}: {err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
    }
    let out = app_command(dir.path())
        .env("APP_ENVIRONMENT", "staging")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APP_ENVIRONMENT"));
}

#[test]
fn the_binary_serves_on_sqlite_keeps_secrets_out_of_logs_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = app_command(dir.path())
        .env("APP__APPLICATION__HOST", "127.0.0.1")
        .env("APP__APPLICATION__PORT", port.to_string())
        .env("APP__APPLICATION__SERVER_ID", "bin-1")
        // All digits with leading zeros: must stay text, not become the number 12345678901234.
        .env("APP__APPLICATION__API_KEY", "0012345678901234")
        .env("APP__TELEMETRY__LOG_LEVEL", "debug,sqlx=debug")
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Ok(r) = client.get(format!("{url}/health")).send() {
            break r;
        }
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
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

    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
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
