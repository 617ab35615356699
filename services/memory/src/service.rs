//! The memory's gRPC service and its `serve` entry point.

use crate::store::MemoryStore;
use crate::store_stream::{self, StoreStreamResponses};
use mimo_proto::v1::memory_server::Memory;
use mimo_proto::v1::{
    DeleteRequest, DeleteResponse, Engram, Gauge, GetRequest, ListRequest, ListResponse,
    SearchRequest, SearchResponse, StatsRequest, StatsResponse, StoreRequest, StoreResponse,
    UpdateRequest,
};
use mimo_reporter::{Reporter, ReporterConfig};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// The gRPC face of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryService {
    store: MemoryStore,
}

impl MemoryService {
    /// Serves `store`.
    pub fn new(store: MemoryStore) -> Self {
        Self { store }
    }
}

/// Serves `store` on `listener` until `shutdown` fires, reporting resources to telemetry
/// meanwhile; returns once in-flight calls have drained and background tasks have ended.
pub async fn serve(
    store: MemoryStore,
    reporting: ReporterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let background = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let reporter = Reporter::new("memory", reporting, {
        let store = store.clone();
        Arc::new(move || {
            let counts = store.counts();
            vec![
                gauge("memory.engrams", counts.engrams as f64),
                gauge("memory.index_vectors", counts.index_vectors as f64),
                gauge("memory.index_bytes", counts.index_bytes as f64),
                gauge("memory.write_queue", counts.write_queue as f64),
                gauge("memory.write_batches", counts.write_batches as f64),
                gauge("memory.rejected_writes", counts.rejected_writes as f64),
                gauge("memory.busy_retries", counts.busy_retries as f64),
                gauge(
                    "memory.dropped_access_records",
                    counts.dropped_access_records as f64,
                ),
                gauge("memory.writing", counts.writing as f64),
                gauge("memory.pool.read.size", f64::from(counts.read_pool.0)),
                gauge("memory.pool.read.idle", counts.read_pool.1 as f64),
                gauge("memory.pool.read.acquisitions", counts.read_waits.0 as f64),
                gauge(
                    "memory.pool.read.wait_seconds_total",
                    counts.read_waits.1 as f64 / 1e6,
                ),
                gauge(
                    "memory.pool.read.wait_seconds_max",
                    counts.longest_read_wait_micros as f64 / 1e6,
                ),
                gauge("memory.database_bytes", counts.database_bytes as f64),
                // The read pool again, as OpenTelemetry's database conventions name it.
                attributed(
                    "db.client.connection.count",
                    counts.read_pool.1 as f64,
                    &[
                        ("db.client.connection.pool.name", "read"),
                        ("db.client.connection.state", "idle"),
                    ],
                ),
                attributed(
                    "db.client.connection.count",
                    f64::from(counts.read_pool.0).max(counts.read_pool.1 as f64)
                        - counts.read_pool.1 as f64,
                    &[
                        ("db.client.connection.pool.name", "read"),
                        ("db.client.connection.state", "used"),
                    ],
                ),
                attributed(
                    "db.client.connection.max",
                    f64::from(counts.read_pool_max),
                    &[("db.client.connection.pool.name", "read")],
                ),
                attributed(
                    "db.client.connection.wait_time_seconds_max",
                    counts.longest_read_wait_micros as f64 / 1e6,
                    &[("db.client.connection.pool.name", "read")],
                ),
                gauge("memory.forgotten", counts.forgotten as f64),
                gauge("memory.working_entries", counts.working_entries as f64),
            ]
        })
    });
    tasks.spawn(reporter.run(background.clone()));
    tasks.spawn(sweep_working_memory(store.clone(), background.clone()));
    if let Some(interval) = store.decay_settings().interval {
        tasks.spawn(decay_every(store.clone(), interval, background.clone()));
    }
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "memory serving");
    let router = mimo_proto::serve::server()
        .add_service(mimo_proto::serve::memory(MemoryService::new(store.clone())));
    let result = mimo_proto::serve::serve_router(
        router,
        mimo_proto::v1::memory_server::SERVICE_NAME,
        listener,
        shutdown,
        mimo_proto::serve::DEFAULT_DRAIN_DEADLINE,
    )
    .await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    // Working memory lives in this process: what is worth keeping becomes long-term now
    // (at most the working capacity, within a bound).
    match tokio::time::timeout(CONSOLIDATE_AT_STOP, store.consolidate()).await {
        Ok(Ok(kept)) if !kept.engrams.is_empty() => {
            tracing::info!(
                kept = kept.engrams.len(),
                "working memory consolidated at stop"
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "working memory not consolidated at stop"),
        Err(_) => tracing::warn!("working memory consolidation at stop took too long; left"),
    }
    tracing::info!("memory stopped");
    result
}

