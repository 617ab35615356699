//! The telemetry gRPC service and its `serve` entry point.

use crate::instances::{InstanceTable, TelemetryConfig};
use mimo_proto::v1::telemetry_server::Telemetry;
use mimo_proto::v1::{
    Gauge, ListAlertsRequest, ListAlertsResponse, ListInstancesRequest, ListInstancesResponse,
    ReportSummary, ResourceReport,
};
use mimo_reporter::{Reporter, ReporterConfig};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// The gRPC face of an [`InstanceTable`].
#[derive(Debug, Clone)]
pub struct TelemetryService {
    instances: Arc<InstanceTable>,
    shutdown: CancellationToken,
}

impl TelemetryService {
    /// Serves `instances`; open report streams end when `shutdown` fires.
    pub fn new(instances: Arc<InstanceTable>, shutdown: CancellationToken) -> Self {
        Self {
            instances,
            shutdown,
        }
    }
}

/// Serves telemetry on `listener` until `shutdown` fires; it reports on itself too.
pub async fn serve(
    config: TelemetryConfig,
    reporting: ReporterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let instances = Arc::new(InstanceTable::new(config));
    let background = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let reporter = Reporter::new("telemetry", reporting, {
        let instances = instances.clone();
        Arc::new(move || {
            let (firing, dropped) = instances.alert_counts();
            let gauge = |name: &str, value: f64| Gauge {
                name: name.to_string(),
                value,
            };
            vec![
                gauge("telemetry.instances", instances.len() as f64),
                gauge("telemetry.alerts_firing", firing as f64),
                gauge("telemetry.alerts_dropped", dropped as f64),
            ]
        })
    });
    tasks.spawn(reporter.run(background.clone()));
    tasks.spawn({
        let instances = instances.clone();
        let stop = background.clone();
        async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => instances.sweep(tokio::time::Instant::now()),
                }
            }
        }
    });
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "telemetry serving");
    let router = mimo_proto::serve::server().add_service(mimo_proto::serve::telemetry(
        TelemetryService::new(instances, shutdown.clone()),
    ));
    let result = mimo_proto::serve::serve_router(router, listener, shutdown).await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("telemetry stopped");
    result
}

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    async fn report(
        &self,
        request: Request<Streaming<ResourceReport>>,
    ) -> Result<Response<ReportSummary>, Status> {
        let mut inbound = request.into_inner();
        let mut received = 0u64;
        loop {
            let next = tokio::select! {
                () = self.shutdown.cancelled() => break,
                next = inbound.message() => next?,
            };
            let Some(report) = next else { break };
            self.instances.record(report)?;
            received += 1;
        }
        Ok(Response::new(ReportSummary {
            reports_received: received,
        }))
    }

    async fn list_instances(
        &self,
        request: Request<ListInstancesRequest>,
    ) -> Result<Response<ListInstancesResponse>, Status> {
        let instances = self.instances.list(&request.into_inner().service);
        Ok(Response::new(ListInstancesResponse { instances }))
    }

    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let (firing, recent) = self.instances.alerts(&request.into_inner().service);
        Ok(Response::new(ListAlertsResponse { firing, recent }))
    }
}
