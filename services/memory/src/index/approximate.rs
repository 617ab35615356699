//! The approximate side of the index: an HNSW graph (USearch) over the same rows as the
//! exact buffer, keyed by row slot. By default the graph holds no vectors of its own: each
//! node's "vector" is its slot number, scored with the exact buffer's f32 values by a custom
//! metric (no second copy, exact distances while walking). It may instead hold int8 copies
//! (faster to walk, coarser). It proposes candidates; the exact buffer re-ranks them, so
//! every similarity reported is exact.

use super::shared_buffer::{prefetch_rows_of, slot_code, QueryGuard, SharedBuffer, QUERY_CODE};
use std::fmt;
use std::sync::Arc;

/// How the approximate index is built and searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApproximateSettings {
    /// The graph is built, and searched, once the index holds this many vectors (and
    /// dropped again below half of it); smaller indexes are searched exactly.
    pub min_vectors: usize,
    /// Links per node (HNSW's M).
    pub connectivity: usize,
    /// Candidates kept while inserting (ef_construction).
    pub expansion_add: usize,
    /// Candidates kept while searching (ef); raise it for recall, lower it for speed.
    pub expansion_search: usize,
    /// What the graph compares while it is built and walked.
    pub vectors: GraphVectors,
}

/// The vectors an HNSW graph compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphVectors {
    /// The exact f32 buffer itself, read through a custom metric: no copy, and exact
    /// distances while walking (on all-MiniLM-L6-v2 embeddings, recall@10 0.98 where int8
    /// codes give 0.83 at the same breadth), but four times int8's bytes read at random.
    SharedBuffer,
    /// An int8 copy inside the graph: `dimension` more bytes a row; faster, coarser.
    Int8Copy,
}

impl GraphVectors {
    /// Candidates taken from the graph per hit asked for (and at least), re-ranked exactly:
    /// more for coarser codes, so that the exact answer is among them.
    pub(crate) fn candidates(self, limit: usize) -> usize {
        match self {
            Self::Int8Copy => (limit * 4).max(40),
            Self::SharedBuffer => (limit * 2).max(20),
        }
    }
}

impl Default for ApproximateSettings {
    fn default() -> Self {
        Self {
            min_vectors: 100_000,
            connectivity: 16,
            // At 1M x 384 (BENCHMARKS.md): ef_add 200 with ef 128 gives recall@10 0.99 at a
            // 0.7 ms median; ef 64 falls to 0.93.
            expansion_add: 200,
            expansion_search: 128,
            vectors: GraphVectors::SharedBuffer,
        }
    }
}

/// Why the graph could not be made or changed.
#[derive(Debug, thiserror::Error)]
#[error("approximate index: {0}")]
pub struct ApproximateError(String);

/// The graph's own error, as text.
fn failed(error: impl fmt::Display) -> ApproximateError {
    ApproximateError(error.to_string())
}

/// The HNSW graph, keyed by row slot.
pub(crate) struct Approximate {
    graph: usearch::Index,
    settings: ApproximateSettings,
    /// Where a shared-buffer graph reads its vectors; `None` for a graph with its own copy.
    shared: Option<Arc<SharedBuffer>>,
}

impl Approximate {
    /// An empty graph of `dimension`-long unit vectors, room for `capacity`.
    pub(crate) fn new(
        dimension: usize,
        settings: ApproximateSettings,
        capacity: usize,
    ) -> Result<Self, ApproximateError> {
        let shared = settings.vectors == GraphVectors::SharedBuffer;
        let (dimensions, metric, quantization) = match settings.vectors {
            GraphVectors::Int8Copy => (dimension, usearch::MetricKind::IP, usearch::ScalarKind::I8),
            GraphVectors::SharedBuffer => (1, usearch::MetricKind::IP, usearch::ScalarKind::F32),
        };
        let mut graph = usearch::Index::new(&usearch::IndexOptions {
            dimensions,
            metric,
            quantization,
            connectivity: settings.connectivity,
            expansion_add: settings.expansion_add,
            expansion_search: settings.expansion_search,
            multi: false,
        })
        .map_err(failed)?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        graph
            .reserve_capacity_and_threads(capacity.max(1024), threads)
            .map_err(failed)?;
        let shared = shared.then(|| {
            let buffer = Arc::new(SharedBuffer::new(dimension));
            let metric = Arc::clone(&buffer);
            graph.change_metric::<f32>(Box::new(move |left, right| metric.distance(left, right)));
            // The buffer outlives the graph: both are held by `Self`, the graph dropped first.
            prefetch_rows_of(&graph, &buffer);
            buffer
        });
        Ok(Self {
            graph,
            settings,
            shared,
        })
    }

