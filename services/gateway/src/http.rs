//! The streamable HTTP transport at `/mcp`: API keys (Bearer, compared in constant time),
//! then a per-key rate limit, then rmcp's transport with a request body limit and the
//! `Host` and `Origin` checks the MCP specification asks for (no CORS headers: browsers on
//! other origins are not served).

use crate::api_keys::ApiKeys;
use crate::handler::Gateway;
use crate::rate_limit::{Buckets, CallerKey, RateLimit, RateLimitLayer};
use crate::stats::GatewayStats;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How the HTTP transport admits requests.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The keys a client must present as `Authorization: Bearer KEY`; `None` admits anyone,
    /// which is allowed on a loopback address only.
    pub api_keys: Option<ApiKeys>,
    /// Each key's rate.
    pub rate_limit: RateLimit,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// `Host` values admitted besides the loopback names and the listening address.
    pub allowed_hosts: Vec<String>,
    /// Browser origins admitted (`scheme://host:port`); a request with any other `Origin`
    /// is refused.
    pub allowed_origins: Vec<String>,
}

/// Why the HTTP transport cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A non-loopback address without keys would let anyone who reaches it call every tool.
    #[error("refusing to serve MCP on {0} without API keys: anyone who can reach it could call every tool; give --api-keys FILE, or listen on 127.0.0.1")]
    Unprotected(std::net::SocketAddr),
    /// The listener failed.
    #[error("the MCP HTTP listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `gateway` over the streamable HTTP transport on `listener` until `shutdown`.
pub async fn serve_http(
    gateway: Gateway,
    config: HttpConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() && config.api_keys.is_none() {
        return Err(HttpError::Unprotected(address));
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .into_iter()
        .map(str::to_string)
        .collect();
    hosts.push(address.ip().to_string());
    hosts.push(address.to_string());
    hosts.extend(config.allowed_hosts.iter().cloned());
    let transport = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(config.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.max_body_bytes)
        // A plain JSON answer for a call that sends nothing before its result (an event
        // stream when it does, as for progress): cheaper for clients to read.
        .with_json_response(true)
        .with_cancellation_token(shutdown.child_token());
    let stats = Arc::clone(gateway.stats());
    let service = StreamableHttpService::new(
        move || Ok(gateway.clone()),
        Arc::new(LocalSessionManager::default()),
        transport,
    );
    let keys = config.api_keys.as_ref().map_or(0, ApiKeys::len);
    let buckets = Arc::new(Buckets::new(config.rate_limit, keys, Arc::clone(&stats)));
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(RateLimitLayer::new(buckets))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new((config.api_keys, stats)),
            authenticate,
        ));
    tracing::info!(%address, keys, "serving MCP over streamable HTTP at /mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Admits a request whose `Authorization: Bearer KEY` names a known key (marking it with
/// that key for the rate limit), or every request when there are no keys.
async fn authenticate(
    State(admission): State<Arc<(Option<ApiKeys>, Arc<GatewayStats>)>>,
    mut request: Request,
    next: Next,
) -> Response {
    let (keys, stats) = admission.as_ref();
    let Some(keys) = keys else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match presented.and_then(|key| keys.identify(key.as_bytes())) {
        Some(index) => {
            tracing::debug!(key = keys.name(index), "authenticated");
            request.extensions_mut().insert(CallerKey(index));
            next.run(request).await
        }
        None => {
            GatewayStats::count(&stats.unauthenticated);
            tracing::warn!(
                presented = presented.is_some(),
                "refused an MCP request without a known API key"
            );
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "missing or unknown API key: send Authorization: Bearer KEY with a key from the gateway's --api-keys file",
            )
                .into_response();
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"mimo\""),
            );
            response
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme in any case, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
