//! Runs the local stack in the foreground: migrations, the load balancer, and the instances,
//! each restarted with backoff when it exits (systemd's `Restart=always`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::control::{self, BackendReport, Command as ControlCommand, StackReport};
use super::database_size::DatabaseSize;
use super::instance::instances as local_instances;
use super::state::StateFile;
use crate::config::StackConfig;
use crate::deploy::Deploy;

/// First restart delay; doubles per quick crash up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An instance that ran this long before exiting is restarted with the first delay again.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long an instance may take to drain, flush its request log and exit after SIGTERM
/// before it is killed: the app's worst case is its grace period (10 s) twice, once for
/// in-flight requests and once for the flush.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(25);

/// How long a restarted instance may take to pass its health checks again before a rolling
/// restart gives up on it.
const BACK_IN_ROTATION_TIMEOUT: Duration = Duration::from_secs(60);

/// One app instance and what the report shows about it.
struct Instance {
    server_id: String,
    port: u16,
    /// 0 while not running.
    pid: AtomicU32,
    restarts: AtomicU32,
}

/// A planned restart of one instance; answered once it is back in rotation (or not).
type RestartRequest = oneshot::Sender<Result<(), String>>;

/// How to start an instance.
struct Launch {
    exe: PathBuf,
    root: PathBuf,
    log_dir: PathBuf,
    env: Vec<(String, String)>,
}

