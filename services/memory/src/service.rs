//! The memory's gRPC service and its `serve` entry point.

use crate::store::MemoryStore;
use mimo_proto::v1::memory_server::Memory;
use mimo_proto::v1::{
    DeleteRequest, DeleteResponse, Engram, Gauge, GetRequest, SearchRequest, SearchResponse,
    StoreRequest, StoreResponse,
};
use mimo_reporter::{Reporter, ReporterConfig};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

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
                gauge("memory.engrams", counts.engrams),
                gauge("memory.index_vectors", counts.index_vectors),
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

fn gauge(name: &str, value: usize) -> Gauge {
    Gauge {
        name: name.to_string(),
        value: value as f64,
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
