//! The SQLite side: connection pools, migrations, and turning rows into engrams.

use crate::category;
use crate::config::MemoryConfig;
use crate::error::MemoryError;
use mimo_proto::v1::Engram;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a read waits for SQLite's lock held by another connection (only a checkpoint
/// or another program can hold one against a reader in WAL mode).
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The writer's page cache: 64 MiB (a negative `cache_size` counts KiB).
const WRITER_CACHE: &str = "-65536";
/// The writer checkpoints by itself only once the WAL reaches 64 MiB (16,384 pages of
/// 4 KiB), a backstop should the checkpointer fall behind.
const WRITER_AUTOCHECKPOINT: &str = "16384";
/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Columns of an [`Engram`], in the order [`engram_from_row`] reads them by name.
pub(crate) const ENGRAM_COLUMNS: &str = "id, content, category, importance, metadata, embedder, \
     dimension, created_at, updated_at, last_accessed_at, access_count, protected";

/// The pools: the writer task owns the single write connection, so writes never meet
/// SQLite's lock from this process; reads run concurrently beside them (WAL); the
/// checkpointer copies the WAL back into the database on a connection of its own, so that
/// the writer does not stop to do it.
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
    pub(crate) checkpoint: SqlitePool,
}

/// Opens (creating if missing) the database of `config`, whose folder exists, brings its
/// schema up to date, and returns its pools.
pub(crate) async fn connect(config: &MemoryConfig) -> Result<Pools, MemoryError> {
    let path = &config.database_path;
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
    sqlx::migrate!().run(&write).await?;
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
        write,
        read,
        checkpoint,
    })
}

/// Returns the engram in `row`, which holds [`ENGRAM_COLUMNS`].
pub(crate) fn engram_from_row(row: &SqliteRow) -> Result<Engram, MemoryError> {
    let id: String = row.try_get("id")?;
    let stored_category: String = row.try_get("category")?;
    let Some(category) = category::from_stored_name(&stored_category) else {
        return Err(MemoryError::MalformedRow {
            id,
            reason: format!("unknown category {stored_category:?}"),
        });
    };
    let dimension: i64 = row.try_get("dimension")?;
    let access_count: i64 = row.try_get("access_count")?;
    let importance: f64 = row.try_get("importance")?;
    let protected: i64 = row.try_get("protected")?;
    Ok(Engram {
        content: row.try_get("content")?,
        category: category as i32,
        importance: importance as f32,
        metadata_json: row.try_get("metadata")?,
        embedder: row.try_get("embedder")?,
        dimension: u32::try_from(dimension).unwrap_or(0),
        created_at_unix_ms: row.try_get("created_at")?,
        updated_at_unix_ms: row.try_get("updated_at")?,
        last_accessed_at_unix_ms: row.try_get("last_accessed_at")?,
        access_count: u64::try_from(access_count).unwrap_or(0),
        protected: protected != 0,
        embedding: Vec::new(),
        id,
    })
}

/// Milliseconds since the Unix epoch by the wall clock (a timestamp, never a deadline).
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Appends ` WHERE id IN (?, ...)` binding `ids`; a primary-key lookup, never a scan.
pub(crate) fn push_id_filter<'args>(
    builder: &mut QueryBuilder<'args, Sqlite>,
    ids: &'args [String],
) {
    builder.push(" WHERE id IN (");
    let mut separated = builder.separated(", ");
    for id in ids {
        separated.push_bind(id.as_str());
    }
    separated.push_unseparated(")");
}
