//! `infra rollout` end to end: the real binary rolls a new build out on a running local stack, or refuses it and keeps the old one serving.

mod stack;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

mod tools;

const INFRA: &str = env!("CARGO_BIN_EXE_infra");

/// A throwaway repository root with a running local stack of three instances.
struct Stack {
    root: stack::Root,
}

impl std::ops::Deref for Stack {
    type Target = stack::Root;
    fn deref(&self) -> &stack::Root {
        &self.root
    }
}

impl Stack {
    fn up() -> Stack {
        // Six backend ports: the old build on one block, the new on the next.
        let stack = Stack {
            root: stack::Root::new(3, 6, stack::SQLITE, ""),
        };
        let up = stack.infra(&["up", "--stack", "local", "--detach"]);
        assert!(up.status.success(), "up failed: {}", text(&up.stderr));
        stack
    }

    /// A "build": a script that runs the app (this infra binary's `serve-app`) with `env`.
    fn build(&self, name: &str, env: &str) -> PathBuf {
        let path = self.root().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{env} exec {INFRA} serve-app\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn rollout(&self, binary: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["rollout", "--stack", "local", "--binary"];
        args.push(binary.to_str().unwrap());
        args.extend(extra);
        self.infra(&args)
    }

    fn status(&self) -> Value {
        let out = self.infra(&["status", "--stack", "local", "--json"]);
        assert!(out.status.success(), "status: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The server ids `status` lists, all of which must be up.
    fn serving(&self) -> Vec<String> {
        let status = self.status();
        let backends = status["backends"].as_array().unwrap();
        assert!(
            backends.iter().all(|b| b["state"] == "up"),
            "not all up: {status}"
        );
        backends
            .iter()
            .map(|b| b["server_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Who answers `/server-info` through the load balancer, over `n` requests.
    fn answering(&self, n: usize) -> Vec<String> {
        let client = client();
        let mut ids: Vec<String> = (0..n)
            .map(|_| {
                let r = client.get(self.url("/server-info")).send().unwrap();
                assert_eq!(r.status(), 200);
                let body: Value = r.json().unwrap();
                body["server_id"].as_str().unwrap().to_owned()
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.infra(&["destroy", "--stack", "local"]);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn ids(prefix: &str) -> Vec<String> {
    (1..=3).map(|i| format!("{prefix}{i}")).collect()
}

/// Requests through the load balancer from two threads until stopped: (sent, failed).
fn load(stack: &Stack, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(u64, u64)>> {
    let counted = Arc::new(AtomicU64::new(0));
    (0..2)
        .map(|_| {
            let (url, stop, counted) = (stack.url("/server-info"), stop.clone(), counted.clone());
            std::thread::spawn(move || {
                let client = client();
                let (mut sent, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    sent += 1;
                    counted.fetch_add(1, Ordering::Relaxed);
                    match client.get(&url).send() {
                        Ok(r) if r.status() == 200 => {}
                        _ => failed += 1,
                    }
                }
                (sent, failed)
            })
        })
        .collect()
}

#[test]
fn a_good_build_rolls_out_under_load_without_a_failed_request() {
    let stack = Stack::up();
    assert_eq!(stack.serving(), ids("local-"));
    let good = stack.build("good-build", "");

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&stack, stop.clone());
    let out = stack.rollout(&good, &["--watch-seconds", "2"]);
    assert!(
        out.status.success(),
        "rollout failed: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("local-2-1"),
        "{}",
        text(&out.stdout)
    );
    // The same again: the third generation goes back to the first ports.
    let again = stack.rollout(&good, &["--watch-seconds", "1"]);
    assert!(
        again.status.success(),
        "second rollout: {}",
        text(&again.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .fold((0, 0), |(s, f), (s2, f2)| (s + s2, f + f2));

    eprintln!("{sent} requests through the load balancer during two rollouts, {failed} failed");
    assert_eq!(stack.serving(), ids("local-3-"));
    assert_eq!(stack.answering(12), ids("local-3-"));
    assert!(sent > 50, "too little load to mean anything: {sent}");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rollouts"
    );
}

#[test]
fn a_build_that_fails_its_gates_is_refused_and_the_old_one_keeps_serving() {
    let stack = Stack::up();
    let started = Instant::now();
    // An empty database: migrations pending, so /health answers 503.
    let unhealthy = stack.build(
        "unhealthy-build",
        "APP__DATABASE__URL='sqlite://data/empty.sqlite?mode=rwc'",
    );
    let out = stack.rollout(&unhealthy, &["--health-timeout-seconds", "4"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "an unhealthy build was rolled out");
    assert!(err.contains("health check failed"), "{err}");
    assert_eq!(stack.serving(), ids("local-"));
    assert_eq!(stack.answering(9), ids("local-"));

    // Reads work, writes fail: POST /api/users answers 500.
    let read_only = stack.build(
        "read-only-build",
        "APP__DATABASE__URL='sqlite://data/local.sqlite?mode=ro'",
    );
    let out = stack.rollout(&read_only, &[]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a build that cannot write was rolled out"
    );
    assert!(err.contains("verify check failed"), "{err}");
    assert!(err.contains("consistency"), "{err}");
    assert_eq!(stack.serving(), ids("local-"));
    assert_eq!(stack.answering(9), ids("local-"));

    // A build that does not even start.
    let missing = stack.build("crashing-build", "APP__APPLICATION__PORT=not-a-port");
    let out = stack.rollout(&missing, &[]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a crashing build was rolled out");
    assert!(
        err.contains("health check failed") && err.contains("exited"),
        "{err}"
    );
    assert_eq!(stack.serving(), ids("local-"));

    // Nothing is left of the refused builds: a good one gets their ports.
    let good = stack.build("good-build", "");
    let out = stack.rollout(&good, &["--watch-seconds", "1"]);
    assert!(
        out.status.success(),
        "rollout failed: {}",
        text(&out.stderr)
    );
    assert_eq!(stack.serving(), ids("local-5-"));
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn a_build_that_fails_under_traffic_is_rolled_back_by_the_watch() {
    tools::require("python3", tools::runs("python3"), "apt-get install python3");
    let stack = Stack::up();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rollout_builds/stats_500.py");
    let path = stack.root().join("stats-500-build");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec python3 {}\n", script.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, stop) = (stack.url("/api/stats"), stop.clone());
        std::thread::spawn(move || {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let _ = client.get(&url).send();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = stack.rollout(&path, &["--watch-seconds", "5"]);
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();

    let err = text(&out.stderr);
    assert!(!out.status.success(), "a build answering 500 was kept");
    assert!(err.contains("watch failed"), "{err}");
    assert!(err.contains("5xx"), "{err}");
    assert!(err.contains("traffic switched back"), "{err}");
    assert_eq!(stack.serving(), ids("local-"));
    assert_eq!(stack.answering(9), ids("local-"));
    let stats = client().get(stack.url("/api/stats")).send().unwrap();
    assert_eq!(stats.status(), 200, "the old build answers again");
}
