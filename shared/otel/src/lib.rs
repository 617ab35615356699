//! Logs and traces for Mimo's processes. Logs go to stderr through `tracing`. Traces go to
//! an OpenTelemetry collector over OTLP/gRPC when the standard variables ask for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; off when neither
//! is set, or with `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`), the service
//! named by `OTEL_SERVICE_NAME` or else by the process. Spans wait in a bounded queue
//! (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048) and are exported on a thread of their own, so that
//! exporting never holds up a request; spans that cannot be sent are dropped and counted, and
//! [`Telemetry::shutdown`] flushes within five seconds even when the collector is gone.
//! The W3C trace-context propagator is installed either way, so that context passes through
//! a process that exports nothing.

mod counting_exporter;

pub use counting_exporter::ExportCounts;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How long shutdown waits for the last spans to go out.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// The installed logging and tracing; keep it for the process's life and shut it down last.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    counts: Arc<ExportCounts>,
}

/// Whether the environment asks for traces to be exported.
pub fn export_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let is = |name: &str, wanted: &str| {
        std::env::var(name).is_ok_and(|value| value.trim().eq_ignore_ascii_case(wanted))
    };
    let disabled = is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs logging to stderr (filtered by `log_filter_variable`, else `default_level`) and,
/// when [`export_configured`], trace export for `service` (unless `OTEL_SERVICE_NAME` names
/// it). Must run inside a Tokio runtime when exporting (the gRPC exporter's connection lives
/// there).
pub fn install(service: &str, log_filter_variable: &str, default_level: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // PostgreSQL's notices ("relation ... already exists, skipping" at every migration
    // check) are not news.
    let filter = EnvFilter::try_from_env(log_filter_variable)
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx::postgres::notice=warn")));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let counts = Arc::new(ExportCounts::default());
    let (provider, problem) = if export_configured() {
        match provider(service, counts.clone()) {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        }
    } else {
        (None, None)
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mimo"))
            // Mimo's own spans and the gRPC spans; not every dependency's.
            .with_filter(EnvFilter::new("info"))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    if let Err(error) = installed {
        eprintln!("logging was set up already: {error}");
    }
    if let Some(problem) = problem {
        tracing::error!(%problem, "traces are not exported");
    } else if provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry { provider, counts }
}

/// A tracer provider exporting over OTLP/gRPC with the environment's settings.
fn provider(service: &str, counts: Arc<ExportCounts>) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|error| error.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_string());
    }
    let exporter = counting_exporter::CountingExporter::new(exporter, counts);
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

impl Telemetry {
    /// Spans exported and dropped so far.
    pub fn counts(&self) -> &Arc<ExportCounts> {
        &self.counts
    }

    /// Whether traces are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued and stops exporting, within [`SHUTDOWN_BOUND`] whatever
    /// the collector does; what cannot be sent by then is dropped and counted.
    pub fn shutdown(self) {
        self.shutdown_within(SHUTDOWN_BOUND);
    }

    /// [`Telemetry::shutdown`] within `bound` (a short-lived command waits less).
    pub fn shutdown_within(self, bound: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        let (done, finished) = std::sync::mpsc::channel();
        // On a thread of its own: a collector that never answers must not hold the exit.
        let flushing = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = done.send(provider.shutdown_with_timeout(bound));
            });
        let outcome = match flushing {
            Ok(_) => finished.recv_timeout(bound + Duration::from_millis(250)),
            Err(_) => Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        };
        let (exported, dropped) = (self.counts.exported(), self.counts.dropped());
        match outcome {
            Ok(Ok(())) => tracing::info!(exported, dropped, "traces flushed (dropped: spans whose export failed; the SDK logs those it had no room to queue)"),
            Ok(Err(error)) => {
                tracing::warn!(%error, exported, dropped, "the last traces were not all sent")
            }
            Err(_) => tracing::warn!(
                exported,
                dropped,
                bound_ms = bound.as_millis() as u64,
                "the collector did not take the last traces in time; they are dropped"
            ),
        }
    }
}
