//! Which embedders made the stored engrams: a memory holding vectors of another embedder
//! than the configured one cannot compare them with its queries, so it refuses searches and
//! stores until `mimo memory reembed` has re-embedded them.

use crate::database::{on_pool, Pool, ReadColumns};
use crate::embedder::Embedder;
use crate::error::MemoryError;

/// Engrams of embedders (or dimensions) other than `configured`'s, as "id (count)" pieces;
/// empty when every engram is the configured embedder's.
pub(crate) async fn foreign_embedders(
    pool: &Pool,
    configured: &dyn Embedder,
) -> Result<Vec<String>, MemoryError> {
    let statement = "SELECT embedder, dimension, COUNT(*) AS count FROM engrams \
         GROUP BY embedder, dimension ORDER BY COUNT(*) DESC";
    let mut groups = Vec::new();
    on_pool!(pool, |pool, Db| {
        for row in &sqlx::query(statement).fetch_all(pool).await? {
            groups.push((
                row.text("embedder")?,
                row.integer("dimension")?,
                row.integer("count")?,
            ));
        }
    });
    let mut foreign = Vec::new();
    for (embedder, dimension, count) in groups {
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
            "stop the memory and run `mimo memory reembed` with this --memory-embedder to re-embed them (every memory sharing the database must then use it), or start the memory with their embedder (--memory-embedder minilm:DIR for all-minilm-l6-v2, builtin for builtin-hash-v1, ollama:MODEL or openai:MODEL for those)"
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
