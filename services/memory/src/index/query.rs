//! What a search asks of the index: the query vector, the filters applied during the scan,
//! and how each match is scored.

use mimo_proto::v1::Category;

/// Which engrams a search may return; every condition is checked before any arithmetic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Filter {
    /// Only this category, when given.
    pub(crate) category: Option<Category>,
    /// Only engrams at least this important (0.0 keeps all).
    pub(crate) min_importance: f32,
    /// Only engrams created at or after this time (unix ms).
    pub(crate) created_after: Option<i64>,
    /// Only engrams created before this time (unix ms).
    pub(crate) created_before: Option<i64>,
}

impl Filter {
    /// Whether an engram with these facts passes.
    pub(crate) fn admits(&self, facts: &RowFacts) -> bool {
        self.category.is_none_or(|wanted| facts.category == wanted)
            && facts.importance >= self.min_importance
            && self
                .created_after
                .is_none_or(|after| facts.created_at >= after)
            && self
                .created_before
                .is_none_or(|before| facts.created_at < before)
    }
}

/// How a match's final score is made from its similarity and its facts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scoring {
    /// The score is the cosine similarity.
    Semantic,
    /// `similarity * w_s + recency * w_r + importance * w_i`, where recency halves every
    /// `half_life_ms` since the engram was last accessed (1.0 when accessed `now_ms`).
    Hybrid {
        similarity_weight: f32,
        recency_weight: f32,
        importance_weight: f32,
        half_life_ms: f64,
        now_ms: i64,
    },
}

impl Scoring {
    /// The final score of a match of `similarity` with `facts`.
    pub(crate) fn score(&self, similarity: f32, facts: &RowFacts) -> f32 {
        match *self {
            Scoring::Semantic => similarity,
            Scoring::Hybrid {
                similarity_weight,
                recency_weight,
                importance_weight,
                half_life_ms,
                now_ms,
            } => {
                let age_ms = now_ms.saturating_sub(facts.accessed_at).max(0) as f64;
                let recency = 0.5_f64.powf(age_ms / half_life_ms) as f32;
                similarity * similarity_weight
                    + recency * recency_weight
                    + facts.importance * importance_weight
            }
        }
    }
}

/// One search of the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexQuery<'a> {
    /// Unit-length query vector of the index's dimension, all values finite.
    pub(crate) vector: &'a [f32],
    /// Most hits returned (at least 1).
    pub(crate) limit: usize,
    /// Least cosine similarity of a hit.
    pub(crate) min_similarity: f32,
    pub(crate) filter: Filter,
    pub(crate) scoring: Scoring,
}

/// What the index knows of an engram besides its vector: enough to filter and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowFacts {
    /// The engram's id (a UUID) as a number: ties are broken by it, smaller first.
    pub(crate) key: u128,
    pub(crate) category: Category,
    pub(crate) importance: f32,
    /// Unix ms.
    pub(crate) created_at: i64,
    /// Unix ms.
    pub(crate) accessed_at: i64,
}
