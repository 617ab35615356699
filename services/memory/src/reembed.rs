//! Changing a memory's embedder: every engram made by another embedder (or of another
//! dimension) is embedded again from its content by the configured one, a page at a time,
//! each page in one transaction, with progress. Run with the memory service stopped (the
//! instance lock, or PostgreSQL's advisory lock, makes sure of it); a stopped run resumes
//! where it left off.

use crate::config::MemoryConfig;
use crate::database::{self, on_connection, on_pool, ReadColumns};
use crate::embedder::embed_checked;
use crate::error::MemoryError;

/// Engrams embedded per page.
const PAGE: i64 = 256;

/// What [`reembed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReembedReport {
    /// Engrams now embedded by the configured embedder.
    pub reembedded: u64,
    /// Engrams whose content gives the embedder nothing to go on (left as they were).
    pub skipped: u64,
}

/// Re-embeds every engram of another embedder with `config`'s, calling `progress(done,
/// total)` after each page.
pub async fn reembed(
    config: MemoryConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReembedReport, MemoryError> {
    let embedder = config.embedder.clone();
    if !embedder.embeds_text() {
        return Err(MemoryError::VectorsRequired {
            field: "embedding",
            embedder: embedder.id().to_string(),
            dimension: embedder.dimension(),
        });
    }
    let hold = crate::store::hold(&config.database, crate::postgres_lock::Mode::Exclusive).await?;
    let pools = database::connect(&config).await?;
    let result = reembed_rows(&config, &pools, &mut progress).await;
    pools.close().await;
    hold.release().await;
    let report = result?;
    tracing::info!(
        reembedded = report.reembedded,
        skipped = report.skipped,
        "re-embedding done"
    );
    Ok(report)
}

/// Re-embeds page after page on `pools`.
async fn reembed_rows(
    config: &MemoryConfig,
    pools: &database::Pools,
    progress: &mut impl FnMut(u64, u64),
) -> Result<ReembedReport, MemoryError> {
    let embedder = config.embedder.as_ref();
    let id = embedder.id().to_string();
    let dimension = embedder.dimension() as i64;
    let total = on_pool!(&pools.read, |pool, Db| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM engrams WHERE NOT (embedder = $1 AND dimension = $2)",
        )
        .bind(&id)
        .bind(dimension)
        .fetch_one(pool)
        .await?
    });
    let total = u64::try_from(total).unwrap_or(0);
    tracing::info!(total, embedder = %id, "re-embedding engrams");
    let mut report = ReembedReport::default();
    let mut after = String::new();
    loop {
        let mut page: Vec<(String, String)> = Vec::new();
        on_pool!(&pools.read, |pool, Db| {
            for row in &sqlx::query(
                "SELECT id, content FROM engrams WHERE NOT (embedder = $1 AND dimension = $2) \
                 AND id > $3 ORDER BY id LIMIT $4",
            )
            .bind(&id)
            .bind(dimension)
            .bind(&after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?
            {
                page.push((row.text("id")?, row.text("content")?));
            }
        });
        let Some((last, _)) = page.last() else {
            break;
        };
        after = last.clone();
        let texts: Vec<String> = page.iter().map(|(_, content)| content.clone()).collect();
        let vectors = embed_checked(embedder, &texts).await?;
        let mut connection = pools.write.acquire().await?;
        connection.begin_write().await?;
        for ((engram, _), vector) in page.iter().zip(&vectors) {
            if vector.iter().all(|value| *value == 0.0) {
                tracing::warn!(engram = %engram, "nothing to embed in this engram's content; left as it was");
                report.skipped += 1;
                continue;
            }
            on_connection!(&mut connection, |connection, Db| {
                sqlx::query(
                    "UPDATE engrams SET embedding = $1, embedder = $2, dimension = $3 \
                     WHERE id = $4",
                )
                .bind(crate::blob::encode_embedding(vector))
                .bind(&id)
                .bind(dimension)
                .bind(engram)
                .execute(&mut *connection)
                .await?;
            });
            report.reembedded += 1;
        }
        connection.run("COMMIT").await?;
        progress(report.reembedded + report.skipped, total);
    }
    Ok(report)
}
