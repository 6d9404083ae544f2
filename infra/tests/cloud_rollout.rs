//! `infra rollout` on a cloud stack, end to end: the real binary drives a stand-in `pulumi` CLI, gates the new droplets through a stand-in `ssh`, and watches through a real load balancer that follows the stack's `activeColor` as DigitalOcean's does.
//!
//! The "droplets" are real app processes, each on its own loopback address (blue on
//! 127.0.10.x, green on 127.0.20.x) and the same port, sharing one SQLite database. The
//! stand-in `pulumi` keeps the stack's config and outputs in a JSON file and logs every call,
//! so the tests check the exact commands a rollout runs.

mod tools;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const INFRA: &str = env!("CARGO_BIN_EXE_infra");
const STACK: &str = "prod";
const API_KEY: &str = "cloud-rollout-test-key-0123456789";
/// The sha256 `build: local` stands for, and the one blue was deployed with.
const NEW_SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const OLD_SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// What a green droplet runs in one case.
enum GreenBuild {
    Good,
    /// An empty database it may not migrate: `/health` answers 503 (pending migrations).
    Unhealthy,
    /// The database read-only: reads work, `POST /api/users` answers 500.
    CannotWrite,
    /// Passes every gate, answers 500 on `/api/stats` (only the watch sees it).
    StatsFail,
}

/// A deployed `prod` stack: blue active on two droplets behind a load balancer.
struct Cloud {
    dir: tempfile::TempDir,
    app_port: u16,
    lb_url: String,
    droplets: Mutex<BTreeMap<String, Child>>,
    stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
}

impl Cloud {
    fn deployed() -> Cloud {
        let dir = tempfile::tempdir().unwrap();
        let app_port = free_port();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let standins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins");
        for tool in ["pulumi", "ssh"] {
            let script = standins.join(format!("{tool}.py"));
            executable(
                &bin.join(tool),
                &format!("#!/bin/sh\nexec python3 {} \"$@\"\n", script.display()),
            );
        }
        let (lb_tx, lb_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (state, stop) = (dir.path().join("state.json"), stop.clone());
            std::thread::spawn(move || follow_active_color(&state, app_port, &lb_tx, &stop))
        };
        let lb_addr: SocketAddr = lb_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let cloud = Cloud {
            dir,
            app_port,
            lb_url: format!("http://{lb_addr}"),
            droplets: Mutex::new(BTreeMap::new()),
            stop,
            follower: Some(follower),
        };
        let config = json!({
            "rustlb:activeColor": "blue",
            "rustlb:apiKey": API_KEY,
        });
        let outputs = json!({
            "url": cloud.lb_url,
            "activeColor": "blue",
            "colorBuilds": {"blue": OLD_SHA, "green": NEW_SHA},
            "dropletNames": ["rustlb-prod-blue-1", "rustlb-prod-blue-2"],
            "dropletPublicIps": ["127.0.10.1", "127.0.10.2"],
            "databaseUri": "[secret]",
        });
        cloud.write_state(&json!({"config": config, "applied": config, "outputs": outputs}));
        // The first droplet migrates the shared database before the others start.
        cloud.start("rustlb-prod-blue-1", "127.0.10.1", &GreenBuild::Good);
        cloud.wait_healthy("127.0.10.1");
        cloud.start("rustlb-prod-blue-2", "127.0.10.2", &GreenBuild::Good);
        cloud.wait_healthy("127.0.10.2");
        cloud.wait_serving_from("blue");
        cloud
    }

