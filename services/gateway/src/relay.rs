//! A registry tool's call: resolved to a skill-host by the registry, relayed over
//! CallToolStream (the skill's progress passed on while it runs), the skill's result
//! returned unchanged. Dropping the stream, as a client's cancel does, cancels the skill's
//! call.

use crate::catalog::Catalog;
use crate::error::GatewayError;
use mimo_proto::connect::Channel;
use mimo_proto::v1::call_tool_event::Event;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::{
    CallToolRequest, CallToolResponse, ResolveToolRequest, ResolveToolResponse, ToolProgress,
};
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Skill-host channels kept open at once; past this many the oldest is closed.
const MAX_HOSTS: usize = 256;

/// Channels to the skill-hosts the registry has sent calls to, opened once and reused
/// (each reconnects by itself).
#[derive(Debug, Default)]
pub(crate) struct HostChannels {
    open: Mutex<HashMap<String, (u64, SkillHostClient<Channel>)>>,
    opened: std::sync::atomic::AtomicU64,
}

impl HostChannels {
    /// The client for the skill-host at `endpoint`.
    fn client(&self, endpoint: &str) -> Result<SkillHostClient<Channel>, GatewayError> {
        let mut open = self.open.lock().expect("host channels lock");
        if let Some((_, client)) = open.get(endpoint) {
            return Ok(client.clone());
        }
        let channel = mimo_proto::connect::lazy_channel(endpoint).map_err(|error| {
            GatewayError::Unreachable {
                service: "skill-host",
                address: endpoint.to_string(),
                reason: error.to_string(),
            }
        })?;
        if open.len() >= MAX_HOSTS {
            let oldest = open
                .iter()
                .min_by_key(|(_, (opened, _))| *opened)
                .map(|(endpoint, _)| endpoint.clone());
            if let Some(oldest) = oldest {
                open.remove(&oldest);
            }
        }
        let client = mimo_proto::connect::skill_host(channel);
        let order = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        open.insert(endpoint.to_string(), (order, client.clone()));
        Ok(client)
    }
}

/// Most tool routes remembered.
const MAX_ROUTES: usize = 10_000;

/// Where tools served by a single skill-host were resolved to, valid while the catalogue
/// keeps the generation they were learned under (a change, or a lost watch, ends them), so
/// that a call takes one hop instead of two. Tools served by several hosts are resolved on
/// every call, so that the registry spreads them.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    known: Mutex<HashMap<String, (u64, ResolveToolResponse)>>,
}

impl Routes {
    fn get(&self, name: &str, generation: Option<u64>) -> Option<ResolveToolResponse> {
        let generation = generation?;
        let known = self.known.lock().expect("routes lock");
        let (learned, target) = known.get(name)?;
        (*learned == generation).then(|| target.clone())
    }

    fn put(&self, name: &str, generation: Option<u64>, target: &ResolveToolResponse) {
        let Some(generation) = generation else { return };
        if target.endpoints.len() != 1 {
            return;
        }
        let mut known = self.known.lock().expect("routes lock");
        if known.len() >= MAX_ROUTES {
            known.retain(|_, (learned, _)| *learned == generation);
            if known.len() >= MAX_ROUTES {
                known.clear();
            }
        }
        known.insert(name.to_string(), (generation, target.clone()));
    }

    fn forget(&self, name: &str) {
        self.known.lock().expect("routes lock").remove(name);
    }
}

