//! The in-memory vector index: every searchable embedding in one contiguous buffer, searched
//! exactly by SIMD dot products (vectors are unit length, so the dot product is the cosine),
//! split over the cores when the index is large, with filters applied during the scan; and,
//! above a configurable size, an HNSW graph proposing candidates that the buffer re-ranks.
//!
//! Rows live in slots that never move: a removed row's slot is reused by the next insert, so
//! the graph can be keyed by slot.

mod approximate;
mod huge_pages;
mod quantized;
mod query;
mod shared_buffer;
mod simd;
mod top_k;

pub use approximate::{ApproximateError, ApproximateSettings, GraphVectors};
pub use query::{Filter, IndexQuery, RowFacts, Scoring};
pub(crate) use simd::dot;
use simd::prefetch;

use approximate::Approximate;
use quantized::Quantized;
use rayon::prelude::*;
use std::collections::HashMap;
use top_k::{Scored, TopK};

/// Rows scanned by one task; smaller indexes are scanned on the calling thread.
const ROWS_PER_TASK: usize = 16_384;
/// Rows asked for ahead of the one being re-ranked.
const PREFETCH_AHEAD: usize = 4;
/// Candidates of an int8 scan re-ranked exactly, per hit asked for, and at least.
const INT8_CANDIDATES_PER_HIT: usize = 8;
const INT8_MIN_CANDIDATES: usize = 64;

/// One result of [`VectorIndex::search`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexHit {
    /// The engram's id as a number (`uuid::Uuid::from_u128`).
    pub key: u128,
    /// Cosine similarity, -1.0 ..= 1.0.
    pub similarity: f32,
    /// The final score the hits are ordered by.
    pub score: f32,
}

/// Vectors of one dimension with their engrams' facts, in parallel arrays: the search engine
/// behind [`crate::MemoryStore`], public for benchmarks and embedding in other programs.
#[derive(Debug)]
pub struct VectorIndex {
    dimension: usize,
    /// `facts.len() * dimension` values; slot `i` belongs to `facts[i]`.
    vectors: Vec<f32>,
    facts: Vec<RowFacts>,
    /// Whether each slot holds a row.
    alive: Vec<bool>,
    /// Slots freed by removals, reused first.
    free: Vec<usize>,
    positions: HashMap<u128, usize>,
    settings: Option<ApproximateSettings>,
    approximate: Option<Approximate>,
    /// The int8 copy scans read instead of the f32 buffer, when enabled.
    quantized: Option<Quantized>,
}

impl VectorIndex {
    /// Returns an empty index of `dimension`-long vectors, searched exactly.
    pub fn new(dimension: usize) -> Self {
        debug_assert!(dimension > 0);
        Self {
            dimension,
            vectors: Vec::new(),
            facts: Vec::new(),
            alive: Vec::new(),
            free: Vec::new(),
            positions: HashMap::new(),
            settings: None,
            approximate: None,
            quantized: None,
        }
    }

    /// Scans read the f32 buffer again; the int8 copy is freed.
    pub fn disable_int8(&mut self) {
        self.quantized = None;
    }

    /// From now on, scans read an int8 copy of the vectors (a quarter of the bytes) and
    /// re-rank their best candidates by exact similarity; costs `dimension + 4` bytes a row.
    pub fn enable_int8(&mut self) {
        let mut quantized = Quantized::new(self.dimension);
        quantized.reserve(self.facts.capacity());
        for (slot, vector) in self.vectors.chunks_exact(self.dimension).enumerate() {
            quantized.put(slot, vector);
        }
        self.quantized = Some(quantized);
    }

    /// From now on, keeps an HNSW graph whenever the index holds `settings.min_vectors`
    /// vectors or more (building it now if it does).
    pub fn enable_approximate(&mut self, settings: ApproximateSettings) {
        self.settings = Some(settings);
        self.approximate = None;
        self.build_or_drop_graph();
    }

    /// Number of vectors held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether no vector is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Whether searches go through the HNSW graph.
    #[must_use]
    pub fn is_approximate(&self) -> bool {
        self.approximate.is_some()
    }

