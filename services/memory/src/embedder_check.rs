//! Which embedders made the stored engrams: a memory holding vectors of another embedder
//! than the configured one cannot compare them with its queries, so it refuses searches and
//! stores until `mimo memory reembed` has re-embedded them.

use crate::embedder::Embedder;
use crate::error::MemoryError;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

/// Engrams of embedders (or dimensions) other than `configured`'s, as "id (count)" pieces;
/// empty when every engram is the configured embedder's.
pub(crate) async fn foreign_embedders(
    pool: &SqlitePool,
    configured: &dyn Embedder,
) -> Result<Vec<String>, MemoryError> {
    let rows = sqlx::query(
        "SELECT embedder, dimension, COUNT(*) AS count FROM engrams \
         GROUP BY embedder, dimension ORDER BY COUNT(*) DESC",
    )
    .fetch_all(pool)
    .await?;
    let mut foreign = Vec::new();
    for row in &rows {
        let embedder: String = row.try_get("embedder")?;
        let dimension: i64 = row.try_get("dimension")?;
        let count: i64 = row.try_get("count")?;
        let same = embedder == configured.id()
            && usize::try_from(dimension).ok() == Some(configured.dimension());
        if !same {
            let engrams = if count == 1 { "engram" } else { "engrams" };
            foreign.push(format!(
                "{count} {engrams} made by {embedder} ({dimension} dimensions)"
            ));
        }
    }
    Ok(foreign)
}

/// The refusal of a memory whose engrams are `foreign`'s.
pub(crate) fn mismatch(configured: &dyn Embedder, foreign: &[String]) -> MemoryError {
    MemoryError::EmbedderMismatch {
        remedy: if configured.embeds_text() {
            "run `mimo memory reembed` to re-embed them, or start the memory with their embedder"
        } else {
            "a memory of client vectors cannot embed their texts itself: start it with their embedder and export them, then import them with your vectors (an `embedding` on each line), or delete them"
        },
        found: foreign.join(", "),
        configured: format!(
            "{} ({} dimensions)",
            configured.id(),
            configured.dimension()
        ),
    }
}
