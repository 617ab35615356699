//! Streams reports to the telemetry service over one client stream per connection.

use crate::process::{host_name, process_stats};
use mimo_proto::connect;
use mimo_proto::v1::{Condition, Gauge, InstanceId, ResourceReport};
use mimo_proto::{
    MAX_CONDITIONS_PER_REPORT, MAX_CONDITION_MESSAGE_BYTES, MAX_CONDITION_NAME_BYTES,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// The service's own gauges, read once per report; must return quickly.
pub type GaugeSource = Arc<dyn Fn() -> Vec<Gauge> + Send + Sync>;

/// The problems the service knows of now, read once per report; must return quickly.
pub type ConditionSource = Arc<dyn Fn() -> Vec<Condition> + Send + Sync>;

/// Reports queued for sending at most; a full queue drops the newest report.
const QUEUE_CAPACITY: usize = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the last report may take to leave on shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how often to report.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// Address of the telemetry service; `None` turns reporting off.
    pub telemetry_address: Option<String>,
    /// Time between two reports.
    pub interval: Duration,
}

/// One service instance's reporter.
pub struct Reporter {
    config: ReporterConfig,
    instance: InstanceId,
    started: Instant,
    gauges: GaugeSource,
    conditions: Option<ConditionSource>,
}

impl Reporter {
    /// Returns a reporter for `service` with a fresh instance id.
    pub fn new(service: &str, config: ReporterConfig, gauges: GaugeSource) -> Self {
        Self {
            config,
            instance: InstanceId {
                service: service.to_string(),
                host: host_name(),
                instance_id: uuid::Uuid::now_v7().to_string(),
            },
            started: Instant::now(),
            gauges,
            conditions: None,
        }
    }

    /// Adds the service's conditions to every report; each raises an alert in telemetry
    /// while reported. Conditions over the report's bounds are cut to fit.
    pub fn with_conditions(mut self, conditions: ConditionSource) -> Self {
        self.conditions = Some(conditions);
        self
    }

    /// This reporter's instance identity.
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// Measures now and returns a complete report.
    pub fn report(&self) -> ResourceReport {
        ResourceReport {
            instance: Some(self.instance.clone()),
            timestamp_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as i64),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            process: Some(process_stats()),
            interval_ms: self.config.interval.as_millis() as u64,
            stopping: false,
            // Telemetry refuses a report with a non-finite gauge; such a gauge is dropped.
            gauges: runtime_gauges()
                .into_iter()
                .chain((self.gauges)())
                .filter(|gauge| gauge.value.is_finite())
                // Telemetry refuses a report of more; the first ones are the most general.
                .take(mimo_proto::MAX_GAUGES_PER_REPORT)
                .collect(),
            conditions: self.conditions.as_ref().map_or_else(Vec::new, |source| {
                let mut conditions = source();
                conditions.truncate(MAX_CONDITIONS_PER_REPORT);
                for condition in &mut conditions {
                    cut_to(&mut condition.name, MAX_CONDITION_NAME_BYTES);
                    cut_to(&mut condition.subject, MAX_CONDITION_NAME_BYTES);
                    cut_to(&mut condition.message, MAX_CONDITION_MESSAGE_BYTES);
                }
                conditions
            }),
        }
    }

    /// Sends a report at once and then every interval until `shutdown`, reconnecting with
    /// backoff when the telemetry service is away. Returns at once if reporting is off.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(address) = self.config.telemetry_address.clone() else {
            return;
        };
        let channel = match connect::lazy_channel(&address) {
            Ok(channel) => channel,
            Err(error) => {
                tracing::error!(%error, "resource reporting is off");
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        // Said once per outage at warn level; the retries after it at debug level.
        let mut outage_told = false;
        while !shutdown.is_cancelled() {
            let started = Instant::now();
            match self.stream_reports(channel.clone(), &shutdown).await {
                StreamEnd::Shutdown => return,
                StreamEnd::Failed(status) if !outage_told => {
                    outage_told = true;
                    tracing::warn!(
                        service = %self.instance.service,
                        telemetry = %address,
                        error = %status.message(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "resource report stream ended; retrying quietly until telemetry is back"
                    );
                }
                StreamEnd::Failed(status) => tracing::debug!(
                    service = %self.instance.service,
                    telemetry = %address,
                    error = %status.message(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "resource report stream ended again"
                ),
            }
            if started.elapsed() > self.config.interval * 3 {
                backoff = FIRST_BACKOFF;
                outage_told = false;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn stream_reports(
        &self,
        channel: connect::Channel,
        shutdown: &CancellationToken,
    ) -> StreamEnd {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let mut client = connect::telemetry(channel);
        let call = client.report(ReceiverStream::new(receiver));
        tokio::pin!(call);
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = sender.try_send(ResourceReport {
                        stopping: true,
                        ..self.report()
                    });
                    drop(sender);
                    let _ = tokio::time::timeout(FLUSH_TIMEOUT, call).await;
                    return StreamEnd::Shutdown;
                }
                result = &mut call => {
                    return StreamEnd::Failed(match result {
                        Ok(_) => tonic::Status::unavailable("telemetry closed the stream"),
                        Err(status) => status,
                    });
                }
                _ = ticker.tick() => match sender.try_send(self.report()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        tracing::debug!("telemetry is slow; a resource report was dropped");
                    }
                    Err(TrySendError::Closed(_)) => {
                        return StreamEnd::Failed(tonic::Status::unavailable("report stream closed"));
                    }
                },
            }
        }
    }
}

/// Shortens `text` to at most `limit` bytes, on a character boundary.
fn cut_to(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

enum StreamEnd {
    Shutdown,
    Failed(tonic::Status),
}

/// The Tokio runtime's tasks and queue, when the report is made on one: tasks alive, tasks
/// waiting in the shared queue, and worker threads.
fn runtime_gauges() -> Vec<Gauge> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Vec::new();
    };
    let metrics = runtime.metrics();
    [
        ("process.runtime.tokio.tasks", metrics.num_alive_tasks()),
        (
            "process.runtime.tokio.global_queue_depth",
            metrics.global_queue_depth(),
        ),
        ("process.runtime.tokio.workers", metrics.num_workers()),
    ]
    .into_iter()
    .map(|(name, value)| Gauge {
        name: name.to_string(),
        value: value as f64,
        attributes: Default::default(),
    })
    .collect()
}
