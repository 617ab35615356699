//! The gateway's counters, reported to telemetry as gauges: calls, failed calls, sessions
//! followed for list changes, and the requests its bounds refused.

use mimo_proto::v1::Gauge;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts since the gateway started.
#[derive(Debug, Default)]
pub(crate) struct GatewayStats {
    /// Tool calls answered (with a result, an error result or a protocol error).
    pub(crate) calls: AtomicU64,
    /// Tool calls that failed in the gateway or behind it.
    pub(crate) failed_calls: AtomicU64,
    /// Sessions told of tool-list changes now.
    pub(crate) followers: AtomicUsize,
    /// Sessions not told of changes because [`crate::handler`]'s bound was reached.
    pub(crate) followers_refused: AtomicU64,
    /// HTTP requests without a known API key.
    pub(crate) unauthenticated: AtomicU64,
    /// HTTP requests over their key's rate.
    pub(crate) rate_limited: AtomicU64,
}

impl GatewayStats {
    /// Adds one to `counter`.
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as gauges, for the reporter.
    pub(crate) fn gauges(self: &Arc<Self>) -> mimo_reporter::GaugeSource {
        let stats = Arc::clone(self);
        Arc::new(move || {
            let gauge = |name: &str, value: f64| Gauge {
                name: name.to_string(),
                value,
                ..Gauge::default()
            };
            let total = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
            vec![
                gauge("mcp.gateway.calls_total", total(&stats.calls)),
                gauge("mcp.gateway.failed_calls_total", total(&stats.failed_calls)),
                gauge(
                    "mcp.gateway.sessions_following",
                    stats.followers.load(Ordering::Relaxed) as f64,
                ),
                gauge(
                    "mcp.gateway.sessions_not_followed_total",
                    total(&stats.followers_refused),
                ),
                gauge(
                    "mcp.gateway.unauthenticated_total",
                    total(&stats.unauthenticated),
                ),
                gauge("mcp.gateway.rate_limited_total", total(&stats.rate_limited)),
            ]
        })
    }
}
