//! The telemetry service's HTTP side: `GET /metrics`, the Prometheus exposition.

use crate::instances::InstanceTable;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The HTTP routes over `instances`.
pub(crate) fn router(instances: Arc<InstanceTable>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let instances = instances.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    crate::prometheus::exposition(&instances),
                )
            }
        }),
    )
}
