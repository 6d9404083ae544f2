//! The local stack: the cloud topology on one machine (`infra up/status/destroy --stack local`).
//!
//! `up` runs N instances of the real app (this executable re-run as `serve-app`, so nothing
//! else needs building), applies migrations once, and puts the embedded load balancer in front.
//! It supervises the instances like systemd's `Restart=always` and answers `status` over a
//! loopback control port recorded in `.stack/<stack>/state.json`.

mod backup;
mod control;
mod database_size;
mod fleet;
mod https;
mod instance;
mod rollout;
mod state;
mod supervisor;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::StackConfig;
pub use backup::{backup, restore};
pub use control::{BackendReport, Command as ControlCommand, RolloutRequest, StackReport};
pub use https::HttpsFiles;
use instance::instances;
pub use rollout::Gate;
use state::StateFile;

/// How long `up` waits for every instance to pass its health checks before it reports anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long in-flight requests may run after Ctrl-C/SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What `up --https` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Https {
    /// A self-signed certificate the stack makes for this machine and keeps.
    SelfSigned,
    /// PEM files given with `--certificate` and `--private-key`.
    Files {
        certificate: PathBuf,
        private_key: PathBuf,
    },
}

impl Https {
    /// The `up` arguments that ask for it again (for the detached supervisor).
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--https".to_owned()];
        if let Https::Files {
            certificate,
            private_key,
        } = self
        {
            for (flag, path) in [
                ("--certificate", certificate),
                ("--private-key", private_key),
            ] {
                args.push(flag.to_owned());
                args.push(path.display().to_string());
            }
        }
        args
    }
}

/// Starts the local stack and stays in the foreground until Ctrl-C or SIGTERM (or, with
/// `detach`, returns once it is up and leaves it running in the background). With `https`,
/// the load balancer serves HTTPS on `rustlb:lbHttpsAddress` and redirects HTTP there.
///
/// `gate` checks a new build's instance before a rollout gives it traffic (`infra verify`'s
/// checks, passed in because `verify` already depends on this module).
pub fn up(
    root: &Path,
    cfg: StackConfig,
    detach: bool,
    gate: Gate,
    https: Option<Https>,
) -> anyhow::Result<()> {
    let state_dir = state::dir(root, &cfg.stack);
    if let Some(existing) = StateFile::read_live(&state_dir) {
        bail!(
            "the {} stack is already running (supervisor pid {}, {}); see `infra status --stack {}` or stop it with `infra destroy --stack {}`",
            cfg.stack,
            existing.supervisor_pid,
            existing.url,
            cfg.stack,
            cfg.stack
        );
    }
    check_ports_free(&cfg, https.is_some())?;
    if detach {
        return up_detached(root, &cfg, &state_dir, https.as_ref());
    }
    let https = match &https {
        None => None,
        Some(Https::SelfSigned) => Some(HttpsFiles::self_signed(&state_dir)?),
        Some(Https::Files {
            certificate,
            private_key,
        }) => Some(HttpsFiles::given(certificate, private_key)?),
    };
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(supervisor::run(
        root,
        &cfg,
        &state_dir,
        READY_TIMEOUT,
        DRAIN_GRACE,
        gate,
        https,
    ))
}

