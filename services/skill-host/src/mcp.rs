//! The MCP client side of a skill: the `initialize` handshake, tool discovery, and tool
//! calls, with results turned into Mimo's protobuf messages losslessly.

use crate::rpc::{Connection, RpcError};
use base64::Engine;
use mimo_proto::v1::{CallToolResponse, ContentItem, Tool};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// The MCP protocol version Mimo asks for; servers may answer with another they support.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Most `tools/list` pages read from one skill.
const MAX_TOOL_PAGES: usize = 100;
/// Most tools accepted from one skill.
pub const MAX_TOOLS_PER_SKILL: usize = 1_000;

/// What a skill said about itself at `initialize`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// `serverInfo.name`.
    pub name: String,
    /// `serverInfo.version`.
    pub version: String,
    /// The protocol version the server chose.
    pub protocol_version: String,
}

/// Why talking MCP to a skill failed.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The JSON-RPC exchange failed.
    #[error("{method}: {source}")]
    Rpc {
        /// The MCP method.
        method: &'static str,
        /// What went wrong.
        source: RpcError,
    },
    /// The skill answered with something MCP does not allow.
    #[error("{method}: {reason}")]
    Protocol {
        /// The MCP method.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Performs `initialize` and sends `notifications/initialized`.
pub async fn initialize(
    connection: &Connection,
    deadline: Instant,
) -> Result<ServerInfo, McpError> {
    let params = json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mimo", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = connection
        .request("initialize", params, deadline)
        .await
        .map_err(|source| McpError::Rpc {
            method: "initialize",
            source,
        })?;
    let protocol_version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::Protocol {
            method: "initialize",
            reason: "answer has no protocolVersion".into(),
        })?
        .to_string();
    let server = result.get("serverInfo");
    let text = |key: &str| {
        server
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    connection
        .notify("notifications/initialized", json!({}))
        .map_err(|source| McpError::Rpc {
            method: "notifications/initialized",
            source,
        })?;
    Ok(ServerInfo {
        name: text("name"),
        version: text("version"),
        protocol_version,
    })
}

/// Lists every tool of the skill, following `nextCursor` pages up to a bound.
pub async fn list_tools(connection: &Connection, deadline: Instant) -> Result<Vec<Tool>, McpError> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_TOOL_PAGES {
        let params = match &cursor {
            Some(cursor) => json!({"cursor": cursor}),
            None => json!({}),
        };
        let page = connection
            .request("tools/list", params, deadline)
            .await
            .map_err(|source| McpError::Rpc {
                method: "tools/list",
                source,
            })?;
        let listed =
            page.get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| McpError::Protocol {
                    method: "tools/list",
                    reason: "answer has no tools array".into(),
                })?;
        for tool in listed {
            let tool = parse_tool(tool)?;
            // A name listed twice would make the registry refuse the whole catalogue.
            if tools.iter().any(|known: &Tool| known.name == tool.name) {
                tracing::warn!(tool = %tool.name, "skill lists a tool name twice; the first is kept");
                continue;
            }
            tools.push(tool);
        }
        if tools.len() > MAX_TOOLS_PER_SKILL {
            return Err(McpError::Protocol {
                method: "tools/list",
                reason: format!("skill lists over {MAX_TOOLS_PER_SKILL} tools"),
            });
        }
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_string);
        if cursor.is_none() {
            return Ok(tools);
        }
    }
    Err(McpError::Protocol {
        method: "tools/list",
        reason: format!("skill returned over {MAX_TOOL_PAGES} pages"),
    })
}

fn parse_tool(tool: &Value) -> Result<Tool, McpError> {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(McpError::Protocol {
            method: "tools/list",
            reason: format!(
                "a tool has no name: {}",
                crate::rpc::truncate(&tool.to_string(), 200)
            ),
        });
    };
    let schema = match tool.get("inputSchema") {
        Some(schema @ Value::Object(_)) => schema.to_string(),
        _ => json!({"type": "object"}).to_string(),
    };
    let text = |key: &str| {
        tool.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(Tool {
        name: name.to_string(),
        description: text("description"),
        input_schema_json: schema,
        title: text("title"),
    })
}

/// Calls `tool` with `arguments` and returns the skill's result as Mimo's message.
/// Progress notifications go to `progress` when given.
pub async fn call_tool(
    connection: &Connection,
    tool: &str,
    arguments: Map<String, Value>,
    deadline: Instant,
    progress: Option<tokio::sync::mpsc::Sender<crate::rpc::Progress>>,
) -> Result<CallToolResponse, McpError> {
    // The caller's trace goes on to the skill in `_meta` (`traceparent`, `tracestate`), as
    // OpenTelemetry's MCP conventions carry it, for skills that trace themselves.
    let mut params = json!({"name": tool, "arguments": arguments});
    let trace: Map<String, Value> = mimo_proto::trace_context::current_context_fields()
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    if !trace.is_empty() {
        params["_meta"] = Value::Object(trace);
    }
    let result = connection
        .request_with_progress("tools/call", params, deadline, progress)
        .await
        .map_err(|source| McpError::Rpc {
            method: "tools/call",
            source,
        })?;
    Ok(call_result(&result))
}

