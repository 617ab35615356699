//! A registry tool's call: resolved to a skill-host by the registry, relayed over
//! CallToolStream (the skill's progress passed on while it runs), the skill's result
//! returned unchanged. Dropping the stream, as a client's cancel does, cancels the skill's
//! call.

use crate::catalog::Catalog;
use crate::error::GatewayError;
use mimo_proto::connect::Channel;
use mimo_proto::v1::call_tool_event::Event;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::{CallToolRequest, CallToolResponse, ResolveToolRequest, ToolProgress};
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

/// Calls the registry tool `name`: resolves it, relays the call, passes each progress
/// update to `progress`, and gives up (cancelling the skill's call) when `cancel` fires.
pub(crate) async fn call_registry_tool(
    catalog: &Catalog,
    hosts: &HostChannels,
    name: &str,
    arguments: Option<JsonObject>,
    timeout: Duration,
    cancel: &CancellationToken,
    mut progress: impl FnMut(ToolProgress),
) -> Result<CallToolResult, GatewayError> {
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
    let endpoint = target.endpoint;
    let mut request = tonic::Request::new(CallToolRequest {
        skill: target.skill,
        tool: target.tool,
        arguments_json: Value::Object(arguments.unwrap_or_default()).to_string(),
        lease_id: target.lease_id,
    });
    request.set_timeout(timeout);
    let failed =
        |status: tonic::Status| GatewayError::from_status("skill-host", &endpoint, &status);
    let mut client = hosts.client(&endpoint)?;
    let mut events = tokio::select! {
        () = cancel.cancelled() => return Err(GatewayError::Cancelled),
        answer = client.call_tool_stream(request) => answer.map_err(failed)?.into_inner(),
    };
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return Err(GatewayError::Cancelled),
            event = events.message() => event.map_err(failed)?,
        };
        match event.and_then(|event| event.event) {
            Some(Event::Progress(update)) => progress(update),
            Some(Event::Result(result)) => return Ok(mcp_result(&result)),
            None => {
                return Err(GatewayError::Refused {
                    service: "skill-host",
                    address: endpoint,
                    code: tonic::Code::Internal,
                    message: "the call's stream ended without a result".into(),
                })
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
