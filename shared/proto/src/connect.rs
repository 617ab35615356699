//! Client side: one place that turns an address into a channel and a client with Mimo's
//! message limits, timeouts and keep-alives.

use crate::trace_context::ClientTrace;
use crate::v1::{
    memory_client::MemoryClient, registry_client::RegistryClient,
    skill_host_client::SkillHostClient, telemetry_client::TelemetryClient,
};
use crate::MAX_MESSAGE_BYTES;
use std::time::Duration;
use tonic::transport::Endpoint;

/// A channel to a Mimo service whose calls carry the caller's trace context (see
/// [`crate::trace_context`]); every client in Mimo uses one.
pub type Channel = ClientTrace<tonic::transport::Channel>;

/// Wraps a transport channel so that its calls carry trace context.
pub fn traced(channel: tonic::transport::Channel) -> Channel {
    tower_layer::Layer::layer(&crate::trace_context::ClientTraceLayer, channel)
}

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an address could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not a valid `host:port` or `http://host:port`.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Nothing answered at the address.
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The address as given.
        address: String,
        /// The transport's explanation.
        reason: String,
    },
}

/// Returns `http://` + `address` (`https://` with TLS installed, see [`crate::security`])
/// unless it already names a scheme.
pub fn normalize_address(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else if crate::security::tls_enabled() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// Returns the endpoint for `address` with Mimo's timeouts, keep-alives and, when installed,
/// TLS.
pub fn endpoint(address: &str) -> Result<Endpoint, ConnectError> {
    let invalid = |reason: String| ConnectError::InvalidAddress {
        address: address.to_string(),
        reason,
    };
    let url = normalize_address(address);
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| invalid(e.to_string()))?;
    if let Some(tls) = crate::security::installed().and_then(|s| s.client_tls.clone()) {
        if url.starts_with("http://") {
            return Err(invalid(
                "TLS is configured, so services serve https only: drop the http:// scheme".into(),
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Returns a channel that connects on first use and reconnects by itself.
pub fn lazy_channel(address: &str) -> Result<Channel, ConnectError> {
    Ok(traced(endpoint(address)?.connect_lazy()))
}

/// Returns a channel to the replicas `addresses` (`HOST:PORT[,HOST:PORT...]`) that connects
/// on first use, spreads calls over the reachable ones and reconnects by itself.
pub fn lazy_channel_to_any(addresses: &str) -> Result<Channel, ConnectError> {
    let endpoints = address_list(addresses)
        .iter()
        .map(|address| endpoint(address))
        .collect::<Result<Vec<_>, _>>()?;
    match endpoints.len() {
        0 => Err(ConnectError::InvalidAddress {
            address: addresses.to_string(),
            reason: "no address given".into(),
        }),
        1 => Ok(traced(endpoints[0].connect_lazy())),
        _ => Ok(traced(tonic::transport::Channel::balance_list(
            endpoints.into_iter(),
        ))),
    }
}

/// The addresses of a comma-separated list (`HOST:PORT[,HOST:PORT...]`), trimmed, empty
/// entries dropped.
pub fn address_list(addresses: &str) -> Vec<String> {
    addresses
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_string)
        .collect()
}

/// Connects to the first reachable of `addresses` (`HOST:PORT[,HOST:PORT...]`, replicas of
/// one service), trying them in order; the error is the last one's.
pub async fn channel_to_any(addresses: &str) -> Result<Channel, ConnectError> {
    let mut last = ConnectError::InvalidAddress {
        address: addresses.to_string(),
        reason: "no address given".into(),
    };
    for address in address_list(addresses) {
        match channel(&address).await {
            Ok(channel) => return Ok(channel),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Connects now, so that an unreachable address is reported at once.
pub async fn channel(address: &str) -> Result<Channel, ConnectError> {
    endpoint(address)?
        .connect()
        .await
        .map(traced)
        .map_err(|error| ConnectError::Unreachable {
            address: address.to_string(),
            reason: std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_else(|| error.to_string()),
        })
}

/// Returns a registry client over `channel` with Mimo's message limits.
pub fn registry(channel: Channel) -> RegistryClient<Channel> {
    RegistryClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Returns a skill-host client over `channel` with Mimo's message limits.
pub fn skill_host(channel: Channel) -> SkillHostClient<Channel> {
    skill_host_with_limit(channel, MAX_MESSAGE_BYTES)
}

/// Returns a skill-host client that accepts answers of up to `max_message_bytes` (at least
/// Mimo's default), for hosts configured with a larger limit.
pub fn skill_host_with_limit(
    channel: Channel,
    max_message_bytes: usize,
) -> SkillHostClient<Channel> {
    let limit = max_message_bytes.max(MAX_MESSAGE_BYTES);
    SkillHostClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
}

/// Returns a memory client over `channel` with Mimo's message limits.
pub fn memory(channel: Channel) -> MemoryClient<Channel> {
    MemoryClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Returns a telemetry client over `channel` with Mimo's message limits.
pub fn telemetry(channel: Channel) -> TelemetryClient<Channel> {
    TelemetryClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
