//! The local stack's load balancer against failures from outside the supervisor: a SIGTERM from anyone, and a frozen instance, through the real binaries.

mod stack;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A throwaway repository root with a running local stack of three instances, destroyed on drop.
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
    fn up(extra: &str) -> Stack {
        let stack = Stack {
            root: stack::Root::new(3, 3, stack::SQLITE, extra),
        };
        let up = stack.infra(&["up", "--stack", "local", "--detach"]);
        assert!(up.status.success(), "up failed: {}", text(&up.stderr));
        stack.wait("every instance up", all_up);
        stack
    }

    fn status(&self) -> Value {
        let out = self.infra(&["status", "--stack", "local", "--json"]);
        assert!(out.status.success(), "status: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `status` until `accept` holds, for at most 30 s.
    fn wait(&self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status();
            if accept(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "timed out: {what}; {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
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

fn all_up(status: &Value) -> bool {
    status["backends"]
        .as_array()
        .is_some_and(|b| b.iter().all(|b| b["state"] == "up" && b["pid"].is_u64()))
}

fn pid_of(status: &Value, i: usize) -> i32 {
    status["backends"][i]["pid"].as_u64().unwrap() as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) of one of the stack's app processes.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
}

/// One answered (or failed) request of the load.
struct Outcome {
    /// When it was sent, from the start of the load.
    at: Duration,
    latency: Duration,
    /// The status, or `None` when no answer came back.
    status: Option<u16>,
    write: bool,
}

/// Keep-alive clients sending through the load balancer until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    clients: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// `clients` threads, each on its own keep-alive connection; with `writes`, every other
    /// request is a POST /api/users, else all are GET /server-info.
    fn start(stack: &Stack, clients: usize, writes: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let serial = Arc::new(AtomicU64::new(0));
        let clients = (0..clients)
            .map(|_| {
                let (stop, serial) = (stop.clone(), serial.clone());
                let (info, users) = (stack.url("/server-info"), stack.url("/api/users"));
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap();
                    let mut outcomes = Vec::new();
                    let mut write = false;
                    while !stop.load(Ordering::Relaxed) {
                        write = writes && !write;
                        let sent = Instant::now();
                        let response = if write {
                            let n = serial.fetch_add(1, Ordering::Relaxed);
                            let email = format!("u{n}-{}@example.com", std::process::id());
                            client
                                .post(&users)
                                .json(&serde_json::json!({"name": "Load", "email": email}))
                                .send()
                        } else {
                            client.get(&info).send()
                        };
                        outcomes.push(Outcome {
                            at: sent - started,
                            latency: sent.elapsed(),
                            status: response.ok().map(|r| r.status().as_u16()),
                            write,
                        });
                    }
                    outcomes
                })
            })
            .collect();
        Load {
            stop,
            started,
            clients,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    }
}

fn ok(o: &Outcome) -> bool {
    o.status.is_some_and(|s| (200..300).contains(&s))
}

/// SIGTERM sent to each instance in turn by pid, as `systemctl stop`, an operator's `kill` or
/// the OOM killer's stop would, never through the supervisor: no request fails, and each
/// instance is started again at once (a clean exit is no crash) and back in rotation soon.
#[test]
fn sigterm_from_outside_fails_no_request_and_restarts_without_backoff() {
    let stack = Stack::up("  rustlb:lbLeaveOnDraining: true\n");
    let load = Load::start(&stack, 16, true);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        let before = stack.wait("every instance up", all_up);
        let pid = pid_of(&before, i);
        let restarts = before["backends"][i]["restarts"].as_u64().unwrap();
        let killed = Instant::now();
        signal(pid, libc::SIGTERM);
        while alive(pid) {
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "{pid} did not stop"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let exited = Instant::now();
        let again = stack.wait("started again", |s| {
            s["backends"][i]["pid"]
                .as_u64()
                .is_some_and(|p| p as i32 != pid)
        });
        let restarted_after = exited.elapsed();
        assert_eq!(again["backends"][i]["restarts"], restarts + 1);
        // Crash backoff starts at 1 s; a clean exit waits for nothing (the margin is for
        // polling `infra status`).
        assert!(
            restarted_after < Duration::from_millis(800),
            "instance {i} restarted {restarted_after:?} after its clean exit"
        );
        stack.wait("back in rotation", |s| s["backends"][i]["state"] == "up");
        let out_for = exited.elapsed();
        // Start-up, then two passing checks a second apart.
        assert!(
            out_for < Duration::from_secs(6),
            "instance {i} out of rotation {out_for:?} after its exit"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    let failed: Vec<_> = outcomes.iter().filter(|o| !ok(o)).collect();
    let writes = outcomes.iter().filter(|o| o.write).count();
    assert!(writes > 300, "too little load to judge: {writes} writes");
    assert!(outcomes.len() - writes > 300, "too little load to judge");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        outcomes.len(),
        failed
            .iter()
            .map(|o| (o.at, o.status, o.write))
            .collect::<Vec<_>>()
    );
}

/// A backend that accepts connections but never answers (SIGSTOP): with the local stack's
/// departures from DigitalOcean (least outstanding requests, a first-byte timeout, ejection
/// after timeouts in a row) the other instances keep serving throughout, and only the
/// requests already stuck there fail, each after the timeout.
#[test]
fn a_frozen_instance_stalls_only_its_share_of_the_clients() {
    const CLIENTS: usize = 12;
    let stack = Stack::up(
        "  rustlb:lbLeastOutstanding: true\n  rustlb:lbResponseTimeoutSeconds: 2\n  \
         rustlb:lbEjectAfterTimeouts: 2\n",
    );
    let pid = pid_of(&stack.status(), 1);
    let load = Load::start(&stack, CLIENTS, false);
    std::thread::sleep(Duration::from_secs(1));
    let frozen_at = load.elapsed();
    signal(pid, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(6));
    signal(pid, libc::SIGCONT);
    let thawed_at = load.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();

    let during: Vec<_> = outcomes
        .iter()
        .filter(|o| o.at >= frozen_at && o.at + o.latency <= thawed_at)
        .collect();
    // Every second of the freeze, requests kept completing on the others.
    for second in 0..6 {
        let from = frozen_at + Duration::from_secs(second);
        let answered = during
            .iter()
            .filter(|o| {
                ok(o)
                    && o.at + o.latency >= from
                    && o.at + o.latency < from + Duration::from_secs(1)
            })
            .count();
        assert!(
            answered >= 50,
            "second {second} of the freeze: only {answered} answers"
        );
    }
    let timeouts: Vec<_> = outcomes.iter().filter(|o| o.status == Some(504)).collect();
    let others: Vec<_> = outcomes
        .iter()
        .filter(|o| !ok(o) && o.status != Some(504))
        .map(|o| o.status)
        .collect();
    assert!(others.is_empty(), "failures other than 504: {others:?}");
    assert!(
        timeouts.len() <= CLIENTS,
        "{} requests timed out; at most the clients stuck at the frozen instance may",
        timeouts.len()
    );
    let slowest = outcomes.iter().map(|o| o.latency).max().unwrap();
    assert!(
        slowest < Duration::from_secs(4),
        "a request took {slowest:?}"
    );
    // Thawed, the instance passes its checks and serves again.
    stack.wait("the thawed instance back in rotation", all_up);
}
