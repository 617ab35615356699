//! Mimo's MCP gateway (`mimo mcp`): one MCP server, over stdio or the streamable HTTP
//! transport, offering every live tool the registry knows (named as ListTools names them)
//! and the memory's tools, routing each call through ResolveTool to a skill-host and
//! returning the skill's result unchanged. Clients are told when the tools change; progress
//! and cancellation pass through; an unreachable service is named in the call's error
//! while the rest keeps working, and every channel reconnects by itself.

mod api_keys;
mod catalog;
mod error;
mod handler;
mod http;
mod memory_tools;
mod rate_limit;
mod relay;
mod stats;

pub use api_keys::{ApiKeyError, ApiKeys};
pub use error::GatewayError;
pub use handler::Gateway;
pub use http::{serve_http, HttpConfig, HttpError};
pub use rate_limit::RateLimit;

use catalog::Catalog;
use memory_tools::MemoryTools;
use rmcp::ServiceExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest a stdio session takes to end once the gateway is told to stop.
pub const STDIO_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the gateway finds the services, and how long a call may take.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The registry's address (`host:port`).
    pub registry_address: String,
    /// The memory's address, or `None` to offer no memory tools.
    pub memory_address: Option<String>,
    /// Longest a tool call may take before it is given up (and the skill's call cancelled).
    pub call_timeout: Duration,
    /// Where the gateway reports its resources and counters.
    pub reporting: mimo_reporter::ReporterConfig,
}

impl Gateway {
    /// A gateway to the services of `config`; connects lazily (a service that is down now
    /// is reached once it is up) and watches the registry until `shutdown`.
    pub fn start(
        config: &GatewayConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, GatewayError> {
        let unreachable =
            |service: &'static str, address: &str, error: mimo_proto::connect::ConnectError| {
                GatewayError::Unreachable {
                    service,
                    address: address.to_string(),
                    reason: error.to_string(),
                }
            };
        let registry = mimo_proto::connect::lazy_channel_to_any(&config.registry_address)
            .map_err(|error| unreachable("registry", &config.registry_address, error))?;
        let catalog = Arc::new(Catalog::new(&config.registry_address, registry));
        tokio::spawn(Arc::clone(&catalog).watch(shutdown.clone()));
        let memory = match &config.memory_address {
            None => None,
            Some(address) => Some(MemoryTools::new(
                address,
                mimo_proto::connect::lazy_channel(address)
                    .map_err(|error| unreachable("memory", address, error))?,
            )),
        };
        let stats = Arc::new(stats::GatewayStats::default());
        let reporter =
            mimo_reporter::Reporter::new("mcp-gateway", config.reporting.clone(), stats.gauges());
        let reporter = tokio::spawn(reporter.run(shutdown));
        Ok(Self::new(
            catalog,
            memory,
            config.call_timeout,
            stats,
            reporter,
        ))
    }

    /// Serves MCP over this process's stdin and stdout until the client closes them or
    /// `shutdown` fires (then within [`STDIO_STOP_TIMEOUT`], whatever the client does).
    pub async fn serve_stdio(self, shutdown: CancellationToken) -> Result<(), GatewayError> {
        let running = self
            .serve_with_ct(rmcp::transport::io::stdio(), shutdown.child_token())
            .await
            .map_err(|error| GatewayError::Transport(error.to_string()))?;
        let stop = running.cancellation_token();
        let waiting = running.waiting();
        tokio::pin!(waiting);
        tokio::select! {
            ended = &mut waiting => {
                ended.map_err(|error| GatewayError::Transport(error.to_string()))?;
            }
            () = shutdown.cancelled() => {
                stop.cancel();
                if tokio::time::timeout(STDIO_STOP_TIMEOUT, waiting).await.is_err() {
                    tracing::warn!("the MCP session did not end in time; stopping anyway");
                }
            }
        }
        Ok(())
    }

    /// After serving ends: stops the gateway's background work and sends its last report
    /// (so that telemetry forgets this instance rather than raising it as down).
    pub async fn finish(&self, shutdown: &CancellationToken) {
        shutdown.cancel();
        self.wait_for_reporter().await;
    }
}