/// Prints the running stack: URL and one row per backend (or JSON with `--json`).
pub fn status(root: &Path, cfg: StackConfig, json: bool) -> anyhow::Result<()> {
    let report = fetch_report(root, &cfg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// A rolling restart of the running stack's instances (or of one): each leaves rotation, stops
/// gracefully, starts again and passes its health checks before the next one goes.
pub fn restart(root: &Path, cfg: StackConfig, only: Option<String>) -> anyhow::Result<()> {
    let state_dir = state::dir(root, &cfg.stack);
    let Some(state) = StateFile::read_live(&state_dir) else {
        bail!(
            "the {} stack is not running; start it with `cargo run --release -p infra -- up --stack {}`",
            cfg.stack,
            cfg.stack
        );
    };
    let drain = crate::deploy::Deploy::of(&cfg).drain_seconds();
    let per_instance = fleet::stop_timeout(drain) + Duration::from_secs(60);
    let answer = control::request(
        state.control,
        &control::Command::Restart(only),
        per_instance * state.instances,
    )?;
    let report: StackReport = serde_json::from_value(answer)?;
    print!("{}", report.to_table());
    Ok(())
}

/// The bounds of a rollout's gates.
pub struct RolloutPhases {
    /// How long each new instance may take to answer 200 on the health path.
    pub health_timeout: Duration,
    /// How long the new build's 5xx rate is watched after the switch.
    pub watch: Duration,
    /// Rolls back above this share of 5xx answers, in percent.
    pub max_error_percent: f64,
}

/// The folder where a stack keeps its state, logs and scratch files (`.stack/<stack>`).
pub fn state_dir(root: &Path, stack: &str) -> PathBuf {
    state::dir(root, stack)
}

/// A blue/green rollout of `binary` on the running stack, driven by its supervisor (which
/// owns the instances and the load balancer); prints the new status table.
pub fn rollout(
    root: &Path,
    cfg: StackConfig,
    binary: &Path,
    phases: RolloutPhases,
) -> anyhow::Result<()> {
    let state_dir = state::dir(root, &cfg.stack);
    let Some(state) = StateFile::read_live(&state_dir) else {
        bail!(
            "the {} stack is not running; start it with `cargo run --release -p infra -- up --stack {}`",
            cfg.stack,
            cfg.stack
        );
    };
    // The supervisor runs in the repository root; a relative path means here.
    let binary =
        std::path::absolute(binary).with_context(|| format!("resolving {}", binary.display()))?;
    let binary = binary
        .to_str()
        .context("the binary's path is not UTF-8")?
        .to_owned();
    let request = control::RolloutRequest {
        binary,
        health_timeout_seconds: phases.health_timeout.as_secs(),
        watch_seconds: phases.watch.as_secs(),
        max_error_percent: phases.max_error_percent,
    };
    // Every phase is bounded in the supervisor; this covers them all.
    let timeout =
        Duration::from_secs(120) + supervisor_phases(&cfg) + phases.health_timeout + phases.watch;
    let answer = control::request(state.control, &control::Command::Rollout(request), timeout)?;
    let report: StackReport = serde_json::from_value(answer["stack"].clone())?;
    print!("{}", report.to_table());
    println!("\n{}", answer["summary"].as_str().unwrap_or_default());
    Ok(())
}

/// The longest a rollout's bounded phases can take besides the watch: two switches (the
/// second when it rolls back) and stopping a generation.
fn supervisor_phases(cfg: &StackConfig) -> Duration {
    let drain = crate::deploy::Deploy::of(cfg).drain_seconds();
    fleet::BACK_IN_ROTATION_TIMEOUT * 2 + fleet::stop_timeout(drain)
}

/// Stops a detached stack: SIGTERM to its supervisor, which drains the load balancer, stops
/// the instances (flushing their request logs) and frees the ports.
pub fn destroy(root: &Path, cfg: StackConfig) -> anyhow::Result<()> {
    let state_dir = state::dir(root, &cfg.stack);
    let Some(state) = StateFile::read_live(&state_dir) else {
        println!("the {} stack is not running; nothing to destroy", cfg.stack);
        StateFile::remove(&state_dir);
        return Ok(());
    };
    let pid = state.supervisor_pid;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
        bail!(
            "cannot signal supervisor pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + DRAIN_GRACE + Duration::from_secs(30);
    while state::pid_alive(pid) {
        if Instant::now() > deadline {
            bail!(
                "supervisor pid {pid} did not stop within {:?}",
                deadline.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "destroyed the {} stack: load balancer and {} instances stopped, ports freed",
        cfg.stack, state.instances
    );
    Ok(())
}

/// The control port of the running stack, for drills that restart instances.
pub fn control_address(root: &Path, cfg: &StackConfig) -> anyhow::Result<SocketAddr> {
    StateFile::read_live(&state::dir(root, &cfg.stack))
        .map(|s| s.control)
        .with_context(|| format!("the {} stack is not running", cfg.stack))
}

/// Sends a command to the running stack's supervisor.
pub fn control_request(
    addr: SocketAddr,
    command: &ControlCommand,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    control::request(addr, command, timeout)
}

/// Reads the report from a running supervisor.
pub fn fetch_report(root: &Path, cfg: &StackConfig) -> anyhow::Result<StackReport> {
    let state_dir = state::dir(root, &cfg.stack);
    match StateFile::read_live_with_report(&state_dir) {
        Some((_, report)) => Ok(report),
        None => bail!(
            "the {} stack is not running; start it with `cargo run --release -p infra -- up --stack {}`",
            cfg.stack,
            cfg.stack
        ),
    }
}

/// Refuses to start when a port the stack needs is taken, naming the key that sets it.
fn check_ports_free(cfg: &StackConfig, https: bool) -> anyhow::Result<()> {
    let mut entries = vec![("rustlb:lbAddress", cfg.lb_address())];
    if https {
        entries.push(("rustlb:lbHttpsAddress", cfg.lb_https_address()));
    }
    for (key, addr) in entries {
        if let Err(err) = TcpListener::bind(addr) {
            bail!("{}: {key} {addr} is not free: {err}", cfg.source);
        }
    }
    for (i, instance) in instances(cfg)?.iter().enumerate() {
        let (port, name) = (instance.port, &instance.server_id);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(err) = TcpListener::bind(addr) {
            bail!(
                "{}: port {port} for instance {name} (rustlb:firstBackendPort + {i}) is not free: {err}",
                cfg.source
            );
        }
    }
    Ok(())
}

/// Re-runs `up` in its own session with output to a log file, waits until it is up, prints
/// the same summary as the foreground `up`, and returns.
fn up_detached(
    root: &Path,
    cfg: &StackConfig,
    state_dir: &Path,
    https: Option<&Https>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let log_path = state_dir.join("supervisor.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("locating the infra binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["up", "--stack", &cfg.stack])
        .args(https.map(Https::args).unwrap_or_default())
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid() is async-signal-safe; it detaches the supervisor from this terminal so
    // closing it (or Ctrl-C there) does not stop the stack.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the supervisor")?;
    let deadline = Instant::now() + READY_TIMEOUT + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the supervisor exited ({status}) before the stack was up:\n{}",
                tail.join("\n")
            );
        }
        if let Some((state, report)) = StateFile::read_live_with_report(state_dir)
            && state.ready
        {
            print!("{}", report.to_table());
            println!(
                "\nrunning in the background (logs: {}); stop it with `cargo run --release -p infra -- destroy --stack {}`",
                state_dir.join("logs").display(),
                cfg.stack
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the stack did not come up in time; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .compact()
        .try_init();
}
