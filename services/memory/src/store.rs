//! The memory store: engrams in SQLite, their vectors in the in-memory index, kept in step by
//! the one writer task.

use crate::config::MemoryConfig;
use crate::database::{self, engram_from_row, now_unix_ms, push_id_filter, Pools, ENGRAM_COLUMNS};
use crate::embedder::embed_checked;
use crate::error::MemoryError;
use crate::index::{IndexHit, IndexQuery, Scoring};
use crate::load::build_index;
use crate::shared_state::SharedState;
use crate::validate::{self, Probe, ValidSearch, ValidStore};
use crate::writer::{Change, Outcome, Writer, WriterLimits};
use mimo_proto::v1::{
    Engram, SearchHit, SearchRequest, StatsResponse, StoreRequest, UpdateRequest,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

/// Index sizes up to which a search runs on the calling task; larger ones go to the
/// blocking pool (and from there over every core), keeping the async workers free.
const INLINE_SEARCH_ROWS: usize = 20_000;

/// How much the store holds and how its writer fares, for the resource reporter's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCounts {
    /// Rows in the engram table.
    pub engrams: usize,
    /// Vectors in the search index (engrams of the current embedder with a sound embedding).
    pub index_vectors: usize,
    /// Bytes held by the search index.
    pub index_bytes: usize,
    /// Changes waiting for the writer.
    pub write_queue: usize,
    /// Changes in the transaction the writer is running.
    pub writing: usize,
    /// Transactions committed by the writer since start.
    pub write_batches: u64,
    /// Changes refused because the write queue stayed full.
    pub rejected_writes: u64,
    /// Transactions retried because the database was locked.
    pub busy_retries: u64,
    /// Search access records dropped because the write queue was full.
    pub dropped_access_records: u64,
}

/// A handle to the memory; clones share one database, one writer and one index.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: MemoryConfig,
    /// This process's hold on the database file, released when the store closes or goes.
    lock: std::sync::Mutex<Option<crate::instance_lock::InstanceLock>>,
    pools: Pools,
    state: Arc<SharedState>,
    writer: Writer,
    /// Stops the checkpointer.
    stop_checkpoints: tokio_util::sync::CancellationToken,
    checkpointer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Opens the memory at `config.database_path`: creates the file and its directories when
