//! The program's own link to the engine: the stack transform that declares dependencies and options, and lookups.
//!
//! Gestalt registers resources without dependencies or options. Before its first registration,
//! the program registers a stack transform (`ResourceMonitor.RegisterStackTransform`, engine
//! feature `transforms`, Pulumi 3.107+) served by a `Callbacks` server of its own. The engine
//! passes every later registration through it. For a resource the program declared in its
//! [`Graph`], the transform returns the inputs that use other resources as output values carrying
//! their URNs, which is how the engine records dependencies from a transform (a returned
//! `dependsOn` is ignored), and the declared options (`protect`, `deleteBeforeReplace`,
//! `customTimeouts`), which replace the request's. Source: pulumi/pulumi
//! `pkg/resource/deploy/source_eval.go` (`wrapTransformCallback`, `RegisterResource`).

use crate::graph::{Declared, Graph};
use crate::wire::{output_value, struct_to_json, to_struct};
use prost::Message;
use pulumi_gestalt_proto::pulumi::pulumirpc::callbacks_server::{Callbacks, CallbacksServer};
use pulumi_gestalt_proto::pulumi::pulumirpc::engine_client::EngineClient;
use pulumi_gestalt_proto::pulumi::pulumirpc::register_resource_request::CustomTimeouts;
use pulumi_gestalt_proto::pulumi::pulumirpc::resource_monitor_client::ResourceMonitorClient;
use pulumi_gestalt_proto::pulumi::pulumirpc::{
    Callback, CallbackInvokeRequest, CallbackInvokeResponse, LogRequest, LogSeverity,
    ResourceInvokeRequest, SupportsFeatureRequest, TransformRequest, TransformResponse,
};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The token the engine passes back with every transform call.
const TRANSFORM_TOKEN: &str = "rustlb-stack-transform";

/// A connection to the engine's resource monitor, with the runtime that serves the transform.
pub struct EngineLink {
    runtime: tokio::runtime::Runtime,
    monitor: ResourceMonitorClient<Channel>,
    engine: EngineClient<Channel>,
    provider_version: String,
}

impl EngineLink {
    /// Connects to `PULUMI_MONITOR` and `PULUMI_ENGINE` (host:port each).
    pub fn connect(monitor: &str, engine: &str) -> anyhow::Result<EngineLink> {
        // Its own threads: the transform must answer while Gestalt's registrations wait on it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("engine-link")
            .enable_all()
            .build()?;
        let monitor = runtime
            .block_on(ResourceMonitorClient::connect(format!("http://{monitor}")))
            .map_err(|e| anyhow::anyhow!("cannot reach the Pulumi engine at {monitor}: {e}"))?;
        let engine = runtime
            .block_on(EngineClient::connect(format!("http://{engine}")))
            .map_err(|e| anyhow::anyhow!("cannot reach the Pulumi engine at {engine}: {e}"))?;
        Ok(EngineLink {
            runtime,
            monitor,
            engine,
            provider_version: crate::provider_schema::digitalocean().version().to_string(),
        })
    }

    /// Serves the transform and registers it; every registration after this one passes through it.
    pub fn register_transform(&mut self, graph: Graph) -> anyhow::Result<()> {
        let supported = self
            .runtime
            .block_on(self.monitor.supports_feature(SupportsFeatureRequest {
                id: "transforms".into(),
            }))
            .map(|r| r.into_inner().has_support)
            .unwrap_or(false);
        if !supported {
            anyhow::bail!(
                "this Pulumi engine does not support stack transforms, which the program needs to \
                 declare dependencies and resource options: use the Pulumi CLI 3.107 or newer"
            );
        }
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        // grpc-go dials `host:port`; a `tcp://` target would not resolve.
        let target = listener.local_addr()?.to_string();
        let service = CallbacksServer::new(Transformer { graph });
        self.runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(
                    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener),
                ),
        );
        self.runtime
            .block_on(self.monitor.register_stack_transform(Callback {
                target,
                token: TRANSFORM_TOKEN.into(),
            }))
            .map_err(|e| anyhow::anyhow!("the engine refused the stack transform: {e}"))?;
        Ok(())
    }

    /// A message in the engine's log, shown by the CLI with the update.
    pub fn log_info(&mut self, message: &str) -> anyhow::Result<()> {
        self.runtime
            .block_on(self.engine.log(LogRequest {
                severity: LogSeverity::Info as i32,
                message: message.to_string(),
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("engine log: {}", e.message()))?;
        Ok(())
    }

    /// Calls a provider function (e.g. `getSshKeys`) and returns its result.
    ///
    /// It may be called from inside an output's closure, where Gestalt's own runtime is
    /// running: the call then runs on a thread of its own.
    pub fn invoke(&self, token: &str, args: Value) -> anyhow::Result<Value> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|s| {
                s.spawn(|| self.invoke(token, args))
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("{token}: the call panicked")))
            });
        }
        let mut monitor = self.monitor.clone();
        let response = self
            .runtime
            .block_on(monitor.invoke(ResourceInvokeRequest {
                tok: token.to_string(),
                args: Some(to_struct(&args)),
                version: self.provider_version.clone(),
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("{token}: {}", e.message()))?
            .into_inner();
        if let Some(failure) = response.failures.first() {
            anyhow::bail!("{token}: {} {}", failure.property, failure.reason);
        }
        Ok(response
            .r#return
            .as_ref()
            .map(struct_to_json)
            .unwrap_or(Value::Null))
    }
}

struct Transformer {
    graph: Graph,
}