    /// Bytes held by the vectors, facts and graph (not counting allocator slack).
    pub fn bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.facts.capacity() * std::mem::size_of::<RowFacts>()
            + self.alive.capacity()
            + self.free.capacity() * std::mem::size_of::<usize>()
            + self.positions.capacity() * (std::mem::size_of::<(u128, usize)>() + 1)
            + self.approximate.as_ref().map_or(0, Approximate::bytes)
            + self.quantized.as_ref().map_or(0, Quantized::bytes)
    }

    /// Adds `vector` with `facts`, replacing what its key had.
    pub fn insert(&mut self, facts: RowFacts, vector: &[f32]) {
        assert_eq!(
            vector.len(),
            self.dimension,
            "vector of the wrong dimension"
        );
        let slot = match self.positions.get(&facts.key) {
            Some(&slot) => slot,
            None => {
                let slot = self.free.pop().unwrap_or_else(|| {
                    if self.facts.len() == self.facts.capacity() {
                        // Growth by an eighth: at most 12.5% of the buffer stands empty.
                        self.reserve((self.facts.len() / 8).max(1024));
                    }
                    self.facts.push(facts);
                    self.alive.push(false);
                    self.vectors
                        .resize(self.vectors.len() + self.dimension, 0.0);
                    self.facts.len() - 1
                });
                self.positions.insert(facts.key, slot);
                slot
            }
        };
        let start = slot * self.dimension;
        self.vectors[start..start + self.dimension].copy_from_slice(vector);
        self.facts[slot] = facts;
        self.alive[slot] = true;
        if let Some(quantized) = &mut self.quantized {
            quantized.put(slot, vector);
        }
        if let Some(approximate) = &self.approximate {
            // SAFETY: the graph's own buffer, grown at most, while `self` is borrowed mutably.
            #[allow(unsafe_code)]
            unsafe {
                approximate.track(&self.vectors)
            };
            let put = approximate.put(slot, self.row(slot));
            self.keep_exact_if_failed(put);
        }
        self.build_or_drop_graph();
    }

    /// Makes room for `additional` more vectors, exactly (no doubling).
    pub fn reserve(&mut self, additional: usize) {
        self.vectors.reserve_exact(additional * self.dimension);
        self.facts.reserve_exact(additional);
        self.alive.reserve_exact(additional);
        self.positions.reserve(additional);
        if let Some(quantized) = &mut self.quantized {
            quantized.reserve(additional);
        }
        if let Some(approximate) = &self.approximate {
            // SAFETY: the graph's own buffer, grown, while `self` is borrowed mutably.
            #[allow(unsafe_code)]
            unsafe {
                approximate.track(&self.vectors)
            };
        }
    }

    /// Changes the facts of `key` (not its vector); returns whether it is held.
    pub fn update_facts(&mut self, key: u128, change: impl FnOnce(&mut RowFacts)) -> bool {
        let Some(&slot) = self.positions.get(&key) else {
            return false;
        };
        change(&mut self.facts[slot]);
        debug_assert_eq!(self.facts[slot].key, key);
        true
    }

    /// Removes `key`'s vector, freeing its slot; returns whether it was held.
    pub fn remove(&mut self, key: u128) -> bool {
        let Some(slot) = self.positions.remove(&key) else {
            return false;
        };
        self.alive[slot] = false;
        self.free.push(slot);
        if let Some(approximate) = &self.approximate {
            let removed = approximate.remove(slot);
            self.keep_exact_if_failed(removed);
        }
        self.build_or_drop_graph();
        true
    }

    /// After a failed change of the graph, drops it for good: searches stay exact (and
    /// correct) rather than missing the rows the graph did not take.
    fn keep_exact_if_failed(&mut self, result: Result<(), ApproximateError>) {
        if let Err(error) = result {
            tracing::error!(%error, "approximate index failed; searching exactly from now on");
            self.approximate = None;
            self.settings = None;
        }
    }

    /// Changes the graph's search breadth (ef); no effect on an exact index.
    pub fn set_expansion_search(&mut self, expansion: usize) {
        if let Some(settings) = &mut self.settings {
            settings.expansion_search = expansion;
        }
        if let Some(approximate) = &mut self.approximate {
            approximate.set_expansion_search(expansion);
        }
    }

    /// Returns up to `query.limit` engrams passing its filter whose similarity is at least
    /// its minimum, best score first: exact below the graph's size, approximate above it
    /// (candidates from the graph, re-ranked exactly), exact again when a filter leaves the
    /// graph short of candidates.
    pub fn search(&self, query: &IndexQuery<'_>) -> Vec<IndexHit> {
        assert_eq!(
            query.vector.len(),
            self.dimension,
            "query of the wrong dimension"
        );
        if query.limit == 0 || self.is_empty() {
            return Vec::new();
        }
        if let Some(approximate) = &self.approximate {
            if let Some(hits) = self.search_graph(approximate, query) {
                return hits;
            }
        }
        if let Some(quantized) = &self.quantized {
            return self.search_int8(quantized, query);
        }
        self.search_exact(query)
    }

    /// The best candidates of an int8 scan (by estimated score), re-ranked exactly.
    fn search_int8(&self, quantized: &Quantized, query: &IndexQuery<'_>) -> Vec<IndexHit> {
        let mut codes = vec![0_i8; self.dimension];
        let scale = quantized::quantize(query.vector, &mut codes);
        let wanted = (query.limit * INT8_CANDIDATES_PER_HIT).max(INT8_MIN_CANDIDATES);
        let scan = |slots: std::ops::Range<usize>| {
            let mut top = TopK::new(wanted);
            for slot in slots {
                if !self.alive[slot] || !query.filter.admits(&self.facts[slot]) {
                    continue;
                }
                let estimate = quantized.estimate(slot, &codes, scale);
                let score = query.scoring.score(estimate, &self.facts[slot]);
                if top.threshold().is_some_and(|worst| score < worst) {
                    continue;
                }
                top.offer(Scored {
                    score,
                    similarity: estimate,
                    key: self.facts[slot].key,
                    slot,
                });
            }
            top
        };
        let slots = self.facts.len();
        let candidates = if slots <= ROWS_PER_TASK {
            scan(0..slots)
        } else {
            (0..slots.div_ceil(ROWS_PER_TASK))
                .into_par_iter()
                .map(|task| {
                    let start = task * ROWS_PER_TASK;
                    scan(start..(start + ROWS_PER_TASK).min(slots))
                })
                .reduce(|| TopK::new(wanted), TopK::merge)
        };
        let mut top = TopK::new(query.limit);
        for candidate in candidates.into_sorted() {
            self.offer(&mut top, query, candidate.slot);
        }
        hits(top)
    }

    /// The exact answer: every row scanned.
    pub fn search_exact(&self, query: &IndexQuery<'_>) -> Vec<IndexHit> {
        let slots = self.facts.len();
        let top = if slots <= ROWS_PER_TASK {
            self.scan(query, 0..slots)
        } else {
            let tasks = slots.div_ceil(ROWS_PER_TASK);
            (0..tasks)
                .into_par_iter()
                .map(|task| {
                    let start = task * ROWS_PER_TASK;
                    self.scan(query, start..(start + ROWS_PER_TASK).min(slots))
                })
                .reduce(|| TopK::new(query.limit), TopK::merge)
        };
        hits(top)
    }

    /// Candidates from the graph re-ranked exactly, or `None` when a filter left the graph
    /// short of candidates (or the graph failed), so that the caller scans instead.
    fn search_graph(
        &self,
        approximate: &Approximate,
        query: &IndexQuery<'_>,
    ) -> Option<Vec<IndexHit>> {
        let wanted = approximate
            .settings()
            .vectors
            .candidates(query.limit)
            .min(self.len());
        let filtered = query.filter != Filter::default();
        let admits = |slot: usize| {
            self.alive.get(slot).copied().unwrap_or(false) && query.filter.admits(&self.facts[slot])
        };
        let candidates = match approximate.candidates(
            query.vector,
            wanted,
            filtered.then_some(&admits as &(dyn Fn(usize) -> bool + Sync)),
        ) {
            Ok(candidates) => candidates,
            Err(error) => {
                tracing::error!(%error, "approximate search failed; scanning instead");
                return None;
            }
        };
        if filtered && candidates.len() < wanted {
            return None;
        }
        let mut top = TopK::new(query.limit);
        // Rows are read at random: ask for the next ones while scoring this one.
        for (at, &slot) in candidates.iter().enumerate() {
            if let Some(&ahead) = candidates.get(at + PREFETCH_AHEAD) {
                if ahead < self.facts.len() {
                    prefetch(self.row(ahead));
                }
            }
            if admits(slot) {
                self.offer(&mut top, query, slot);
            }
        }
        Some(hits(top))
    }

    /// The best matches among `slots`.
    fn scan(&self, query: &IndexQuery<'_>, slots: std::ops::Range<usize>) -> TopK {
        let mut top = TopK::new(query.limit);
        for slot in slots {
            if self.alive[slot] && query.filter.admits(&self.facts[slot]) {
                self.offer(&mut top, query, slot);
            }
        }
        top
    }

    /// The vector of `slot`.
    fn row(&self, slot: usize) -> &[f32] {
        let start = slot * self.dimension;
        &self.vectors[start..start + self.dimension]
    }

    /// Scores `slot` against `query` and offers it to `top`.
    fn offer(&self, top: &mut TopK, query: &IndexQuery<'_>, slot: usize) {
        let similarity = dot(query.vector, self.row(slot));
        if similarity.is_nan() || similarity < query.min_similarity {
            return;
        }
        let facts = &self.facts[slot];
        let score = query.scoring.score(similarity, facts);
        if top.threshold().is_some_and(|worst| score < worst) {
            return;
        }
        top.offer(Scored {
            score,
            similarity,
            key: facts.key,
            slot,
        });
    }

    /// Builds the graph once the index reaches its size, drops it below half of it.
    fn build_or_drop_graph(&mut self) {
        let Some(settings) = self.settings else {
            return;
        };
        if self.approximate.is_some() {
            if self.len() < settings.min_vectors / 2 {
                tracing::info!(vectors = self.len(), "dropping the approximate index");
                self.approximate = None;
            }
            return;
        }
        if self.len() < settings.min_vectors.max(1) {
            return;
        }
        match self.build_graph(settings) {
            Ok(graph) => self.approximate = Some(graph),
            Err(error) => self.keep_exact_if_failed(Err(error)),
        }
    }

    /// A graph of every live row, built over all cores.
    fn build_graph(&self, settings: ApproximateSettings) -> Result<Approximate, ApproximateError> {
        let started = std::time::Instant::now();
        tracing::info!(vectors = self.len(), "building the approximate index");
        // The walks of the build and of every search read rows at random.
        huge_pages::collapse(
            "exact vector buffer",
            [(
                self.vectors.as_ptr() as usize,
                std::mem::size_of_val(self.vectors.as_slice()),
            )],
        );
        let graph = Approximate::new(self.dimension, settings, self.facts.len() * 5 / 4)?;
        // SAFETY: the buffer the rows are taken from, before the graph is first used.
        #[allow(unsafe_code)]
        unsafe {
            graph.track(&self.vectors)
        };
        let live: Vec<usize> = (0..self.facts.len())
            .filter(|&slot| self.alive[slot])
            .collect();
        let dimension = self.dimension;
        let done = std::sync::atomic::AtomicUsize::new(0);
        live.par_iter().try_for_each(|&slot| {
            let start = slot * dimension;
            graph.put(slot, &self.vectors[start..start + dimension])?;
            let added = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if added.is_multiple_of(100_000) {
                tracing::info!(added, of = live.len(), "building the approximate index");
            }
            Ok::<_, ApproximateError>(())
        })?;
        // Its own node table, links and table of row addresses, read at random too (blocks
        // allocated as it grows later stay on small pages).
        huge_pages::collapse("approximate index", graph.memory_regions());
        tracing::info!(
            vectors = live.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "approximate index built"
        );
        Ok(graph)
    }
}

/// The hits of `top`, best first.
fn hits(top: TopK) -> Vec<IndexHit> {
    top.into_sorted()
        .into_iter()
        .map(|scored| IndexHit {
            key: scored.key,
            similarity: scored.similarity.clamp(-1.0, 1.0),
            score: scored.score,
        })
        .collect()
}

#[cfg(test)]
mod tests;
