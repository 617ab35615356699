//! The telemetry service's HTTP side: `GET /metrics` (the Prometheus exposition), a live page
//! at `/` (every instance, charts of the last hour, the alerts), and the JSON it reads:
//! `/api/instances`, `/api/alerts`, `/api/history?metric=NAME[&service=S][&instance=ID]`.

use crate::instances::InstanceTable;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mimo_proto::v1::{Alert, AlertState, InstanceId, QueryHistoryRequest};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The page, served as is.
const PAGE: &str = include_str!("page.html");

/// The HTTP routes over `instances`.
pub(crate) fn router(instances: Arc<InstanceTable>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/metrics", get(metrics))
        .route("/api/instances", get(instances_json))
        .route("/api/alerts", get(alerts_json))
        .route("/api/history", get(history_json))
        .with_state(instances)
}

async fn metrics(State(instances): State<Arc<InstanceTable>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::prometheus::exposition(&instances),
    )
}

fn id_json(id: Option<&InstanceId>) -> Value {
    let id = id.cloned().unwrap_or_default();
    json!({ "service": id.service, "host": id.host, "instance": id.instance_id })
}

async fn instances_json(State(instances): State<Arc<InstanceTable>>) -> Json<Value> {
    let listed: Vec<Value> = instances
        .list("")
        .into_iter()
        .map(|status| {
            let report = status.latest.unwrap_or_default();
            let process = report.process.unwrap_or_default();
            let gauges: serde_json::Map<String, Value> = crate::thresholds::metrics(&report)
                .into_iter()
                .filter(|(key, _)| {
                    !key.name.starts_with("process.") || key.name.starts_with("process.runtime.")
                })
                .map(|(key, value)| (key.to_string(), json!(value)))
                .collect();
            json!({
                "id": id_json(report.instance.as_ref()),
                "down": status.down,
                "received_ms_ago": status.received_ms_ago,
                "uptime_seconds": report.uptime_seconds,
                "resident_memory_bytes": process.resident_memory_bytes,
                "open_fds": process.open_fds,
                "max_fds": process.max_fds,
                "threads": process.threads,
                "child_processes": process.child_processes,
                "cpu_seconds": process.cpu_seconds,
                "gauges": gauges,
            })
        })
        .collect();
    Json(Value::Array(listed))
}

fn alert_json(alert: &Alert) -> Value {
    json!({
        "instance": id_json(alert.instance.as_ref()),
        "name": alert.name,
        "subject": alert.subject,
        "message": alert.message,
        "state": if alert.state == AlertState::Firing as i32 { "firing" } else { "resolved" },
        "fired_unix_ms": alert.fired_unix_ms,
        "resolved_unix_ms": alert.resolved_unix_ms,
    })
}

async fn alerts_json(State(instances): State<Arc<InstanceTable>>) -> Json<Value> {
    let (firing, recent) = instances.alerts("");
    Json(json!({
        "firing": firing.iter().map(alert_json).collect::<Vec<_>>(),
        "recent": recent.iter().map(alert_json).collect::<Vec<_>>(),
    }))
}

async fn history_json(
    State(instances): State<Arc<InstanceTable>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    let request = QueryHistoryRequest {
        service: field("service"),
        instance_id: field("instance"),
        metric: field("metric"),
        since_unix_ms: field("since").parse().unwrap_or(0),
        until_unix_ms: field("until").parse().unwrap_or(0),
    };
    match instances.history(&request) {
        Ok(answer) => Json(Value::Array(
            answer
                .series
                .iter()
                .map(|series| {
                    json!({
                        "instance": id_json(series.instance.as_ref()),
                        "metric": series.metric,
                        "attributes": series.attributes,
                        "points": series.points.iter().map(|p| json!([p.unix_ms, p.value])).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ))
        .into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}
