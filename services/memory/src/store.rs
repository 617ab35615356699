//! The memory store: engrams in SQLite or PostgreSQL, their vectors in the in-memory index,
//! kept in step by the one writer task (and, with PostgreSQL, by other processes' notices).

use crate::config::MemoryConfig;
use crate::database::{
    self, engram_from_row, now_unix_ms, on_connection, push_id_filter, Connection, MemoryDatabase,
    Pools, ENGRAM_COLUMNS,
};
use crate::embedder::embed_checked;
use crate::error::MemoryError;
use crate::index::{Filter, IndexHit, IndexQuery, Scoring};
use crate::peer_changes::{Announcer, IndexSource};
use crate::shared_state::SharedState;
use crate::validate::{self, Probe, ValidSearch, ValidStore};
use crate::writer::{Change, Outcome, Writer, WriterLimits};
use mimo_proto::v1::{
    Engram, ListRequest, ListResponse, SearchHit, SearchRequest, SearchResponse, StatsResponse,
    StoreRequest, UpdateRequest,
};
use sqlx::{QueryBuilder, Row};
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
    /// Connections in the read pool, and of them idle.
    pub read_pool: (u32, usize),
    /// Connections the read pool may open.
    pub read_pool_max: u32,
    /// Read connections acquired since start, and the microseconds waited for them.
    pub read_waits: (u64, u64),
    /// Longest wait for a read connection since the previous `counts` (the reporter's
    /// previous report), in microseconds.
    pub longest_read_wait_micros: u64,
    /// Bytes of the database file and its write-ahead log.
    pub database_bytes: u64,
    /// Engrams forgotten by decay since start.
    pub forgotten: u64,
    /// Entries in working memory.
    pub working_entries: usize,
}

/// A handle to the memory; clones share one database, one writer and one index.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: MemoryConfig,
    /// This process's hold on the database, released when the store closes or goes.
    lock: std::sync::Mutex<Option<Hold>>,
    pools: Pools,
    state: Arc<SharedState>,
    writer: Arc<Writer>,
    /// Short-term entries.
    working: crate::working::WorkingMemory,
    /// Waits for read connections.
    read_waits: crate::pool_stats::PoolWaits,
    /// Engrams of other embedders, when there are any: searches and stores are refused.
    foreign_embedders: Vec<String>,
    /// Stops the background tasks: SQLite's checkpointer, PostgreSQL's listener.
    stop_background: tokio_util::sync::CancellationToken,
    background: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What keeps other processes from using the database in a way this one cannot share it.
pub(crate) enum Hold {
    /// SQLite: this process alone.
    File(crate::instance_lock::InstanceLock),
    /// PostgreSQL: beside other memories, but never beside a re-embedding.
    Shared(crate::postgres_lock::AdvisoryLock),
}

