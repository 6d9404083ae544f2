//! SQLite on a full disk, through the real binary: no write is acknowledged that was not stored, `/health` says so, and writes come back by themselves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::binary::{free_port, serving, terminate};

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` to the last byte.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
}

#[test]
#[ignore = "needs root: mounts a small tmpfs and fills it (CI runs it)"]
fn a_full_disk_never_acknowledges_a_write_it_did_not_store_and_writes_resume_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "4m");
    let port = free_port();
    let mut child = serving(&disk.0, port)
        .env("APP__APPLICATION__SERVER_ID", "full-1")
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{url}/health")).send().is_err() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let post = |n: usize| {
        client
            .post(format!("{url}/api/users"))
            .json(
                &serde_json::json!({"name": format!("U{n}"), "email": format!("u{n}@example.com")}),
            )
            .send()
            .unwrap()
    };
    assert_eq!(post(0).status(), 201);
    let filler = disk.0.join("filler");
    fill(&filler);

    // Every acknowledgement names a stored user; every refusal says why, in JSON.
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for n in 1..=400 {
        let answer = post(n);
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().unwrap();
        if status == 201 {
            acknowledged.push(body["user"]["id"].as_str().unwrap().to_owned());
        } else {
            assert!(matches!(status, 503 | 507), "{status}: {body}");
            assert!(body["error"]["code"].is_string(), "{body}");
            refused += 1;
            if refused >= 40 {
                break;
            }
        }
    }
    // Every acknowledged user is there for another pooled connection too.
    for id in &acknowledged {
        let got = client.get(format!("{url}/api/users/{id}")).send().unwrap();
        assert_eq!(
            got.status(),
            200,
            "user {id} was acknowledged but not stored"
        );
    }

    assert!(refused >= 40, "the disk never filled up");

    // The instance says so, and stays in rotation: reads still work, and the disk is shared
    // by every instance on it (README, "Health and the load balancer").
    let health = client.get(format!("{url}/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["storage"]["status"], "unwritable", "{health}");
    let problems = health["storage"]["problems"].to_string();
    assert!(
        problems.contains("SQLite database") && problems.contains("request log spool"),
        "{health}"
    );

    // Space back: writes resume by themselves, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        let answer = post(1000);
        if answer.status() == 201 {
            break answer.json::<serde_json::Value>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "writes did not come back: {}",
            answer.status()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let id = recovered["user"]["id"].as_str().unwrap();
    let health: serde_json::Value = client
        .get(format!("{url}/health"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(
        client
            .get(format!("{url}/api/users/{id}"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        terminate(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    drop(disk);
}
