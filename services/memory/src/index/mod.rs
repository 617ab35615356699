//! The in-memory vector index: every searchable embedding in one contiguous buffer, searched
//! exactly by dot product (vectors are unit length, so the dot product is the cosine).

use mimo_proto::v1::Category;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// One result of [`VectorIndex::search`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexHit {
    pub(crate) id: String,
    pub(crate) similarity: f32,
}

/// Vectors of one dimension with their engram ids and categories, in parallel arrays.
#[derive(Debug)]
pub(crate) struct VectorIndex {
    dimension: usize,
    /// `ids.len() * dimension` values; row `i` belongs to `ids[i]`.
    vectors: Vec<f32>,
    ids: Vec<String>,
    categories: Vec<Category>,
    positions: HashMap<String, usize>,
}

impl VectorIndex {
    /// Returns an empty index of `dimension`-long vectors.
    pub(crate) fn new(dimension: usize) -> Self {
        debug_assert!(dimension > 0);
        Self {
            dimension,
            vectors: Vec::new(),
            ids: Vec::new(),
            categories: Vec::new(),
            positions: HashMap::new(),
        }
    }

    /// Number of vectors held.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Adds `vector` for `id`, replacing any vector it had.
    pub(crate) fn insert(&mut self, id: String, category: Category, vector: &[f32]) {
        assert_eq!(
            vector.len(),
            self.dimension,
            "vector of the wrong dimension"
        );
        if let Some(&position) = self.positions.get(&id) {
            let start = position * self.dimension;
            self.vectors[start..start + self.dimension].copy_from_slice(vector);
            self.categories[position] = category;
            return;
        }
        self.positions.insert(id.clone(), self.ids.len());
        self.ids.push(id);
        self.categories.push(category);
        self.vectors.extend_from_slice(vector);
    }

    /// Removes `id`'s vector by moving the last one into its place; returns whether it was held.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(position) = self.positions.remove(id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if position != last {
            let dimension = self.dimension;
            self.vectors.copy_within(
                last * dimension..(last + 1) * dimension,
                position * dimension,
            );
            self.positions.insert(self.ids[last].clone(), position);
        }
        self.ids.swap_remove(position);
        self.categories.swap_remove(position);
        self.vectors.truncate(last * self.dimension);
        debug_assert_eq!(self.vectors.len(), self.ids.len() * self.dimension);
        true
    }

    /// Returns up to `limit` vectors most similar to `query`, best first, whose similarity is
    /// at least `min_similarity` and whose category is `category` when one is given.
    pub(crate) fn search(
        &self,
        query: &[f32],
        limit: usize,
        min_similarity: f32,
        category: Option<Category>,
    ) -> Vec<IndexHit> {
        assert_eq!(query.len(), self.dimension, "query of the wrong dimension");
        if limit == 0 {
            return Vec::new();
        }
        // A min-heap of the best `limit` so far: its top is the worst of them.
        let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(limit + 1);
        for (position, vector) in self.vectors.chunks_exact(self.dimension).enumerate() {
            if category.is_some_and(|wanted| self.categories[position] != wanted) {
                continue;
            }
            let similarity = dot(query, vector);
            if similarity.is_nan() || similarity < min_similarity {
                continue;
            }
            let candidate = Scored {
                similarity,
                position,
            };
            if best.len() < limit {
                best.push(Reverse(candidate));
            } else if best.peek().is_some_and(|Reverse(worst)| candidate > *worst) {
                best.pop();
                best.push(Reverse(candidate));
            }
        }
        // Ascending order of `Reverse` is descending order of score.
        best.into_sorted_vec()
            .into_iter()
            .map(|Reverse(scored)| IndexHit {
                id: self.ids[scored.position].clone(),
                similarity: scored.similarity.clamp(-1.0, 1.0),
            })
            .collect()
    }
}

/// A similarity and the row it belongs to; higher similarity wins, then the earlier row.
#[derive(Debug, Clone, Copy)]
struct Scored {
    similarity: f32,
    position: usize,
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.similarity
            .total_cmp(&other.similarity)
            .then_with(|| other.position.cmp(&self.position))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

fn dot(left: &[f32], right: &[f32]) -> f32 {
    left.iter().zip(right).map(|(a, b)| a * b).sum()
}

#[cfg(test)]
mod tests;
