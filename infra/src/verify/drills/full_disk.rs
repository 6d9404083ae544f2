//! The full-disk drill: one instance of this build on SQLite in a 4 MB file system that fills up under writes, then gets its space back.
//!
//! It runs beside the stack, not in it: filling the disk the stack's database is on would
//! fill the machine's. Mounting the small file system (tmpfs) needs root; without it the
//! drill is left out. Goal: no write acknowledged that was not stored, every refusal a JSON
//! 503/507, `/health` naming the storage, and writes back without a restart once space is.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::result::DrillResult;
use crate::local;

/// Size of the file system the drill's database lives on.
const DISK: &str = "4m";
/// Writes sent at most, and the refusals after which the disk counts as full.
const MAX_WRITES: usize = 3_000;
const REFUSALS: usize = 200;
/// Space left free once the disk is full: a few SQLite pages' worth of users.
const HEADROOM: u64 = 64 * 1024;
/// Writes must be back within this once the space is.
const RECOVERY_GOAL: Duration = Duration::from_secs(5);

/// Whether this process may mount a file system.
pub(super) fn possible() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs mounted for the drill, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> anyhow::Result<SmallDisk> {
        std::fs::create_dir_all(at)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
            .arg(at)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mounting a {DISK} tmpfs at {}: {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(SmallDisk(at.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The drill's own instance, stopped with SIGTERM when dropped.
struct Instance {
    child: Child,
    url: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) async fn full_disk(root: &Path, stack: &str) -> anyhow::Result<DrillResult> {
    let work = local::state_dir(root, stack).join("drill-disk");
    let _ = std::fs::remove_dir_all(&work);
    let disk = SmallDisk::mount(&work.join("disk"))?;
    let instance = start(&work, &disk.0)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    wait_started(&client, &instance.url).await?;
    anyhow::ensure!(
        post(&client, &instance.url, 0).await?.0 == 201,
        "the drill's instance did not take a first write"
    );
    let filler = disk.0.join("filler");
    fill(&filler)?;

    let mut w = write_until_full(&client, &instance.url).await?;
    let health: Value = client
        .get(format!("{}/health", instance.url))
        .send()
        .await?
        .json()
        .await?;
    let storage_reported = health["storage"]["status"] == "unwritable";

    std::fs::remove_file(&filler)?;
    let recovered = wait_recovered(&client, &instance.url, &mut w.sent).await?;
    let missing = count_missing(&client, &instance.url, &w.acknowledged).await?;
    let (mut failures, acknowledged, refused, sent) =
        (w.failures, w.acknowledged, w.refused, w.sent);
    if missing > 0 {
        failures.insert("201 but not stored".to_owned(), missing);
    }
    drop(instance);
    drop(disk);

    let unexpected: usize = failures
        .iter()
        .filter(|(k, _)| !(k.starts_with("503 ") || k.starts_with("507 ")))
        .map(|(_, n)| n)
        .sum();
    let passed = unexpected == 0
        && refused >= REFUSALS
        && storage_reported
        && recovered.is_some_and(|d| d < RECOVERY_GOAL);
    Ok(DrillResult {
        name: "full disk (SQLite)",
        load: "POST /api/users to one instance on a 4 MB file system",
        requests: sent,
        failed: failures.values().sum(),
        failures,
        lost_log_rows: 0,
        slowest_503_ms: None,
        recovery_ms: recovered.map(|d| d.as_millis() as u64),
        goal: "0 writes acknowledged but not stored, only JSON 503/507 refusals, /health names the storage, writes back within 5 s of space".to_owned(),
        passed,
        note: format!(
            "{} writes acknowledged, all {} stored; {refused} refused while full; /health storage {}",
            acknowledged.len(),
            acknowledged.len() - missing,
            health["storage"]["status"]
        ),
    })
}

/// What the writes to a filling disk got.
struct Writes {
    acknowledged: Vec<String>,
    refused: usize,
    sent: usize,
    failures: BTreeMap<String, usize>,
}

/// Creates users until [`REFUSALS`] were refused (or [`MAX_WRITES`] were sent).
async fn write_until_full(client: &reqwest::Client, url: &str) -> anyhow::Result<Writes> {
    let mut w = Writes {
        acknowledged: Vec::new(),
        refused: 0,
        sent: 0,
        failures: BTreeMap::new(),
    };
    for n in 1..=MAX_WRITES {
        w.sent += 1;
        let (status, body) = post(client, url, n).await?;
        match status {
            201 => w
                .acknowledged
                .push(body["user"]["id"].as_str().unwrap_or("").to_owned()),
            503 | 507 if body["error"]["code"].is_string() => {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                *w.failures.entry(format!("{status} {code}")).or_insert(0) += 1;
                w.refused += 1;
                if w.refused >= REFUSALS {
                    break;
                }
            }
            other => *w.failures.entry(other.to_string()).or_insert(0) += 1,
        }
    }
    Ok(w)
}

/// From space coming back to the first write taken, if one is within 4 x the goal.
async fn wait_recovered(
    client: &reqwest::Client,
    url: &str,
    sent: &mut usize,
) -> anyhow::Result<Option<Duration>> {
    let freed = Instant::now();
    while freed.elapsed() < RECOVERY_GOAL * 4 {
        *sent += 1;
        if post(client, url, MAX_WRITES + *sent).await?.0 == 201 {
            return Ok(Some(freed.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}

/// Acknowledged users the instance cannot find.
async fn count_missing(
    client: &reqwest::Client,
    url: &str,
    ids: &[String],
) -> anyhow::Result<usize> {
    let mut missing = 0;
    for id in ids {
        let got = client.get(format!("{url}/api/users/{id}")).send().await?;
        if got.status() != reqwest::StatusCode::OK {
            missing += 1;
        }
    }
    Ok(missing)
}

/// This build's app on a SQLite database on `disk`; its request-log spool stays on the
/// machine's disk, so the log is not what fills up.
fn start(work: &Path, disk: &Path) -> anyhow::Result<Instance> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe().context("locating the infra binary")?;
    let child = Command::new(exe)
        .arg("serve-app")
        .current_dir(work)
        .env_remove("RUST_LOG")
        .env("APP_ENVIRONMENT", "production")
        .env("APP__APPLICATION__HOST", "127.0.0.1")
        .env("APP__APPLICATION__PORT", port.to_string())
        .env("APP__APPLICATION__SERVER_ID", "drill-disk")
        .env(
            "APP__DATABASE__URL",
            format!("sqlite://{}?mode=rwc", disk.join("drill.sqlite").display()),
        )
        .env("APP__DATABASE__RUN_MIGRATIONS", "true")
        .env("APP__REQUEST_LOG__SPOOL_DIR", work.join("spool"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the drill's instance")?;
    Ok(Instance {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn wait_started(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the drill's instance did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(client: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<(u16, Value)> {
    let email = format!("disk-{n}-{}@rustlb.invalid", uuid::Uuid::now_v7().simple());
    let r = client
        .post(format!("{url}/api/users"))
        .json(&json!({"name": format!("disk {n}"), "email": email}))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Fills the file system holding `path` to its last byte, then gives [`HEADROOM`] back: the
/// writes that still fit are acknowledged, and must all be there afterwards, before the
/// refusals begin.
fn fill(path: &Path) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let len = file.metadata()?.len();
    file.set_len(len.saturating_sub(HEADROOM))?;
    let _ = file.sync_all();
    Ok(())
}
