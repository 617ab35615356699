//! Rebuilding the in-memory index from disk at open, streaming rows so that memory use stays
//! at one row plus the index, whatever the table's size.

use crate::blob::decode_embedding;
use crate::category;
use crate::database::{on_pool, Pool, ReadColumns};
use crate::embedder::Embedder;
use crate::error::MemoryError;
use crate::index::{RowFacts, VectorIndex};
use crate::writer::key_of;
use futures::TryStreamExt;
use tokio::time::Instant;

/// Rows between two progress lines in the log.
const PROGRESS_EVERY: usize = 50_000;

/// Returns an index of every engram embedded by `embedder`, skipping (and logging) rows whose
/// embedding is corrupt or of another dimension; `total` is the table's row count, for progress.
pub(crate) async fn build_index(
    pool: &Pool,
    embedder: &dyn Embedder,
    approximate: Option<crate::index::ApproximateSettings>,
    int8_scan: bool,
    total: usize,
) -> Result<VectorIndex, MemoryError> {
    let started = Instant::now();
    let dimension = embedder.dimension();
    let mut index = VectorIndex::new(dimension);
    let of_this_embedder = on_pool!(pool, |pool, Db| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM engrams WHERE embedder = $1")
            .bind(embedder.id())
            .fetch_one(pool)
            .await?
    });
    index.reserve(usize::try_from(of_this_embedder).unwrap_or(0));
    if int8_scan {
        index.enable_int8();
    }
    let mut seen = 0_usize;
    let mut skipped = 0_usize;
    on_pool!(pool, |pool, Db| {
        let mut rows = sqlx::query(
            "SELECT id, category, importance, created_at, last_accessed_at, dimension, \
             embedding FROM engrams WHERE embedder = $1",
        )
        .bind(embedder.id())
        .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            seen += 1;
            match indexable(&row, dimension) {
                Ok((facts, vector)) => index.insert(facts, &vector),
                Err(error) => {
                    skipped += 1;
                    let id = row.text("id").unwrap_or_default();
                    tracing::error!(engram = %id, %error, "engram left out of the search index");
                }
            }
            if seen.is_multiple_of(PROGRESS_EVERY) {
                tracing::info!(loaded = seen, total, "indexing engrams");
            }
        }
    });
    if let Some(settings) = approximate {
        // After the rows, so that the graph is built once, over every core.
        index = tokio::task::spawn_blocking(move || {
            index.enable_approximate(settings);
            index
        })
        .await
        .map_err(|_| MemoryError::ShuttingDown)?;
    }
    let other_embedders = total.saturating_sub(seen);
    if other_embedders > 0 {
        tracing::warn!(
            count = other_embedders,
            embedder = embedder.id(),
            "engrams embedded by another embedder are not searchable"
        );
    }
    tracing::info!(
        indexed = index.len(),
        approximate = index.is_approximate(),
        skipped,
        other_embedders,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "search index built"
    );
    Ok(index)
}

/// Returns the facts and vector of `row`, or why it cannot be searched.
pub(crate) fn indexable(
    row: &impl ReadColumns,
    dimension: usize,
) -> Result<(RowFacts, Vec<f32>), MemoryError> {
    let id = row.text("id")?;
    let key = key_of(&id).ok_or_else(|| MemoryError::MalformedRow {
        id: id.clone(),
        reason: "the id is not a UUID".to_string(),
    })?;
    let stored_category = row.text("category")?;
    let category =
        category::from_stored_name(&stored_category).ok_or_else(|| MemoryError::MalformedRow {
            id: id.clone(),
            reason: format!("unknown category {stored_category:?}"),
        })?;
    let stored_dimension = row.integer("dimension")?;
    if usize::try_from(stored_dimension).ok() != Some(dimension) {
        return Err(MemoryError::MalformedRow {
            id,
            reason: format!("dimension is {stored_dimension}; the embedder's is {dimension}"),
        });
    }
    let blob = row.bytes("embedding")?;
    let vector = decode_embedding(&blob, dimension)?;
    if vector.iter().any(|value| !value.is_finite()) {
        return Err(MemoryError::MalformedRow {
            id,
            reason: "the embedding holds NaN or infinity".to_string(),
        });
    }
    let facts = RowFacts {
        key,
        category,
        importance: row.real("importance")? as f32,
        created_at: row.integer("created_at")?,
        accessed_at: row.integer("last_accessed_at")?,
    };
    Ok((facts, vector))
}
