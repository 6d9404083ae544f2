//! The supervised app instances: one generation per build, each instance restarted when it exits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::instance::LocalInstance;
use crate::deploy::Deploy;

/// First restart delay; doubles per quick crash up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An instance that ran this long before exiting is restarted with the first delay again.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// An exit with status 0 after at least this long is a stop someone asked for (SIGTERM from
/// an operator, systemd, the OOM killer's polite stage): restarted at once, no backoff. One
/// sooner did not drain, so it is treated as a crash, or a binary that exits 0 at once would
/// be restarted in a tight loop.
const CLEAN_RUN: Duration = Duration::from_secs(1);
/// How long an instance may take, after its drain, to finish in-flight requests, flush its
/// request log and exit before it is killed: the app's worst case is its grace period (10 s)
/// twice, once for in-flight requests and once for the flush.
const STOP_TIMEOUT: Duration = Duration::from_secs(25);

/// How long an instance that drains `drain_seconds` may take to stop after SIGTERM.
pub fn stop_timeout(drain_seconds: u64) -> Duration {
    Duration::from_secs(drain_seconds) + STOP_TIMEOUT
}

/// How long a restarted (or newly added) instance may take to pass its health checks before
/// a rolling restart or a rollout gives up on it.
pub const BACK_IN_ROTATION_TIMEOUT: Duration = Duration::from_secs(60);

/// One app instance and what the report shows about it.
pub struct Instance {
    pub server_id: String,
    pub port: u16,
    /// 0 while not running.
    pub pid: AtomicU32,
    pub restarts: AtomicU32,
}

/// A planned restart of one instance; answered once it is back in rotation (or not).
pub type RestartRequest = oneshot::Sender<Result<(), String>>;

/// Each instance's server id and the channel its supervising task takes restarts from.
pub type Restarts = Vec<(String, mpsc::Sender<RestartRequest>)>;

/// What a generation's instances run, and where.
#[derive(Clone)]
pub struct Build {
    pub exe: PathBuf,
    /// `serve-app` for the infra binary itself; nothing for an `app` binary.
    pub args: Vec<String>,
    pub root: PathBuf,
    pub log_dir: PathBuf,
}

/// How to start one instance, and how long it may take to stop.
struct Launch {
    build: Build,
    env: Vec<(String, String)>,
    stop_timeout: Duration,
}