/// Opens the memory in `config.database`: for SQLite, creates the file and its directories
/// when missing; applies migrations, rebuilds the search index from the stored embeddings
/// and starts the writer (and, for PostgreSQL, the listener for other processes' changes).
pub async fn open(mut config: MemoryConfig) -> Result<MemoryStore, MemoryError> {
    let started = Instant::now();
    if let Some(batch) = config.embedder.gathers_texts() {
        config.embedder = Arc::new(crate::gathering_embedder::GatheringEmbedder::start(
            config.embedder.clone(),
            batch,
        ));
    }
    tracing::info!(database = %config.database, embedder = config.embedder.id(), "opening memory");
    let lock = hold(&config.database, crate::postgres_lock::Mode::Shared).await?;
    let pools = database::connect(&config).await?;
    let foreign_embedders =
        crate::embedder_check::foreign_embedders(&pools.read, config.embedder.as_ref()).await?;
    if !foreign_embedders.is_empty() {
        tracing::error!(
            found = %foreign_embedders.join(", "),
            embedder = config.embedder.id(),
            "engrams of another embedder: searches and stores are refused until `mimo memory reembed`"
        );
    }
    // Other processes' changes are listened for before the index is read, so that none
    // falls between the two.
    let listening = match &config.database {
        MemoryDatabase::Postgres(url) => {
            let pool = database::postgres::listen_pool(url).await?;
            let listener = crate::peer_changes::listen_on(&pool).await?;
            Some((pool, listener))
        }
        MemoryDatabase::Sqlite(_) => None,
    };
    let source = IndexSource {
        read: pools.read.clone(),
        embedder: config.embedder.clone(),
        approximate: config.approximate,
        int8_scan: config.int8_scan,
    };
    let (index, engrams) = source.build().await?;
    tracing::info!(
        database = %config.database,
        engrams,
        indexed = index.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "memory open"
    );
    let state = Arc::new(SharedState::new(index, engrams));
    let instance = uuid::Uuid::now_v7();
    let shared = matches!(config.database, MemoryDatabase::Postgres(_));
    let writer = Arc::new(Writer::start(
        pools.write.clone(),
        state.clone(),
        WriterLimits {
            queue: config.write_queue,
            batch: config.write_batch,
            max_engrams: config.max_engrams,
        },
        shared.then(|| Announcer { instance, source }),
    ));
    let stop_background = tokio_util::sync::CancellationToken::new();
    let background = match (listening, &pools) {
        (
            _,
            Pools {
                checkpoint: Some(checkpoint),
                ..
            },
        ) => crate::checkpointer::start(checkpoint.clone(), stop_background.clone()),
        (
            Some((listen, listener)),
            Pools {
                read: database::Pool::Postgres(read),
                ..
            },
        ) => crate::peer_changes::start(crate::peer_changes::Listening {
            listen,
            listener,
            read: read.clone(),
            instance,
            embedder: config.embedder.clone(),
            writer: writer.clone(),
            state: state.clone(),
            stop: stop_background.clone(),
        }),
        _ => tokio::spawn(async {}),
    };
    Ok(MemoryStore {
        inner: Arc::new(Inner {
            lock: std::sync::Mutex::new(Some(lock)),
            config,
            pools,
            state,
            writer,
            foreign_embedders,
            read_waits: Default::default(),
            working: Default::default(),
            stop_background,
            background: std::sync::Mutex::new(Some(background)),
        }),
    })
}

impl Hold {
    /// Lets go of the database.
    pub(crate) async fn release(self) {
        match self {
            Hold::File(lock) => drop(lock),
            Hold::Shared(lock) => lock.release().await,
        }
    }
}

/// Takes `database`'s hold: SQLite's instance lock (creating the file's folder first), or a
/// PostgreSQL advisory lock in `mode`.
pub(crate) async fn hold(
    database: &MemoryDatabase,
    mode: crate::postgres_lock::Mode,
) -> Result<Hold, MemoryError> {
    match database {
        MemoryDatabase::Sqlite(path) => {
            ensure_parent(path).await?;
            Ok(Hold::File(crate::instance_lock::acquire(path)?))
        }
        MemoryDatabase::Postgres(url) => {
            let options = database::postgres::options(url)?;
            let shown = database.to_string();
            Ok(Hold::Shared(
                crate::postgres_lock::AdvisoryLock::acquire(&options, &shown, mode).await?,
            ))
        }
    }
}

