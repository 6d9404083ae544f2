//! The resource monitor the program talks to: registrations, invokes and the stack transform, answered like the engine.

use super::outputs::{computed_outputs, placeholder_outputs};
use super::record::{Invocation, MockAccount, Recorder, Registration};
use crate::graph::Options;
use crate::wire::{
    downgrade_outputs, is_unknown, output_dependencies, reveal, struct_to_json, to_prost,
    to_struct, without_nulls,
};
use prost_types::value::Kind;
use pulumi_gestalt_proto::pulumi::pulumirpc::callbacks_client::CallbacksClient;
use pulumi_gestalt_proto::pulumi::pulumirpc::resource_monitor_server::ResourceMonitor;
use pulumi_gestalt_proto::pulumi::pulumirpc::{
    CallResponse, Callback, CallbackInvokeRequest, InvokeResponse, ReadResourceRequest,
    ReadResourceResponse, RegisterErrorHookRequest, RegisterPackageRequest,
    RegisterPackageResponse, RegisterResourceHookRequest, RegisterResourceOutputsRequest,
    RegisterResourceRequest, RegisterResourceResponse, ResourceCallRequest, ResourceInvokeRequest,
    SupportsFeatureRequest, SupportsFeatureResponse, TransformRequest, TransformResourceOptions,
    TransformResponse,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// The resource monitor of one run.
pub(super) struct Monitor {
    pub(super) state: Arc<Mutex<Recorder>>,
    pub(super) project: String,
    pub(super) stack: String,
    pub(super) dry_run: bool,
    pub(super) placeholders: bool,
    pub(super) next_id: AtomicU32,
    pub(super) account: MockAccount,
    /// The registered stack transform: its client and token.
    pub(super) transform: Mutex<Option<(CallbacksClient<tonic::transport::Channel>, String)>>,
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

/// As the engine does: output values in the transformed inputs become property dependencies,
/// and together with the request's own they are the resource's dependencies.
fn dependencies_of(
    requested: &[String],
    props: &Value,
) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut dependencies: Vec<String> = requested.to_vec();
    let mut property_dependencies = BTreeMap::new();
    if let Value::Object(m) = props {
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
    (dependencies, property_dependencies)
}

fn contains_unknown(v: &Value) -> bool {
    match v {
        Value::String(_) => is_unknown(v),
        Value::Array(a) => a.iter().any(contains_unknown),
        Value::Object(m) => m.values().any(contains_unknown),
        _ => false,
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
        let (dependencies, property_dependencies) = dependencies_of(&req.dependencies, &props);
        // Output values are downgraded to plain values before the provider sees them; unset
        // optional fields arrive as nulls, which providers skip. Record what they see.
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
