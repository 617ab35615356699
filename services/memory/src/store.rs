//! The memory store: engrams in SQLite, their vectors in the in-memory index, kept in step.

use crate::blob::encode_embedding;
use crate::category;
use crate::config::MemoryConfig;
use crate::database::{self, engram_from_row, now_unix_ms, Pools, ENGRAM_COLUMNS};
use crate::embedder::embed_checked;
use crate::error::MemoryError;
use crate::index::VectorIndex;
use crate::load::build_index;
use crate::validate;
use mimo_proto::v1::{Category, Engram, SearchHit, SearchRequest, StoreRequest};
use sqlx::{QueryBuilder, Sqlite};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::time::Instant;

/// How many engrams the store holds, for the resource reporter's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCounts {
    /// Rows in the engram table.
    pub engrams: usize,
    /// Vectors in the search index (engrams of the current embedder with a sound embedding).
    pub index_vectors: usize,
}

/// A handle to the memory; clones share one database and one index.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: MemoryConfig,
    /// This process's hold on the database file, released when the store closes or goes.
    lock: std::sync::Mutex<Option<crate::instance_lock::InstanceLock>>,
    pools: Pools,
    /// Never held across an await.
    index: RwLock<VectorIndex>,
    /// Rows in the table; changed only together with a committed insert or delete.
    engrams: AtomicUsize,
}

/// Opens the memory at `config.database_path`: creates the file and its directories when
/// missing, applies migrations, and rebuilds the search index from the stored embeddings.
pub async fn open(config: MemoryConfig) -> Result<MemoryStore, MemoryError> {
    let started = Instant::now();
    tracing::info!(path = %config.database_path.display(), embedder = config.embedder.id(), "opening memory");
    ensure_parent(&config.database_path).await?;
    let lock = crate::instance_lock::acquire(&config.database_path)?;
    let pools = database::connect(&config).await?;
    let engrams: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM engrams")
        .fetch_one(&pools.read)
        .await?;
    let engrams = usize::try_from(engrams).unwrap_or(0);
    let index = build_index(&pools.read, config.embedder.as_ref(), engrams).await?;
    tracing::info!(
        path = %config.database_path.display(),
        engrams,
        indexed = index.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "memory open"
    );
    Ok(MemoryStore {
        inner: Arc::new(Inner {
            lock: std::sync::Mutex::new(Some(lock)),
            config,
            pools,
            index: RwLock::new(index),
            engrams: AtomicUsize::new(engrams),
        }),
    })
}

