//! The memory's tools: store, search, get and delete engrams, each with a JSON Schema and a
//! description an LLM can act on, served by the memory service over gRPC.

use crate::error::GatewayError;
use mimo_proto::connect::Channel;
use mimo_proto::v1::memory_client::MemoryClient;
use mimo_proto::v1::{Category, DeleteRequest, Engram, GetRequest, SearchRequest, StoreRequest};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Names of the memory's tools.
pub(crate) const STORE: &str = "memory_store";
/// Searches long-term memory.
pub(crate) const SEARCH: &str = "memory_search";
/// Reads one engram.
pub(crate) const GET: &str = "memory_get";
/// Deletes one engram.
pub(crate) const DELETE: &str = "memory_delete";

/// Most hits one search returns through the gateway.
const MAX_SEARCH_LIMIT: u32 = 100;

/// The categories, as the tools name them.
fn categories() -> Vec<&'static str> {
    mimo_proto::category_names::NAMES
        .iter()
        .map(|(_, name)| *name)
        .collect()
}

/// The memory's tools, as listed.
pub(crate) fn tools() -> Vec<Tool> {
    vec![
        tool(
            STORE,
            "Remember something for later: stores a text as a long-term memory (an engram) and returns it with its id. Storing nearly the same text again in the same category reinforces the existing memory instead of adding a copy.",
            json!({
                "type": "object",
                "properties": {
                    "content": {"type": "string", "minLength": 1, "description": "The text to remember (at most 100 KB)."},
                    "category": {"type": "string", "enum": categories(), "default": "fact", "description": "What kind of memory this is."},
                    "importance": {"type": "number", "minimum": 0, "maximum": 1, "description": "How much it matters, 0 to 1 (default 0.5)."},
                    "metadata": {"type": "object", "description": "Any JSON object to keep with it."},
                    "protected": {"type": "boolean", "default": false, "description": "Never forgotten by decay."}
                },
                "required": ["content"],
                "additionalProperties": false
            }),
        ),
        tool(
            SEARCH,
            "Search long-term memory by meaning: returns the memories closest to the query text, best first, each with its id, content, category, importance and similarity (-1 to 1).",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "description": "What to look for, in words."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "default": 10, "description": "Most memories to return."},
                    "category": {"type": "string", "enum": categories(), "description": "Only memories of this kind."},
                    "min_importance": {"type": "number", "minimum": 0, "maximum": 1, "description": "Only memories at least this important."},
                    "min_similarity": {"type": "number", "minimum": -1, "maximum": 1, "description": "Only memories at least this similar to the query."}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
        tool(
            GET,
            "Read one memory by its id (as memory_store and memory_search return it).",
            json!({
                "type": "object",
                "properties": {"id": {"type": "string", "description": "The memory's id."}},
                "required": ["id"],
                "additionalProperties": false
            }),
        ),
        tool(
            DELETE,
            "Forget one memory by its id, for good.",
            json!({
                "type": "object",
                "properties": {"id": {"type": "string", "description": "The memory's id."}},
                "required": ["id"],
                "additionalProperties": false
            }),
        ),
    ]
}