/// Calls the registry tool `name`: resolves it (or takes its remembered route), relays the
/// call, passes each progress update to `progress`, and gives up (cancelling the skill's
/// call) when `cancel` fires. A remembered route that the skill-host refuses before the
/// call starts (the skill moved, its lease expired) is forgotten and the tool resolved again.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call_registry_tool(
    catalog: &Catalog,
    routes: &Routes,
    hosts: &HostChannels,
    name: &str,
    arguments: Option<JsonObject>,
    timeout: Duration,
    cancel: &CancellationToken,
    mut progress: impl FnMut(ToolProgress),
) -> Result<CallToolResult, GatewayError> {
    let arguments_json = Value::Object(arguments.unwrap_or_default()).to_string();
    if let Some(target) = routes.get(name, catalog.generation()) {
        match relay(
            hosts,
            target,
            &arguments_json,
            timeout,
            cancel,
            &mut progress,
        )
        .await
        {
            Err(Refusal::BeforeStart(_)) => routes.forget(name),
            Err(Refusal::During(error)) => return Err(error),
            Ok(result) => return Ok(result),
        }
    }
    let generation = catalog.generation();
    let target = catalog
        .registry()
        .resolve_tool(ResolveToolRequest {
            name: name.to_string(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => GatewayError::UnknownTool(name.to_string()),
            _ => GatewayError::from_status("registry", catalog.address(), &status),
        })?
        .into_inner();
    routes.put(name, generation, &target);
    relay(
        hosts,
        target,
        &arguments_json,
        timeout,
        cancel,
        &mut progress,
    )
    .await
    .map_err(|(Refusal::BeforeStart(error) | Refusal::During(error))| error)
}

/// How a relayed call failed: before the skill-host took it (a route worth resolving again)
/// or after.
enum Refusal {
    BeforeStart(GatewayError),
    During(GatewayError),
}

/// Relays one call to the skill-host of `target`.
async fn relay(
    hosts: &HostChannels,
    target: ResolveToolResponse,
    arguments_json: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: &mut impl FnMut(ToolProgress),
) -> Result<CallToolResult, Refusal> {
    let endpoint = target.endpoint;
    let mut request = tonic::Request::new(CallToolRequest {
        skill: target.skill,
        tool: target.tool,
        arguments_json: arguments_json.to_string(),
        lease_id: target.lease_id,
    });
    request.set_timeout(timeout);
    let failed =
        |status: tonic::Status| GatewayError::from_status("skill-host", &endpoint, &status);
    let mut client = hosts.client(&endpoint).map_err(Refusal::BeforeStart)?;
    let answer = tokio::select! {
        () = cancel.cancelled() => return Err(Refusal::During(GatewayError::Cancelled)),
        answer = client.call_tool_stream(request) => answer,
    };
    let mut events = match answer {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            let error = failed(status);
            let route_is_stale = match &error {
                GatewayError::Unreachable { .. } => true,
                GatewayError::Refused { code, .. } => {
                    matches!(
                        code,
                        tonic::Code::FailedPrecondition | tonic::Code::NotFound
                    )
                }
                _ => false,
            };
            return Err(if route_is_stale {
                Refusal::BeforeStart(error)
            } else {
                Refusal::During(error)
            });
        }
    };
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return Err(Refusal::During(GatewayError::Cancelled)),
            event = events.message() => event.map_err(|status| Refusal::During(failed(status)))?,
        };
        match event.and_then(|event| event.event) {
            Some(Event::Progress(update)) => progress(update),
            Some(Event::Result(result)) => return Ok(mcp_result(&result)),
            None => {
                return Err(Refusal::During(GatewayError::Refused {
                    service: "skill-host",
                    address: endpoint,
                    code: tonic::Code::Internal,
                    message: "the call's stream ended without a result".into(),
                }))
            }
        }
    }
}

/// The skill's result as it sent it: each content item whole again, `isError` and
/// `structuredContent` as given.
fn mcp_result(skill_result: &CallToolResponse) -> CallToolResult {
    let content: Vec<Value> = skill_result
        .content
        .iter()
        .map(mimo_skill_host::original_item)
        .collect();
    let mut whole = json!({ "content": content });
    if skill_result.is_error {
        whole["isError"] = json!(true);
    }
    if !skill_result.structured_content_json.is_empty() {
        if let Ok(structured) = serde_json::from_str::<Value>(&skill_result.structured_content_json)
        {
            whole["structuredContent"] = structured;
        }
    }
    let typed: Result<CallToolResult, _> = serde_json::from_value(whole.clone());
    let mut result = typed.unwrap_or_else(|error| {
        // A content item this MCP library does not know: passed on as its JSON text.
        tracing::warn!(%error, "a skill's result has content this gateway cannot type; sending it as text");
        let mut text = CallToolResult::success(vec![rmcp::model::ContentBlock::text(
            whole["content"].to_string(),
        )]);
        text.is_error = skill_result.is_error.then_some(true);
        text
    });
    // Complete, as every relayed result is (the transport drops this for older protocols).
    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
    result
}
