//! Runs the local stack in the foreground: migrations, the load balancer, and the instances,
//! each restarted with backoff when it exits (systemd's `Restart=always`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::control::{self, BackendReport, Command as ControlCommand, StackReport};
use super::database_size::DatabaseSize;
use super::fleet::{Build, Fleet, Generation, Instance, Restarts};
use super::https::HttpsFiles;
use super::instance::instances as local_instances;
use super::rollout::{Gate, Rollouts};
use super::state::StateFile;
use crate::config::StackConfig;
use crate::deploy::Deploy;

/// The stack's report as of now; shared by the control port and the ready message.
type ReportFn = Arc<dyn Fn() -> StackReport + Send + Sync>;

/// The whole foreground life of the stack; returns after a clean teardown. With `https`, the
/// load balancer also serves HTTPS and its HTTP entry redirects there.
pub async fn run(
    root: &Path,
    cfg: &StackConfig,
    state_dir: &Path,
    ready_timeout: Duration,
    grace: Duration,
    gate: Gate,
    https: Option<HttpsFiles>,
) -> anyhow::Result<()> {
    // Relative paths in the stack file (the SQLite default) mean the repository root.
    std::env::set_current_dir(root).with_context(|| format!("entering {}", root.display()))?;
    let log_dir = state_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;

    migrate_once(cfg).await?;
    let lb = start_lb(cfg, https.as_ref()).await?;
    let url = match lb.https_addr() {
        Some(addr) => format!("https://{addr}"),
        None => format!("http://{}", lb.local_addr()),
    };
    let certificate = https.as_ref().map(|f| f.certificate.display().to_string());
    let build = Build {
        exe: std::env::current_exe().context("locating the infra binary")?,
        args: vec!["serve-app".to_owned()],
        root: root.to_path_buf(),
        log_dir: log_dir.clone(),
    };
    let deploy = Deploy::of(cfg);
    let fleet = Arc::new(Fleet::new(Generation::start(
        &build,
        &local_instances(cfg)?,
        &deploy,
        &lb,
    )));
    let report: ReportFn = {
        let (lb, fleet) = (lb.clone(), fleet.clone());
        let entry = Entry {
            url: url.clone(),
            certificate: certificate.clone(),
        };
        let stack = cfg.stack.clone();
        Arc::new(move || build_report(&stack, &entry, &lb, &fleet.instances()))
    };
    let rollouts = Arc::new(Rollouts::new(
        cfg,
        build,
        deploy,
        lb.clone(),
        fleet.clone(),
        gate,
    ));
    let (control_addr, control_task) =
        start_control(cfg, report.clone(), fleet.clone(), rollouts).await?;
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
        print_ready(cfg, &lb, &report, &log_dir);
        signal.await;
    }
    shut_down(cfg, &lb, grace, fleet, control_task, state_dir).await;
    Ok(())
}

async fn start_lb(cfg: &StackConfig, https: Option<&HttpsFiles>) -> anyhow::Result<lb::Running> {
    let keys = if https.is_some() {
        "rustlb:lbAddress and rustlb:lbHttpsAddress"
    } else {
        "rustlb:lbAddress"
    };
    lb::LoadBalancer::bind(lb_config(cfg, https)?)
        .await
        .with_context(|| format!("{}: starting the load balancer on {keys}", cfg.source))
}

/// Serves `status`, `restart` and `rollout` on a loopback port; returns its address for the
/// state file.
async fn start_control(
    cfg: &StackConfig,
    report: ReportFn,
    fleet: Arc<Fleet>,
    rollouts: Arc<Rollouts>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("binding the control port")?;
    let addr = listener.local_addr()?;
    let database_size = Arc::new(DatabaseSize::connect(cfg.database_url()).await);
    let handler: control::Handler = Arc::new(move |command| {
        let (report, fleet) = (report.clone(), fleet.clone());
        let (rollouts, database_size) = (rollouts.clone(), database_size.clone());
        Box::pin(async move {
            match command {
                ControlCommand::Status => {
                    let mut r = report();
                    r.database_bytes = database_size.bytes().await;
                    serde_json::to_value(r).map_err(|e| e.to_string())
                }
                ControlCommand::Restart(only) => {
                    let _busy = fleet.busy.lock().await;
                    rolling_restart(&fleet.restarts(), only.as_deref()).await?;
                    serde_json::to_value(report()).map_err(|e| e.to_string())
                }
                ControlCommand::Rollout(request) => {
                    let summary = rollouts.roll_out(request).await?;
                    Ok(serde_json::json!({ "summary": summary, "stack": report() }))
                }
            }
        })
    });
    Ok((addr, tokio::spawn(control::serve(listener, handler))))
}

