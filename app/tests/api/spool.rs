//! kill -9 under load: every request the killed instance answered has exactly one log row, in its own database.

use std::collections::HashMap;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, Statement};

use crate::binary::{Logs, free_port, serving, terminate};
use crate::helpers::{Backend, create_postgres_database, test_database_name, with_database};

/// The app binary on `port` in `dir`, answering as `server_id`, once it is healthy.
fn start(dir: &std::path::Path, port: u16, database_url: &str) -> (Child, Logs) {
    let mut child = serving(dir, port)
        .env("APP__DATABASE__URL", database_url)
        .env("APP__DATABASE__RUN_MIGRATIONS", "true")
        .env("APP__APPLICATION__SERVER_ID", "killed-1")
        .spawn()
        .unwrap();
    let logs = Logs::follow(&mut child);
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "not healthy within 30 s:\n{}",
            logs.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, logs)
}

/// Request ids answered (any status) by 4 clients sending reads and writes to `port` until
/// `stop`, each with an id of its own.
fn load(port: u16, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|client_no| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let base = format!("http://127.0.0.1:{port}");
                let mut answered = Vec::new();
                for i in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("k-{client_no}-{i}");
                    let request = if i % 10 == 0 {
                        client
                            .post(format!("{base}/api/users"))
                            .json(&serde_json::json!({
                                "name": "K", "email": format!("{id}@example.com")
                            }))
                    } else {
                        client.get(format!("{base}/server-info"))
                    };
                    match request.header("x-request-id", &id).send() {
                        Ok(response) => {
                            // The answer is in: the row must be too.
                            let _ = response.bytes();
                            answered.push(id);
                        }
                        Err(_) => break,
                    }
                }
                answered
            })
        })
        .collect()
}

/// `request_id -> rows` of the killed instance's `k-` requests.
async fn rows_by_id(database_url: &str) -> HashMap<String, i64> {
    let db = Database::connect(database_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT request_id, COUNT(*) AS n FROM requests_log \
             WHERE request_id LIKE 'k-%' GROUP BY request_id",
        ))
        .await
        .unwrap();
    let _ = db.close().await;
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "request_id").unwrap(),
                row.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

/// An instance on `database_url` in `dir`, killed with SIGKILL (no flush, no drain) after
/// `load_for` of load; the request ids it answered.
fn killed_under_load(
    dir: &std::path::Path,
    port: u16,
    database_url: &str,
    load_for: Duration,
) -> Vec<String> {
    let (mut child, _logs) = start(dir, port, database_url);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(port, stop.clone());
    std::thread::sleep(load_for);
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect()
}

/// The rows of `database_url` once every `answered` id has one, or after 30 s.
fn rows_once_replayed(
    runtime: &tokio::runtime::Runtime,
    database_url: &str,
    answered: &[String],
) -> HashMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = runtime.block_on(rows_by_id(database_url));
        if answered.iter().all(|id| rows.contains_key(id)) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill_9_under_load_loses_no_row_and_writes_none_twice(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let answered = killed_under_load(dir.path(), port, database_url, Duration::from_millis(1500));
    assert!(answered.len() > 100, "only {} answers", answered.len());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let before = runtime.block_on(rows_by_id(database_url));
    let missing_before = answered
        .iter()
        .filter(|id| !before.contains_key(*id))
        .count();

    // The same server id, the same working directory: the restarted process replays the spool.
    let (mut child, logs) = start(dir.path(), port, database_url);
    let rows = rows_once_replayed(&runtime, database_url, &answered);
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !rows.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no row (first: {:?}):\n{}",
        missing.len(),
        answered.len(),
        missing.first(),
        logs.text()
    );
    let twice: Vec<(&String, &i64)> = rows.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "rows written more than once: {twice:?}");
    assert_eq!(
        terminate(&mut child, Duration::from_secs(20)).code(),
        Some(0)
    );
    let spools = std::fs::read_dir(dir.path().join("data/spool/killed-1"))
        .unwrap()
        .count();
    assert_eq!(spools, 0, "every spool written and removed");
    eprintln!(
        "kill -9: {} answered, {missing_before} of them written only after the restart",
        answered.len()
    );
}

#[test]
fn kill_9_under_load_loses_no_log_row_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/app.sqlite?mode=rwc", dir.path().display());
    kill_9_under_load_loses_no_row_and_writes_none_twice(&url);
}

#[test]
fn kill_9_under_load_loses_no_log_row_on_postgres() {
    let Some(Backend::Postgres(server)) = Backend::postgres() else {
        return;
    };
    let name = test_database_name();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(create_postgres_database(&server, &name));
    kill_9_under_load_loses_no_row_and_writes_none_twice(&with_database(&server, &name));
}

#[test]
fn a_spool_is_replayed_only_into_the_database_its_rows_were_answered_for() {
    let dir = tempfile::tempdir().unwrap();
    let first = format!("sqlite://{}/first.sqlite?mode=rwc", dir.path().display());
    let other = format!("sqlite://{}/other.sqlite?mode=rwc", dir.path().display());
    let port = free_port();
    let answered = killed_under_load(dir.path(), port, &first, Duration::from_millis(1000));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let written = runtime.block_on(rows_by_id(&first)).len();
    assert!(
        written < answered.len(),
        "the kill left no row in the spool ({written} of {} written)",
        answered.len()
    );

    // The same folder and server id on another database: those rows are not its to write.
    let (mut child, logs) = start(dir.path(), port, &other);
    std::thread::sleep(Duration::from_secs(2));
    let misrouted = runtime.block_on(rows_by_id(&other)).len();
    assert_eq!(
        misrouted,
        0,
        "rows replayed into the wrong database:\n{}",
        logs.text()
    );
    assert!(
        logs.text().contains("spool of another database"),
        "{}",
        logs.text()
    );
    assert_eq!(
        terminate(&mut child, Duration::from_secs(20)).code(),
        Some(0)
    );

    // Back on its own database, the spool is replayed there, every row once.
    let (mut child, logs) = start(dir.path(), port, &first);
    let rows = rows_once_replayed(&runtime, &first, &answered);
    let missing = answered.iter().filter(|id| !rows.contains_key(*id)).count();
    assert_eq!(
        missing,
        0,
        "answered requests without a row:\n{}",
        logs.text()
    );
    assert!(
        rows.values().all(|n| *n == 1),
        "rows written more than once"
    );
    assert_eq!(
        terminate(&mut child, Duration::from_secs(20)).code(),
        Some(0)
    );
}
