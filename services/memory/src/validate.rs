//! Request checks: every Store and Search field validated, and defaults applied, before any
//! embedding or database work starts.

use crate::category;
use crate::config::MemoryConfig;
use crate::error::MemoryError;
use mimo_proto::v1::{Category, SearchRequest, StoreRequest};

/// Importance of an engram stored without one.
const DEFAULT_IMPORTANCE: f32 = 0.5;

/// A Store request that passed every check, with defaults applied.
#[derive(Debug)]
pub(crate) struct ValidStore {
    pub(crate) content: String,
    pub(crate) category: Category,
    pub(crate) importance: f32,
    /// A JSON object text, `{}` when the request gave none.
    pub(crate) metadata_json: String,
}

/// A Search request that passed every check, with defaults applied.
#[derive(Debug)]
pub(crate) struct ValidSearch {
    pub(crate) query: String,
    pub(crate) limit: usize,
    pub(crate) min_similarity: f32,
    pub(crate) category: Option<Category>,
}

/// Checks a Store request against `config`'s limits.
pub(crate) fn store(
    config: &MemoryConfig,
    request: StoreRequest,
) -> Result<ValidStore, MemoryError> {
    text("content", &request.content, config.max_content_bytes)?;
    let category = category::for_store(request.category)?;
    let importance = request.importance.unwrap_or(DEFAULT_IMPORTANCE);
    if !(0.0..=1.0).contains(&importance) {
        return Err(MemoryError::OutOfRange {
            field: "importance",
            value: importance.to_string(),
            bounds: "0.0..=1.0".to_string(),
        });
    }
    let metadata_json = metadata(&request.metadata_json, config.max_metadata_bytes)?;
    Ok(ValidStore {
        content: request.content,
        category,
        importance,
        metadata_json,
    })
}

/// Checks a Search request against `config`'s limits.
pub(crate) fn search(
    config: &MemoryConfig,
    request: SearchRequest,
) -> Result<ValidSearch, MemoryError> {
    text("query", &request.query, config.max_content_bytes)?;
    let limit = request.limit.unwrap_or(config.default_search_limit);
    if limit == 0 || limit > config.max_search_limit {
        return Err(MemoryError::OutOfRange {
            field: "limit",
            value: limit.to_string(),
            bounds: format!("1..={}", config.max_search_limit),
        });
    }
    let min_similarity = request
        .min_similarity
        .unwrap_or_else(|| config.effective_min_similarity());
    if !(-1.0..=1.0).contains(&min_similarity) {
        return Err(MemoryError::OutOfRange {
            field: "min_similarity",
            value: min_similarity.to_string(),
            bounds: "-1.0..=1.0".to_string(),
        });
    }
    Ok(ValidSearch {
        category: category::for_search(request.category)?,
        query: request.query,
        limit: limit as usize,
        min_similarity,
    })
}

/// Longest engram id accepted (ids are 36-character UUIDs).
const MAX_ID_BYTES: usize = 128;

/// Checks an engram id given to Get or Delete.
pub(crate) fn id(id: &str) -> Result<(), MemoryError> {
    if id.trim().is_empty() {
        return Err(MemoryError::EmptyField("id"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(MemoryError::TooLarge {
            field: "id",
            bytes: id.len(),
            limit: MAX_ID_BYTES,
        });
    }
    Ok(())
}

fn text(field: &'static str, value: &str, limit: usize) -> Result<(), MemoryError> {
    if value.trim().is_empty() {
        return Err(MemoryError::EmptyField(field));
    }
    if value.len() > limit {
        return Err(MemoryError::TooLarge {
            field,
            bytes: value.len(),
            limit,
        });
    }
    Ok(())
}

/// Returns the metadata as compact JSON object text, `{}` when `given` is empty.
fn metadata(given: &str, limit: usize) -> Result<String, MemoryError> {
    if given.len() > limit {
        return Err(MemoryError::TooLarge {
            field: "metadata_json",
            bytes: given.len(),
            limit,
        });
    }
    if given.trim().is_empty() {
        return Ok("{}".to_string());
    }
    match serde_json::from_str::<serde_json::Value>(given) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value.to_string()),
        Ok(other) => Err(MemoryError::InvalidMetadata(format!(
            "found {}",
            json_kind(&other)
        ))),
        Err(error) => Err(MemoryError::InvalidMetadata(error.to_string())),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