fn print_ready(cfg: &StackConfig, lb: &lb::Running, report: &ReportFn, log_dir: &Path) {
    let report = report();
    println!("{}", report.to_table());
    let url = &report.url;
    let curl = match &report.certificate {
        Some(cert) => {
            println!(
                "http://{} answers 301 (GET, HEAD) or 308 (other methods) to the same URL on {url}",
                lb.local_addr()
            );
            format!("curl -s --cacert {cert}")
        }
        None => "curl -s".to_owned(),
    };
    println!("try:   {curl} {url}/server-info     (repeat: the server_id rotates)");
    println!("       {curl} {url}/api/stats");
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
    fleet: Arc<Fleet>,
    control_task: JoinHandle<()>,
    state_dir: &Path,
) {
    tracing::info!("stopping: draining the load balancer");
    lb.shutdown(grace).await;
    let serving = fleet.take();
    let count = serving.instances.len();
    serving.stop().await;
    control_task.abort();
    StateFile::remove(state_dir);
    println!(
        "stopped the {} stack: load balancer and {count} instances down, ports freed",
        cfg.stack
    );
}

/// Applies pending migrations once, before any instance starts.
async fn migrate_once(cfg: &StackConfig) -> anyhow::Result<()> {
    app::migrate_database(cfg.database_url())
        .await
        .with_context(|| format!("{}: rustlb:databaseUrl", cfg.source))
}

/// The load balancer's settings from the stack: DigitalOcean's names, loopback addresses.
/// HTTPS as a stack with a domain has it on DigitalOcean: TLS ends at the load balancer, and
/// its HTTP entry redirects (`redirectHttpToHttps`).
fn lb_config(cfg: &StackConfig, https: Option<&HttpsFiles>) -> anyhow::Result<lb::Config> {
    let hc = cfg.health_check();
    let sticky = cfg.sticky_sessions();
    let backends = local_instances(cfg)?
        .into_iter()
        .map(|i| lb::BackendConfig::new(i.server_id, SocketAddr::from(([127, 0, 0, 1], i.port))))
        .collect();
    Ok(lb::Config {
        listen: cfg.lb_address(),
        https: https.map(|files| lb::HttpsConfig {
            listen: cfg.lb_https_address(),
            certificate: files.certificate.clone(),
            private_key: files.private_key.clone(),
            redirect_http_to_https: true,
            ..lb::HttpsConfig::default()
        }),
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
            leave_on_draining: cfg.local_lb.leave_on_draining,
        },
        sticky: sticky.enabled().then(|| lb::StickyConfig {
            cookie_name: sticky
                .cookie_name
                .clone()
                .unwrap_or_else(|| "DO-LB".to_owned()),
            ttl: Duration::from_secs(u64::from(sticky.cookie_ttl_seconds.unwrap_or(300))),
        }),
        client_idle_timeout: Duration::from_secs(u64::from(cfg.http_idle_timeout_seconds)),
        // DigitalOcean gives a backend its idle timeout to start answering.
        response_timeout: Duration::from_secs(u64::from(
            cfg.local_lb
                .response_timeout_seconds
                .unwrap_or(cfg.http_idle_timeout_seconds),
        )),
        balance: if cfg.local_lb.least_outstanding {
            lb::Balance::LeastOutstanding
        } else {
            lb::Balance::RoundRobin
        },
        eject_after_timeouts: cfg.local_lb.eject_after_timeouts,
        // Client connections on their own threads, one per core: measured faster and cheaper
        // per request than sharing the supervisor's work-stealing runtime (docs/benchmarks.md).
        io_threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
        // What the dashboard's backend table and time series read.
        status_path: Some(app::paths::LB_STATUS.to_owned()),
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

/// Where clients reach the stack.
struct Entry {
    url: String,
    /// The HTTPS entry's certificate file.
    certificate: Option<String>,
}

fn build_report(
    stack: &str,
    entry: &Entry,
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
        url: entry.url.clone(),
        certificate: entry.certificate.clone(),
        supervisor_pid: std::process::id(),
        database_bytes: None,
        backends,
    }
}

/// Restarts the instances one at a time (or only `only`), each back in rotation before the next
/// goes, so the others carry the traffic throughout.
async fn rolling_restart(restarts: &Restarts, only: Option<&str>) -> Result<(), String> {
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
