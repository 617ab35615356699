//! The telemetry gRPC service and its `serve` entry point.

use crate::instances::{InstanceTable, TelemetryConfig};
use mimo_proto::v1::telemetry_server::Telemetry;
use mimo_proto::v1::{
    Alert, Gauge, ListAlertsRequest, ListAlertsResponse, ListInstancesRequest,
    ListInstancesResponse, QueryHistoryRequest, QueryHistoryResponse, ReportSummary,
    ResourceReport, WatchAlertsRequest,
};
use mimo_reporter::{Reporter, ReporterConfig};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Alert watchers at most at once.
pub const MAX_ALERT_WATCHERS: usize = 1024;

/// The gRPC face of an [`InstanceTable`].
#[derive(Debug, Clone)]
pub struct TelemetryService {
    instances: Arc<InstanceTable>,
    shutdown: CancellationToken,
    /// Alert watchers now.
    watchers: Arc<std::sync::atomic::AtomicUsize>,
}

/// One of the [`MAX_ALERT_WATCHERS`] places, given back when dropped.
struct WatcherSlot(Arc<std::sync::atomic::AtomicUsize>);

impl WatcherSlot {
    fn take(watchers: &Arc<std::sync::atomic::AtomicUsize>) -> Result<Self, Status> {
        use std::sync::atomic::Ordering;
        watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < MAX_ALERT_WATCHERS).then_some(now + 1)
            })
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "{MAX_ALERT_WATCHERS} alert watchers are watching, the limit; retry later"
                ))
            })?;
        Ok(Self(watchers.clone()))
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl TelemetryService {
    /// Serves `instances`; open report streams end when `shutdown` fires.
    pub fn new(instances: Arc<InstanceTable>, shutdown: CancellationToken) -> Self {
        Self {
            instances,
            shutdown,
            watchers: Arc::default(),
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
    serve_with_http(config, reporting, listener, None, shutdown).await
}

/// [`serve`], and with `http` the Prometheus exposition at `GET /metrics` on it.
pub async fn serve_with_http(
    config: TelemetryConfig,
    reporting: ReporterConfig,
    listener: TcpListener,
    http: Option<TcpListener>,
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
                attributes: Default::default(),
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
    if let Some(http) = http {
        tracing::info!(address = %http.local_addr().map(|a| a.to_string()).unwrap_or_default(), "telemetry serving /metrics over HTTP");
        let app = crate::http::router(instances.clone());
        let stop = background.clone();
        tasks.spawn(async move {
            let served = axum::serve(http, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the telemetry HTTP server failed");
            }
        });
    }
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "telemetry serving");
    let router = mimo_proto::serve::server().add_service(mimo_proto::serve::telemetry(
        TelemetryService::new(instances, shutdown.clone()),
    ));
    let result = mimo_proto::serve::serve_router(
        router,
        mimo_proto::v1::telemetry_server::SERVICE_NAME,
        listener,
        shutdown,
        mimo_proto::serve::DEFAULT_DRAIN_DEADLINE,
    )
    .await;
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

    type WatchAlertsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Alert, Status>> + Send>>;

    async fn watch_alerts(
        &self,
        request: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let service = request.into_inner().service;
        let watching = WatcherSlot::take(&self.watchers)?;
        let (firing, mut changes) = self.instances.watch_alerts(&service);
        let shutdown = self.shutdown.clone();
        let stream = async_stream_of(move |sender| async move {
            let _watching = watching;
            for alert in firing {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    sent = sender.send(Ok(alert)) => if sent.is_err() { return },
                }
            }
            loop {
                let change = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = sender.closed() => return,
                    change = changes.recv() => change,
                };
                let item = match change {
                    Ok(alert) => {
                        let of_service = service.is_empty()
                            || alert.instance.as_ref().is_some_and(|i| i.service == service);
                        if !of_service {
                            continue;
                        }
                        Ok(alert)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        Err(Status::resource_exhausted(format!(
                            "this watch fell {missed} alert changes behind (it may be at most {} behind); watch again",
                            crate::alerts::WATCH_BUFFER
                        )))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let ended = item.is_err();
                // A watcher that stops reading holds no one up: it is dropped at shutdown.
                let sent = tokio::select! {
                    () = shutdown.cancelled() => return,
                    sent = sender.send(item) => sent,
                };
                if sent.is_err() || ended {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn query_history(
        &self,
        request: Request<QueryHistoryRequest>,
    ) -> Result<Response<QueryHistoryResponse>, Status> {
        Ok(Response::new(
            self.instances.history(&request.into_inner())?,
        ))
    }
}

/// A stream fed by `produce` through a channel of 16: the producer waits while the watcher
/// reads slowly, and stops when the watcher goes away.
fn async_stream_of<F, Fut>(produce: F) -> <TelemetryService as Telemetry>::WatchAlertsStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Alert, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
