//! The registry's gRPC service and its `serve` entry point.

use crate::config::RegistryConfig;
use crate::state::RegistryState;
use mimo_proto::v1::registry_server::Registry;
use mimo_proto::v1::{
    Gauge, GrantLeaseRequest, GrantLeaseResponse, KeepAliveRequest, KeepAliveResponse,
    ListRegisteredSkillsRequest, ListRegisteredSkillsResponse, ListToolsRequest, ListToolsResponse,
    RegisterSkillRequest, RegisterSkillResponse, ResolveToolRequest, ResolveToolResponse,
    RevokeLeaseRequest, RevokeLeaseResponse, TimeToLiveRequest, TimeToLiveResponse,
    UnregisterSkillRequest, UnregisterSkillResponse,
};
use mimo_reporter::{Reporter, ReporterConfig};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per KeepAlive stream; a client that stops reading stalls only itself.
const KEEP_ALIVE_BUFFER: usize = 16;

/// The gRPC face of a [`RegistryState`].
#[derive(Debug, Clone)]
pub struct RegistryService {
    state: Arc<RegistryState>,
    shutdown: CancellationToken,
}

impl RegistryService {
    /// Serves `state`; open streams end when `shutdown` fires.
    pub fn new(state: Arc<RegistryState>, shutdown: CancellationToken) -> Self {
        Self { state, shutdown }
    }
}

/// Serves the registry on `listener` until `shutdown` fires, expiring leases and reporting
/// resources to telemetry meanwhile.
pub async fn serve(
    config: RegistryConfig,
    reporting: ReporterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let state = Arc::new(RegistryState::new(config));
    let background = shutdown.child_token();
    let mut tasks = JoinSet::new();
    tasks.spawn({
        let state = state.clone();
        let stop = background.clone();
        async move { state.run_expiry(stop).await }
    });
    let reporter = Reporter::new("registry", reporting, {
        let state = state.clone();
        Arc::new(move || {
            let (leases, skills, tools) = state.counts();
            vec![
                gauge("registry.leases", leases),
                gauge("registry.skills", skills),
                gauge("registry.tools", tools),
            ]
        })
    });
    tasks.spawn(reporter.run(background.clone()));
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "registry serving");
    let router = mimo_proto::serve::server().add_service(mimo_proto::serve::registry(
        RegistryService::new(state, shutdown.clone()),
    ));
    let result = mimo_proto::serve::serve_router(router, listener, shutdown).await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("registry stopped");
    result
}

fn gauge(name: &str, value: usize) -> Gauge {
    Gauge {
        name: name.to_string(),
        value: value as f64,
    }
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn grant_lease(
        &self,
        request: Request<GrantLeaseRequest>,
    ) -> Result<Response<GrantLeaseResponse>, Status> {
        let (lease_id, ttl) = self.state.grant(request.into_inner().ttl_ms)?;
        Ok(Response::new(GrantLeaseResponse {
            lease_id,
            ttl_ms: ttl.as_millis() as u64,
        }))
    }

    type KeepAliveStream = ReceiverStream<Result<KeepAliveResponse, Status>>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let state = self.state.clone();
        let shutdown = self.shutdown.clone();
        // The task ends when the client closes its side, stops reading, or the server stops.
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => {
                        let _ = sender.send(Err(Status::unavailable("registry is shutting down"))).await;
                        return;
                    }
                    next = inbound.message() => next,
                };
                let request = match next {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(error = %status.message(), "keep-alive stream broke");
                        return;
                    }
                };
                let reply = match state.keep_alive(request.lease_id) {
                    Ok(ttl) => KeepAliveResponse {
                        lease_id: request.lease_id,
                        ttl_ms: ttl.as_millis() as u64,
                        expired: false,
                    },
                    Err(_) => KeepAliveResponse {
                        lease_id: request.lease_id,
                        ttl_ms: 0,
                        expired: true,
                    },
                };
                if sender.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn revoke_lease(
        &self,
        request: Request<RevokeLeaseRequest>,
    ) -> Result<Response<RevokeLeaseResponse>, Status> {
        let removed = self.state.revoke(request.into_inner().lease_id)?;
        Ok(Response::new(RevokeLeaseResponse {
            skills_removed: removed as u32,
        }))
    }

    async fn time_to_live(
        &self,
        request: Request<TimeToLiveRequest>,
    ) -> Result<Response<TimeToLiveResponse>, Status> {
        let lease_id = request.into_inner().lease_id;
        let (remaining, ttl, skills) = self.state.time_to_live(lease_id)?;
        Ok(Response::new(TimeToLiveResponse {
            lease_id,
            remaining_ms: remaining.as_millis() as u64,
            granted_ttl_ms: ttl.as_millis() as u64,
            skills,
        }))
    }

    async fn register_skill(
        &self,
        request: Request<RegisterSkillRequest>,
    ) -> Result<Response<RegisterSkillResponse>, Status> {
        let request = request.into_inner();
        let tool_names = self.state.register_skill(
            request.lease_id,
            &request.skill,
            &request.endpoint,
            request.tools,
        )?;
        Ok(Response::new(RegisterSkillResponse { tool_names }))
    }

    async fn unregister_skill(
        &self,
        request: Request<UnregisterSkillRequest>,
    ) -> Result<Response<UnregisterSkillResponse>, Status> {
        let request = request.into_inner();
        let removed = self
            .state
            .unregister_skill(request.lease_id, &request.skill)?;
        Ok(Response::new(UnregisterSkillResponse {
            tools_removed: removed as u32,
        }))
    }

    async fn list_tools(
        &self,
        request: Request<ListToolsRequest>,
    ) -> Result<Response<ListToolsResponse>, Status> {
        let request = request.into_inner();
        let tools = self.state.list_tools(&request.skill, &request.name_prefix);
        Ok(Response::new(ListToolsResponse { tools }))
    }

    async fn resolve_tool(
        &self,
        request: Request<ResolveToolRequest>,
    ) -> Result<Response<ResolveToolResponse>, Status> {
        Ok(Response::new(
            self.state.resolve_tool(&request.into_inner().name)?,
        ))
    }

    async fn list_skills(
        &self,
        _request: Request<ListRegisteredSkillsRequest>,
    ) -> Result<Response<ListRegisteredSkillsResponse>, Status> {
        Ok(Response::new(ListRegisteredSkillsResponse {
            skills: self.state.list_skills(),
        }))
    }
}