/// The running instances and what the supervisor keeps to restart and stop them.
struct Fleet {
    instances: Vec<Arc<Instance>>,
    restarts: Restarts,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

/// Each instance's server id and the channel its supervising task takes restarts from.
type Restarts = Arc<Vec<(String, mpsc::Sender<RestartRequest>)>>;

/// The stack's report as of now; shared by the control port and the ready message.
type ReportFn = Arc<dyn Fn() -> StackReport + Send + Sync>;

/// The whole foreground life of the stack; returns after a clean teardown.
pub async fn run(
    root: &Path,
    cfg: &StackConfig,
    state_dir: &Path,
    ready_timeout: Duration,
    grace: Duration,
) -> anyhow::Result<()> {
    // Relative paths in the stack file (the SQLite default) mean the repository root.
    std::env::set_current_dir(root).with_context(|| format!("entering {}", root.display()))?;
    let log_dir = state_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;

    migrate_once(cfg).await?;
    let lb = start_lb(cfg).await?;
    let url = format!("http://{}", lb.local_addr());
    let fleet = start_instances(root, cfg, &log_dir, &lb)?;
    let report: ReportFn = {
        let lb = lb.clone();
        let instances = fleet.instances.clone();
        let url = url.clone();
        let stack = cfg.stack.clone();
        Arc::new(move || build_report(&stack, &url, &lb, &instances))
    };
    let (control_addr, control_task) =
        start_control(cfg, report.clone(), fleet.restarts.clone()).await?;
    let mut state = StateFile {
        supervisor_pid: std::process::id(),
        url: url.clone(),
        control: control_addr,
        instances: cfg.droplet_count(),
        ready: false,
    };
    state.write(state_dir).context("writing the state file")?;
    tracing::info!(%url, instances = cfg.droplet_count(), "local stack starting; waiting for health checks");

    let mut signal = std::pin::pin!(app::shutdown_signal());
    let interrupted = tokio::select! {
        () = wait_until_ready(&lb, ready_timeout) => false,
        () = &mut signal => true,
    };
    if !interrupted {
        state.ready = true;
        state.write(state_dir).context("writing the state file")?;
        print_ready(cfg, &url, &report, &log_dir);
        signal.await;
    }
    shut_down(cfg, &lb, grace, fleet, control_task, state_dir).await;
    Ok(())
}

async fn start_lb(cfg: &StackConfig) -> anyhow::Result<lb::Running> {
    lb::LoadBalancer::bind(lb_config(cfg)?)
        .await
        .with_context(|| {
            format!(
                "{}: starting the load balancer on rustlb:lbAddress",
                cfg.source
            )
        })
}

/// Starts a supervising task per instance of the stack.
fn start_instances(
    root: &Path,
    cfg: &StackConfig,
    log_dir: &Path,
    lb: &lb::Running,
) -> anyhow::Result<Fleet> {
    let exe = std::env::current_exe().context("locating the infra binary")?;
    let (stop, stop_rx) = watch::channel(false);
    let mut instances = Vec::new();
    let mut restarts = Vec::new();
    let mut tasks = JoinSet::new();
    let deploy = Deploy::of(cfg);
    for local in local_instances(cfg)? {
        let server_id = local.server_id.clone();
        let instance = Arc::new(Instance {
            server_id: server_id.clone(),
            port: local.port,
            pid: AtomicU32::new(0),
            restarts: AtomicU32::new(0),
        });
        let launch = Launch {
            exe: exe.clone(),
            root: root.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            env: local.env(&deploy),
        };
        instances.push(instance.clone());
        let (restart_tx, restart_rx) = mpsc::channel(1);
        restarts.push((server_id.clone(), restart_tx));
        tasks.spawn(supervise(
            instance,
            launch,
            lb.clone(),
            stop_rx.clone(),
            restart_rx,
        ));
    }
    Ok(Fleet {
        instances,
        restarts: Arc::new(restarts),
        tasks,
        stop,
    })
}

/// Serves `status` and `restart` on a loopback port; returns its address for the state file.
async fn start_control(
    cfg: &StackConfig,
    report: ReportFn,
    restarts: Restarts,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("binding the control port")?;
    let addr = listener.local_addr()?;
    let database_size = Arc::new(DatabaseSize::connect(cfg.database_url()).await);
    let handler: control::Handler = Arc::new(move |command| {
        let (report, restarts) = (report.clone(), restarts.clone());
        let database_size = database_size.clone();
        Box::pin(async move {
            match command {
                ControlCommand::Status => {
                    let mut r = report();
                    r.database_bytes = database_size.bytes().await;
                    serde_json::to_value(r).map_err(|e| e.to_string())
                }
                ControlCommand::Restart(only) => {
                    rolling_restart(&restarts, only.as_deref()).await?;
                    serde_json::to_value(report()).map_err(|e| e.to_string())
                }
            }
        })
    });
    Ok((addr, tokio::spawn(control::serve(listener, handler))))
}

fn print_ready(cfg: &StackConfig, url: &str, report: &ReportFn, log_dir: &Path) {
    println!("{}", report().to_table());
    println!("try:   curl -s {url}/server-info     (repeat: the server_id rotates)");
    println!("       curl -s {url}/api/stats");
    println!("logs:  {}", log_dir.display());
    println!(
        "stop:  Ctrl-C here (or `cargo run --release -p infra -- destroy --stack {}` when detached)",
        cfg.stack
    );
}

/// The load balancer drains first, so no client request reaches an instance that is stopping.
async fn shut_down(
    cfg: &StackConfig,
    lb: &lb::Running,
    grace: Duration,
    mut fleet: Fleet,
    control_task: JoinHandle<()>,
    state_dir: &Path,
) {
    tracing::info!("stopping: draining the load balancer");
    lb.shutdown(grace).await;
    let _ = fleet.stop.send(true);
    while fleet.tasks.join_next().await.is_some() {}
    control_task.abort();
    StateFile::remove(state_dir);
    println!(
        "stopped the {} stack: load balancer and {} instances down, ports freed",
        cfg.stack,
        fleet.instances.len()
    );
}

/// Applies pending migrations once, before any instance starts.
async fn migrate_once(cfg: &StackConfig) -> anyhow::Result<()> {
    app::migrate_database(cfg.database_url())
        .await
        .with_context(|| format!("{}: rustlb:databaseUrl", cfg.source))
}

/// The load balancer's settings from the stack: DigitalOcean's names, loopback addresses.
fn lb_config(cfg: &StackConfig) -> anyhow::Result<lb::Config> {
    let hc = cfg.health_check();
    let sticky = cfg.sticky_sessions();
    let backends = local_instances(cfg)?
        .into_iter()
        .map(|i| lb::BackendConfig::new(i.server_id, SocketAddr::from(([127, 0, 0, 1], i.port))))
        .collect();
    Ok(lb::Config {
        listen: cfg.lb_address(),
        backends,
        health_check: lb::HealthCheckConfig {
            path: hc.path.clone(),
            // Each local instance has its own port; the cloud stacks' `port` (3000) is the
            // droplets' port and means the traffic port here.
            port: None,
            interval: Duration::from_secs(u64::from(hc.check_interval_seconds)),
            response_timeout: Duration::from_secs(u64::from(hc.response_timeout_seconds)),
            unhealthy_threshold: hc.unhealthy_threshold,
            healthy_threshold: hc.healthy_threshold,
        },
        sticky: sticky.enabled().then(|| lb::StickyConfig {
            cookie_name: sticky
                .cookie_name
                .clone()
                .unwrap_or_else(|| "DO-LB".to_owned()),
            ttl: Duration::from_secs(u64::from(sticky.cookie_ttl_seconds.unwrap_or(300))),
        }),
        client_idle_timeout: Duration::from_secs(u64::from(cfg.http_idle_timeout_seconds)),
        // Client connections on their own threads, one per core: measured faster and cheaper
        // per request than sharing the supervisor's work-stealing runtime (docs/benchmarks.md).
        io_threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
        ..lb::Config::default()
    })
}

async fn wait_until_ready(lb: &lb::Running, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if lb.status().iter().all(|b| b.state == lb::BackendState::Up) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("not every instance passed its health checks in {timeout:?}; see the logs");
}

fn build_report(
    stack: &str,
    url: &str,
    lb: &lb::Running,
    instances: &[Arc<Instance>],
) -> StackReport {
    let statuses = lb.status();
    let backends = instances
        .iter()
        .map(|instance| {
            let status = statuses.iter().find(|s| s.id == instance.server_id);
            let pid = instance.pid.load(Ordering::Relaxed);
            BackendReport {
                server_id: instance.server_id.clone(),
                pid: (pid != 0).then_some(pid),
                port: instance.port,
                state: match status.map(|s| s.state) {
                    Some(lb::BackendState::Up) => "up".to_owned(),
                    _ => "down".to_owned(),
                },
                consecutive_successes: status.map_or(0, |s| s.consecutive_successes),
                consecutive_failures: status.map_or(0, |s| s.consecutive_failures),
                requests: status.map_or(0, |s| s.requests),
                restarts: instance.restarts.load(Ordering::Relaxed),
                last_error: status.and_then(|s| s.last_error.clone()),
            }
        })
        .collect();
    StackReport {
        stack: stack.to_owned(),
        url: url.to_owned(),
        supervisor_pid: std::process::id(),
        database_bytes: None,
        backends,
    }
}

/// Restarts the instances one at a time (or only `only`), each back in rotation before the next
/// goes, so the others carry the traffic throughout.
async fn rolling_restart(
    restarts: &[(String, mpsc::Sender<RestartRequest>)],
    only: Option<&str>,
) -> Result<(), String> {
    if let Some(id) = only
        && !restarts.iter().any(|(s, _)| s == id)
    {
        return Err(format!("no instance {id:?} in this stack"));
    }
    for (server_id, tx) in restarts.iter().filter(|(s, _)| only.is_none_or(|o| o == s)) {
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(done_tx)
            .await
            .map_err(|_| format!("{server_id} is stopping"))?;
        done_rx
            .await
            .map_err(|_| format!("{server_id} stopped during its restart"))?
            .map_err(|e| format!("{server_id}: {e}"))?;
        tracing::info!(%server_id, "restarted and back in rotation");
    }
    Ok(())
}

/// Waits until the load balancer has the instance in rotation again.
async fn back_in_rotation(lb: &lb::Running, server_id: &str) -> Result<(), String> {
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
                if started.elapsed() >= STABLE_AFTER {
                    backoff = FIRST_BACKOFF;
                }
                let exit = exit.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                tracing::warn!(server_id = %instance.server_id, pid, %exit, "instance exited; restarting in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                instance.restarts.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.changed() => {
                stop_instance(&mut child, &instance.server_id).await;
                instance.pid.store(0, Ordering::Relaxed);
                return;
            }
            Some(done) = restart.recv() => {
                lb.mark_down(&instance.server_id);
                stop_instance(&mut child, &instance.server_id).await;
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
async fn stop_instance(child: &mut Child, server_id: &str) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(_) => tracing::info!(server_id, "instance stopped"),
        Err(_) => {
            tracing::warn!(
                server_id,
                "instance ignored SIGTERM for {STOP_TIMEOUT:?}; killing it"
            );
            let _ = child.kill().await;
        }
    }
}

fn spawn_instance(launch: &Launch, server_id: &str) -> std::io::Result<Child> {
    let log_path = launch.log_dir.join(format!("{server_id}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut command = Command::new(&launch.exe);
    command
        .arg("serve-app")
        .current_dir(&launch.root)
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
