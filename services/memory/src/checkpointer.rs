//! The checkpointer: copies the write-ahead log back into the database file on its own
//! connection (a passive checkpoint, which never blocks the writer or readers), so that the
//! writer's transactions do not stop to do it.

use sqlx::sqlite::SqlitePool;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Time between two checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// Starts checkpointing on `pool` until `stop` fires; a last checkpoint runs then.
pub(crate) fn start(pool: SqlitePool, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => checkpoint(&pool).await,
            }
        }
        checkpoint(&pool).await;
    })
}

async fn checkpoint(pool: &SqlitePool) {
    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "memory checkpoint failed; the writer will checkpoint by itself");
    }
}