/// Converts an MCP `CallToolResult` into Mimo's message; every item keeps its raw JSON.
pub fn call_result(result: &Value) -> CallToolResponse {
    let content = result
        .get("content")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(content_item).collect())
        .unwrap_or_default();
    CallToolResponse {
        content,
        is_error: result
            .get("isError")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        structured_content_json: result
            .get("structuredContent")
            .filter(|v| !v.is_null())
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// Converts one MCP content item. `raw_json` keeps every field of the item except the
/// text and the binary data moved into `text` and `data` (so a large result is not carried
/// twice); a field that cannot be decoded stays in `raw_json` as sent.
fn content_item(item: &Value) -> ContentItem {
    let text = |value: Option<&Value>, key: &str| {
        value
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let decode = |value: Option<&Value>, key: &str| {
        let encoded = value?.get(key)?.as_str()?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .ok()
    };
    let kind = text(Some(item), "type");
    let mut rest = item.clone();
    let mut converted = ContentItem {
        r#type: kind.clone(),
        ..ContentItem::default()
    };
    let remove = |value: &mut Value, key: &str| {
        if let Some(object) = value.as_object_mut() {
            object.remove(key);
        }
    };
    match kind.as_str() {
        "text" => {
            converted.text = text(Some(item), "text");
            remove(&mut rest, "text");
        }
        "image" | "audio" => {
            converted.mime_type = text(Some(item), "mimeType");
            if let Some(data) = decode(Some(item), "data") {
                converted.data = data;
                remove(&mut rest, "data");
            }
        }
        "resource" => {
            let resource = item.get("resource");
            converted.uri = text(resource, "uri");
            converted.mime_type = text(resource, "mimeType");
            converted.text = text(resource, "text");
            let blob = decode(resource, "blob");
            if let Some(inner) = rest.get_mut("resource") {
                remove(inner, "text");
                if blob.is_some() {
                    remove(inner, "blob");
                }
            }
            converted.data = blob.unwrap_or_default();
        }
        "resource_link" => {
            converted.uri = text(Some(item), "uri");
            converted.mime_type = text(Some(item), "mimeType");
            converted.text = text(Some(item), "name");
        }
        _ => {}
    }
    converted.raw_json = rest.to_string();
    converted
}

/// The MCP content item `item` came from, whole again: `raw_json` with `text` and `data`
/// put back where the item had them.
pub fn original_item(item: &ContentItem) -> Value {
    let mut original: Value = serde_json::from_str(&item.raw_json).unwrap_or_else(|_| json!({}));
    let encoded = || base64::engine::general_purpose::STANDARD.encode(&item.data);
    let Some(object) = original.as_object_mut() else {
        return original;
    };
    match item.r#type.as_str() {
        "text" => {
            object.insert("text".into(), json!(item.text));
        }
        "image" | "audio" if !object.contains_key("data") => {
            object.insert("data".into(), json!(encoded()));
        }
        "resource" => {
            if let Some(resource) = object.get_mut("resource").and_then(Value::as_object_mut) {
                if resource.contains_key("blob") {
                    // Kept as sent: it could not be decoded.
                } else if !item.data.is_empty() {
                    resource.insert("blob".into(), json!(encoded()));
                } else {
                    resource.insert("text".into(), json!(item.text));
                }
            }
        }
        _ => {}
    }
    original
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_text_image_resource_and_structured_content() {
        let result = json!({
            "content": [
                {"type": "text", "text": "Echo: hi"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///a", "mimeType": "text/plain", "text": "body"}},
                {"type": "resource_link", "uri": "file:///b", "name": "b"}
            ],
            "isError": true,
            "structuredContent": {"sum": 3}
        });
        let converted = call_result(&result);
        assert!(converted.is_error);
        assert_eq!(converted.structured_content_json, r#"{"sum":3}"#);
        assert_eq!(converted.content[0].text, "Echo: hi");
        assert_eq!(converted.content[1].data, b"hi");
        assert_eq!(converted.content[1].mime_type, "image/png");
        assert_eq!(converted.content[2].uri, "file:///a");
        assert_eq!(converted.content[2].text, "body");
        assert_eq!(converted.content[3].r#type, "resource_link");
        // Text and data are carried once; the raw JSON holds the rest, and together they
        // give back every item exactly.
        let raw: Value = serde_json::from_str(&converted.content[1].raw_json).unwrap();
        assert_eq!(raw, json!({"type": "image", "mimeType": "image/png"}));
        let items = result["content"].as_array().unwrap();
        for (item, original) in converted.content.iter().zip(items) {
            assert_eq!(&original_item(item), original);
        }
        // Data that is not base64 stays as sent.
        let broken = call_result(
            &json!({"content": [{"type": "image", "data": "%%", "mimeType": "image/png"}]}),
        );
        assert!(broken.content[0].data.is_empty());
        assert_eq!(original_item(&broken.content[0])["data"], "%%");
    }

    #[test]
    fn tools_without_schema_get_an_empty_object_schema_and_nameless_tools_are_refused() {
        let tool = parse_tool(&json!({"name": "t"})).unwrap();
        assert_eq!(tool.input_schema_json, r#"{"type":"object"}"#);
        assert!(parse_tool(&json!({"description": "x"})).is_err());
    }
}
