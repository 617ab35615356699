//! Memory settings: where the database lives, which embedder indexes it, and the limits.

use crate::database::MemoryDatabase;
use crate::decay::DecaySettings;
use crate::embedder::Embedder;
use crate::hash_embedder::HashEmbedder;
use crate::index::ApproximateSettings;
use crate::working::WorkingSettings;
use std::fmt;
use std::sync::Arc;

/// Where the memory lives and the limits it enforces.
#[derive(Clone)]
pub struct MemoryConfig {
    /// The database: a SQLite file (created with its parent directories when missing) or
    /// a PostgreSQL URL.
    pub database: MemoryDatabase,
    /// Turns texts into normalised vectors; only engrams embedded by it are searchable.
    pub embedder: Arc<dyn Embedder>,
    /// Largest engram content, in bytes (UTF-8).
    pub max_content_bytes: usize,
    /// Largest metadata JSON text, in bytes.
    pub max_metadata_bytes: usize,
    /// Most engrams held at once; the index costs `4 * dimension` bytes per engram (8 KiB
    /// with the built-in embedder, so about 820 MB at the default limit).
    pub max_engrams: usize,
    /// Hits returned when a search names no limit.
    pub default_search_limit: u32,
    /// Largest limit a search may ask for.
    pub max_search_limit: u32,
    /// Minimum similarity applied when a search names none; `None` takes the embedder's
    /// [`Embedder::default_min_similarity`], since each embedder scores on its own scale.
    pub default_min_similarity: Option<f32>,
    /// Connections in the read pool (the writer has one of its own).
    pub read_connections: u32,
    /// Hybrid scoring's weights when a search gives none.
    pub hybrid: HybridSettings,
    /// Changes waiting for the writer at most; a store beyond it waits, then is refused.
    pub write_queue: usize,
    /// Most changes the writer commits in one transaction.
    pub write_batch: usize,
    /// Whether a store whose vector is nearly that of an engram of its category reinforces
    /// that engram instead of adding a copy.
    pub reinforce_duplicates: bool,
    /// The similarity from which a store is a near-duplicate; `None` takes the embedder's
    /// [`Embedder::default_duplicate_threshold`].
    pub duplicate_threshold: Option<f32>,
    /// Working memory's capacity, time-to-live and what it keeps.
    pub working: WorkingSettings,
    /// Decay of unimportant, unused engrams (passes run only when asked unless an interval
    /// is set).
    pub decay: DecaySettings,
    /// Exact-size scans read an int8 copy of the vectors (a quarter of the bytes, 25% more
    /// memory) and re-rank their best candidates by exact similarity.
    pub int8_scan: bool,
    /// The HNSW graph's settings, or `None` to search exactly at every size.
    pub approximate: Option<ApproximateSettings>,
    /// How long one write transaction waits for a lock another program holds on the file;
    /// the writer tries five times, backing off, before answering UNAVAILABLE.
    pub busy_timeout: std::time::Duration,
}

/// The weights of hybrid scoring: `similarity * s + recency * r + importance * i`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridSettings {
    /// Weight of the cosine similarity.
    pub similarity_weight: f32,
    /// Weight of recency (1.0 when accessed now, halving every half-life).
    pub recency_weight: f32,
    /// Weight of the engram's importance.
    pub importance_weight: f32,
    /// Hours for recency to halve.
    pub half_life_hours: f64,
}

impl Default for HybridSettings {
    fn default() -> Self {
        Self {
            similarity_weight: 0.6,
            recency_weight: 0.2,
            importance_weight: 0.2,
            half_life_hours: 24.0,
        }
    }
}

impl MemoryConfig {
    /// Returns the default limits and the built-in [`HashEmbedder`] for `database` (a
    /// SQLite file's path, or a [`MemoryDatabase`]).
    pub fn new(database: impl Into<MemoryDatabase>) -> Self {
        Self {
            database: database.into(),
            embedder: Arc::new(HashEmbedder::new()),
            max_content_bytes: 102_400,
            max_metadata_bytes: 65_536,
            max_engrams: 100_000,
            default_search_limit: 10,
            max_search_limit: 1000,
            default_min_similarity: None,
            read_connections: 4,
            hybrid: HybridSettings::default(),
            write_queue: 10_000,
            write_batch: 512,
            busy_timeout: std::time::Duration::from_secs(1),
            approximate: Some(ApproximateSettings::default()),
            int8_scan: false,
            reinforce_duplicates: true,
            duplicate_threshold: None,
            decay: DecaySettings::default(),
            working: WorkingSettings::default(),
        }
    }

    /// The minimum similarity of a search that names none.
    pub fn effective_min_similarity(&self) -> f32 {
        self.default_min_similarity
            .unwrap_or_else(|| self.embedder.default_min_similarity())
    }

    /// The near-duplicate threshold in force.
    pub fn effective_duplicate_threshold(&self) -> f32 {
        self.duplicate_threshold
            .unwrap_or_else(|| self.embedder.default_duplicate_threshold())
    }

    /// Returns this configuration with `embedder` in place of the current one.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = embedder;
        self
    }
}

impl fmt::Debug for MemoryConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("MemoryConfig")
            .field("database", &self.database)
            .field("embedder", &self.embedder.id())
            .field("dimension", &self.embedder.dimension())
            .field("max_content_bytes", &self.max_content_bytes)
            .field("max_metadata_bytes", &self.max_metadata_bytes)
            .field("max_engrams", &self.max_engrams)
            .field("default_search_limit", &self.default_search_limit)
            .field("max_search_limit", &self.max_search_limit)
            .field("default_min_similarity", &self.effective_min_similarity())
            .field("read_connections", &self.read_connections)
            .field("hybrid", &self.hybrid)
            .field("write_queue", &self.write_queue)
            .field("write_batch", &self.write_batch)
            .field("busy_timeout", &self.busy_timeout)
            .field("approximate", &self.approximate)
            .field("int8_scan", &self.int8_scan)
            .field("reinforce_duplicates", &self.reinforce_duplicates)
            .field("duplicate_threshold", &self.effective_duplicate_threshold())
            .field("decay", &self.decay)
            .field("working", &self.working)
            .finish()
    }
}
