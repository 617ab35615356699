//! The server side of [`crate::security`]: every call must come over a connection whose
//! client presented a certificate the CA signed, or carry an accepted bearer token; others
//! get UNAUTHENTICATED before any service code runs. The health service answers everyone
//! who reaches it (probes and load balancers have no token), and tells nothing but health.

use crate::security::{installed, token_accepted};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Checks each call's credentials; add with `Server::layer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthLayer;

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner }
    }
}

/// A server that refuses callers without credentials.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
}

/// Paths anyone may call.
const OPEN_PREFIX: &str = "/grpc.health.v1.Health/";

/// Why a request is refused, or `None` if it may proceed.
fn refusal<B>(request: &Request<B>) -> Option<&'static str> {
    let security = installed()?;
    if security.server_tls.is_none() && security.accepted_tokens.is_empty() {
        return None;
    }
    if request.uri().path().starts_with(OPEN_PREFIX) {
        return None;
    }
    // With a client CA set, rustls completes a handshake with a client certificate only if
    // the CA signed it: a certificate here is a verified one.
    let certified = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty());
    if certified {
        return None;
    }
    let token = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    match token {
        Some(token) if token_accepted(&security.accepted_tokens, token) => None,
        Some(_) => Some("the bearer token is not one this server accepts"),
        None if security.server_tls.is_some() => Some(
            "no client certificate signed by this cluster's CA and no bearer token: connect with \
             --tls-cert/--tls-key/--tls-ca or send `authorization: Bearer <token>`",
        ),
        None => Some("no bearer token: send `authorization: Bearer <token>` (--token)"),
    }
}

type BoxedFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower_service::Service<Request<B>> for Auth<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match refusal(&request) {
            None => Box::pin(self.inner.call(request)),
            Some(reason) => {
                tracing::warn!(
                    path = request.uri().path(),
                    reason,
                    "call refused: unauthenticated"
                );
                let response = tonic::Status::unauthenticated(reason).into_http::<R>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