/// Creates the database's folder when missing, so that its lock file can be made.
async fn ensure_parent(path: &std::path::Path) -> Result<(), MemoryError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| MemoryError::CreateDirectory {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

impl MemoryStore {
    /// Stores a new engram and makes it searchable; returns it as stored.
    pub async fn store(&self, request: StoreRequest) -> Result<Engram, MemoryError> {
        let valid = validate::store(&self.inner.config, request)?;
        if self.inner.engrams.load(Ordering::Acquire) >= self.inner.config.max_engrams {
            return Err(self.inner.capacity_reached());
        }
        let vector = self.embed("content", &valid.content).await?;
        let now = now_unix_ms();
        let embedder = &self.inner.config.embedder;
        let engram = Engram {
            id: uuid::Uuid::now_v7().to_string(),
            content: valid.content,
            category: valid.category as i32,
            importance: valid.importance,
            metadata_json: valid.metadata_json,
            embedder: embedder.id().to_string(),
            dimension: embedder.dimension() as u32,
            created_at_unix_ms: now,
            updated_at_unix_ms: now,
            last_accessed_at_unix_ms: now,
            access_count: 0,
        };
        let inner = self.inner.clone();
        let stored = engram.clone();
        run_to_completion(async move { inner.insert(&stored, valid.category, &vector).await })
            .await?;
        tracing::debug!(engram = %engram.id, category = category::stored_name(valid.category), bytes = engram.content.len(), "engram stored");
        Ok(engram)
    }

    /// Returns the engrams most similar to the request's query, best first, and records that
    /// they were accessed.
    pub async fn search(&self, request: SearchRequest) -> Result<Vec<SearchHit>, MemoryError> {
        let valid = validate::search(&self.inner.config, request)?;
        let query = self.embed("query", &valid.query).await?;
        let found = self.inner.index_read().search(
            &query,
            valid.limit,
            valid.min_similarity,
            valid.category,
        );
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = found.iter().map(|hit| hit.id.clone()).collect();
        let mut select =
            QueryBuilder::<Sqlite>::new(format!("SELECT {ENGRAM_COLUMNS} FROM engrams"));
        push_id_filter(&mut select, &ids);
        let rows = select.build().fetch_all(&self.inner.pools.read).await?;
        let mut engrams = HashMap::with_capacity(rows.len());
        for row in &rows {
            let engram = engram_from_row(row)?;
            engrams.insert(engram.id.clone(), engram);
        }
        let now = now_unix_ms();
        // An engram deleted since the index was read is simply not a hit.
        let hits: Vec<SearchHit> = found
            .into_iter()
            .filter_map(|hit| {
                let mut engram = engrams.remove(&hit.id)?;
                engram.last_accessed_at_unix_ms = now;
                engram.access_count += 1;
                Some(SearchHit {
                    engram: Some(engram),
                    similarity: hit.similarity,
                })
            })
            .collect();
        self.record_access(&ids, now).await;
        Ok(hits)
    }

    /// Returns the engram with `id`.
    pub async fn get(&self, id: &str) -> Result<Engram, MemoryError> {
        validate::id(id)?;
        let row = sqlx::query(&format!(
            "SELECT {ENGRAM_COLUMNS} FROM engrams WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.inner.pools.read)
        .await?
        .ok_or_else(|| MemoryError::NotFound(id.to_string()))?;
        engram_from_row(&row)
    }

    /// Deletes the engram with `id` from the database and the index.
    pub async fn delete(&self, id: &str) -> Result<(), MemoryError> {
        validate::id(id)?;
        let inner = self.inner.clone();
        let id = id.to_string();
        run_to_completion(async move { inner.delete(&id).await }).await
    }

    /// Returns how many engrams are stored and indexed; cheap enough for every report.
    pub fn counts(&self) -> MemoryCounts {
        MemoryCounts {
            engrams: self.inner.engrams.load(Ordering::Acquire),
            index_vectors: self.inner.index_read().len(),
        }
    }

    /// Closes the database pools and lets go of the database file (another process may
    /// open it then); every later call on any clone fails with a database error.
    pub async fn close(&self) {
        self.inner.pools.write.close().await;
        self.inner.pools.read.close().await;
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// The vector of `text` (the request's `field`); a zero vector, which no search could
    /// ever find, is refused.
    async fn embed(&self, field: &'static str, text: &str) -> Result<Vec<f32>, MemoryError> {
        let embedder = self.inner.config.embedder.as_ref();
        let vectors = embed_checked(embedder, &[text.to_string()]).await?;
        // `embed_checked` returns exactly one vector per text.
        let vector = vectors.into_iter().next().unwrap_or_default();
        if vector.iter().all(|value| *value == 0.0) {
            return Err(MemoryError::NothingToEmbed {
                field,
                embedder: embedder.id().to_string(),
            });
        }
        Ok(vector)
    }

    /// Bumps the access time and count of `ids`; a failure is logged, not returned, because
    /// the search itself succeeded.
    async fn record_access(&self, ids: &[String], now: i64) {
        let mut update = QueryBuilder::<Sqlite>::new("UPDATE engrams SET last_accessed_at = ");
        update
            .push_bind(now)
            .push(", access_count = access_count + 1");
        push_id_filter(&mut update, ids);
        if let Err(error) = update.build().execute(&self.inner.pools.write).await {
            tracing::warn!(%error, count = ids.len(), "could not record engram access");
        }
    }
}

impl Inner {
    fn index_read(&self) -> RwLockReadGuard<'_, VectorIndex> {
        // Index methods never panic half-way through a change, so a poisoned lock is sound.
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn index_write(&self) -> RwLockWriteGuard<'_, VectorIndex> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn capacity_reached(&self) -> MemoryError {
        MemoryError::CapacityReached {
            limit: self.config.max_engrams,
        }
    }

    /// Inserts `engram` and, once committed, indexes `vector`; the slot is reserved first so
    /// that concurrent stores never exceed `max_engrams`.
    async fn insert(
        &self,
        engram: &Engram,
        category: Category,
        vector: &[f32],
    ) -> Result<(), MemoryError> {
        let limit = self.config.max_engrams;
        self.engrams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < limit).then_some(count + 1)
            })
            .map_err(|_| self.capacity_reached())?;
        let inserted = sqlx::query(
            "INSERT INTO engrams (id, content, category, importance, protected, embedding, \
             embedder, dimension, created_at, updated_at, last_accessed_at, access_count, metadata) \
             VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, 0, ?)",
        )
        .bind(&engram.id)
        .bind(&engram.content)
        .bind(category::stored_name(category))
        .bind(f64::from(engram.importance))
        .bind(encode_embedding(vector))
        .bind(&engram.embedder)
        .bind(i64::from(engram.dimension))
        .bind(engram.created_at_unix_ms)
        .bind(engram.updated_at_unix_ms)
        .bind(engram.last_accessed_at_unix_ms)
        .bind(&engram.metadata_json)
        .execute(&self.pools.write)
        .await;
        if let Err(error) = inserted {
            self.engrams.fetch_sub(1, Ordering::AcqRel);
            return Err(error.into());
        }
        self.index_write()
            .insert(engram.id.clone(), category, vector);
        Ok(())
    }

    /// Deletes `id`'s row and, once committed, its vector.
    async fn delete(&self, id: &str) -> Result<(), MemoryError> {
        let deleted = sqlx::query("DELETE FROM engrams WHERE id = ?")
            .bind(id)
            .execute(&self.pools.write)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(MemoryError::NotFound(id.to_string()));
        }
        self.engrams.fetch_sub(1, Ordering::AcqRel);
        self.index_write().remove(id);
        tracing::debug!(engram = %id, "engram deleted");
        Ok(())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("MemoryStore")
            .field("database_path", &self.inner.config.database_path)
            .field("counts", &self.counts())
            .finish()
    }
}

/// Appends ` WHERE id IN (?, ...)` binding `ids`; a primary-key lookup, never a scan.
fn push_id_filter<'args>(builder: &mut QueryBuilder<'args, Sqlite>, ids: &'args [String]) {
    builder.push(" WHERE id IN (");
    let mut separated = builder.separated(", ");
    for id in ids {
        separated.push_bind(id.as_str());
    }
    separated.push_unseparated(")");
}

/// Runs a database change together with its index update in a task of its own, so that a
/// caller that goes away (a cancelled RPC) cannot leave the two out of step; the caller still
/// waits for and gets the result.
async fn run_to_completion<F>(change: F) -> Result<(), MemoryError>
where
    F: Future<Output = Result<(), MemoryError>> + Send + 'static,
{
    match tokio::spawn(change).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(MemoryError::ShuttingDown),
    }
}
