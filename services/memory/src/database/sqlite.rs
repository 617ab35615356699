//! SQLite's pools: one write connection, a read pool (WAL lets reads run beside the
//! writer) and a checkpoint connection.

use super::{Pool, Pools, ACQUIRE_TIMEOUT};
use crate::config::MemoryConfig;
use crate::error::MemoryError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// How long a read waits for SQLite's lock held by another connection (only a checkpoint
/// or another program can hold one against a reader in WAL mode).
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The writer's page cache: 64 MiB (a negative `cache_size` counts KiB).
const WRITER_CACHE: &str = "-65536";
/// The writer checkpoints by itself only once the WAL reaches 64 MiB (16,384 pages of
/// 4 KiB), a backstop should the checkpointer fall behind.
const WRITER_AUTOCHECKPOINT: &str = "16384";

/// Opens (creating if missing) the SQLite file at `path` and migrates it.
pub(super) async fn connect(path: &Path, config: &MemoryConfig) -> Result<Pools, MemoryError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(config.busy_timeout)
        .foreign_keys(true);
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A large batch of engrams fits in the page cache, so SQLite does not spill pages
        // to the WAL half-way through the transaction and write them twice.
        .connect_with(
            options
                .clone()
                .pragma("cache_size", WRITER_CACHE)
                .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT),
        )
        .await?;
    sqlx::migrate!("migrations/sqlite").run(&write).await?;
    let checkpoint = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(config.read_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.read_only(true).busy_timeout(READ_BUSY_TIMEOUT))
        .await?;
    Ok(Pools {
        write: Pool::Sqlite(write),
        read: Pool::Sqlite(read),
        checkpoint: Some(checkpoint),
    })
}
