//! The local stack end to end: the real `infra` binary starts real app processes behind the
//! embedded load balancer on loopback ports, and tears them down again.

mod browser;
mod stack;

mod tools;

use browser::{browse, chromium};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const INFRA: &str = env!("CARGO_BIN_EXE_infra");

/// A throwaway repository root with its own `Pulumi.yaml`, local stack file and free ports.
struct Sandbox {
    root: stack::Root,
}

impl std::ops::Deref for Sandbox {
    type Target = stack::Root;
    fn deref(&self) -> &stack::Root {
        &self.root
    }
}

impl Sandbox {
    fn new(extra_config: &str) -> Self {
        // Six backend ports: a rollout drill starts the new build on the second block.
        Self {
            root: stack::Root::new(3, 6, stack::SQLITE, extra_config),
        }
    }

    /// `infra up --stack local --detach`, which must succeed; what it printed.
    fn up_detached(&self) -> String {
        let up = self.infra(&["up", "--stack", "local", "--detach"]);
        assert!(
            up.status.success(),
            "up --detach failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        String::from_utf8_lossy(&up.stdout).into_owned()
    }

    fn spawn_foreground(&self) -> Child {
        Command::new(INFRA)
            .args(["up", "--stack", "local"])
            .current_dir(self.root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("infra up starts")
    }

    fn status(&self) -> Option<Value> {
        let out = self.infra(&["status", "--stack", "local", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("status --json is JSON"))
    }

    /// Polls `status` until `accept` holds (bounded).
    fn wait_status(&self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.status()
                && accept(&status)
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what}; last status {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ports(&self) -> Vec<u16> {
        vec![
            self.lb_port,
            self.first_port,
            self.first_port + 1,
            self.first_port + 2,
        ]
    }
}

fn all_up(status: &Value) -> bool {
    status["backends"]
        .as_array()
        .is_some_and(|b| b.len() == 3 && b.iter().all(|b| b["state"] == "up"))
}

fn pids(status: &Value) -> Vec<u32> {
    let mut pids: Vec<u32> = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["pid"].as_u64().map(|p| p as u32))
        .collect();
    pids.push(status["supervisor_pid"].as_u64().unwrap() as u32);
    pids
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .map(|zombie| !zombie)
        })
        .unwrap_or(false)
}

fn assert_nothing_left(sandbox: &Sandbox, pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids {
        assert!(!alive(pid), "process {pid} is still running");
    }
    for port in sandbox.ports() {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
}

fn server_id(client: &reqwest::blocking::Client, url: &str) -> String {
    let response = client
        .get(url)
        .send()
        .expect("request through the load balancer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    body["server_id"].as_str().unwrap().to_owned()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn a_detached_stack_rotates_survives_a_killed_instance_and_destroys_cleanly() {
    let sandbox = Sandbox::new("");
    let printed = sandbox.up_detached();
    assert!(
        printed.contains(&sandbox.url("")),
        "up prints the URL: {printed}"
    );
    assert!(
        printed.contains("local-3"),
        "up prints the status table: {printed}"
    );

    let status = sandbox.wait_status("all three instances up", all_up);
    assert_eq!(status["url"], sandbox.url(""));
    let ports: Vec<u64> = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [0, 1, 2].map(|i| u64::from(sandbox.first_port) + i));
    let mut every_pid = pids(&status);

    // Exact round robin: each of 9 requests goes to the next instance.
    let client = client();
    let seen: Vec<String> = (0..9)
        .map(|_| server_id(&client, &sandbox.url("/server-info")))
        .collect();
    for window in seen.windows(3) {
        let mut ids = window.to_vec();
        ids.sort();
        assert_eq!(
            ids,
            ["local-1", "local-2", "local-3"],
            "not round robin: {seen:?}"
        );
    }

    // Request ids reach the app and come back; one is made up when the client sends none.
    let given = client
        .get(sandbox.url("/server-info"))
        .header("x-request-id", "stack-test-1")
        .send()
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "stack-test-1");
    let made = client.get(sandbox.url("/server-info")).send().unwrap();
    assert!(!made.headers()["x-request-id"].is_empty());

    // Kill one instance outright: clients see no errors, the supervisor restarts it and the
    // load balancer takes it back only once it passes its checks.
    let victim = status["backends"][1]["pid"].as_u64().unwrap() as i32;
    // SAFETY: plain kill(2) of a child process of the stack.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    for _ in 0..30 {
        let response = client
            .get(sandbox.url("/server-info"))
            .send()
            .expect("no client error");
        assert_eq!(response.status(), 200);
    }
    let recovered = sandbox.wait_status("local-2 restarted and healthy", |s| {
        let b = &s["backends"][1];
        b["restarts"] == 1
            && b["state"] == "up"
            && b["pid"].as_u64().is_some_and(|p| p as i32 != victim)
    });
    every_pid.extend(pids(&recovered));

