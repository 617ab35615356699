//! Server side: one place that wraps each service with Mimo's message limits and serves a
//! router on a listener it is given until a shutdown token fires.

use crate::v1::{
    memory_server::{Memory, MemoryServer},
    registry_server::{Registry, RegistryServer},
    skill_host_server::{SkillHost, SkillHostServer},
    telemetry_server::{Telemetry, TelemetryServer},
};
use crate::MAX_MESSAGE_BYTES;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tonic::transport::Server;

/// A server builder with Mimo's layers: trace context continued from each caller.
pub type TracedServer = Server<tower_layer::Stack<ServerTraceLayer, tower_layer::Identity>>;
/// The router of a [`TracedServer`].
pub type TracedRouter = Router<tower_layer::Stack<ServerTraceLayer, tower_layer::Identity>>;

use crate::trace_context::ServerTraceLayer;

/// Returns a server builder with Mimo's transport settings and layers.
pub fn server() -> TracedServer {
    Server::builder()
        .tcp_nodelay(true)
        // h2 charges every small DATA frame waiting to be read against a budget of half the
        // connection window, and closes the connection (GOAWAY ENHANCE_YOUR_CALM,
        // `too_many_data_frames`) when it runs out. A client streaming small messages faster
        // than the service takes them (a Python StoreStream: one frame per message) fills the
        // stream's window with them: a 256 KiB stream window holds at most ~6 MB of their
        // overhead, within the 8 MiB budget of a 16 MiB connection window.
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(ServerTraceLayer)
}

/// The connection-level flow-control window each server grants its clients.
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// The flow-control window of each stream.
const STREAM_WINDOW_BYTES: u32 = 256 * 1024;

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains in-flight calls.
/// Every accepted connection gets `TCP_NODELAY`: the builder's own setting applies only to
/// listeners tonic binds itself, and without it a response of several segments waits out
/// the peer's delayed ACK (about 40 ms).
pub async fn serve_router(
    router: TracedRouter,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    use tokio_stream::StreamExt;
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
            }
        })
    });
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

/// Wraps a registry implementation with Mimo's message limits.
pub fn registry<T: Registry>(service: T) -> RegistryServer<T> {
    RegistryServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Wraps a skill-host implementation whose messages may be up to `max_message_bytes` (the
/// host's own limit on a skill's answer, so that any answer it accepts can be sent on).
pub fn skill_host<T: SkillHost>(service: T, max_message_bytes: usize) -> SkillHostServer<T> {
    SkillHostServer::new(service)
        .max_decoding_message_size(max_message_bytes.max(MAX_MESSAGE_BYTES))
        .max_encoding_message_size(max_message_bytes.max(MAX_MESSAGE_BYTES))
}

/// Wraps a memory implementation with Mimo's message limits.
pub fn memory<T: Memory>(service: T) -> MemoryServer<T> {
    MemoryServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Wraps a telemetry implementation with Mimo's message limits.
pub fn telemetry<T: Telemetry>(service: T) -> TelemetryServer<T> {
    TelemetryServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
