//! An in-process stand-in for the Pulumi engine: runs the program binary and records what it registers.

use prost_types::value::Kind;
use pulumi_gestalt_proto::pulumi::pulumirpc::callbacks_client::CallbacksClient;
use pulumi_gestalt_proto::pulumi::pulumirpc::engine_server::{Engine, EngineServer};
use pulumi_gestalt_proto::pulumi::pulumirpc::resource_monitor_server::{
    ResourceMonitor, ResourceMonitorServer,
};
use pulumi_gestalt_proto::pulumi::pulumirpc::{
    CallResponse, Callback, CallbackInvokeRequest, GetRootResourceRequest, GetRootResourceResponse,
    InvokeResponse, LogRequest, ReadResourceRequest, ReadResourceResponse,
    RegisterErrorHookRequest, RegisterPackageRequest, RegisterPackageResponse,
    RegisterResourceHookRequest, RegisterResourceOutputsRequest, RegisterResourceRequest,
    RegisterResourceResponse, RequirePulumiVersionRequest, RequirePulumiVersionResponse,
    ResourceCallRequest, ResourceInvokeRequest, SetRootResourceRequest, SetRootResourceResponse,
    StartDebuggingRequest, SupportsFeatureRequest, SupportsFeatureResponse, TransformRequest,
    TransformResourceOptions, TransformResponse,
};
use serde_json::{Map, Value, json};

use crate::graph::Options;
use crate::wire::{SECRET_PLACEHOLDER, downgrade_outputs, output_dependencies};
pub use crate::wire::{
    SECRET_SIG, SIG_KEY, UNKNOWN, is_secret, is_unknown, redact, reveal, secret, struct_to_json,
    to_json, to_prost, to_struct, without_nulls,
};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Its URN.
    pub urn: String,
    /// Every URN it depends on: the request's `dependencies` and those the output values of
    /// its (transformed) inputs carry, as the engine records them in the state.
    pub dependencies: Vec<String>,
    /// Input name -> URNs, from the output values of the transformed inputs.
    pub property_dependencies: BTreeMap<String, Vec<String>>,
    /// The options in effect after the stack transform.
    pub options: Options,
    /// True when it passed through a stack transform.
    pub transformed: bool,
    /// The id the engine answered (empty in a dry run without placeholders).
    pub id: String,
    /// Outputs the provider computed (those that are not echoes of inputs).
    pub computed: Value,
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
    /// The DigitalOcean account `getAccount` and `getSshKeys` read.
    pub account: MockAccount,
}

/// The account the stand-in provider answers for.
#[derive(Debug, Clone)]
pub struct MockAccount {
    /// Its uuid.
    pub uuid: String,
    /// SSH keys already uploaded: (name, public key line).
    pub ssh_keys: Vec<(String, String)>,
}

impl Default for MockAccount {
    fn default() -> MockAccount {
        MockAccount {
            uuid: "a1b2c3d4-0000-4000-8000-00000000000a".into(),
            ssh_keys: Vec::new(),
        }
    }
}

impl MockAccount {
    /// The keys as `getSshKeys` lists them.
    fn listed(&self) -> Vec<Value> {
        self.ssh_keys
            .iter()
            .enumerate()
            .filter_map(|(i, (name, line))| {
                let key = crate::config::SshPublicKey::parse(line).ok()?;
                Some(json!({
                    "id": 41_000_000 + i as i64,
                    "name": name,
                    "fingerprint": key.fingerprint(),
                    "publicKey": key.line(),
                }))
            })
            .collect()
    }
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

impl Run {
    /// The custom resource with this URN.
    pub fn by_urn(&self, urn: &str) -> Option<&Registration> {
        self.resources.iter().find(|r| r.urn == urn)
    }