/// missing, applies migrations, rebuilds the search index from the stored embeddings and
/// starts the writer.
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
    let index = build_index(
        &pools.read,
        config.embedder.as_ref(),
        config.approximate,
        engrams,
    )
    .await?;
    tracing::info!(
        path = %config.database_path.display(),
        engrams,
        indexed = index.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "memory open"
    );
    let state = Arc::new(SharedState::new(index, engrams));
    let writer = Writer::start(
        pools.write.clone(),
        state.clone(),
        WriterLimits {
            queue: config.write_queue,
            batch: config.write_batch,
            max_engrams: config.max_engrams,
        },
    );
    let stop_checkpoints = tokio_util::sync::CancellationToken::new();
    let checkpointer =
        crate::checkpointer::start(pools.checkpoint.clone(), stop_checkpoints.clone());
    Ok(MemoryStore {
        inner: Arc::new(Inner {
            lock: std::sync::Mutex::new(Some(lock)),
            config,
            pools,
            state,
            writer,
            stop_checkpoints,
            checkpointer: std::sync::Mutex::new(Some(checkpointer)),
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
    /// Stores a new engram and makes it searchable; returns it as stored, once committed.
    pub async fn store(&self, request: StoreRequest) -> Result<Engram, MemoryError> {
        let valid = self.check_store(request)?;
        self.store_valid(valid).await
    }

    /// Checks a Store request, doing no work yet.
    pub(crate) fn check_store(&self, request: StoreRequest) -> Result<ValidStore, MemoryError> {
        validate::store(&self.inner.config, request)
    }

    /// Stores a checked request.
    pub(crate) async fn store_valid(&self, valid: ValidStore) -> Result<Engram, MemoryError> {
        if self.inner.state.rows() >= self.inner.config.max_engrams {
            return Err(self.inner.capacity_reached());
        }
        let vector = match valid.embedding {
            Some(vector) => vector,
            None => self.embed("content", &valid.content).await?,
        };
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
            protected: valid.protected,
        };
        self.inner
            .writer
            .apply(Change::Insert {
                engram: engram.clone(),
                category: valid.category,
                protected: valid.protected,
                vector,
            })
            .await?;
        tracing::debug!(engram = %engram.id, bytes = engram.content.len(), "engram stored");
        Ok(engram)
    }

    /// Returns the engrams most similar to the request's query, best score first, and
    /// records that they were accessed.
    pub async fn search(&self, request: SearchRequest) -> Result<Vec<SearchHit>, MemoryError> {
        let valid = validate::search(&self.inner.config, request)?;
        let found = self.find(valid).await?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = found
            .iter()
            .map(|hit| uuid::Uuid::from_u128(hit.key).to_string())
            .collect();
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
            .iter()
            .zip(&ids)
            .filter_map(|(hit, id)| {
                let mut engram = engrams.remove(id)?;
                engram.last_accessed_at_unix_ms = now;
                engram.access_count += 1;
                Some(SearchHit {
                    engram: Some(engram),
                    similarity: hit.similarity,
                    score: hit.score,
                })
            })
            .collect();
        // Recorded by the writer after the answer, so that a search never waits for a
        // commit; the hits already show the new access time and count.
        if !self.inner.writer.offer(Change::Touch { ids, now }) {
            self.inner
                .state
                .dropped_access_records
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("write queue full: this search's access times are not recorded");
        }
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
        self.inner
            .writer
            .apply(Change::Delete { id: id.to_string() })
            .await?;
        tracing::debug!(engram = %id, "engram deleted");
        Ok(())
    }

    /// Changes an engram's importance, category, metadata or protection; returns it as
    /// it stands after the change.
    pub async fn update(&self, request: UpdateRequest) -> Result<Engram, MemoryError> {
        let valid = validate::update(&self.inner.config, request)?;
        match self.inner.writer.apply(Change::Update(valid)).await? {
            Outcome::Updated(engram) => Ok(engram),
            Outcome::Done => Err(MemoryError::ShuttingDown),
        }
    }

    /// Counts by category, the index's size and the embedder.
    pub async fn stats(&self) -> Result<StatsResponse, MemoryError> {
        let rows = sqlx::query("SELECT category, COUNT(*) AS count FROM engrams GROUP BY category")
            .fetch_all(&self.inner.pools.read)
            .await?;
        let mut by_category = HashMap::new();
        for row in &rows {
            let count: i64 = row.try_get("count")?;
            by_category.insert(row.try_get("category")?, u64::try_from(count).unwrap_or(0));
        }
        let index = self.inner.state.index_read();
        Ok(StatsResponse {
            engrams: by_category.values().sum(),
            by_category,
            index_vectors: index.len() as u64,
            index_bytes: index.bytes() as u64,
            approximate: index.is_approximate(),
            embedder: self.inner.config.embedder.id().to_string(),
            dimension: self.inner.config.embedder.dimension() as u32,
        })
    }

    /// Returns how much is stored and how the writer fares; cheap enough for every report.
    pub fn counts(&self) -> MemoryCounts {
        let state = &self.inner.state;
        let (index_vectors, index_bytes) = {
            let index = state.index_read();
            (index.len(), index.bytes())
        };
        MemoryCounts {
            engrams: state.rows(),
            index_vectors,
            index_bytes,
            write_queue: self.inner.writer.queued(),
            writing: state.writing.load(Ordering::Relaxed),
            write_batches: state.batches.load(Ordering::Relaxed),
            rejected_writes: state.rejected_writes.load(Ordering::Relaxed),
            busy_retries: state.busy_retries.load(Ordering::Relaxed),
            dropped_access_records: state.dropped_access_records.load(Ordering::Relaxed),
        }
    }

    /// Lets the queued changes commit, closes the database pools and lets go of the
    /// database file (another process may open it then); every later call on any clone
    /// fails.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.stop_checkpoints.cancel();
        let checkpointer = self
            .inner
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(checkpointer) = checkpointer {
            let _ = checkpointer.await;
        }
        self.inner.pools.checkpoint.close().await;
        self.inner.pools.write.close().await;
        self.inner.pools.read.close().await;
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Runs `valid`'s query on the index, on the blocking pool when the index is large.
    async fn find(&self, valid: ValidSearch) -> Result<Vec<IndexHit>, MemoryError> {
        let vector = match valid.probe {
            Probe::Vector(vector) => vector,
            Probe::Text(text) => self.embed("query", &text).await?,
        };
        let scoring = match valid.hybrid {
            None => Scoring::Semantic,
            Some(settings) => Scoring::Hybrid {
                similarity_weight: settings.similarity_weight,
                recency_weight: settings.recency_weight,
                importance_weight: settings.importance_weight,
                half_life_ms: settings.half_life_hours * 3_600_000.0,
                now_ms: now_unix_ms(),
            },
        };
        let search = move |state: &SharedState| {
            state.index_read().search(&IndexQuery {
                vector: &vector,
                limit: valid.limit,
                min_similarity: valid.min_similarity,
                filter: valid.filter,
                scoring,
            })
        };
        if self.inner.state.index_read().len() <= INLINE_SEARCH_ROWS {
            return Ok(search(&self.inner.state));
        }
        let state = self.inner.state.clone();
        tokio::task::spawn_blocking(move || search(&state))
            .await
            .map_err(|_| MemoryError::ShuttingDown)
    }

    /// The vector of `text` (the request's `field`); a zero vector, which no search could
    /// ever find, is refused.
    async fn embed(&self, field: &'static str, text: &str) -> Result<Vec<f32>, MemoryError> {
        let embedder = self.inner.config.embedder.as_ref();
        if !embedder.embeds_text() {
            return Err(MemoryError::VectorsRequired {
                field: if field == "query" {
                    "query_vector"
                } else {
                    "embedding"
                },
                embedder: embedder.id().to_string(),
                dimension: embedder.dimension(),
            });
        }
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
}

impl Inner {
    fn capacity_reached(&self) -> MemoryError {
        MemoryError::CapacityReached {
            limit: self.config.max_engrams,
        }
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