    let destroy = sandbox.infra(&["destroy", "--stack", "local"]);
    assert!(
        destroy.status.success(),
        "{}",
        String::from_utf8_lossy(&destroy.stderr)
    );
    assert_nothing_left(&sandbox, &every_pid);
    let after = sandbox.infra(&["status", "--stack", "local"]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("not running"));
}

#[test]
fn a_foreground_stack_stops_on_sigterm_and_flushes_request_logs() {
    let sandbox = Sandbox::new("");
    let mut up = sandbox.spawn_foreground();
    let status = sandbox.wait_status("all three instances up", all_up);
    let every_pid = pids(&status);

    let client = client();
    for _ in 0..21 {
        server_id(&client, &sandbox.url("/server-info"));
    }
    // SAFETY: plain kill(2) of our child.
    assert_eq!(unsafe { libc::kill(up.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(40);
    let exit = loop {
        if let Some(exit) = up.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "infra up did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "infra up exited with {exit}");
    assert_nothing_left(&sandbox, &every_pid);

    let rows = count_rows(
        sandbox.root(),
        "SELECT server_id, client_ip FROM requests_log WHERE path = '/server-info'",
    );
    assert_eq!(rows.len(), 21, "every request was logged before exit");
    for id in ["local-1", "local-2", "local-3"] {
        assert_eq!(
            rows.iter().filter(|(s, _)| s == id).count(),
            7,
            "{id} served a third: {rows:?}"
        );
    }
    // X-Forwarded-For from the load balancer is what the app records as the client.
    assert!(
        rows.iter()
            .all(|(_, ip)| ip.as_deref() == Some("127.0.0.1")),
        "{rows:?}"
    );
}

#[test]
fn up_refuses_a_taken_port_and_names_the_key() {
    let sandbox = Sandbox::new("");
    let _squatter = TcpListener::bind(("127.0.0.1", sandbox.lb_port)).unwrap();
    let up = sandbox.infra(&["up", "--stack", "local", "--detach"]);
    assert!(!up.status.success());
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("rustlb:lbAddress") && err.contains("Pulumi.local.yaml"),
        "{err}"
    );
    let destroy = sandbox.infra(&["destroy", "--stack", "local"]);
    assert!(destroy.status.success());
    assert!(String::from_utf8_lossy(&destroy.stdout).contains("not running"));
}

#[test]
fn sticky_sessions_pin_a_client_to_one_instance() {
    let sandbox = Sandbox::new(
        "  rustlb:stickySessions:\n    type: cookies\n    cookieName: RUSTLB\n    cookieTtlSeconds: 60\n",
    );
    let mut up = sandbox.spawn_foreground();
    let status = sandbox.wait_status("all three instances up", all_up);
    let client = client();
    let first = client.get(sandbox.url("/server-info")).send().unwrap();
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("RUSTLB="), "{cookie}");
    let pinned = first.json::<Value>().unwrap()["server_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    for _ in 0..6 {
        let body: Value = client
            .get(sandbox.url("/server-info"))
            .header("cookie", &pair)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["server_id"], pinned.as_str());
    }
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let _ = up.wait();
    assert_nothing_left(&sandbox, &pids(&status));
}

fn count_rows(root: &Path, sql: &str) -> Vec<(String, Option<String>)> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db_path: PathBuf = root.join("data/local.sqlite");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Database::connect(format!("sqlite://{}?mode=ro", db_path.display()))
            .await
            .unwrap();
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (
                    r.try_get::<String>("", "server_id").unwrap(),
                    r.try_get::<Option<String>>("", "client_ip").unwrap(),
                )
            })
            .collect()
    })
}

