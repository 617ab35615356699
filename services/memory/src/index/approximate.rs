//! The approximate side of the index: an HNSW graph (USearch) over the same rows as the
//! exact buffer, keyed by row slot. By default the graph holds no vectors of its own: each
//! node refers to its row of the exact f32 buffer, which the graph measures in place (no
//! second copy, exact distances while walking). It may instead hold int8 copies (coarser).
//! It proposes candidates; the exact buffer re-ranks them, so every similarity reported is
//! exact.

use super::shared_buffer::{measure_rows_in_batches, measure_rows_with_own_dot, TrackedBuffer};
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
    /// What the graph compares while it is built and walked.
    pub vectors: GraphVectors,
}

/// The vectors an HNSW graph compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphVectors {
    /// The exact f32 buffer itself, each node referring to its row: no copy, and exact
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
    /// Where a shared-buffer graph's rows lie; `None` for a graph with its own copy.
    shared: Option<TrackedBuffer>,
}

impl Approximate {
    /// An empty graph of `dimension`-long unit vectors, room for `capacity`.
    pub(crate) fn new(
        dimension: usize,
        settings: ApproximateSettings,
        capacity: usize,
    ) -> Result<Self, ApproximateError> {
        let shared = settings.vectors == GraphVectors::SharedBuffer;
        let quantization = match settings.vectors {
            GraphVectors::Int8Copy => usearch::ScalarKind::I8,
            GraphVectors::SharedBuffer => usearch::ScalarKind::F32,
        };
        let mut graph = usearch::Index::new(&usearch::IndexOptions {
            dimensions: dimension,
            // 1 - the dot product: the cosine distance of unit vectors.
            metric: usearch::MetricKind::IP,
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
            measure_rows_with_own_dot(&mut graph, dimension);
            measure_rows_in_batches(&graph, dimension);
            TrackedBuffer::default()
        });
        Ok(Self {
            graph,
            settings,
            shared,
        })
    }

    /// Registers the exact buffer's current allocation (moving the graph's references to its
    /// rows if it moved); call after every change of it and before the graph is next used.
    ///
    /// # Safety
    /// `vectors` must be the buffer this graph's rows were taken from, moved or grown but
    /// never shrunk, and nothing may search or change the graph meanwhile.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn track(&self, vectors: &[f32]) {
        if let Some(shared) = &self.shared {
            // SAFETY: passed on from the caller.
            unsafe { shared.track(&self.graph, vectors) };
        }
    }

    /// Its settings.
    pub(crate) fn settings(&self) -> &ApproximateSettings {
        &self.settings
    }

    /// Adds (or replaces) the vector of `slot`, which must be its row of the buffer last
    /// registered with [`Approximate::track`] (a shared-buffer graph keeps its address); safe
    /// to call from several threads at once when the capacity was reserved.
    pub(crate) fn put(&self, slot: usize, row: &[f32]) -> Result<(), ApproximateError> {
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
        match &self.shared {
            None => self.graph.add(key, row),
            Some(shared) => {
                if !shared.holds(row) {
                    return Err(ApproximateError(format!(
                        "the row of slot {slot} is not in the registered buffer"
                    )));
                }
                // SAFETY: `row` lies in the registered buffer, which stays allocated (it only
                // grows, and `track` moves the graph's references when it moves) and whose
                // rows are written only while the index is borrowed mutably.
                #[allow(unsafe_code)]
                unsafe {
                    self.graph.add_by_reference(key, row)
                }
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
        let matches = match admits {
            Some(admits) => self
                .graph
                .filtered_search(query, count, |key: u64| admits(key as usize)),
            None => self.graph.search(query, count),
        }
        .map_err(failed)?;
        Ok(matches.keys.into_iter().map(|key| key as usize).collect())
    }

    /// The graph's own large blocks of memory, as start address and length in bytes (valid
    /// until it next grows).
    pub(crate) fn memory_regions(&self) -> Vec<(usize, usize)> {
        self.graph.memory_regions()
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
