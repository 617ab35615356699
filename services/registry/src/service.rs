//! The registry's gRPC service and its `serve` entry point.

use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::etcd_store::EtcdStore;
use crate::keep_alive::{self, KEEP_ALIVE_BUFFER};
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

/// Changes buffered per Watch stream; a watcher that falls further behind resumes from the
/// history, or is told its place was compacted.
const WATCH_BUFFER: usize = 64;

/// Where the registry's state lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In this process's memory: soft state, gone with the process.
    Memory(Arc<RegistryState>),
    /// In etcd, shared by every replica, read through a local cache.
    Etcd(Arc<EtcdStore>),
}

impl Backend {
    /// The state reads are answered from.
    pub fn view(&self) -> &Arc<RegistryState> {
        match self {
            Backend::Memory(state) => state,
            Backend::Etcd(store) => store.cache(),
        }
    }
}

/// The gRPC face of a registry [`Backend`].
#[derive(Debug, Clone)]
pub struct RegistryService {
    backend: Backend,
    shutdown: CancellationToken,
}

impl RegistryService {
    /// Serves `backend`; open streams end when `shutdown` fires.
    pub fn new(backend: Backend, shutdown: CancellationToken) -> Self {
        Self { backend, shutdown }
    }
}

/// Why the registry could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store of record could not be opened.
    #[error(transparent)]
    Store(#[from] RegistryError),
    /// The gRPC server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the registry on `listener` until `shutdown` fires, expiring leases and reporting
/// resources to telemetry meanwhile.
pub async fn serve(
    config: RegistryConfig,
    reporting: ReporterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let background = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let backend = match config.etcd.clone() {
        Some(etcd) => Backend::Etcd(EtcdStore::connect(config, &etcd, background.clone()).await?),
        None => {
            let state = Arc::new(RegistryState::new(config));
            tasks.spawn({
                let state = state.clone();
                let stop = background.clone();
                async move { state.run_expiry(stop).await }
            });
            Backend::Memory(state)
        }
    };
    let reporter = Reporter::new("registry", reporting, gauges(backend.view().clone()));
    tasks.spawn(reporter.run(background.clone()));
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        store = if matches!(backend, Backend::Etcd(_)) { "etcd" } else { "memory" }, "registry serving");
    let router = mimo_proto::serve::server().add_service(mimo_proto::serve::registry(
        RegistryService::new(backend, shutdown.clone()),
    ));
    let result = mimo_proto::serve::serve_router(
        router,
        mimo_proto::v1::registry_server::SERVICE_NAME,
        listener,
        shutdown,
        mimo_proto::serve::DEFAULT_DRAIN_DEADLINE,
    )
    .await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("registry stopped");
    Ok(result?)
}

/// The registry's gauges, read from `state` at each report.
fn gauges(state: Arc<RegistryState>) -> mimo_reporter::GaugeSource {
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
}

fn gauge(name: &str, value: f64) -> Gauge {
    Gauge {
        name: name.to_string(),
        value,
        attributes: Default::default(),
    }
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn grant_lease(
        &self,
        request: Request<GrantLeaseRequest>,
    ) -> Result<Response<GrantLeaseResponse>, Status> {
        let ttl_ms = request.into_inner().ttl_ms;
        let (lease_id, ttl) = match &self.backend {
            Backend::Memory(state) => state.grant(ttl_ms)?,
            Backend::Etcd(store) => store.grant(ttl_ms).await?,
        };
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
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let shutdown = self.shutdown.clone();
        // The task ends when the client closes its side, stops reading, or the server stops.
        match &self.backend {
            Backend::Memory(state) => {
                tokio::spawn(keep_alive::answer_from_memory(
                    state.clone(),
                    inbound,
                    sender,
                    shutdown,
                ));
            }
            Backend::Etcd(store) => {
                tokio::spawn(keep_alive::relay_to_etcd(
                    store.clone(),
                    inbound,
                    sender,
                    shutdown,
                ));
            }
        }
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn revoke_lease(
        &self,
        request: Request<RevokeLeaseRequest>,
    ) -> Result<Response<RevokeLeaseResponse>, Status> {
        let lease = request.into_inner().lease_id;
        let removed = match &self.backend {
            Backend::Memory(state) => state.revoke(lease)?,
            Backend::Etcd(store) => store.revoke(lease).await?,
        };
        Ok(Response::new(RevokeLeaseResponse {
            skills_removed: removed as u32,
        }))
    }

    async fn time_to_live(
        &self,
        request: Request<TimeToLiveRequest>,
    ) -> Result<Response<TimeToLiveResponse>, Status> {
        let lease_id = request.into_inner().lease_id;
        let (remaining, ttl, skills) = match &self.backend {
            Backend::Memory(state) => state.time_to_live(lease_id)?,
            Backend::Etcd(store) => store.time_to_live(lease_id).await?,
        };
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
        let (lease, skill, endpoint) = (request.lease_id, &request.skill, &request.endpoint);
        let tool_names = match &self.backend {
            Backend::Memory(state) => {
                state.register_skill(lease, skill, endpoint, request.tools)?
            }
            Backend::Etcd(store) => {
                store
                    .register_skill(lease, skill, endpoint, request.tools)
                    .await?
            }
        };
        Ok(Response::new(RegisterSkillResponse { tool_names }))
    }

    async fn unregister_skill(
        &self,
        request: Request<UnregisterSkillRequest>,
    ) -> Result<Response<UnregisterSkillResponse>, Status> {
        let request = request.into_inner();
        let removed = match &self.backend {
            Backend::Memory(state) => state.unregister_skill(request.lease_id, &request.skill)?,
            Backend::Etcd(store) => {
                store
                    .unregister_skill(request.lease_id, &request.skill)
                    .await?
            }
        };
        Ok(Response::new(UnregisterSkillResponse {
            tools_removed: removed as u32,
        }))
    }

    async fn list_tools(
        &self,
        request: Request<ListToolsRequest>,
    ) -> Result<Response<ListToolsResponse>, Status> {
        let request = request.into_inner();
        let page = self.backend.view().list_tools(
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
            self.backend
                .view()
                .resolve_tool(&request.into_inner().name)?,
        ))
    }

    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        match self.backend.view().watch(request.start_revision)? {
            Err(compacted) => {
                let _ = sender.try_send(Ok(compacted_answer(compacted)));
            }
            Ok(subscription) => {
                tokio::spawn(crate::watcher::follow(
                    self.backend.view().clone(),
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
            skills: self.backend.view().list_skills(),
        }))
    }
}
