//! The registry's gRPC service and its `serve` entry point.

use crate::config::RegistryConfig;
use crate::state::RegistryState;
use crate::watcher::compacted_answer;
use mimo_proto::v1::registry_server::Registry;
use mimo_proto::v1::{
    Gauge, GrantLeaseRequest, GrantLeaseResponse, KeepAliveRequest, KeepAliveResponse,
    ListRegisteredSkillsRequest, ListRegisteredSkillsResponse, ListToolsRequest, ListToolsResponse,
    RegisterSkillRequest, RegisterSkillResponse, ResolveToolRequest, ResolveToolResponse,
    RevokeLeaseRequest, RevokeLeaseResponse, TimeToLiveRequest, TimeToLiveResponse,
    UnregisterSkillRequest, UnregisterSkillResponse, WatchRequest, WatchResponse,
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
/// Changes buffered per Watch stream; a watcher that falls further behind resumes from the
/// history, or is told its place was compacted.
const WATCH_BUFFER: usize = 64;

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
        let rate = std::sync::Mutex::new((0u64, std::time::Instant::now()));
        Arc::new(move || {
            let (leases, skills, tools) = state.counts();
            let total = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            let keep_alives = total(&state.counters.keep_alives);
            // Heartbeats per second since the previous report.
            let per_second = {
                let mut last = rate.lock().unwrap_or_else(|p| p.into_inner());
                let seconds = last.1.elapsed().as_secs_f64();
                let per_second = if seconds > 0.0 {
                    keep_alives.saturating_sub(last.0) as f64 / seconds
                } else {
                    0.0
                };
                *last = (keep_alives, std::time::Instant::now());
                per_second
            };
            vec![
                gauge("registry.leases", leases as f64),
                gauge("registry.skills", skills as f64),
                gauge("registry.tools", tools as f64),
                gauge("registry.watchers", state.watchers() as f64),
                gauge("registry.keep_alives_total", keep_alives as f64),
                gauge("registry.keep_alives_per_second", per_second),
                gauge(
                    "registry.expirations_total",
                    total(&state.counters.expirations) as f64,
                ),
                gauge(
                    "registry.registrations_total",
                    total(&state.counters.registrations) as f64,
                ),
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

fn gauge(name: &str, value: f64) -> Gauge {
    Gauge {
        name: name.to_string(),
        value,
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
        let page = self.state.list_tools(
            &request.skill,
            &request.name_prefix,
            request.page_size,
            &request.page_token,
        )?;
        Ok(Response::new(ListToolsResponse {
            tools: page.tools,
            next_page_token: page.next_page_token,
            revision: page.revision,
        }))
    }

    async fn resolve_tool(
        &self,
        request: Request<ResolveToolRequest>,
    ) -> Result<Response<ResolveToolResponse>, Status> {
        Ok(Response::new(
            self.state.resolve_tool(&request.into_inner().name)?,
        ))
    }

    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        match self.state.watch(request.start_revision)? {
            Err(compacted) => {
                let _ = sender.try_send(Ok(compacted_answer(compacted)));
            }
            Ok(subscription) => {
                tokio::spawn(crate::watcher::follow(
                    self.state.clone(),
                    subscription,
                    request.skill,
                    sender,
                    self.shutdown.clone(),
                ));
            }
        }
        Ok(Response::new(ReceiverStream::new(receiver)))
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
