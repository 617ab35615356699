//! Request checks: every Store and Search field validated, and defaults applied, before any
//! embedding or database work starts.

use crate::category;
use crate::config::{HybridSettings, MemoryConfig};
use crate::embedder::Embedder;
use crate::error::MemoryError;
use crate::index::Filter;
use mimo_proto::v1::{
    Category, Engram, HybridWeights, Scoring, SearchRequest, StoreRequest, UpdateRequest,
};

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
    /// The client's own embedding, checked and normalised; `None`: the service embeds.
    pub(crate) embedding: Option<Vec<f32>>,
    pub(crate) protected: bool,
    /// Store even next to a near-duplicate.
    pub(crate) allow_duplicate: bool,
    /// The new engram's id, made when the request was checked (so that a stream's ids,
    /// which are UUIDv7, follow its order).
    pub(crate) id: uuid::Uuid,
}

impl ValidStore {
    /// The new engram this request makes, embedded by `embedder`, at `now` (unix ms).
    pub(crate) fn into_engram(self, embedder: &dyn Embedder, now: i64) -> Engram {
        Engram {
            id: self.id.to_string(),
            content: self.content,
            category: self.category as i32,
            importance: self.importance,
            metadata_json: self.metadata_json,
            embedder: embedder.id().to_string(),
            dimension: embedder.dimension() as u32,
            created_at_unix_ms: now,
            updated_at_unix_ms: now,
            last_accessed_at_unix_ms: now,
            access_count: 0,
            protected: self.protected,
            embedding: Vec::new(),
        }
    }
}

/// What a search looks for.
#[derive(Debug)]
pub(crate) enum Probe {
    /// A text for the embedder.
    Text(String),
    /// A vector, checked and normalised.
    Vector(Vec<f32>),
}

/// A Search request that passed every check, with defaults applied.
#[derive(Debug)]
pub(crate) struct ValidSearch {
    pub(crate) probe: Probe,
    pub(crate) limit: usize,
    pub(crate) min_similarity: f32,
    pub(crate) filter: Filter,
    /// Hybrid scoring's weights and half-life, or `None` for semantic scoring.
    pub(crate) hybrid: Option<HybridSettings>,
    /// Search working memory too.
    pub(crate) include_working: bool,
}

/// A valid Update request: each field present replaces the stored one.
#[derive(Debug)]
pub(crate) struct ValidUpdate {
    pub(crate) id: String,
    pub(crate) importance: Option<f32>,
    pub(crate) category: Option<Category>,
    pub(crate) metadata_json: Option<String>,
    pub(crate) protected: Option<bool>,
}

/// Checks a Store request against `config`'s limits.
pub(crate) fn store(
    config: &MemoryConfig,
    request: StoreRequest,
) -> Result<ValidStore, MemoryError> {
    text("content", &request.content, config.max_content_bytes)?;
    let category = category::for_store(request.category)?;
    let importance = request.importance.unwrap_or(DEFAULT_IMPORTANCE);
    unit_interval("importance", importance)?;
    let metadata_json = metadata(&request.metadata_json, config.max_metadata_bytes)?;
    let embedding = if request.embedding.is_empty() {
        None
    } else {
        Some(vector(
            "embedding",
            request.embedding,
            config.embedder.dimension(),
        )?)
    };
    Ok(ValidStore {
        content: request.content,
        category,
        importance,
        metadata_json,
        embedding,
        protected: request.protected,
        allow_duplicate: request.allow_duplicate,
        id: uuid::Uuid::now_v7(),
    })
}

/// Checks a Search request against `config`'s limits.
pub(crate) fn search(
    config: &MemoryConfig,
    request: SearchRequest,
) -> Result<ValidSearch, MemoryError> {
    let probe = match (request.query.is_empty(), request.query_vector.is_empty()) {
        (false, false) => {
            return Err(MemoryError::Conflict(
                "give query or query_vector, not both",
            ))
        }
        (true, true) => return Err(MemoryError::EmptyField("query")),
        (false, true) => {
            text("query", &request.query, config.max_content_bytes)?;
            Probe::Text(request.query)
        }
        (true, false) => Probe::Vector(vector(
            "query_vector",
            request.query_vector,
            config.embedder.dimension(),
        )?),
    };
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
    let min_importance = request.min_importance.unwrap_or(0.0);
    unit_interval("min_importance", min_importance)?;
    if let (Some(after), Some(before)) = (
        request.created_after_unix_ms,
        request.created_before_unix_ms,
    ) {
        if after >= before {
            return Err(MemoryError::Inconsistent(format!(
                "created_before_unix_ms ({before}) must be later than created_after_unix_ms ({after})"
            )));
        }
    }
    let filter = Filter {
        category: category::for_search(request.category)?,
        min_importance,
        created_after: request.created_after_unix_ms,
        created_before: request.created_before_unix_ms,
    };
    let hybrid = match Scoring::try_from(request.scoring) {
        Ok(Scoring::Unspecified | Scoring::Semantic) => None,
        Ok(Scoring::Hybrid) => Some(hybrid(config.hybrid, request.hybrid.unwrap_or_default())?),
        Err(_) => {
            return Err(MemoryError::OutOfRange {
                field: "scoring",
                value: request.scoring.to_string(),
                bounds: "0..=2 (SCORING_UNSPECIFIED, SCORING_SEMANTIC, SCORING_HYBRID)".to_string(),
            })
        }
    };
    Ok(ValidSearch {
        probe,
        limit: limit as usize,
        min_similarity,
        filter,
        hybrid,
        include_working: request.include_working,
    })
}

