//! Blue/green rollout of a new app build on the running local stack: start it beside the old one, gate it, switch the load balancer, watch it, retire the old.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use super::control::RolloutRequest;
use super::fleet::{BACK_IN_ROTATION_TIMEOUT, Build, Fleet, Generation, Instance};
use super::instance::LocalInstance;
use crate::config::StackConfig;
use crate::deploy::Deploy;

/// Checks one new instance, by its own URL and the stack's API key, before it gets traffic;
/// `Err` names the failed check.
pub type Gate = Arc<
    dyn Fn(String, Option<String>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// How often the watch looks at the new backends.
const WATCH_TICK: Duration = Duration::from_millis(250);
/// Answers the watch needs before it judges the error rate early, so one unlucky 5xx in the
/// first few requests does not decide a rollout.
const EARLY_VERDICT_REQUESTS: u64 = 200;

/// What a rollout needs of the running stack.
pub struct Rollouts {
    /// The first generation's build: where instances run and log.
    build: Build,
    deploy: Deploy,
    lb: lb::Running,
    fleet: Arc<Fleet>,
    gate: Gate,
    health_path: String,
    first_port: u16,
    count: u32,
    api_key: Option<String>,
    /// The last generation started: 1 for the instances `up` started. Refused ones count
    /// too, so every build's instances have their own names in the logs and the stats.
    generation: AtomicU32,
    /// Which of the two port blocks the serving generation uses (0: from `firstBackendPort`).
    serving_block: AtomicU32,
}

/// A backend as the load balancer knows it.
type Backend = (String, u16);

impl Rollouts {
    pub fn new(
        cfg: &StackConfig,
        build: Build,
        deploy: Deploy,
        lb: lb::Running,
        fleet: Arc<Fleet>,
        gate: Gate,
    ) -> Rollouts {
        Rollouts {
            build,
            deploy,
            lb,
            fleet,
            gate,
            health_path: cfg.health_check().path.clone(),
            first_port: cfg.first_backend_port(),
            count: cfg.droplet_count(),
            api_key: cfg.api_key().map(|k| k.expose_secret().to_owned()),
            generation: AtomicU32::new(1),
            serving_block: AtomicU32::new(0),
        }
    }

    /// Runs one rollout; `Ok` is a summary once the new build serves alone, `Err` names the
    /// failed check once traffic is back on (or never left) the old build.
    pub async fn roll_out(&self, request: RolloutRequest) -> Result<String, String> {
        // Refused rather than queued: the caller's timeout assumes its rollout starts now.
        let _busy = self.fleet.busy.try_lock().map_err(|_| {
            "another rollout or rolling restart is in progress; try again when it is done"
                .to_owned()
        })?;
        let exe = check_binary(&request.binary)?;
        let next = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let block = 1 - self.serving_block.load(Ordering::Relaxed);
        let members = self.members(next, block)?;
        let build = Build {
            exe,
            args: Vec::new(),
            ..self.build.clone()
        };
        tracing::info!(binary = %request.binary, generation = next, "rollout: starting the new build beside the old");
        let incoming = Generation::start(&build, &members, &self.deploy, &self.lb);
        self.fleet.set_incoming(incoming.instances.clone());
        match self
            .gate_switch_watch(&incoming.instances, &members, &request)
            .await
        {
            Ok(summary) => {
                self.serving_block.store(block, Ordering::Relaxed);
                let old = self.fleet.replace(incoming);
                tracing::info!("rollout: retiring the old instances");
                // Out of rotation since the switch: only their own drain is left.
                old.stop().await;
                tracing::info!(%summary, "rollout done");
                Ok(summary)
            }
            Err(failed) => {
                self.fleet.set_incoming(Vec::new());
                incoming.stop().await;
                tracing::warn!(%failed, "rollout refused; the old build keeps serving");
                Err(format!(
                    "rollout of {} refused: {failed}; the old build keeps serving and the new instances were stopped",
                    request.binary
                ))
            }
        }
    }

    /// The gates before traffic, the switch, and the watch (switching back when it fails).
    async fn gate_switch_watch(
        &self,
        started: &[Arc<Instance>],
        members: &[LocalInstance],
        request: &RolloutRequest,
    ) -> Result<String, String> {
        let timeout = Duration::from_secs(request.health_timeout_seconds);
        for (m, instance) in members.iter().zip(started) {
            self.health_gate(m, instance, timeout).await?;
        }
        for m in members {
            let url = format!("http://127.0.0.1:{}", m.port);
            (self.gate)(url, self.api_key.clone())
                .await
                .map_err(|e| format!("verify check failed on {}: {e}", m.server_id))?;
        }
        let old = self.fleet.serving();
        let new: Vec<Backend> = members
            .iter()
            .map(|m| (m.server_id.clone(), m.port))
            .collect();
        self.switch(&old, &new)
            .await
            .map_err(|e| format!("switch failed: {e}"))?;
        match self.watch(&new, request).await {
            Ok(summary) => Ok(summary),
            Err(failed) => {
                let back = match self.switch(&new, &old).await {
                    Ok(()) => "traffic switched back".to_owned(),
                    Err(e) => format!("switching back failed too: {e}"),
                };
                Err(format!("watch failed: {failed} ({back})"))
            }
        }
    }

    /// Server ids and ports of generation `n`: its ports are the block the serving
    /// generation does not use (the one from `firstBackendPort`, or the one after it).
    fn members(&self, n: u32, block: u32) -> Result<Vec<LocalInstance>, String> {
        let base = u32::from(self.first_port) + block * self.count;
        (0..self.count)
            .map(|i| {
                let server_id = format!("local-{n}-{}", i + 1);
                let port = u16::try_from(base + i)
                    .map_err(|_| format!("no port for {server_id}: past 65535"))?;
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
                    .map_err(|e| format!("port {port} for {server_id} is not free: {e}"))?;
                Ok(LocalInstance { server_id, port })
            })
            .collect()
    }

    /// The new instance answers 200 on the health path, asked directly (no load balancer).
    /// Gives up early when the instance exits: a build that crashes at start won't recover.
    async fn health_gate(
        &self,
        m: &LocalInstance,
        instance: &Instance,
        timeout: Duration,
    ) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}{}", m.port, self.health_path);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let mut last = "no answer".to_owned();
        while Instant::now() < deadline {
            if instance.restarts.load(Ordering::Relaxed) > 0 {
                last = "it exited; see its log".to_owned();
                break;
            }
            match client.get(&url).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(r) => last = format!("answered {}", r.status().as_u16()),
                Err(e) => last = format!("{e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "health check failed: {} did not answer 200 on GET {url} in time (limit {timeout:?}; last: {last})",
            m.server_id
        ))
    }

    /// Adds `to` to the load balancer, waits until its health checks put every one of them
    /// in rotation, then takes `from` out; requests already on `from` finish there.
    async fn switch(&self, from: &[Backend], to: &[Backend]) -> Result<(), String> {
        for (id, port) in to {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            self.lb
                .add_backend(lb::BackendConfig::new(id.clone(), addr))
                .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + BACK_IN_ROTATION_TIMEOUT;
        loop {
            let status = self.lb.status();
            let down: Vec<&String> = to
                .iter()
                .map(|(id, _)| id)
                .filter(|id| {
                    !status
                        .iter()
                        .any(|s| &s.id == *id && s.state == lb::BackendState::Up)
                })
                .collect();
            if down.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for (id, _) in to {
                    self.lb.remove_backend(id);
                }
                return Err(format!(
                    "the load balancer's health checks did not put {down:?} in rotation within {BACK_IN_ROTATION_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (id, _) in from {
            self.lb.remove_backend(id);
        }
        tracing::info!(?to, "rollout: load balancer switched");
        Ok(())
    }

    /// Watches the new backends' 5xx share (their counters started at 0 when they were added).
    async fn watch(&self, new: &[Backend], request: &RolloutRequest) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(request.watch_seconds);
        loop {
            let (requests, errors) = self.counters(new)?;
            let rate = percent(errors, requests);
            let verdict_due = Instant::now() >= deadline || requests >= EARLY_VERDICT_REQUESTS;
            if verdict_due && rate > request.max_error_percent {
                return Err(format!(
                    "{rate:.1}% of the new build's answers were 5xx ({errors} of {requests}), above {}%",
                    request.max_error_percent
                ));
            }
            if Instant::now() >= deadline {
                return Ok(format!(
                    "watched {} s: {requests} requests to the new build, {errors} 5xx ({rate:.1}%)",
                    request.watch_seconds
                ));
            }
            tokio::time::sleep(WATCH_TICK).await;
        }
    }

    /// Requests and 5xx the new backends answered; `Err` when one left rotation.
    fn counters(&self, new: &[Backend]) -> Result<(u64, u64), String> {
        let status = self.lb.status();
        let (mut requests, mut errors) = (0, 0);
        for (id, _) in new {
            let s = status
                .iter()
                .find(|s| &s.id == id)
                .ok_or_else(|| format!("{id} is no longer behind the load balancer"))?;
            if s.state != lb::BackendState::Up {
                return Err(format!(
                    "{id} left rotation: {}",
                    s.last_error.as_deref().unwrap_or("failed health checks")
                ));
            }
            requests += s.requests;
            errors += s.server_errors;
        }
        Ok((requests, errors))
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The new build must be an executable file; refused before anything starts.
fn check_binary(path: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    let meta = std::fs::metadata(&path).map_err(|e| format!("binary {}: {e}", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "binary {} is not an executable file",
            path.display()
        ));
    }
    Ok(path)
}