/// Bytes of the database file and its WAL on disk (0 for what cannot be read).
fn database_bytes(path: &std::path::Path) -> u64 {
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(std::path::Path::new(&wal))
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
    /// Stores a new engram and makes it searchable; returns it as stored, once committed
    /// (or, for a near-duplicate, the engram it reinforced).
    pub async fn store(&self, request: StoreRequest) -> Result<Engram, MemoryError> {
        Ok(self.store_or_reinforce(request).await?.0)
    }

    /// [`MemoryStore::store`], saying whether an existing engram was reinforced instead.
    pub async fn store_or_reinforce(
        &self,
        request: StoreRequest,
    ) -> Result<(Engram, bool), MemoryError> {
        let valid = self.check_store(request)?;
        self.store_valid(valid).await
    }

    /// Checks a Store request, doing no work yet.
    pub(crate) fn check_store(&self, request: StoreRequest) -> Result<ValidStore, MemoryError> {
        self.inner.check_embedder()?;
        validate::store(&self.inner.config, request)
    }

    /// Stores a checked request, or reinforces its near-duplicate.
    pub(crate) async fn store_valid(
        &self,
        mut valid: ValidStore,
    ) -> Result<(Engram, bool), MemoryError> {
        if self.inner.state.rows() >= self.inner.config.max_engrams {
            return Err(self.inner.capacity_reached());
        }
        let vector = match valid.embedding.take() {
            Some(vector) => vector,
            None => self.embed("content", &valid.content).await?,
        };
        let now = now_unix_ms();
        if let Some(reinforced) = self.reinforce_duplicate(&valid, &vector, now).await? {
            return Ok((reinforced, true));
        }
        let (category, protected) = (valid.category, valid.protected);
        let engram = valid.into_engram(self.inner.config.embedder.as_ref(), now);
        self.inner
            .writer
            .apply(Change::Insert {
                engram: engram.clone(),
                category,
                protected,
                vector,
            })
            .await?;
        tracing::debug!(engram = %engram.id, bytes = engram.content.len(), "engram stored");
        Ok((engram, false))
    }

    /// Reinforces the engram of `valid`'s category nearest to `vector` when it is a
    /// near-duplicate; returns it as reinforced.
    async fn reinforce_duplicate(
        &self,
        valid: &ValidStore,
        vector: &[f32],
        now: i64,
    ) -> Result<Option<Engram>, MemoryError> {
        if valid.allow_duplicate || !self.inner.config.reinforce_duplicates {
            return Ok(None);
        }
        let threshold = self.inner.config.effective_duplicate_threshold();
        let nearest = self
            .run_on_index(IndexQuery {
                vector,
                limit: 1,
                min_similarity: threshold,
                filter: Filter {
                    category: Some(valid.category),
                    ..Filter::default()
                },
                scoring: Scoring::Semantic,
            })
            .await?;
        let Some(nearest) = nearest.first() else {
            return Ok(None);
        };
        let id = uuid::Uuid::from_u128(nearest.key).to_string();
        let change = Change::Reinforce {
            id: id.clone(),
            importance: valid.importance,
            now,
        };
        match self.inner.writer.apply(change).await {
            Ok(Outcome::Updated(engram)) => {
                tracing::debug!(engram = %id, similarity = nearest.similarity, "near-duplicate reinforced");
                Ok(Some(engram))
            }
            // Deleted since the search: store the new one after all.
            Err(MemoryError::NotFound(_)) | Ok(Outcome::Done | Outcome::Refreshed(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Returns the engrams most similar to the request's query, best score first, and
    /// records that they were accessed.
    pub async fn search(&self, request: SearchRequest) -> Result<Vec<SearchHit>, MemoryError> {
        Ok(self.search_response(request).await?.hits)
    }

    /// [`MemoryStore::search`] as the Search RPC answers: the hits within the answer's size
    /// bound, and whether some were left out (those are not counted as accessed).
    pub async fn search_response(
        &self,
        request: SearchRequest,
    ) -> Result<SearchResponse, MemoryError> {
        self.inner.check_embedder()?;
        let valid = validate::search(&self.inner.config, request)?;
        let (limit, min_similarity, filter) = (valid.limit, valid.min_similarity, valid.filter);
        let include_working = valid.include_working;
        let (found, vector, scoring) = self.find(valid).await?;
        let working = if include_working {
            let query = IndexQuery {
                vector: &vector,
                limit,
                min_similarity,
                filter,
                scoring,
            };
            let now = tokio::time::Instant::now();
            self.inner.working.search(&query, now, now_unix_ms())
        } else {
            Vec::new()
        };
        let mut hits = self.long_term_hits(found).await?;
        if !working.is_empty() {
            hits.extend(
                working
                    .into_iter()
                    .map(|(similarity, score, engram)| SearchHit {
                        engram: Some(engram),
                        similarity,
                        score,
                        working: true,
                    }),
            );
            hits.sort_by(|a, b| b.score.total_cmp(&a.score));
            hits.truncate(limit);
        }
        let truncated = crate::response_size::fit(&mut hits);
        self.record_access(&hits);
        Ok(SearchResponse { hits, truncated })
    }

    /// Has the writer record the access of the long-term `hits`, after the answer, so that
    /// a search never waits for a commit (the hits already show the new time and count).
    fn record_access(&self, hits: &[SearchHit]) {
        let ids: Vec<String> = hits
            .iter()
            .filter(|hit| !hit.working)
            .filter_map(|hit| hit.engram.as_ref().map(|engram| engram.id.clone()))
            .collect();
        if ids.is_empty() {
            return;
        }
        let now = now_unix_ms();
        if !self.inner.writer.offer(Change::Touch { ids, now }) {
            self.inner
                .state
                .dropped_access_records
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("write queue full: this search's access times are not recorded");
        }
    }

    /// The engrams of `found`, read from the table, showing this access.
    async fn long_term_hits(&self, found: Vec<IndexHit>) -> Result<Vec<SearchHit>, MemoryError> {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = found
            .iter()
            .map(|hit| uuid::Uuid::from_u128(hit.key).to_string())
            .collect();
        let mut engrams = HashMap::with_capacity(ids.len());
        on_connection!(&mut self.inner.read().await?, |connection, Db| {
            let mut select =
                QueryBuilder::<Db>::new(format!("SELECT {ENGRAM_COLUMNS} FROM engrams"));
            push_id_filter(&mut select, &ids);
            for row in &select.build().fetch_all(&mut *connection).await? {
                let engram = engram_from_row(row)?;
                engrams.insert(engram.id.clone(), engram);
            }
        });
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
                    working: false,
                })
            })
            .collect();
        Ok(hits)
    }

    /// Returns the engram with `id`.
    pub async fn get(&self, id: &str) -> Result<Engram, MemoryError> {
        validate::id(id)?;
        let engram = on_connection!(&mut self.inner.read().await?, |connection, Db| {
            let statement = format!("SELECT {ENGRAM_COLUMNS} FROM engrams WHERE id = $1");
            match sqlx::query(&statement)
                .bind(id)
                .fetch_optional(&mut *connection)
                .await?
            {
                Some(row) => Some(engram_from_row(&row)?),
                None => None,
            }
        });
        engram.ok_or_else(|| MemoryError::NotFound(id.to_string()))
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
            Outcome::Done | Outcome::Refreshed(_) => Err(MemoryError::ShuttingDown),
        }
    }

    /// A page of engrams in the request's order.
    pub async fn list(&self, request: ListRequest) -> Result<ListResponse, MemoryError> {
        crate::list::list(&mut self.inner.read().await?, request).await
    }

    /// A read connection, its wait recorded for telemetry.
    pub(crate) async fn read_connection(&self) -> Result<Connection, MemoryError> {
        self.inner.read().await
    }

    /// Working memory.
    pub(crate) fn working(&self) -> &crate::working::WorkingMemory {
        &self.inner.working
    }

    /// Working memory's settings.
    pub(crate) fn working_settings(&self) -> crate::working::WorkingSettings {
        self.inner.config.working
    }

    /// The memory's embedder.
    pub(crate) fn embedder(&self) -> &dyn crate::embedder::Embedder {
        self.inner.config.embedder.as_ref()
    }

    /// The configured decay settings.
    pub(crate) fn decay_settings(&self) -> crate::decay::DecaySettings {
        self.inner.config.decay
    }

    /// Counts one engram forgotten by decay.
    pub(crate) fn count_forgotten(&self) {
        self.inner.state.forgotten.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts by category, the index's size and the embedder.
    pub async fn stats(&self) -> Result<StatsResponse, MemoryError> {
        let mut by_category = HashMap::new();
        on_connection!(&mut self.inner.read().await?, |connection, Db| {
            let statement = "SELECT category, COUNT(*) AS count FROM engrams GROUP BY category";
            for row in &sqlx::query(statement).fetch_all(&mut *connection).await? {
                let count: i64 = row.try_get("count")?;
                by_category.insert(row.try_get("category")?, u64::try_from(count).unwrap_or(0));
            }
        });
        let index = self.inner.state.index_read();
        Ok(StatsResponse {
            engrams: by_category.values().sum(),
            by_category,
            index_vectors: index.len() as u64,
            index_bytes: index.bytes() as u64,
            approximate: index.is_approximate(),
            working_entries: self.inner.working.len() as u64,
            embeds_text: self.inner.config.embedder.embeds_text(),
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
            read_pool: (
                self.inner.pools.read.size(),
                self.inner.pools.read.num_idle(),
            ),
            read_pool_max: self.inner.config.read_connections.max(1),
            read_waits: (
                self.inner.read_waits.acquisitions(),
                self.inner.read_waits.total_micros(),
            ),
            longest_read_wait_micros: self.inner.read_waits.take_longest_micros(),
            database_bytes: match &self.inner.config.database {
                MemoryDatabase::Sqlite(path) => database_bytes(path),
                MemoryDatabase::Postgres(_) => state.database_bytes.load(Ordering::Relaxed),
            },
            forgotten: state.forgotten.load(Ordering::Relaxed),
            working_entries: self.inner.working.len(),
        }
    }

    /// Lets the queued changes commit, closes the database pools and lets go of the
    /// database (another process may open a SQLite file then); every later call on any
    /// clone fails.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.stop_background.cancel();
        let background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(background) = background {
            let _ = background.await;
        }
        self.inner.pools.close().await;
        let hold = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hold) = hold {
            hold.release().await;
        }
    }

    /// Runs `valid`'s query on the index, on the blocking pool when the index is large.
    /// Also returns the query's vector and scoring.
    async fn find(
        &self,
        valid: ValidSearch,
    ) -> Result<(Vec<IndexHit>, Vec<f32>, Scoring), MemoryError> {
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
        let found = self
            .run_on_index(IndexQuery {
                vector: &vector,
                limit: valid.limit,
                min_similarity: valid.min_similarity,
                filter: valid.filter,
                scoring,
            })
            .await?;
        Ok((found, vector, scoring))
    }

    /// Runs `query` on the index: on this task when the index is small or approximate, on
    /// the blocking pool (and from there over every core) when a large one is scanned.
    async fn run_on_index(&self, query: IndexQuery<'_>) -> Result<Vec<IndexHit>, MemoryError> {
        {
            let index = self.inner.state.index_read();
            if index.len() <= INLINE_SEARCH_ROWS || index.is_approximate() {
                return Ok(index.search(&query));
            }
        }
        let state = self.inner.state.clone();
        let vector = query.vector.to_vec();
        let IndexQuery {
            limit,
            min_similarity,
            filter,
            scoring,
            ..
        } = query;
        tokio::task::spawn_blocking(move || {
            state.index_read().search(&IndexQuery {
                vector: &vector,
                limit,
                min_similarity,
                filter,
                scoring,
            })
        })
        .await
        .map_err(|_| MemoryError::ShuttingDown)
    }

    /// The vector of `text` (the request's `field`); a zero vector, which no search could
    /// ever find, is refused.
    pub(crate) async fn embed(
        &self,
        field: &'static str,
        text: &str,
    ) -> Result<Vec<f32>, MemoryError> {
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
    /// A read connection, its wait recorded for telemetry.
    async fn read(&self) -> Result<Connection, MemoryError> {
        crate::pool_stats::timed_read(&self.pools.read, &self.read_waits).await
    }

    /// Refuses when engrams of another embedder are stored.
    fn check_embedder(&self) -> Result<(), MemoryError> {
        // On every search and store: no allocation unless refusing.
        let seen = self
            .state
            .foreign_embedders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.foreign_embedders.is_empty() && seen.is_empty() {
            return Ok(());
        }
        let all: Vec<String> = self
            .foreign_embedders
            .iter()
            .chain(seen.iter())
            .cloned()
            .collect();
        Err(crate::embedder_check::mismatch(
            self.config.embedder.as_ref(),
            &all,
        ))
    }

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
            .field("database", &self.inner.config.database)
            .field("counts", &self.counts())
            .finish()
    }
}