/// Instances started together from one build; they are stopped together.
pub struct Generation {
    pub instances: Vec<Arc<Instance>>,
    restarts: Restarts,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Generation {
    /// Starts a supervising task per member; `lb` is told when one of them dies.
    pub fn start(
        build: &Build,
        members: &[LocalInstance],
        deploy: &Deploy,
        lb: &lb::Running,
    ) -> Generation {
        let (stop, stop_rx) = watch::channel(false);
        let mut generation = Generation {
            instances: Vec::new(),
            restarts: Vec::new(),
            tasks: JoinSet::new(),
            stop,
        };
        for local in members {
            let instance = Arc::new(Instance {
                server_id: local.server_id.clone(),
                port: local.port,
                pid: AtomicU32::new(0),
                restarts: AtomicU32::new(0),
            });
            let launch = Launch {
                build: build.clone(),
                env: local.env(deploy),
                stop_timeout: stop_timeout(deploy.drain_seconds()),
            };
            let (restart_tx, restart_rx) = mpsc::channel(1);
            generation.instances.push(instance.clone());
            generation
                .restarts
                .push((local.server_id.clone(), restart_tx));
            generation.tasks.spawn(supervise(
                instance,
                launch,
                lb.clone(),
                stop_rx.clone(),
                restart_rx,
            ));
        }
        generation
    }

    fn empty() -> Generation {
        Generation {
            instances: Vec::new(),
            restarts: Vec::new(),
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
        }
    }

    /// SIGTERM to every instance at once (each drains and flushes its request log), then
    /// waits for all of them; nothing restarts them afterwards.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The generation serving traffic, plus one being rolled out beside it (for the report).
pub struct Fleet {
    current: Mutex<Generation>,
    incoming: Mutex<Vec<Arc<Instance>>>,
    /// One rolling restart or rollout at a time: both move instances in and out of rotation.
    pub busy: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fleet {
    pub fn new(current: Generation) -> Fleet {
        Fleet {
            current: Mutex::new(current),
            incoming: Mutex::new(Vec::new()),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The serving instances, then any being rolled out.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        let mut all = lock(&self.current).instances.clone();
        all.extend(lock(&self.incoming).iter().cloned());
        all
    }

    /// The serving instances' names and ports.
    pub fn serving(&self) -> Vec<(String, u16)> {
        lock(&self.current)
            .instances
            .iter()
            .map(|i| (i.server_id.clone(), i.port))
            .collect()
    }

    pub fn restarts(&self) -> Restarts {
        lock(&self.current).restarts.clone()
    }

    /// Shows `instances` in the report beside the serving ones (empty: none).
    pub fn set_incoming(&self, instances: Vec<Arc<Instance>>) {
        *lock(&self.incoming) = instances;
    }

    /// Makes `next` the serving generation; returns the one it replaces.
    pub fn replace(&self, next: Generation) -> Generation {
        lock(&self.incoming).clear();
        std::mem::replace(&mut *lock(&self.current), next)
    }

    /// Takes the serving generation out, to stop it.
    pub fn take(&self) -> Generation {
        self.replace(Generation::empty())
    }
}

/// Waits until the load balancer has the instance in rotation again.
pub async fn back_in_rotation(lb: &lb::Running, server_id: &str) -> Result<(), String> {
    let deadline = Instant::now() + BACK_IN_ROTATION_TIMEOUT;
    loop {
        let up = lb
            .status()
            .iter()
            .any(|b| b.id == server_id && b.state == lb::BackendState::Up);
        if up {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not back in rotation after {BACK_IN_ROTATION_TIMEOUT:?}; see its log"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps one instance running until `stop` turns true; then stops it gracefully. A planned
/// restart takes it out of rotation first, so the load balancer has stopped choosing it
/// before the app is told to stop.
async fn supervise(
    instance: Arc<Instance>,
    launch: Launch,
    lb: lb::Running,
    mut stop: watch::Receiver<bool>,
    mut restart: mpsc::Receiver<RestartRequest>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let mut child = match spawn_instance(&launch, &instance.server_id) {
            Ok(child) => child,
            Err(err) => {
                tracing::error!(server_id = %instance.server_id, error = %err, "cannot start instance; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        instance.pid.store(pid, Ordering::Relaxed);
        tracing::info!(server_id = %instance.server_id, pid, port = instance.port, "instance started");
        tokio::select! {
            exit = child.wait() => {
                instance.pid.store(0, Ordering::Relaxed);
                // Out of rotation now, not after three failed checks; back after it passes them.
                lb.mark_down(&instance.server_id);
                let ran = started.elapsed();
                let clean = ran >= CLEAN_RUN && exit.as_ref().is_ok_and(|s| s.success());
                if clean || ran >= STABLE_AFTER {
                    backoff = FIRST_BACKOFF;
                }
                let delay = if clean { Duration::ZERO } else { backoff };
                let exit = exit.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if clean {
                    tracing::info!(server_id = %instance.server_id, pid, %exit, "instance stopped cleanly; restarting now");
                } else {
                    tracing::warn!(server_id = %instance.server_id, pid, %exit, "instance exited; restarting in {delay:?}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {},
                    _ = stop.changed() => return,
                }
                if !clean {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                instance.restarts.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.changed() => {
                stop_instance(&mut child, &instance.server_id, launch.stop_timeout).await;
                instance.pid.store(0, Ordering::Relaxed);
                return;
            }
            Some(done) = restart.recv() => {
                lb.mark_down(&instance.server_id);
                stop_instance(&mut child, &instance.server_id, launch.stop_timeout).await;
                instance.pid.store(0, Ordering::Relaxed);
                backoff = FIRST_BACKOFF;
                // Started again at the top of the loop; the caller hears back once the load
                // balancer has it in rotation again.
                let (lb, server_id) = (lb.clone(), instance.server_id.clone());
                tokio::spawn(async move {
                    let _ = done.send(back_in_rotation(&lb, &server_id).await);
                });
            }
        }
    }
}

/// SIGTERM (the app drains and flushes its request log), then SIGKILL if it hangs.
async fn stop_instance(child: &mut Child, server_id: &str, timeout: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(_) => tracing::info!(server_id, "instance stopped"),
        Err(_) => {
            tracing::warn!(
                server_id,
                "instance ignored SIGTERM for {timeout:?}; killing it"
            );
            let _ = child.kill().await;
        }
    }
}

fn spawn_instance(launch: &Launch, server_id: &str) -> std::io::Result<Child> {
    let log_path = launch.build.log_dir.join(format!("{server_id}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let build = &launch.build;
    let mut command = Command::new(&build.exe);
    command
        .args(&build.args)
        .current_dir(&build.root)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: prctl, getppid and _exit are async-signal-safe. If the supervisor dies without
    // tearing down (e.g. SIGKILL), each instance gets SIGTERM instead of living on as an
    // orphan holding its port; the getppid check covers a supervisor that died before prctl.
    let supervisor = std::process::id() as libc::pid_t;
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != supervisor {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn()
}
