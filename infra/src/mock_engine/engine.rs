//! The engine service the program logs to; everything else it asks has a fixed answer.

use super::record::Recorder;
use pulumi_gestalt_proto::pulumi::pulumirpc::engine_server::Engine;
use pulumi_gestalt_proto::pulumi::pulumirpc::{
    GetRootResourceRequest, GetRootResourceResponse, LogRequest, RequirePulumiVersionRequest,
    RequirePulumiVersionResponse, SetRootResourceRequest, SetRootResourceResponse,
    StartDebuggingRequest,
};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// The engine service of one run.
pub(super) struct EngineService {
    pub(super) state: Arc<Mutex<Recorder>>,
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