    /// Every URN `r` depends on, directly or through the resources it depends on.
    pub fn transitive_dependencies(&self, r: &Registration) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = r.dependencies.clone();
        while let Some(urn) = todo.pop() {
            if seen.insert(urn.clone())
                && let Some(dep) = self.by_urn(&urn)
            {
                todo.extend(dep.dependencies.iter().cloned());
            }
        }
        seen
    }

    /// Each use of another resource's id, computed output or name that its declared
    /// dependencies, followed transitively, do not cover. Without the declaration the engine
    /// cannot order the two in `pulumi destroy` or in a replacement.
    pub fn undeclared_uses(&self) -> Vec<String> {
        let custom: Vec<&Registration> = self.resources.iter().filter(|r| r.custom).collect();
        let mut problems = Vec::new();
        for r in &custom {
            let declared = self.transitive_dependencies(r);
            let mut leaves = Vec::new();
            string_leaves(&reveal(&r.inputs), "", &mut leaves);
            for d in &custom {
                if d.urn == r.urn || declared.contains(&d.urn) {
                    continue;
                }
                let marks = marks_of(d);
                if let Some((input, what)) = leaves.iter().find_map(|(path, text)| {
                    marks
                        .iter()
                        .find(|(_, mark)| refers_to(text, mark))
                        .map(|(what, _)| (path.clone(), what.clone()))
                }) {
                    problems.push(format!(
                        "{} ({}) uses the {what} of {} in {input} without declaring a dependency on it",
                        r.name,
                        short_type(&r.type_),
                        d.name
                    ));
                }
            }
        }
        problems
    }

    /// The order in which `pulumi destroy` deletes the custom resources: a resource goes only
    /// after every resource that depends on it. Ties (resources the engine would delete in
    /// parallel) are listed by name.
    pub fn destroy_order(&self) -> Vec<String> {
        let custom: Vec<&Registration> = self.resources.iter().filter(|r| r.custom).collect();
        let mut left: BTreeMap<&str, &Registration> =
            custom.iter().map(|r| (r.urn.as_str(), *r)).collect();
        let mut order = Vec::new();
        while !left.is_empty() {
            let ready: Vec<&str> = left
                .keys()
                .filter(|urn| {
                    !left
                        .values()
                        .any(|other| other.dependencies.iter().any(|d| d == *urn))
                })
                .copied()
                .collect();
            // A cycle cannot come out of a creation order; stop rather than loop.
            if ready.is_empty() {
                order.extend(
                    left.values()
                        .map(|r| format!("{} (in a dependency cycle)", r.name)),
                );
                break;
            }
            let mut names: Vec<String> = ready.iter().map(|u| left[u].name.clone()).collect();
            names.sort();
            order.extend(names);
            for urn in ready {
                left.remove(urn);
            }
        }
        order
    }
}

/// The token's last part (`Droplet`).
fn short_type(type_: &str) -> &str {
    type_.rsplit(':').next().unwrap_or(type_)
}

/// Every string inside `v`, with its path (`forwardingRules[1].certificateName`).
fn string_leaves(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                string_leaves(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(x, &p, out);
            }
        }
        _ => {}
    }
}

/// What identifies a resource to another: its id, the outputs the provider computed, and the
/// name DigitalOcean knows it by. Secrets and values too short to be told apart are left out.
fn marks_of(d: &Registration) -> Vec<(String, String)> {
    let mut marks = Vec::new();
    if !d.id.is_empty() {
        marks.push(("id".to_string(), d.id.clone()));
    }
    if let Value::Object(m) = &d.computed {
        for (k, v) in m {
            if let Some(text) = v
                .as_str()
                .filter(|t| *t != SECRET_PLACEHOLDER && !is_unknown(v))
            {
                marks.push((k.clone(), text.to_string()));
            }
        }
    }
    if let Some(name) = d.inputs["name"].as_str() {
        marks.push(("name".to_string(), name.to_string()));
    }
    marks.retain(|(_, text)| text.len() >= 6);
    marks
}

