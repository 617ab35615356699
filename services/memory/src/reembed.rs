//! Changing a memory's embedder: every engram made by another embedder (or of another
//! dimension) is embedded again from its content by the configured one, a page at a time,
//! each page in one transaction, with progress. Run with the memory service stopped (the
//! instance lock makes sure of it); a stopped run resumes where it left off.

use crate::config::MemoryConfig;
use crate::database;
use crate::embedder::embed_checked;
use crate::error::MemoryError;
use sqlx::Row;

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
    let _lock = crate::instance_lock::acquire(&config.database_path)?;
    let pools = database::connect(&config).await?;
    let id = embedder.id().to_string();
    let dimension = embedder.dimension() as i64;
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM engrams WHERE NOT (embedder = ? AND dimension = ?)",
    )
    .bind(&id)
    .bind(dimension)
    .fetch_one(&pools.read)
    .await?;
    let total = u64::try_from(total).unwrap_or(0);
    tracing::info!(total, embedder = %id, "re-embedding engrams");
    let mut report = ReembedReport::default();
    let mut after = String::new();
    loop {
        let rows = sqlx::query(
            "SELECT id, content FROM engrams WHERE NOT (embedder = ? AND dimension = ?) \
             AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(&id)
        .bind(dimension)
        .bind(&after)
        .bind(PAGE)
        .fetch_all(&pools.read)
        .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get("id")?;
        let ids: Vec<String> = rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?;
        let texts: Vec<String> = rows
            .iter()
            .map(|row| row.try_get("content"))
            .collect::<Result<_, _>>()?;
        let vectors = embed_checked(embedder.as_ref(), &texts).await?;
        let mut transaction = pools.write.begin().await?;
        for (engram, vector) in ids.iter().zip(&vectors) {
            if vector.iter().all(|value| *value == 0.0) {
                tracing::warn!(engram = %engram, "nothing to embed in this engram's content; left as it was");
                report.skipped += 1;
                continue;
            }
            sqlx::query(
                "UPDATE engrams SET embedding = ?, embedder = ?, dimension = ? WHERE id = ?",
            )
            .bind(crate::blob::encode_embedding(vector))
            .bind(&id)
            .bind(dimension)
            .bind(engram)
            .execute(&mut *transaction)
            .await?;
            report.reembedded += 1;
        }
        transaction.commit().await?;
        progress(report.reembedded + report.skipped, total);
    }
    pools.write.close().await;
    pools.read.close().await;
    pools.checkpoint.close().await;
    tracing::info!(
        reembedded = report.reembedded,
        skipped = report.skipped,
        "re-embedding done"
    );
    Ok(report)
}