#[test]
fn pulumi_up_on_the_local_stack_points_to_infra_up() {
    let sandbox = Sandbox::new("");
    // What the Gestalt language host does for `pulumi up -s local`.
    let out = Command::new(INFRA)
        .current_dir(sandbox.root())
        .env("PULUMI_MONITOR", "127.0.0.1:1")
        .env("PULUMI_ENGINE", "127.0.0.1:1")
        .env("PULUMI_PROJECT", "rustlb")
        .env("PULUMI_STACK", "local")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("up --stack local"), "{err}");
}

#[test]
fn verify_passes_on_a_balanced_stack_and_fails_on_a_single_server() {
    let sandbox = Sandbox::new("");
    sandbox.up_detached();
    let status = sandbox.wait_status("all instances up", all_up);

    let out = sandbox.infra(&["verify", "--stack", "local", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("verify --json is JSON");
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["passed"], true);
    let counts = report["distribution"]["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 3, "{report:#}");
    for check in ["headers", "distribution", "consistency", "stats", "errors"] {
        let c = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap_or_else(|| panic!("no {check} check"));
        assert_eq!(c["passed"], true, "{c}");
    }
    let text = sandbox.infra(&["verify", "--stack", "local"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("local-2  █"), "a bar per server:\n{text}");

    // One instance on its own is not a balanced deployment: verify says so and exits 1.
    let port = status["backends"][0]["port"].as_u64().unwrap();
    let single = sandbox.infra(&["verify", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(single.status.code(), Some(1));
    let text = String::from_utf8_lossy(&single.stdout);
    assert!(text.contains("FAIL  distribution"), "{text}");

    assert!(
        sandbox
            .infra(&["destroy", "--stack", "local"])
            .status
            .success()
    );
}

#[test]
fn drills_under_load_lose_no_request_and_no_log_row() {
    // The load balancer as the shipped local stack runs it (stacks/Pulumi.local.yaml).
    let sandbox = Sandbox::new(
        "  rustlb:lbLeaveOnDraining: true\n  rustlb:lbLeastOutstanding: true\n  \
         rustlb:lbResponseTimeoutSeconds: 10\n  rustlb:lbEjectAfterTimeouts: 2\n",
    );
    sandbox.up_detached();
    sandbox.wait_status("all instances up", all_up);
    let before = pids(&sandbox.status().unwrap());

    let out = sandbox.infra(&[
        "verify",
        "--stack",
        "local",
        "--drills",
        "--json",
        "--requests",
        "12",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("verify --json is JSON");
    let drills = report["drills"].as_array().unwrap();
    let names: Vec<&str> = drills.iter().map(|d| d["name"].as_str().unwrap()).collect();
    let mut expected = vec![
        "kill -9 one instance, reads",
        "kill -9 one instance, writes",
        "rolling restart, reads",
        "rolling restart, writes",
        "outside SIGTERM roll",
        "frozen backend",
    ];
    // The full-disk drill mounts a small file system: root only (CI runs as root).
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        expected.push("full disk (SQLite)");
    }
    expected.extend([
        "rollout, build fails its health check",
        "rollout, build answers 5xx on POST /api/users",
        "rollout, good build",
    ]);
    assert_eq!(names, expected, "SQLite: no database outage drill");
    for d in drills {
        assert!(d["requests"].as_u64().unwrap() > 100, "{d}");
        assert_eq!(d["passed"], true, "{d}");
        if d["name"] == "full disk (SQLite)" {
            // Its refusals while full are the point; none of them may be a lost write.
            assert!(d["failures"].get("201 but not stored").is_none(), "{d}");
        } else if d["name"] == "kill -9 one instance, writes" {
            // Only the writes in flight at the kill, which are never replayed.
            let failures = d["failures"].as_object().unwrap();
            assert!(failures.keys().all(|k| k.starts_with("502")), "{d}");
            assert!(
                d["failed"].as_u64().unwrap() <= 8,
                "more than the clients: {d}"
            );
        } else if d["name"] == "frozen backend" {
            // SQLite: the frozen instance may hold the one write lock (frozen.rs).
            let failures = d["failures"].as_object().unwrap();
            assert!(
                failures.keys().all(|k| k == "503 database_unavailable"),
                "{d}"
            );
        } else {
            assert_eq!(d["failed"], 0, "{d}");
        }
    }
    for d in drills {
        assert_eq!(d["lost_log_rows"], 0, "{d}");
    }
    assert!(
        drills[expected.len() - 3]["note"]
            .as_str()
            .unwrap()
            .starts_with("health check failed"),
        "{}",
        drills[expected.len() - 3]
    );
    assert!(
        drills[expected.len() - 2]["note"]
            .as_str()
            .unwrap()
            .contains("verify check failed"),
        "{}",
        drills[expected.len() - 2]
    );
    // Every instance was replaced by the kill and the rolling restarts.
    let after = pids(&sandbox.wait_status("all instances up", all_up));
    // The last pid is the supervisor's, which stays.
    assert!(
        after[..3].iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert!(out.status.success());
    assert!(
        sandbox
            .infra(&["destroy", "--stack", "local"])
            .status
            .success()
    );
}

#[test]
fn restart_brings_each_instance_back_before_the_next() {
    let sandbox = Sandbox::new("");
    sandbox.up_detached();
    let before = pids(&sandbox.wait_status("all instances up", all_up));
    let out = sandbox.infra(&["restart", "--stack", "local", "--server-id", "local-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = pids(&sandbox.status().unwrap());
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[1], "local-2 was restarted");
    assert_eq!(after[2], before[2]);
    assert!(
        all_up(&sandbox.status().unwrap()),
        "back in rotation when restart returns"
    );
    let unknown = sandbox.infra(&["restart", "--stack", "local", "--server-id", "local-9"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("local-9"));
    assert!(
        sandbox
            .infra(&["destroy", "--stack", "local"])
            .status
            .success()
    );
}

/// Every file under `dir`, recursively, as text.
fn all_text_under(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&all_text_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

#[test]
fn database_passwords_never_reach_the_terminal_or_the_logs() {
    // Reserved characters in the password, and a password parameter under an encoded name.
    for (url, secrets) in [
        (
            "postgres://postgres:s3c?ret@127.0.0.1:5432/rustlb_no_such_db",
            vec!["s3c?ret", "s3c%3Fret"],
        ),
        (
            "postgres://u:p%40ss%2Fw%23rd@127.0.0.1:5432/rustlb_no_such_db",
            vec!["p%40ss%2Fw%23rd", "p@ss/w#rd"],
        ),
        (
            "postgres://postgres@127.0.0.1:5432/rustlb_no_such_db?pass%77ord=hunter2",
            vec!["hunter2"],
        ),
    ] {
        let sandbox = Sandbox::new("");
        let stack = sandbox.root().join("stacks/Pulumi.local.yaml");
        let text = std::fs::read_to_string(&stack)
            .unwrap()
            .replace("sqlite://data/local.sqlite?mode=rwc", &format!("\"{url}\""));
        std::fs::write(&stack, text).unwrap();
        let out = Command::new(INFRA)
            .args(["up", "--stack", "local"])
            .current_dir(sandbox.root())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "no database there: up must fail");
        let mut seen = String::from_utf8_lossy(&out.stdout).into_owned();
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(
            seen.contains("rustlb:databaseUrl"),
            "the error names the key: {seen}"
        );
        seen.push_str(&all_text_under(&sandbox.root().join(".stack")));
        for secret in secrets {
            assert!(
                !seen.contains(secret),
                "{secret} printed for {url}:\n{seen}"
            );
        }
    }
}

#[test]
fn status_shows_the_size_of_a_postgresql_database() {
    let Some(db) = stack::ScratchDatabase::create("status") else {
        return;
    };
    let sandbox = Sandbox::new("");
    let stack = sandbox.root().join("stacks/Pulumi.local.yaml");
    let text = std::fs::read_to_string(&stack)
        .unwrap()
        .replace(stack::SQLITE, &db.url(None));
    std::fs::write(&stack, text).unwrap();
    sandbox.up_detached();
    let status = sandbox.wait_status("all instances up", all_up);
    let bytes = status["database_bytes"]
        .as_u64()
        .expect("a size for PostgreSQL");
    assert!(bytes > 1_000_000, "{bytes}");
    let table = sandbox.infra(&["status", "--stack", "local"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("MB on disk"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    assert!(
        sandbox
            .infra(&["destroy", "--stack", "local"])
            .status
            .success()
    );
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn the_dashboard_shows_every_server_live_in_a_real_browser() {
    chromium();
    let sandbox = Sandbox::new("");
    sandbox.up_detached();
    sandbox.wait_status("all instances up", all_up);
    let client = client();
    for _ in 0..30 {
        server_id(&client, &sandbox.url("/server-info"));
    }
    let dom = browse(&sandbox.url("/dashboard"), 8000, None);
    assert!(
        dom.contains("data-state=\"live\""),
        "the page never got its data:\n{dom}"
    );
    for id in ["local-1", "local-2", "local-3"] {
        assert!(
            dom.contains(&format!("data-server-id=\"{id}\"")),
            "{id} missing:\n{dom}"
        );
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (name, size) in [
        ("dashboard-desktop.png", "1280,860"),
        ("dashboard-phone.png", "390,844"),
    ] {
        let path = shots.join(name);
        let _ = std::fs::remove_file(&path);
        browse(&sandbox.url("/dashboard"), 8000, Some((&path, size)));
        let png = std::fs::read(&path).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: {} bytes",
            png.len()
        );
    }
    assert!(
        sandbox
            .infra(&["destroy", "--stack", "local"])
            .status
            .success()
    );
}

/// The pid `status` reports for `server_id`, if it runs.
fn pid_of(status: &Value, server_id: &str) -> Option<i32> {
    status["backends"]
        .as_array()?
        .iter()
        .find(|b| b["server_id"] == server_id)?["pid"]
        .as_i64()
        .map(|p| p as i32)
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn the_dashboard_shows_a_backend_going_down_and_its_traffic_moving_in_a_real_browser() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    chromium();
    let sandbox = Arc::new(Sandbox::new(""));
    sandbox.up_detached();
    sandbox.wait_status("all instances up", all_up);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, stop) = (sandbox.url("/server-info"), stop.clone());
        std::thread::spawn(move || {
            let client = client();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(90) {
                let _ = client.get(&url).send();
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    // Two whole 5 s steps of all three serving, then local-2 crash-loops: killed whenever the
    // supervisor brings it back, so the page is bound to catch it out of rotation.
    std::thread::sleep(Duration::from_secs(11));
    let crash_loop = {
        let (sandbox, stop) = (sandbox.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut killed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(pid) = sandbox.status().and_then(|s| pid_of(&s, "local-2"))
                    && !killed.contains(&pid)
                {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    killed.push(pid);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            killed.len()
        })
    };
    std::thread::sleep(Duration::from_secs(9));

    let dom = browse(&sandbox.url("/dashboard"), 4000, None);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-failover.png");
    let _ = std::fs::remove_file(&shot);
    browse(&sandbox.url("/dashboard"), 4000, Some((&shot, "1280,1400")));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let kills = crash_loop.join().unwrap();

    assert!(
        dom.contains("data-lb=\"live\""),
        "no load balancer view:\n{dom}"
    );
    assert!(
        dom.contains("data-backend-id=\"local-2\" data-state=\"down\""),
        "local-2 is not shown down:\n{dom}"
    );
    for id in ["local-1", "local-3"] {
        assert!(
            dom.contains(&format!("data-backend-id=\"{id}\" data-state=\"up\"")),
            "{id} is not shown up:\n{dom}"
        );
    }
    assert!(
        dom.contains("data-marker=\"local-2 down\""),
        "no marker where local-2 left rotation:\n{dom}"
    );
    assert!(
        dom.matches("class=\"series\"").count() >= 9,
        "a line per backend in each of the three charts:\n{dom}"
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot: {} bytes",
        png.len()
    );
    assert!(kills >= 1);
    // `RUSTLB_DOCS=1` keeps the picture for README and docs/reliability.md.
    if std::env::var_os("RUSTLB_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard-failover.png");
        std::fs::copy(&shot, docs).unwrap();
    }
    assert!(
        sandbox
            .infra(&["destroy", "--stack", "local"])
            .status
            .success()
    );
}