/// Checks an Update request against `config`'s limits.
pub(crate) fn update(
    config: &MemoryConfig,
    request: UpdateRequest,
) -> Result<ValidUpdate, MemoryError> {
    id(&request.id)?;
    if let Some(importance) = request.importance {
        unit_interval("importance", importance)?;
    }
    let category = category::for_search(request.category)?;
    let metadata_json = request
        .metadata_json
        .as_deref()
        .map(|given| metadata(given, config.max_metadata_bytes))
        .transpose()?;
    if request.importance.is_none()
        && category.is_none()
        && metadata_json.is_none()
        && request.protected.is_none()
    {
        return Err(MemoryError::Conflict(
            "an update must give at least one of importance, category, metadata_json, protected",
        ));
    }
    Ok(ValidUpdate {
        id: request.id,
        importance: request.importance,
        category,
        metadata_json,
        protected: request.protected,
    })
}

/// Returns `given`'s weights, the defaults filling the gaps, once each is checked.
fn hybrid(defaults: HybridSettings, given: HybridWeights) -> Result<HybridSettings, MemoryError> {
    let settings = HybridSettings {
        similarity_weight: given.similarity.unwrap_or(defaults.similarity_weight),
        recency_weight: given.recency.unwrap_or(defaults.recency_weight),
        importance_weight: given.importance.unwrap_or(defaults.importance_weight),
        half_life_hours: given
            .recency_half_life_hours
            .unwrap_or(defaults.half_life_hours),
    };
    unit_interval("hybrid.similarity", settings.similarity_weight)?;
    unit_interval("hybrid.recency", settings.recency_weight)?;
    unit_interval("hybrid.importance", settings.importance_weight)?;
    let half_life = settings.half_life_hours;
    if !(half_life.is_finite() && half_life > 0.0 && half_life <= 1.0e6) {
        return Err(MemoryError::OutOfRange {
            field: "hybrid.recency_half_life_hours",
            value: half_life.to_string(),
            bounds: "(0, 1000000]".to_string(),
        });
    }
    Ok(settings)
}

fn unit_interval(field: &'static str, value: f32) -> Result<(), MemoryError> {
    if (0.0..=1.0).contains(&value) {
        return Ok(());
    }
    Err(MemoryError::OutOfRange {
        field,
        value: value.to_string(),
        bounds: "0.0..=1.0".to_string(),
    })
}

/// Returns `values` scaled to unit length once they are `dimension` finite values, not all zero.
fn vector(
    field: &'static str,
    mut values: Vec<f32>,
    dimension: usize,
) -> Result<Vec<f32>, MemoryError> {
    if values.len() != dimension {
        return Err(MemoryError::WrongDimension {
            field,
            given: values.len(),
            dimension,
        });
    }
    if let Some(position) = values.iter().position(|value| !value.is_finite()) {
        return Err(MemoryError::BadVector {
            field,
            reason: format!("value {position} is {}", values[position]),
        });
    }
    // In double precision, so that tiny or huge values neither underflow nor overflow.
    let norm = values
        .iter()
        .map(|value| f64::from(*value) * f64::from(*value))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        values
            .iter_mut()
            .for_each(|value| *value = (f64::from(*value) / norm) as f32);
    }
    if values.iter().all(|value| *value == 0.0) || values.iter().any(|value| !value.is_finite()) {
        return Err(MemoryError::BadVector {
            field,
            reason: "it is all zeros, so it has no direction".to_string(),
        });
    }
    Ok(values)
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
    // Refused everywhere, so that a SQLite memory's export always imports into PostgreSQL's.
    if value.contains('\0') {
        return Err(MemoryError::Inconsistent(format!(
            "{field} holds a NUL character (U+0000), which PostgreSQL cannot store; remove it"
        )));
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
