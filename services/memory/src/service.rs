//! The memory's gRPC service and its `serve` entry point.

use crate::store::MemoryStore;
use crate::store_stream::{self, StoreStreamResponses};
use mimo_proto::v1::memory_server::Memory;
use mimo_proto::v1::{
    DeleteRequest, DeleteResponse, Engram, Gauge, GetRequest, SearchRequest, SearchResponse,
    StatsRequest, StatsResponse, StoreRequest, StoreResponse, UpdateRequest,
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
            ]
        })
    });
    tasks.spawn(reporter.run(background.clone()));
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "memory serving");
    let router = mimo_proto::serve::server()
        .add_service(mimo_proto::serve::memory(MemoryService::new(store)));
    let result = mimo_proto::serve::serve_router(router, listener, shutdown).await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("memory stopped");
    result
}

fn gauge(name: &str, value: f64) -> Gauge {
    Gauge {
        name: name.to_string(),
        value,
    }
}

#[tonic::async_trait]
impl Memory for MemoryService {
    async fn store(
        &self,
        request: Request<StoreRequest>,
    ) -> Result<Response<StoreResponse>, Status> {
        let engram = self.store.store(request.into_inner()).await?;
        Ok(Response::new(StoreResponse {
            engram: Some(engram),
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
        let hits = self.store.search(request.into_inner()).await?;
        Ok(Response::new(SearchResponse { hits }))
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
