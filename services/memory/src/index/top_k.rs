//! A bounded top-k: the best `limit` matches seen so far, in a min-heap whose top is the
//! worst of them, so that each new match costs one comparison unless it gets in.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A match: higher score wins; equal scores go to the smaller key (deterministic, whatever
/// order the rows are scanned in).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) score: f32,
    pub(crate) similarity: f32,
    pub(crate) key: u128,
    /// The row's slot in the index.
    pub(crate) slot: usize,
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.key.cmp(&self.key))
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

/// At most `limit` best matches.
#[derive(Debug)]
pub(crate) struct TopK {
    limit: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

impl TopK {
    /// An empty top-`limit`.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity(limit.saturating_add(1).min(4096)),
        }
    }

    /// The score a match must beat to get in, once full.
    pub(crate) fn threshold(&self) -> Option<f32> {
        (self.heap.len() >= self.limit)
            .then(|| self.heap.peek().map(|Reverse(worst)| worst.score))
            .flatten()
    }

    /// Offers `candidate`; NaN scores never get in.
    pub(crate) fn offer(&mut self, candidate: Scored) {
        if candidate.score.is_nan() || self.limit == 0 {
            return;
        }
        if self.heap.len() < self.limit {
            self.heap.push(Reverse(candidate));
        } else if self
            .heap
            .peek()
            .is_some_and(|Reverse(worst)| candidate > *worst)
        {
            self.heap.pop();
            self.heap.push(Reverse(candidate));
        }
    }

    /// Adds every match of `other`.
    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for Reverse(candidate) in other.heap {
            self.offer(candidate);
        }
        self
    }

    /// The matches, best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        // Ascending order of `Reverse` is descending order of score.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(scored)| scored)
            .collect()
    }
}
