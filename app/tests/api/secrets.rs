//! Database passwords never reach a log line or an error, whatever their URL looks like.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binary::{app_command, free_port};

/// URLs whose passwords libraries misread (reserved characters, an encoded parameter name),
/// each with every spelling of its secret that must not show.
fn cases() -> Vec<(String, Vec<&'static str>)> {
    let closed = free_port();
    vec![
        (
            "postgres://postgres:s3c?ret@127.0.0.1:5432/rustlb_no_such_db".to_owned(),
            vec!["s3c?ret", "s3c%3Fret", "s3c%3fret"],
        ),
        (
            format!("postgres://u:p%40ss/w#rd@127.0.0.1:{closed}/x"),
            vec!["p%40ss/w#rd", "p@ss/w#rd", "p%40ss%2Fw%23rd", "ss/w#rd"],
        ),
        (
            "postgres://u@127.0.0.1:5432/x?pass%77ord=hunter2".to_owned(),
            vec!["hunter2"],
        ),
        // A port that does not parse: the app gives up at once, with an error.
        (
            "postgres://u:s3c?ret@127.0.0.1:no-port/x".to_owned(),
            vec!["s3c?ret", "s3c%3Fret"],
        ),
    ]
}

fn assert_no_secret(text: &str, url: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret:?} shown for {url}:\n{text}"
        );
    }
}

#[test]
fn the_binary_never_logs_a_database_password_at_any_level() {
    for (url, secrets) in cases() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = app_command(dir.path())
            .env("APP__APPLICATION__PORT", free_port().to_string())
            .env("APP__DATABASE__URL", &url)
            .env("APP__TELEMETRY__LOG_LEVEL", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Long enough for the first attempts and their retries to be logged.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: plain kill(2) of our child (a no-op if it exited already).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(
            text.contains("rustlb_no_such_db")
                || text.contains("127.0.0.1")
                || text.contains("error"),
            "something was logged for {url}:\n{text}"
        );
        assert_no_secret(&text, &url, &secrets);
    }
}

#[tokio::test]
async fn migrating_through_such_urls_fails_without_showing_the_password() {
    for (url, secrets) in cases() {
        let err = app::migrate_database(&url)
            .await
            .expect_err("no database to migrate there");
        assert_no_secret(&format!("{err} {err:?}"), &url, &secrets);
    }
}
