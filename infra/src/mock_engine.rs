//! An in-process stand-in for the Pulumi engine: runs the program binary and records what it registers.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct};
use pulumi_gestalt_proto::pulumi::pulumirpc::engine_server::{Engine, EngineServer};
use pulumi_gestalt_proto::pulumi::pulumirpc::resource_monitor_server::{
    ResourceMonitor, ResourceMonitorServer,
};
use pulumi_gestalt_proto::pulumi::pulumirpc::{
    CallResponse, Callback, GetRootResourceRequest, GetRootResourceResponse, InvokeResponse,
    LogRequest, ReadResourceRequest, ReadResourceResponse, RegisterErrorHookRequest,
    RegisterPackageRequest, RegisterPackageResponse, RegisterResourceHookRequest,
    RegisterResourceOutputsRequest, RegisterResourceRequest, RegisterResourceResponse,
    RequirePulumiVersionRequest, RequirePulumiVersionResponse, ResourceCallRequest,
    ResourceInvokeRequest, SetRootResourceRequest, SetRootResourceResponse, StartDebuggingRequest,
    SupportsFeatureRequest, SupportsFeatureResponse,
};
use serde_json::{Map, Value, json};

use crate::wire::SECRET_PLACEHOLDER;
pub use crate::wire::{
    SECRET_SIG, SIG_KEY, UNKNOWN, is_secret, is_unknown, redact, reveal, secret, without_nulls,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// One RegisterResource call.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Resource type token.
    pub type_: String,
    /// Logical name.
    pub name: String,
    /// Custom resource (a provider resource) or component/stack.
    pub custom: bool,
    /// Inputs as sent: secrets keep Pulumi's wrapper, unknowns the sentinel string.
    pub inputs: Value,
    /// Dependencies the program declared (Gestalt sends none).
    pub dependencies: Vec<String>,
}

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
}

/// One Invoke call (a provider function such as getDatabaseCa).
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Function token.
    pub token: String,
    /// Arguments as sent.
    pub args: Value,
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

    /// Everything the provider would refuse: each registration and invoke checked against the
    /// schema cut, and each resource against the provider's rules the schema cannot express.
    pub fn provider_problems(&self) -> Vec<String> {
        let schema = crate::provider_schema::digitalocean();
        let resources = self.resources.iter().filter(|r| r.custom).flat_map(|r| {
            let mut problems = schema.check_resource(&r.type_, &r.inputs);
            problems.extend(crate::limits::check_registration(&r.type_, &r.inputs));
            problems
                .into_iter()
                .map(move |p| format!("{}: {p}", r.name))
        });
        let invokes = self
            .invokes
            .iter()
            .flat_map(|i| schema.check_function(&i.token, &i.args));
        resources.chain(invokes).collect()
    }
}

#[derive(Default)]
struct Recorder {
    resources: Vec<Registration>,
    outputs: Option<Value>,
    invokes: Vec<Invocation>,
    logs: Vec<String>,
}

struct Monitor {
    state: Arc<Mutex<Recorder>>,
    project: String,
    stack: String,
    dry_run: bool,
    placeholders: bool,
    next_id: AtomicU32,
}

/// Converts a protobuf value to JSON, keeping secret wrappers as objects.
pub fn to_json(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(*n as i64)
            } else {
                json!(n)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(to_json).collect()),
    }
}

fn struct_to_json(s: &Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect(),
    )
}