    /// Registers the exact buffer's current allocation, of `dimension`-long rows; call after
    /// every change of it and before the graph is next used.
    pub(crate) fn track(&self, vectors: &[f32]) {
        if let Some(shared) = &self.shared {
            shared.track(vectors);
        }
    }

    /// Its settings.
    pub(crate) fn settings(&self) -> &ApproximateSettings {
        &self.settings
    }

    /// Adds (or replaces) the vector of `slot`; safe to call from several threads at once
    /// when the capacity was reserved.
    pub(crate) fn put(&self, slot: usize, vector: &[f32]) -> Result<(), ApproximateError> {
        let key = slot as u64;
        if self.graph.contains(key) {
            self.graph.remove(key).map_err(failed)?;
        }
        if self.graph.size() + 1 > self.graph.capacity() {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            self.graph
                .reserve_capacity_and_threads((self.graph.capacity() * 2).max(1024), threads)
                .map_err(failed)?;
        }
        match self.settings.vectors {
            GraphVectors::Int8Copy => self.graph.add(key, vector),
            GraphVectors::SharedBuffer => {
                let code = slot_code(slot).ok_or_else(|| {
                    ApproximateError(format!("slot {slot} is beyond the graph's 2^31"))
                })?;
                self.graph.add(key, &code)
            }
        }
        .map_err(failed)?;
        Ok(())
    }

    /// Removes the vector of `slot`, if held.
    pub(crate) fn remove(&self, slot: usize) -> Result<(), ApproximateError> {
        self.graph.remove(slot as u64).map_err(failed)?;
        Ok(())
    }

    /// Up to `count` slots near `query` that pass `admits`, nearest first.
    pub(crate) fn candidates(
        &self,
        query: &[f32],
        count: usize,
        admits: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<usize>, ApproximateError> {
        let matches = match self.settings.vectors {
            GraphVectors::Int8Copy => self.search(query, count, admits),
            GraphVectors::SharedBuffer => {
                let _query = QueryGuard::set(query);
                self.search(&[f32::from_bits(QUERY_CODE)], count, admits)
            }
        }?;
        Ok(matches.keys.into_iter().map(|key| key as usize).collect())
    }

    /// The graph's `count` nearest keys to `query` (in the graph's own terms) that pass
    /// `admits` (all, without one: a filtered search asks the filter about every candidate).
    fn search<T: usearch::VectorType>(
        &self,
        query: &[T],
        count: usize,
        admits: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<usearch::ffi::Matches, ApproximateError> {
        match admits {
            Some(admits) => self
                .graph
                .filtered_search(query, count, |key: u64| admits(key as usize)),
            None => self.graph.search(query, count),
        }
        .map_err(failed)
    }

    /// Changes how many candidates a search keeps (ef).
    pub(crate) fn set_expansion_search(&mut self, expansion: usize) {
        self.settings.expansion_search = expansion;
        self.graph.change_expansion_search(expansion);
    }

    /// Bytes the graph holds.
    pub(crate) fn bytes(&self) -> usize {
        self.graph.memory_usage()
    }
}

impl fmt::Debug for Approximate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Approximate")
            .field("vectors", &self.graph.size())
            .field("settings", &self.settings)
            .finish()
    }
}
