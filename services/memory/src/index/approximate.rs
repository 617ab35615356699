//! The approximate side of the index: an HNSW graph (USearch) over the same rows as the
//! exact buffer, keyed by row slot, holding int8 (or f32) copies of the vectors. It proposes
//! candidates; the exact buffer re-ranks them, so every similarity reported is exact.

use std::fmt;

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
    /// Candidates taken from the graph per hit asked for, re-ranked exactly.
    pub candidates_per_hit: usize,
    /// Vectors held in the graph as int8 (4x smaller) rather than f32.
    pub int8: bool,
}

impl Default for ApproximateSettings {
    fn default() -> Self {
        Self {
            min_vectors: 100_000,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            candidates_per_hit: 4,
            int8: true,
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
}

impl Approximate {
    /// An empty graph of `dimension`-long unit vectors, room for `capacity`.
    pub(crate) fn new(
        dimension: usize,
        settings: ApproximateSettings,
        capacity: usize,
    ) -> Result<Self, ApproximateError> {
        let graph = usearch::Index::new(&usearch::IndexOptions {
            dimensions: dimension,
            metric: usearch::MetricKind::IP,
            quantization: if settings.int8 {
                usearch::ScalarKind::I8
            } else {
                usearch::ScalarKind::F32
            },
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
        Ok(Self { graph, settings })
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
        self.graph.add(key, vector).map_err(failed)?;
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
        let matches = match admits {
            None => self.graph.search(query, count).map_err(failed)?,
            Some(admits) => self
                .graph
                .filtered_search(query, count, |key: u64| admits(key as usize))
                .map_err(failed)?,
        };
        Ok(matches.keys.into_iter().map(|key| key as usize).collect())
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