    fn write_state(&self, state: &Value) {
        let path = self.dir.path().join("state.json");
        std::fs::write(&path, serde_json::to_vec_pretty(state).unwrap()).unwrap();
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("state.json")).unwrap()).unwrap()
    }

    /// Starts (or replaces) the app of one droplet.
    fn start(&self, name: &str, ip: &str, build: &GreenBuild) {
        let db = self.dir.path().join("app.sqlite");
        let mut command = match build {
            GreenBuild::StatsFail => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rollout_builds/stats_500.py");
                let mut c = Command::new("python3");
                c.arg(script);
                c
            }
            _ => {
                let mut c = Command::new(INFRA);
                c.arg("serve-app");
                c
            }
        };
        let database = match build {
            GreenBuild::Unhealthy => format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join("empty.sqlite").display()
            ),
            GreenBuild::CannotWrite => format!("sqlite://{}?mode=ro", db.display()),
            _ => format!("sqlite://{}?mode=rwc", db.display()),
        };
        let migrate = matches!(build, GreenBuild::Good);
        command
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("APP_ENVIRONMENT", "production")
            .env("APP__APPLICATION__HOST", ip)
            .env("APP__APPLICATION__PORT", self.app_port.to_string())
            .env("APP__APPLICATION__SERVER_ID", name)
            .env("APP__APPLICATION__API_KEY", API_KEY)
            .env("APP__DATABASE__URL", database)
            .env("APP__DATABASE__RUN_MIGRATIONS", migrate.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap();
        if let Some(mut old) = self.droplets.lock().unwrap().insert(name.to_owned(), child) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// The green droplets a `pulumi up` with `green.count: 2` would have created.
    fn green(&self, build: GreenBuild) {
        for i in 1..=2 {
            self.start(
                &format!("rustlb-prod-green-{i}"),
                &format!("127.0.20.{i}"),
                &build,
            );
        }
    }

    fn wait_healthy(&self, ip: &str) {
        let url = format!("http://{ip}:{}/health", self.app_port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client().get(&url).send().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{url} did not become healthy");
    }

    /// Waits until the load balancer answers from `color` only.
    fn wait_serving_from(&self, color: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ids = self.answering(6);
            if ids.len() == 6 && ids.iter().all(|id| id.contains(color)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the load balancer does not answer from {color} only");
    }

    fn answering(&self, n: usize) -> Vec<String> {
        (0..n)
            .filter_map(|_| {
                let r = client()
                    .get(format!("{}/server-info", self.lb_url))
                    .send()
                    .ok()?;
                let body: Value = r.json().ok()?;
                body["server_id"].as_str().map(str::to_owned)
            })
            .collect()
    }

    fn rollout(&self, extra: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let _ = std::fs::remove_file(self.dir.path().join("pulumi.log"));
        Command::new(INFRA)
            .args(["rollout", "--stack", STACK])
            .args(extra)
            .current_dir(root)
            .env("PATH", path)
            .env_remove("RUSTLB_API_KEY")
            .env("STANDIN_DIR", self.dir.path())
            .env("STANDIN_URL", &self.lb_url)
            .env("STANDIN_LOCAL_SHA", NEW_SHA)
            .env("STANDIN_APP_PORT", self.app_port.to_string())
            .output()
            .unwrap()
    }

    /// The `pulumi` commands the last rollout ran, without `--stack prod --non-interactive`.
    fn pulumi_calls(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("pulumi.log")).unwrap_or_default();
        log.lines()
            .map(|line| {
                let args: Vec<String> = serde_json::from_str(line).unwrap();
                args.iter()
                    .filter(|a| !matches!(a.as_str(), "--stack" | "prod" | "--non-interactive"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
        for (_, mut child) in std::mem::take(&mut *self.droplets.lock().unwrap()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// DigitalOcean's load balancer targets the active colour's tag: this one follows the stack's
/// applied `activeColor`. It adds the new colour's droplets, waits for their health checks
/// to put them in rotation, then drops the old ones.
fn follow_active_color(
    state: &Path,
    app_port: u16,
    ready: &std::sync::mpsc::Sender<SocketAddr>,
    stop: &AtomicBool,
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = lb::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        health_check: lb::HealthCheckConfig {
            interval: Duration::from_millis(500),
            response_timeout: Duration::from_millis(400),
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let running = runtime.block_on(lb::LoadBalancer::bind(config)).unwrap();
    // Adding a backend starts its health checks on this runtime.
    let _entered = runtime.enter();
    ready.send(running.local_addr()).unwrap();
    let mut serving: Vec<String> = Vec::new();
    let mut color = String::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let Some(applied) = std::fs::read(state)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let active = applied["applied"]["rustlb:activeColor"]
            .as_str()
            .unwrap_or("blue")
            .to_owned();
        if active == color {
            continue;
        }
        let outputs = &applied["outputs"];
        let targets: Vec<(String, String)> = outputs["dropletNames"]
            .as_array()
            .unwrap()
            .iter()
            .zip(outputs["dropletPublicIps"].as_array().unwrap())
            .map(|(n, ip)| {
                (
                    n.as_str().unwrap().to_owned(),
                    ip.as_str().unwrap().to_owned(),
                )
            })
            .filter(|(n, _)| n.contains(&format!("-{active}-")))
            .collect();
        for (name, ip) in &targets {
            let addr = SocketAddr::new(ip.parse().unwrap(), app_port);
            let _ = running.add_backend(lb::BackendConfig::new(name.clone(), addr));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && !targets.iter().all(|(n, _)| {
                running
                    .status()
                    .iter()
                    .any(|s| &s.id == n && s.state == lb::BackendState::Up)
            })
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for old in serving.drain(..) {
            running.remove_backend(&old);
        }
        serving = targets.into_iter().map(|(n, _)| n).collect();
        color = active;
    }
    runtime.block_on(running.shutdown(Duration::from_secs(1)));
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// GETs and POSTs through the load balancer until stopped: (sent, failed).
fn load(url: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let url = url.to_owned();
    let n = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        let client = client();
        let (mut sent, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) && sent < 20_000 {
            sent += 1;
            let i = n.fetch_add(1, Ordering::Relaxed);
            let ok = if i.is_multiple_of(2) {
                client
                    .get(format!("{url}/server-info"))
                    .send()
                    .is_ok_and(|r| r.status() == 200)
            } else {
                client
                    .post(format!("{url}/api/users"))
                    .bearer_auth(API_KEY)
                    .json(&json!({"name": "load", "email": format!("load-{}@example.com", uuid::Uuid::now_v7())}))
                    .send()
                    .is_ok_and(|r| r.status() == 201)
            };
            if !ok {
                failed += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, failed)
    })
}

const FAST: [&str; 4] = ["--health-timeout-seconds", "4", "--watch-seconds", "2"];

fn pin_and_start() -> Vec<String> {
    vec![
        "stack output --json".to_owned(),
        format!("config set --path rustlb:blue.build {OLD_SHA}"),
        "config set --path rustlb:green.build local".to_owned(),
        "config set --path rustlb:green.count 2".to_owned(),
        "up --yes --skip-preview".to_owned(),
        "stack output --json".to_owned(),
    ]
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_cloud_rollout_drives_pulumi_gates_over_ssh_and_switches_back_when_a_check_fails() {
    tools::require("python3", tools::runs("python3"), "apt-get install python3");
    let cloud = Cloud::deployed();

    // 1. Green never becomes healthy: refused before any traffic moves, green scaled to 0.
    cloud.green(GreenBuild::Unhealthy);
    let out = cloud.rollout(&FAST);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("health check failed: rustlb-prod-green-1"),
        "{err}"
    );
    assert!(err.contains("blue keeps serving"), "{err}");
    let mut expected = vec!["config get rustlb:apiKey".to_owned()];
    expected.extend(pin_and_start());
    expected.extend(strings(&[
        "config set --path rustlb:green.count 0",
        "up --yes --skip-preview",
    ]));
    assert_eq!(cloud.pulumi_calls(), expected);
    assert_eq!(cloud.state()["applied"]["rustlb:activeColor"], "blue");
    let ssh = std::fs::read_to_string(cloud.dir.path().join("ssh.log")).unwrap();
    assert!(
        ssh.contains("-o BatchMode=yes") && ssh.contains(":127.0.0.1:3000 root@127.0.20.1"),
        "the gate reaches the droplet's port 3000 over SSH: {ssh}"
    );

    // 2. Green is healthy but cannot write: verify's checks refuse it before the switch.
    cloud.green(GreenBuild::CannotWrite);
    let out = cloud.rollout(&FAST);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("verify check failed on rustlb-prod-green-1: consistency"),
        "{err}"
    );
    assert!(
        !cloud
            .pulumi_calls()
            .iter()
            .any(|c| c.contains("activeColor"))
    );
    cloud.wait_serving_from("-blue-");

    // 3. Green passes the gates but fails under traffic: the watch switches back.
    cloud.green(GreenBuild::StatsFail);
    let out = cloud.rollout(&["--health-timeout-seconds", "20", "--watch-seconds", "4"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("watch failed"), "{err}");
    assert!(err.contains("traffic switched back"), "{err}");
    let mut expected = vec!["config get rustlb:apiKey".to_owned()];
    expected.extend(pin_and_start());
    expected.extend(strings(&[
        "config set rustlb:activeColor green",
        "up --yes --skip-preview",
        "config set rustlb:activeColor blue",
        "up --yes --skip-preview",
        "config set --path rustlb:green.count 0",
        "up --yes --skip-preview",
    ]));
    assert_eq!(cloud.pulumi_calls(), expected);
    cloud.wait_serving_from("blue");

    // 4. A good build under load: switched, watched, blue retired, no request failed.
    cloud.green(GreenBuild::Good);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(&cloud.lb_url, stop.clone());
    let out = cloud.rollout(&["--health-timeout-seconds", "20", "--watch-seconds", "3"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = traffic.join().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        text(&out.stdout).contains("green serves build bbbbbbbbbbbb"),
        "{}",
        text(&out.stdout)
    );
    let mut expected = vec!["config get rustlb:apiKey".to_owned()];
    expected.extend(pin_and_start());
    expected.extend(strings(&[
        "config set rustlb:activeColor green",
        "up --yes --skip-preview",
    ]));
    expected.push(format!("config set --path rustlb:green.build {NEW_SHA}"));
    expected.extend(strings(&[
        "config set --path rustlb:blue.count 0",
        "up --yes --skip-preview",
    ]));
    assert_eq!(cloud.pulumi_calls(), expected);
    let ids = cloud.answering(6);
    assert!(
        ids.len() == 6 && ids.iter().all(|id| id.contains("-green-")),
        "{ids:?}"
    );
    assert!(sent > 50, "too little load to mean anything: {sent}");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rollout"
    );
    assert!(
        !err.contains(API_KEY) && !text(&out.stdout).contains(API_KEY),
        "the API key never shows"
    );
}

#[test]
fn a_cloud_rollout_refuses_a_build_that_is_not_a_sha256_before_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(INFRA)
        .args([
            "rollout",
            "--stack",
            STACK,
            "--build",
            "v1.2",
            "--api-key",
            API_KEY,
        ])
        .current_dir(root)
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--build must be `local` or the 64-hex sha256"),
        "{err}"
    );
}