/// Converts JSON back to protobuf.
pub fn to_prost(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_prost).collect(),
        }),
        Value::Object(m) => Kind::StructValue(Struct {
            fields: m.iter().map(|(k, v)| (k.clone(), to_prost(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn contains_unknown(v: &Value) -> bool {
    match v {
        Value::String(_) => is_unknown(v),
        Value::Array(a) => a.iter().any(contains_unknown),
        Value::Object(m) => m.values().any(contains_unknown),
        _ => false,
    }
}

/// Plausible provider outputs for a resource, so the program can finish like after `pulumi up`.
fn computed_outputs(type_: &str, name: &str, n: u32, inputs: &Value) -> Map<String, Value> {
    let kind = type_.rsplit(':').next().unwrap_or_default();
    let host = format!("{name}-do-user-0.db.ondigitalocean.com");
    let private = format!("private-{host}");
    let urn = |k: &str| json!(format!("do:{k}:{name}"));
    let out = match kind {
        "Vpc" => json!({ "vpcUrn": urn("vpc") }),
        "Droplet" => json!({
            "ipv4Address": format!("203.0.113.{}", n % 250 + 1),
            "ipv4AddressPrivate": format!("10.110.0.{}", n % 250 + 2),
            "dropletUrn": format!("do:droplet:{}", 400_000 + n),
            "status": "active",
        }),
        "LoadBalancer" => json!({
            "ip": "198.51.100.10",
            "loadBalancerUrn": urn("loadbalancer"),
            "status": "active",
        }),
        "DatabaseCluster" => json!({
            "host": host, "privateHost": private, "port": 25060, "database": "defaultdb",
            "user": "doadmin", "password": secret(json!("mock-admin-password")),
            "uri": secret(json!(format!("postgresql://doadmin:mock-admin-password@{host}:25060/defaultdb?sslmode=require"))),
            "privateUri": secret(json!(format!("postgresql://doadmin:mock-admin-password@{private}:25060/defaultdb?sslmode=require"))),
            "clusterUrn": urn("dbaas"),
        }),
        "DatabaseUser" => {
            json!({ "password": secret(json!("mock-user-password")), "role": "normal" })
        }
        "DatabaseConnectionPool" => json!({
            "host": "pool-host.db.ondigitalocean.com",
            "privateHost": "private-pool-host.db.ondigitalocean.com",
            "port": 25061, "password": secret(json!("mock-user-password")),
            "uri": secret(json!("postgresql://app:mock-user-password@pool-host.db.ondigitalocean.com:25061/pool?sslmode=require")),
            "privateUri": secret(json!("postgresql://app:mock-user-password@private-pool-host.db.ondigitalocean.com:25061/pool?sslmode=require")),
        }),
        "SpacesBucket" => json!({
            "bucketDomainName": format!(
                "{}.{}.digitaloceanspaces.com",
                inputs["name"].as_str().unwrap_or(name),
                inputs["region"].as_str().unwrap_or("nyc3")
            ),
            "bucketUrn": urn("space"),
        }),
        "SpacesBucketObject" => json!({ "etag": "mock-etag" }),
        "Certificate" => json!({ "uuid": format!("cert-{n}"), "state": "verified" }),
        "Firewall" => json!({ "status": "succeeded" }),
        "SshKey" => {
            json!({ "fingerprint": format!("3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:{:02x}", n % 256) })
        }
        _ => json!({}),
    };
    let mut out = match out {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    // Every other output the provider declares gets a value of its type.
    for (prop, spec) in crate::provider_schema::digitalocean()
        .outputs(type_)
        .into_iter()
        .flatten()
    {
        if !out.contains_key(prop)
            && let Some(v) = typed_value(spec, &format!("{prop}-of-{name}"))
        {
            out.insert(prop.clone(), v);
        }
    }
    out
}

/// Readable stand-ins for outputs that do not exist before `pulumi up` (offline preview).
fn placeholder_outputs(type_: &str, name: &str) -> Map<String, Value> {
    // Numbers cannot read `<port of ...>`: take the values DigitalOcean documents (ports).
    let documented = computed_outputs(type_, name, 0, &Value::Null);
    let mut out = Map::new();
    for (prop, spec) in crate::provider_schema::digitalocean()
        .outputs(type_)
        .into_iter()
        .flatten()
    {
        let value = if spec["secret"] == true {
            Some(secret(json!(SECRET_PLACEHOLDER)))
        } else if let Some(n) = documented.get(prop).filter(|v| v.is_number()) {
            Some(n.clone())
        } else {
            typed_value(spec, &format!("<{prop} of {name}>"))
        };
        if let Some(v) = value {
            out.insert(prop.clone(), v);
        }
    }
    out
}

/// A value of the spec's type: `text` for strings, zero or false or empty otherwise.
fn typed_value(spec: &Value, text: &str) -> Option<Value> {
    match spec["type"].as_str() {
        Some("string") => Some(json!(text)),
        Some("integer") | Some("number") => Some(json!(0)),
        Some("boolean") => Some(json!(false)),
        Some("array") => Some(json!([])),
        _ => None,
    }
}

#[tonic::async_trait]
impl ResourceMonitor for Monitor {
    async fn supports_feature(
        &self,
        request: Request<SupportsFeatureRequest>,
    ) -> Result<Response<SupportsFeatureResponse>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(SupportsFeatureResponse {
            has_support: id == "secrets",
        }))
    }

    async fn invoke(
        &self,
        request: Request<ResourceInvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let req = request.into_inner();
        let args = req.args.as_ref().map(struct_to_json).unwrap_or(json!({}));
        self.state
            .lock()
            .expect("recorder lock")
            .invokes
            .push(Invocation {
                token: req.tok.clone(),
                args: args.clone(),
            });
        let result = match req.tok.as_str() {
            "digitalocean:index/getDatabaseCa:getDatabaseCa" => {
                let cluster = reveal(&args["clusterId"]);
                // The provider looks the id up in the API: an unknown id is an error there.
                let Some(id) = cluster.as_str().filter(|_| !is_unknown(&cluster)) else {
                    return Err(Status::invalid_argument(
                        "getDatabaseCa: clusterId is not known yet",
                    ));
                };
                json!({
                    "certificate": format!("-----BEGIN CERTIFICATE-----\nMOCK-CA-OF-{id}\n-----END CERTIFICATE-----\n"),
                    "clusterId": id,
                    "id": id,
                })
            }
            other => return Err(Status::unimplemented(format!("no function {other}"))),
        };
        Ok(Response::new(InvokeResponse {
            r#return: match to_prost(&result).kind {
                Some(Kind::StructValue(s)) => Some(s),
                _ => None,
            },
            ..Default::default()
        }))
    }

    async fn call(
        &self,
        _: Request<ResourceCallRequest>,
    ) -> Result<Response<CallResponse>, Status> {
        Err(Status::unimplemented("call"))
    }

    async fn read_resource(
        &self,
        _: Request<ReadResourceRequest>,
    ) -> Result<Response<ReadResourceResponse>, Status> {
        Err(Status::unimplemented("read_resource"))
    }

    async fn register_resource(
        &self,
        request: Request<RegisterResourceRequest>,
    ) -> Result<Response<RegisterResourceResponse>, Status> {
        let req = request.into_inner();
        // Unset optional fields arrive as nulls, which providers skip; record what they see.
        let inputs = without_nulls(req.object.as_ref().map(struct_to_json).unwrap_or(json!({})));
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let urn = format!(
            "urn:pulumi:{}::{}::{}::{}",
            self.stack, self.project, req.r#type, req.name
        );
        self.state
            .lock()
            .expect("recorder lock")
            .resources
            .push(Registration {
                type_: req.r#type.clone(),
                name: req.name.clone(),
                custom: req.custom,
                inputs: inputs.clone(),
                dependencies: req.dependencies.clone(),
            });
        let mut object = Map::new();
        if let Value::Object(m) = &inputs {
            for (k, v) in m {
                // Echo known inputs; an unknown input stays unknown as an output.
                if !contains_unknown(v) {
                    object.insert(k.clone(), v.clone());
                }
            }
        }
        let id = if !req.custom {
            String::new()
        } else if self.dry_run && self.placeholders {
            for (k, v) in placeholder_outputs(&req.r#type, &req.name) {
                object.entry(k).or_insert(v);
            }
            format!("<id of {}>", req.name)
        } else if self.dry_run {
            String::new()
        } else {
            for (k, v) in computed_outputs(&req.r#type, &req.name, n, &inputs) {
                object.entry(k).or_insert(v);
            }
            format!("{}-id", req.name)
        };
        Ok(Response::new(RegisterResourceResponse {
            urn,
            id,
            object: Some(match to_prost(&Value::Object(object)).kind {
                Some(Kind::StructValue(s)) => s,
                _ => Struct::default(),
            }),
            ..Default::default()
        }))
    }

    async fn register_resource_outputs(
        &self,
        request: Request<RegisterResourceOutputsRequest>,
    ) -> Result<Response<()>, Status> {
        let outputs = request
            .into_inner()
            .outputs
            .as_ref()
            .map(struct_to_json)
            .unwrap_or(json!({}));
        self.state.lock().expect("recorder lock").outputs = Some(outputs);
        Ok(Response::new(()))
    }

    async fn register_stack_transform(&self, _: Request<Callback>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("transforms"))
    }

    async fn register_stack_invoke_transform(
        &self,
        _: Request<Callback>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("transforms"))
    }

    async fn register_resource_hook(
        &self,
        _: Request<RegisterResourceHookRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("hooks"))
    }

    async fn register_error_hook(
        &self,
        _: Request<RegisterErrorHookRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("hooks"))
    }

    async fn register_package(
        &self,
        request: Request<RegisterPackageRequest>,
    ) -> Result<Response<RegisterPackageResponse>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(RegisterPackageResponse { r#ref: name }))
    }

    async fn signal_and_wait_for_shutdown(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
}

struct EngineService {
    state: Arc<Mutex<Recorder>>,
}

#[tonic::async_trait]
impl Engine for EngineService {
    async fn log(&self, request: Request<LogRequest>) -> Result<Response<()>, Status> {
        let message = request.into_inner().message;
        self.state.lock().expect("recorder lock").logs.push(message);
        Ok(Response::new(()))
    }

    async fn get_root_resource(
        &self,
        _: Request<GetRootResourceRequest>,
    ) -> Result<Response<GetRootResourceResponse>, Status> {
        Ok(Response::new(GetRootResourceResponse::default()))
    }

    async fn set_root_resource(
        &self,
        _: Request<SetRootResourceRequest>,
    ) -> Result<Response<SetRootResourceResponse>, Status> {
        Ok(Response::new(SetRootResourceResponse::default()))
    }

    async fn start_debugging(
        &self,
        _: Request<StartDebuggingRequest>,
    ) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn require_pulumi_version(
        &self,
        _: Request<RequirePulumiVersionRequest>,
    ) -> Result<Response<RequirePulumiVersionResponse>, Status> {
        Ok(Response::new(RequirePulumiVersionResponse::default()))
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
