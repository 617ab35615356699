//! The in-memory vector index: every searchable embedding in one contiguous buffer, searched
//! exactly by SIMD dot products (vectors are unit length, so the dot product is the cosine),
//! split over the cores when the index is large, with filters applied during the scan.

mod query;
mod simd;
mod top_k;

pub use query::{Filter, IndexQuery, RowFacts, Scoring};
pub(crate) use simd::dot;

use rayon::prelude::*;
use std::collections::HashMap;
use top_k::{Scored, TopK};

/// Rows scanned by one task; smaller indexes are scanned on the calling thread.
const ROWS_PER_TASK: usize = 16_384;

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

/// Vectors of one dimension with their engrams' facts, in parallel arrays: the exact search
/// engine behind [`crate::MemoryStore`], public for benchmarks and embedding in other programs.
#[derive(Debug)]
pub struct VectorIndex {
    dimension: usize,
    /// `facts.len() * dimension` values; row `i` belongs to `facts[i]`.
    vectors: Vec<f32>,
    facts: Vec<RowFacts>,
    positions: HashMap<u128, usize>,
}

impl VectorIndex {
    /// Returns an empty index of `dimension`-long vectors.
    pub fn new(dimension: usize) -> Self {
        debug_assert!(dimension > 0);
        Self {
            dimension,
            vectors: Vec::new(),
            facts: Vec::new(),
            positions: HashMap::new(),
        }
    }

    /// Number of vectors held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    /// Whether no vector is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// Bytes held by the vectors and facts (not counting allocator slack).
    pub fn bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.facts.capacity() * std::mem::size_of::<RowFacts>()
            + self.positions.capacity() * (std::mem::size_of::<(u128, usize)>() + 1)
    }

    /// Adds `vector` with `facts`, replacing what its key had.
    pub fn insert(&mut self, facts: RowFacts, vector: &[f32]) {
        assert_eq!(
            vector.len(),
            self.dimension,
            "vector of the wrong dimension"
        );
        if let Some(&position) = self.positions.get(&facts.key) {
            let start = position * self.dimension;
            self.vectors[start..start + self.dimension].copy_from_slice(vector);
            self.facts[position] = facts;
            return;
        }
        self.positions.insert(facts.key, self.facts.len());
        self.facts.push(facts);
        self.vectors.extend_from_slice(vector);
    }

    /// Changes the facts of `key` (not its vector); returns whether it is held.
    pub fn update_facts(&mut self, key: u128, change: impl FnOnce(&mut RowFacts)) -> bool {
        let Some(&position) = self.positions.get(&key) else {
            return false;
        };
        change(&mut self.facts[position]);
        debug_assert_eq!(self.facts[position].key, key);
        true
    }

    /// Removes `key`'s vector by moving the last one into its place; returns whether it was held.
    pub fn remove(&mut self, key: u128) -> bool {
        let Some(position) = self.positions.remove(&key) else {
            return false;
        };
        let last = self.facts.len() - 1;
        if position != last {
            let dimension = self.dimension;
            self.vectors.copy_within(
                last * dimension..(last + 1) * dimension,
                position * dimension,
            );
            self.positions.insert(self.facts[last].key, position);
        }
        self.facts.swap_remove(position);
        self.vectors.truncate(last * self.dimension);
        debug_assert_eq!(self.vectors.len(), self.facts.len() * self.dimension);
        true
    }

    /// Returns up to `query.limit` engrams passing its filter whose similarity is at least
    /// its minimum, best score first.
    pub fn search(&self, query: &IndexQuery<'_>) -> Vec<IndexHit> {
        assert_eq!(
            query.vector.len(),
            self.dimension,
            "query of the wrong dimension"
        );
        if query.limit == 0 || self.facts.is_empty() {
            return Vec::new();
        }
        let top = if self.facts.len() <= ROWS_PER_TASK {
            self.scan(query, 0..self.facts.len())
        } else {
            let tasks = self.facts.len().div_ceil(ROWS_PER_TASK);
            (0..tasks)
                .into_par_iter()
                .map(|task| {
                    let start = task * ROWS_PER_TASK;
                    self.scan(query, start..(start + ROWS_PER_TASK).min(self.facts.len()))
                })
                .reduce(|| TopK::new(query.limit), TopK::merge)
        };
        top.into_sorted()
            .into_iter()
            .map(|scored| IndexHit {
                key: scored.key,
                similarity: scored.similarity.clamp(-1.0, 1.0),
                score: scored.score,
            })
            .collect()
    }

    /// The best matches among `rows`.
    fn scan(&self, query: &IndexQuery<'_>, rows: std::ops::Range<usize>) -> TopK {
        let mut top = TopK::new(query.limit);
        let vectors = self.vectors[rows.start * self.dimension..rows.end * self.dimension]
            .chunks_exact(self.dimension);
        for (facts, vector) in self.facts[rows].iter().zip(vectors) {
            if !query.filter.admits(facts) {
                continue;
            }
            let similarity = dot(query.vector, vector);
            if similarity.is_nan() || similarity < query.min_similarity {
                continue;
            }
            let score = query.scoring.score(similarity, facts);
            if top.threshold().is_some_and(|worst| score < worst) {
                continue;
            }
            top.offer(Scored {
                score,
                similarity,
                key: facts.key,
            });
        }
        top
    }
}

#[cfg(test)]
mod tests;