/// Whether `name` is one of the memory's tools.
pub(crate) fn is_memory_tool(name: &str) -> bool {
    [STORE, SEARCH, GET, DELETE].contains(&name)
}

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let Value::Object(schema) = schema else {
        unreachable!("a tool schema is an object");
    };
    Tool::new(name, description, Arc::new(schema))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreArguments {
    content: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    importance: Option<f32>,
    #[serde(default)]
    metadata: Option<JsonObject>,
    #[serde(default)]
    protected: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArguments {
    query: String,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    min_importance: Option<f32>,
    #[serde(default)]
    min_similarity: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArguments {
    id: String,
}

/// The memory service as the gateway calls it.
#[derive(Debug, Clone)]
pub(crate) struct MemoryTools {
    client: MemoryClient<Channel>,
    address: String,
}

impl MemoryTools {
    /// Tools served by the memory at `address` over `channel`.
    pub(crate) fn new(address: &str, channel: Channel) -> Self {
        Self {
            client: mimo_proto::connect::memory(channel),
            address: address.to_string(),
        }
    }

    /// Calls the memory tool `name` with `arguments`.
    pub(crate) async fn call(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, GatewayError> {
        let arguments = Value::Object(arguments.unwrap_or_default());
        let mut client = self.client.clone();
        let failed =
            |status: tonic::Status| GatewayError::from_status("memory", &self.address, &status);
        match name {
            STORE => {
                let given: StoreArguments = parse(name, arguments)?;
                let request = StoreRequest {
                    content: given.content,
                    category: category(name, given.category.as_deref())? as i32,
                    importance: given.importance,
                    metadata_json: given
                        .metadata
                        .map(|metadata| Value::Object(metadata).to_string())
                        .unwrap_or_default(),
                    protected: given.protected,
                    ..StoreRequest::default()
                };
                let stored = client.store(request).await.map_err(failed)?.into_inner();
                let engram = stored.engram.unwrap_or_default();
                Ok(answer(
                    json!({"engram": engram_json(&engram), "reinforced": stored.reinforced}),
                ))
            }
            SEARCH => {
                let given: SearchArguments = parse(name, arguments)?;
                let limit = given.limit.unwrap_or(10);
                if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
                    return Err(GatewayError::InvalidArguments {
                        tool: name.to_string(),
                        reason: format!("limit is {limit}; give 1 to {MAX_SEARCH_LIMIT}"),
                    });
                }
                let request = SearchRequest {
                    query: given.query,
                    limit: Some(limit),
                    category: match given.category.as_deref() {
                        None => Category::Unspecified as i32,
                        Some(given) => category(name, Some(given))? as i32,
                    },
                    min_importance: given.min_importance,
                    min_similarity: given.min_similarity,
                    ..SearchRequest::default()
                };
                let found = client.search(request).await.map_err(failed)?.into_inner();
                let hits: Vec<Value> = found
                    .hits
                    .iter()
                    .map(|hit| {
                        let mut entry = engram_json(&hit.engram.clone().unwrap_or_default());
                        entry["similarity"] = json!(hit.similarity);
                        entry["score"] = json!(hit.score);
                        entry
                    })
                    .collect();
                Ok(answer(json!({"memories": hits})))
            }
            GET => {
                let given: IdArguments = parse(name, arguments)?;
                let engram = client
                    .get(GetRequest { id: given.id })
                    .await
                    .map_err(failed)?
                    .into_inner();
                Ok(answer(json!({"engram": engram_json(&engram)})))
            }
            DELETE => {
                let given: IdArguments = parse(name, arguments)?;
                client
                    .delete(DeleteRequest {
                        id: given.id.clone(),
                    })
                    .await
                    .map_err(failed)?;
                Ok(answer(json!({"deleted": given.id})))
            }
            other => Err(GatewayError::UnknownTool(other.to_string())),
        }
    }
}

/// `arguments` as `T`, or an error naming what does not fit.
fn parse<T: serde::de::DeserializeOwned>(tool: &str, arguments: Value) -> Result<T, GatewayError> {
    serde_json::from_value(arguments).map_err(|error| GatewayError::InvalidArguments {
        tool: tool.to_string(),
        reason: error.to_string(),
    })
}

/// The category named `given` (fact when none).
fn category(tool: &str, given: Option<&str>) -> Result<Category, GatewayError> {
    let given = given.unwrap_or("fact");
    mimo_proto::category_names::named(given).ok_or_else(|| GatewayError::InvalidArguments {
        tool: tool.to_string(),
        reason: format!(
            "category is {given:?}; give one of {}",
            categories().join(", ")
        ),
    })
}

/// An engram as the tools return it (no embedding: it means nothing to a reader).
fn engram_json(engram: &Engram) -> Value {
    let category = mimo_proto::category_names::name(
        Category::try_from(engram.category).unwrap_or(Category::Unspecified),
    );
    json!({
        "id": engram.id,
        "content": engram.content,
        "category": category,
        "importance": engram.importance,
        "metadata": serde_json::from_str::<Value>(&engram.metadata_json).unwrap_or(Value::Null),
        "protected": engram.protected,
        "created_at_unix_ms": engram.created_at_unix_ms,
        "last_accessed_at_unix_ms": engram.last_accessed_at_unix_ms,
        "access_count": engram.access_count,
    })
}

/// A result carrying `value` both as structured content and as its JSON text.
fn answer(value: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
    result.structured_content = Some(value);
    result
}
