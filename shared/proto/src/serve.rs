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

/// Mimo's server layers: trace context continued from each caller, then the caller's
/// credentials checked (see [`crate::auth`]).
type Layers =
    tower_layer::Stack<AuthLayer, tower_layer::Stack<ServerTraceLayer, tower_layer::Identity>>;
/// A server builder with Mimo's layers.
pub type TracedServer = Server<Layers>;
/// The router of a [`TracedServer`].
pub type TracedRouter = Router<Layers>;

use crate::auth::AuthLayer;
use crate::trace_context::ServerTraceLayer;

/// Returns a server builder with Mimo's transport settings, layers and, when installed
/// (see [`crate::security`]), TLS.
pub fn server() -> TracedServer {
    let builder = Server::builder();
    let builder = match crate::security::installed().and_then(|s| s.server_tls.clone()) {
        Some(tls) => builder
            .tls_config(tls)
            .expect("the TLS configuration was tried when it was installed"),
        None => builder,
    };
    builder
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
        .layer(AuthLayer)
}

/// The connection-level flow-control window each server grants its clients.
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// The flow-control window of each stream.
const STREAM_WINDOW_BYTES: u32 = 256 * 1024;

/// How long a server that has begun to stop waits for the calls in flight, unless told
/// otherwise.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener`, beside the standard gRPC health service (`grpc.health.v1`,
/// SERVING for `service` and for the server as a whole, "") and server reflection (v1 and
/// v1alpha, over every Mimo `.proto` file), until `shutdown` is cancelled. Then it tells
/// health watchers NOT_SERVING and ends their watches (a check on a connection still open
/// gets NOT_FOUND), stops accepting connections, and waits up to `drain` for the calls in
/// flight; past it, it returns and those calls end with the process.
///
/// Every accepted connection gets `TCP_NODELAY`: the builder's own setting applies only to
/// listeners tonic binds itself, and without it a response of several segments waits out
/// the peer's delayed ACK (about 40 ms).
pub async fn serve_router(
    router: TracedRouter,
    service: &'static str,
    listener: TcpListener,
    shutdown: CancellationToken,
    drain: Duration,
) -> Result<(), tonic::transport::Error> {
    use tokio_stream::StreamExt;
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
            }
        })
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(service, tonic_health::ServingStatus::Serving)
        .await;
    let router = router
        .add_service(health_service)
        .add_service(reflection::v1())
        .add_service(reflection::v1alpha());
    let stopping = {
        let shutdown = shutdown.clone();
        let mut health = health;
        async move {
            shutdown.cancelled().await;
            // Watchers see NOT_SERVING, then their stream ends (a status cleared ends its
            // watches), so that no health watch holds the drain up.
            for name in ["", service] {
                health
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
                health.clear_service_status(name).await;
            }
            tracing::info!(
                service,
                drain_deadline_ms = drain.as_millis() as u64,
                "stopping: no new connections, draining calls in flight"
            );
        }
    };
    let serving = router.serve_with_incoming_shutdown(incoming, stopping);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        result = serving => result,
        () = deadline => {
            tracing::warn!(
                service,
                drain_deadline_ms = drain.as_millis() as u64,
                "calls still in flight at the drain deadline; leaving them to end with the process"
            );
            Ok(())
        }
    }
}

/// Server reflection over Mimo's API and the health service, so that `grpcurl` and other
/// generic clients can list and call every method without the `.proto` files.
mod reflection {
    use tonic_reflection::server::Builder;

    /// The descriptor sets reflection answers from.
    fn builder() -> Builder<'static> {
        Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    }

    /// `grpc.reflection.v1`.
    pub(super) fn v1() -> tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    > {
        builder()
            .build_v1()
            .expect("the descriptor sets are compiled into the binary and valid")
    }

    /// `grpc.reflection.v1alpha`, which older clients still ask for.
    pub(super) fn v1alpha() -> tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    > {
        builder()
            .build_v1alpha()
            .expect("the descriptor sets are compiled into the binary and valid")
    }
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