/// `text` is the mark, or holds it whole (a URL holding a host, a key holding a name).
fn refers_to(text: &str, mark: &str) -> bool {
    text == mark || (mark.len() >= 12 && text.contains(mark))
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
    account: MockAccount,
    /// The registered stack transform: its client and token.
    transform: Mutex<Option<(CallbacksClient<tonic::transport::Channel>, String)>>,
}

/// A Go duration (`5m`, `1h30m`, `90s`), the only form the engine accepts in `customTimeouts`.
fn go_duration_ok(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len())
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// The options the engine keeps from a transform's answer.
fn options_of(o: &TransformResourceOptions) -> Result<Options, Status> {
    let delete_timeout = o
        .custom_timeouts
        .as_ref()
        .map(|t| t.delete.clone())
        .filter(|d| !d.is_empty());
    if let Some(d) = &delete_timeout
        && !go_duration_ok(d)
    {
        return Err(Status::invalid_argument(format!(
            "invalid customTimeouts.delete {d:?}: not a duration"
        )));
    }
    Ok(Options {
        protect: o.protect == Some(true),
        delete_before_replace: o.delete_before_replace == Some(true),
        delete_timeout,
    })
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

impl Monitor {
    /// Runs the registered stack transform, if any, the way the engine does: the request's
    /// inputs and options go in; returned inputs replace them, returned options replace all of
    /// them (a returned `dependsOn` is ignored, since the request named no transforms of its own).
    async fn transformed(
        &self,
        req: &RegisterResourceRequest,
    ) -> Result<(Value, Options, bool), Status> {
        let props = req.object.as_ref().map(struct_to_json).unwrap_or(json!({}));
        let transform = self.transform.lock().expect("transform lock").clone();
        let Some((mut client, token)) = transform else {
            return Ok((props, Options::default(), false));
        };
        let options = TransformResourceOptions {
            version: req.version.clone(),
            provider: req.provider.clone(),
            protect: req.protect,
            delete_before_replace: Some(req.delete_before_replace),
            custom_timeouts: req.custom_timeouts.clone(),
            depends_on: req.dependencies.clone(),
            ..Default::default()
        };
        let request = TransformRequest {
            r#type: req.r#type.clone(),
            name: req.name.clone(),
            custom: req.custom,
            parent: req.parent.clone(),
            properties: req.object.clone(),
            options: Some(options.clone()),
        };
        let answer = client
            .invoke(CallbackInvokeRequest {
                token,
                request: prost::Message::encode_to_vec(&request),
            })
            .await
            .map_err(|e| Status::internal(format!("invoke transform: {}", e.message())))?
            .into_inner();
        let response: TransformResponse = prost::Message::decode(answer.response.as_slice())
            .map_err(|e| Status::internal(format!("unmarshaling transform response: {e}")))?;
        let props = response
            .properties
            .as_ref()
            .map(struct_to_json)
            .unwrap_or(props);
        let kept = response.options.unwrap_or(options);
        Ok((props, options_of(&kept)?, true))
    }

    /// DigitalOcean answers 422 to a public key the account already has under another name.
    fn refuse_uploaded_key(&self, inputs: &Value) -> Result<(), Status> {
        let line = reveal(&inputs["publicKey"]);
        let Some(key) = line
            .as_str()
            .and_then(|l| crate::config::SshPublicKey::parse(l).ok())
        else {
            return Ok(());
        };
        let taken = self.account.listed().into_iter().find(|k| {
            k["fingerprint"].as_str() == Some(&key.fingerprint()) && k["name"] != inputs["name"]
        });
        match taken {
            Some(_) => Err(Status::failed_precondition(
                "POST https://api.digitalocean.com/v2/account/keys: 422 SSH Key is already in use on your account",
            )),
            None => Ok(()),
        }
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
            has_support: id == "secrets" || id == "transforms",
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
            crate::program::account::GET_ACCOUNT => json!({
                "uuid": self.account.uuid,
                "id": self.account.uuid,
                "email": "owner@account.test",
                "emailVerified": true,
                "status": "active",
                "statusMessage": "",
                "dropletLimit": 25,
                "floatingIpLimit": 3,
            }),
            crate::program::account::GET_SSH_KEYS => {
                // The provider's filter: keep keys whose `key` field equals one of `values`.
                let mut keys = self.account.listed();
                for filter in args["filters"].as_array().into_iter().flatten() {
                    let field = filter["key"].as_str().unwrap_or_default();
                    let values = filter["values"].as_array().cloned().unwrap_or_default();
                    keys.retain(|k| values.contains(&k[field]));
                }
                json!({ "sshKeys": keys, "id": "ssh-keys", "filters": args["filters"] })
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
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let urn = crate::graph::urn(&self.stack, &self.project, &req.r#type, &req.name);
        let (props, options, transformed) = self.transformed(&req).await?;
        // As the engine does: output values in the transformed inputs become property
        // dependencies, and are downgraded to plain values before the provider sees them.
        let mut dependencies: Vec<String> = req.dependencies.clone();
        let mut property_dependencies = BTreeMap::new();
        if let Value::Object(m) = &props {
            for (k, v) in m {
                let mut deps = Vec::new();
                output_dependencies(v, &mut deps);
                if !deps.is_empty() {
                    dependencies.extend(deps.iter().cloned());
                    property_dependencies.insert(k.clone(), deps);
                }
            }
        }
        dependencies.sort();
        dependencies.dedup();
        // Unset optional fields arrive as nulls, which providers skip; record what they see.
        let inputs = without_nulls(downgrade_outputs(&props));
        if req.r#type == crate::graph::token::SSH_KEY && !self.dry_run {
            self.refuse_uploaded_key(&inputs)?;
        }
        let mut object = Map::new();
        if let Value::Object(m) = &inputs {
            for (k, v) in m {
                // Echo known inputs; an unknown input stays unknown as an output.
                if !contains_unknown(v) {
                    object.insert(k.clone(), v.clone());
                }
            }
        }
        let mut computed = Map::new();
        let id = if !req.custom {
            String::new()
        } else if self.dry_run && self.placeholders {
            computed = placeholder_outputs(&req.r#type, &req.name);
            format!("<id of {}>", req.name)
        } else if self.dry_run {
            String::new()
        } else {
            computed = computed_outputs(&req.r#type, &req.name, n, &inputs);
            format!("{}-id", req.name)
        };
        computed.retain(|k, _| !object.contains_key(k));
        for (k, v) in &computed {
            object.insert(k.clone(), v.clone());
        }
        self.state
            .lock()
            .expect("recorder lock")
            .resources
            .push(Registration {
                type_: req.r#type.clone(),
                name: req.name.clone(),
                custom: req.custom,
                inputs,
                urn: urn.clone(),
                dependencies,
                property_dependencies,
                options,
                transformed,
                id: id.clone(),
                computed: Value::Object(computed),
            });
        Ok(Response::new(RegisterResourceResponse {
            urn,
            id,
            object: Some(to_struct(&Value::Object(object))),
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

    async fn register_stack_transform(
        &self,
        request: Request<Callback>,
    ) -> Result<Response<()>, Status> {
        let cb = request.into_inner();
        if cb.target.is_empty() {
            return Err(Status::invalid_argument("target must be specified"));
        }
        // The engine dials the target with grpc-go: `host:port`, no scheme.
        if cb.target.contains("://") {
            return Err(Status::invalid_argument(format!(
                "cannot dial callback target {:?}: give host:port",
                cb.target
            )));
        }
        let client = CallbacksClient::connect(format!("http://{}", cb.target))
            .await
            .map_err(|e| Status::unavailable(format!("dialing {}: {e}", cb.target)))?;
        *self.transform.lock().expect("transform lock") = Some((client, cb.token));
        Ok(Response::new(()))
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
