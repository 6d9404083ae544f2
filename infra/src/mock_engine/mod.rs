//! An in-process stand-in for the Pulumi engine: runs the program binary and records what it registers.
//!
//! `monitor` answers the program as the engine's resource monitor, `outputs` makes up what the
//! provider would compute, `record` holds what a run records, and `checks` reads a finished run.

mod checks;
mod engine;
mod monitor;
mod outputs;
mod record;

pub use crate::wire::{
    SECRET_SIG, SIG_KEY, UNKNOWN, is_secret, is_unknown, redact, reveal, secret, struct_to_json,
    to_json, to_prost, to_struct, without_nulls,
};
pub use record::{Invocation, MockAccount, Registration};

use engine::EngineService;
use monitor::Monitor;
use pulumi_gestalt_proto::pulumi::pulumirpc::engine_server::EngineServer;
use pulumi_gestalt_proto::pulumi::pulumirpc::resource_monitor_server::ResourceMonitorServer;
use record::Recorder;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to run and with which Pulumi environment.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The program binary (the infra binary; it runs the Pulumi program when PULUMI_MONITOR is set).
    pub program: PathBuf,
    /// Working directory and PULUMI_ROOT_DIRECTORY.
    pub root: PathBuf,
    /// PULUMI_PROJECT.
    pub project: String,
    /// PULUMI_STACK.
    pub stack: String,
    /// PULUMI_CONFIG: `namespace:key` -> string.
    pub config: BTreeMap<String, String>,
    /// PULUMI_CONFIG_SECRET_KEYS.
    pub secret_keys: Vec<String>,
    /// Extra environment for the child.
    pub env: Vec<(String, String)>,
    /// PULUMI_DRY_RUN: ids and computed outputs are not known yet, like `pulumi preview`.
    pub dry_run: bool,
    /// In a dry run, answer readable placeholders (`<id of NAME>`) instead of unknowns, so a
    /// preview shows every derived value; secrets among them read `[secret]`.
    pub placeholders: bool,
    /// The DigitalOcean account `getAccount` and `getSshKeys` read.
    pub account: MockAccount,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Every registration, in arrival order (not deterministic: Gestalt registers concurrently).
    pub resources: Vec<Registration>,
    /// The stack outputs, when the program got that far.
    pub outputs: Option<Value>,
    /// Every function the program invoked.
    pub invokes: Vec<Invocation>,
    /// Engine log messages.
    pub logs: Vec<String>,
    /// The child's exit code.
    pub exit_code: Option<i32>,
    /// The child's stdout.
    pub stdout: String,
    /// The child's stderr.
    pub stderr: String,
}

impl Run {
    /// True when the program exited cleanly.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Custom resources of a type token (e.g. `digitalocean:index/droplet:Droplet`).
    pub fn of_type(&self, type_: &str) -> Vec<&Registration> {
        self.resources.iter().filter(|r| r.type_ == type_).collect()
    }

    /// The resource with this type and name.
    pub fn find(&self, type_: &str, name: &str) -> Option<&Registration> {
        self.resources
            .iter()
            .find(|r| r.type_ == type_ && r.name == name)
    }

    /// The custom resource with this URN.
    pub fn by_urn(&self, urn: &str) -> Option<&Registration> {
        self.resources.iter().find(|r| r.urn == urn)
    }
}

/// How long a program may take before the mock engine gives up on it.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Serves the engine on loopback, runs the program with the PULUMI_* environment and records everything.
pub fn run(spec: &RunSpec) -> anyhow::Result<Run> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(spec))
}

async fn run_async(spec: &RunSpec) -> anyhow::Result<Run> {
    use tokio::net::TcpListener;
    use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::Server;

    let state = Arc::new(Mutex::new(Recorder::default()));
    let monitor_listener = TcpListener::bind("127.0.0.1:0").await?;
    let engine_listener = TcpListener::bind("127.0.0.1:0").await?;
    let monitor_addr = monitor_listener.local_addr()?;
    let engine_addr = engine_listener.local_addr()?;
    let monitor = Monitor {
        state: state.clone(),
        project: spec.project.clone(),
        stack: spec.stack.clone(),
        dry_run: spec.dry_run,
        placeholders: spec.placeholders,
        next_id: AtomicU32::new(1),
        account: spec.account.clone(),
        transform: Mutex::new(None),
    };
    let engine_state = state.clone();
    let servers = tokio::spawn(async move {
        let m = Server::builder()
            .add_service(ResourceMonitorServer::new(monitor))
            .serve_with_incoming(TcpListenerStream::new(monitor_listener));
        let e = Server::builder()
            .add_service(EngineServer::new(EngineService {
                state: engine_state,
            }))
            .serve_with_incoming(TcpListenerStream::new(engine_listener));
        let _ = tokio::join!(m, e);
    });

    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.current_dir(&spec.root)
        .env("PULUMI_MONITOR", monitor_addr.to_string())
        .env("PULUMI_ENGINE", engine_addr.to_string())
        .env("PULUMI_PROJECT", &spec.project)
        .env("PULUMI_STACK", &spec.stack)
        .env("PULUMI_ORGANIZATION", "organization")
        .env("PULUMI_ROOT_DIRECTORY", &spec.root)
        .env(
            "PULUMI_DRY_RUN",
            if spec.dry_run { "true" } else { "false" },
        )
        .env("PULUMI_CONFIG", serde_json::to_string(&spec.config)?)
        .env(
            "PULUMI_CONFIG_SECRET_KEYS",
            serde_json::to_string(&spec.secret_keys)?,
        )
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = cmd.output();
    let output = tokio::time::timeout(TIMEOUT, child)
        .await
        .map_err(|_| anyhow::anyhow!("the program did not finish within {TIMEOUT:?}"))??;
    servers.abort();
    let recorder = std::mem::take(&mut *state.lock().expect("recorder lock"));
    Ok(Run {
        resources: recorder.resources,
        outputs: recorder.outputs,
        invokes: recorder.invokes,
        logs: recorder.logs,
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
