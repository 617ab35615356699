//! W3C trace context across every gRPC hop: a tower layer on each server continues the
//! caller's trace (the `traceparent` and `tracestate` headers) in a server span, and one on
//! each client channel opens a client span and sends its context on. Spans follow
//! OpenTelemetry's RPC conventions (`rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`), named `package.Service/Method`. With no tracer installed the
//! spans are plain `tracing` spans and cost little.

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Reads trace context from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes trace context into request headers.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The current span's trace context as W3C headers (`traceparent`, and `tracestate` when
/// there is one): for carrying it where no gRPC hop goes, such as an MCP request's `_meta`.
pub fn current_context_fields() -> Vec<(String, String)> {
    struct Fields(Vec<(String, String)>);
    impl Injector for Fields {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_string(), value));
        }
    }
    let context = tracing::Span::current().context();
    let mut fields = Fields(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut fields)
    });
    fields.0
}

/// `package.Service` and `Method` of a gRPC path (`/package.Service/Method`).
fn service_and_method(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// The span of one call to `path`, on the `kind` ("server" or "client") side.
fn rpc_span(kind: &'static str, path: &str) -> tracing::Span {
    let (service, method) = service_and_method(path);
    tracing::info_span!(
        "grpc",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = kind,
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// Records the gRPC status of a response whose headers carry one (a trailers-only answer,
/// which is how a failed call ends); a call whose status comes in trailers succeeded as far
/// as its headers tell.
fn record_status<B>(span: &tracing::Span, response: &Response<B>) {
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(0);
    span.record("rpc.grpc.status_code", status);
    if status != 0 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The server side: add with `Server::layer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> tower_layer::Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// A server continuing its callers' traces.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

type BoxedFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower_service::Service<Request<B>> for ServerTrace<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = rpc_span("server", request.uri().path());
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let response = future.await;
                if let Ok(response) = &response {
                    record_status(&tracing::Span::current(), response);
                }
                response
            }
            .instrument(span),
        )
    }
}

/// The client side: wraps a channel (see `connect`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTraceLayer;

impl<S> tower_layer::Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

/// A channel whose calls carry the caller's trace context.
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<Request<B>> for ClientTrace<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let span = rpc_span("client", request.uri().path());
        let context = span.context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()))
        });
        // The process's bearer token, if one is installed (see `security`), rides along.
        crate::security::authorize(request.headers_mut());
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let response = future.await;
                match &response {
                    Ok(response) => record_status(&tracing::Span::current(), response),
                    Err(_) => {
                        tracing::Span::current().record("otel.status_code", "ERROR");
                    }
                }
                response
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            super::service_and_method("/mimo.v1.Registry/ResolveTool"),
            ("mimo.v1.Registry", "ResolveTool")
        );
        assert_eq!(super::service_and_method("/"), ("", ""));
    }
}