/// The longest a stop waits for working memory to be consolidated.
const CONSOLIDATE_AT_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Lets go of expired working entries every second (consolidating those worth keeping)
/// until `stop` fires.
async fn sweep_working_memory(store: MemoryStore, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(error) = store.sweep_working_memory().await {
                    tracing::warn!(%error, "working memory sweep failed");
                }
            }
        }
    }
}

/// Runs a decay pass every `interval` until `stop` fires.
async fn decay_every(store: MemoryStore, interval: std::time::Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(error) = store.decay(mimo_proto::v1::DecayRequest::default()).await {
                    tracing::warn!(%error, "decay pass failed");
                }
            }
        }
    }
}

/// A gauge with OpenTelemetry attributes.
fn attributed(name: &str, value: f64, attributes: &[(&str, &str)]) -> Gauge {
    Gauge {
        name: name.to_string(),
        value,
        attributes: attributes
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    }
}

fn gauge(name: &str, value: f64) -> Gauge {
    Gauge {
        name: name.to_string(),
        value,
        attributes: Default::default(),
    }
}

#[tonic::async_trait]
impl Memory for MemoryService {
    async fn store(
        &self,
        request: Request<StoreRequest>,
    ) -> Result<Response<StoreResponse>, Status> {
        let (engram, reinforced) = self.store.store_or_reinforce(request.into_inner()).await?;
        Ok(Response::new(StoreResponse {
            engram: Some(engram),
            reinforced,
        }))
    }

    type StoreStreamStream = StoreStreamResponses;

    async fn store_stream(
        &self,
        request: Request<Streaming<StoreRequest>>,
    ) -> Result<Response<Self::StoreStreamStream>, Status> {
        Ok(Response::new(store_stream::start(
            self.store.clone(),
            request.into_inner(),
        )))
    }

    async fn update(&self, request: Request<UpdateRequest>) -> Result<Response<Engram>, Status> {
        Ok(Response::new(
            self.store.update(request.into_inner()).await?,
        ))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        Ok(Response::new(self.store.list(request.into_inner()).await?))
    }

    async fn delete_matching(
        &self,
        request: Request<mimo_proto::v1::DeleteMatchingRequest>,
    ) -> Result<Response<mimo_proto::v1::DeleteMatchingResponse>, Status> {
        Ok(Response::new(
            self.store.delete_matching(request.into_inner()).await?,
        ))
    }

    async fn remember(
        &self,
        request: Request<mimo_proto::v1::RememberRequest>,
    ) -> Result<Response<Engram>, Status> {
        Ok(Response::new(
            self.store.remember(request.into_inner()).await?,
        ))
    }

    async fn consolidate(
        &self,
        _request: Request<mimo_proto::v1::ConsolidateRequest>,
    ) -> Result<Response<mimo_proto::v1::ConsolidateResponse>, Status> {
        Ok(Response::new(self.store.consolidate().await?))
    }

    async fn decay(
        &self,
        request: Request<mimo_proto::v1::DecayRequest>,
    ) -> Result<Response<mimo_proto::v1::DecayResponse>, Status> {
        Ok(Response::new(self.store.decay(request.into_inner()).await?))
    }

    async fn stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(self.store.stats().await?))
    }

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        Ok(Response::new(
            self.store.search_response(request.into_inner()).await?,
        ))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<Engram>, Status> {
        Ok(Response::new(
            self.store.get(&request.into_inner().id).await?,
        ))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.store.delete(&request.into_inner().id).await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