#[tonic::async_trait]
impl Callbacks for Transformer {
    async fn invoke(
        &self,
        request: Request<CallbackInvokeRequest>,
    ) -> Result<Response<CallbackInvokeResponse>, Status> {
        let request = request.into_inner();
        if request.token != TRANSFORM_TOKEN {
            return Err(Status::not_found(format!(
                "no callback {:?} here",
                request.token
            )));
        }
        let transform = TransformRequest::decode(request.request.as_slice())
            .map_err(|e| Status::invalid_argument(format!("not a TransformRequest: {e}")))?;
        let declared = self
            .graph
            .get(&self.graph.urn(&transform.r#type, &transform.name));
        let response = match declared {
            Some(declared) => apply(&transform, &declared)
                .map_err(|m| Status::failed_precondition(format!("{}: {m}", transform.name)))?,
            // Untouched: the engine keeps the request's inputs and options.
            None => TransformResponse::default(),
        };
        Ok(Response::new(CallbackInvokeResponse {
            response: response.encode_to_vec(),
        }))
    }
}

/// The transformed registration: each declared input as an output value carrying its
/// dependencies, and the request's options with the declared ones set.
pub fn apply(request: &TransformRequest, declared: &Declared) -> Result<TransformResponse, String> {
    let mut props = request
        .properties
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_else(|| Value::Object(Default::default()));
    let map = props.as_object_mut().expect("a struct is an object");
    let properties: std::collections::BTreeSet<&String> =
        declared.uses.keys().chain(declared.secret.iter()).collect();
    for property in properties {
        let value = map.get(property).filter(|v| !v.is_null()).ok_or_else(|| {
            format!("the program declared input {property}, but the input is not set")
        })?;
        let urns: Vec<String> = declared
            .uses
            .get(property)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        let wrapped = output_value(value, &urns, declared.secret.contains(property));
        map.insert(property.clone(), wrapped);
    }
    // The request's options (its version and provider among them) stay; the declared ones are added.
    let mut options = request.options.clone().unwrap_or_default();
    let o = &declared.options;
    if o.protect {
        options.protect = Some(true);
    }
    if o.delete_before_replace {
        options.delete_before_replace = Some(true);
    }
    if let Some(delete) = &o.delete_timeout {
        let mut timeouts = options.custom_timeouts.take().unwrap_or(CustomTimeouts {
            create: String::new(),
            update: String::new(),
            delete: String::new(),
        });
        timeouts.delete = delete.clone();
        options.custom_timeouts = Some(timeouts);
    }
    Ok(TransformResponse {
        properties: Some(to_struct(&props)),
        options: Some(options),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Options;
    use crate::wire::{OUTPUT_SIG, SIG_KEY, UNKNOWN, secret};
    use pulumi_gestalt_proto::pulumi::pulumirpc::TransformResourceOptions;
    use serde_json::json;

    #[test]
    fn declared_inputs_become_output_values_and_options_keep_the_version() {
        let mut declared = Declared {
            options: Options {
                protect: true,
                delete_timeout: Some("5m".into()),
                ..Options::default()
            },
            ..Declared::default()
        };
        for (prop, urn) in [
            ("vpcUuid", "urn:a"),
            ("userData", "urn:b"),
            ("tags", "urn:c"),
        ] {
            declared
                .uses
                .entry(prop.into())
                .or_default()
                .insert(urn.into());
        }
        let request = TransformRequest {
            r#type: "t".into(),
            name: "n".into(),
            custom: true,
            parent: String::new(),
            properties: Some(to_struct(&json!({
                "vpcUuid": UNKNOWN,
                "userData": secret(json!("#cloud-config")),
                "tags": ["a", "b"],
                "size": "s-1vcpu-1gb",
            }))),
            options: Some(TransformResourceOptions {
                version: "4.76.0".into(),
                ..Default::default()
            }),
        };
        let response = apply(&request, &declared).unwrap();
        let props = struct_to_json(response.properties.as_ref().unwrap());
        assert_eq!(props["vpcUuid"][SIG_KEY], OUTPUT_SIG);
        assert!(
            props["vpcUuid"].get("value").is_none(),
            "unknown stays unknown"
        );
        assert_eq!(props["userData"]["secret"], true);
        assert_eq!(props["userData"]["value"], "#cloud-config");
        assert_eq!(props["tags"]["dependencies"], json!(["urn:c"]));
        assert_eq!(props["size"], "s-1vcpu-1gb");
        let options = response.options.unwrap();
        assert_eq!(options.version, "4.76.0");
        assert_eq!(options.protect, Some(true));
        assert_eq!(options.custom_timeouts.unwrap().delete, "5m");
    }

    #[test]
    fn a_secret_input_stays_secret_while_unknown() {
        let mut declared = Declared::default();
        declared.secret.insert("userData".into());
        let request = TransformRequest {
            properties: Some(to_struct(&json!({ "userData": UNKNOWN, "name": "x" }))),
            ..Default::default()
        };
        let props = struct_to_json(&apply(&request, &declared).unwrap().properties.unwrap());
        assert_eq!(props["userData"]["secret"], true);
        assert!(props["userData"].get("value").is_none());
        assert_eq!(props["name"], "x");
    }

    #[test]
    fn a_declared_input_that_is_not_set_is_an_error() {
        let mut declared = Declared::default();
        declared
            .uses
            .entry("sshKeys".into())
            .or_default()
            .insert("urn:k".into());
        let request = TransformRequest {
            properties: Some(to_struct(&json!({ "name": "x" }))),
            ..Default::default()
        };
        assert!(apply(&request, &declared).unwrap_err().contains("sshKeys"));
    }
}
