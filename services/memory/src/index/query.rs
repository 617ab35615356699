//! What a search asks of the index: the query vector, the filters applied during the scan,
//! and how each match is scored.

use mimo_proto::v1::Category;

/// Which engrams a search may return; every condition is checked before any arithmetic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Filter {
    /// Only this category, when given.
    pub category: Option<Category>,
    /// Only engrams at least this important (0.0 keeps all).
    pub min_importance: f32,
    /// Only engrams created at or after this time (unix ms).
    pub created_after: Option<i64>,
    /// Only engrams created before this time (unix ms).
    pub created_before: Option<i64>,
}

impl Filter {
    /// Whether an engram with these facts passes.
    pub fn admits(&self, facts: &RowFacts) -> bool {
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
pub enum Scoring {
    /// The score is the cosine similarity.
    Semantic,
    /// `similarity * w_s + recency * w_r + importance * w_i`, where recency halves every
    /// `half_life_ms` since the engram was last accessed (1.0 when accessed `now_ms`).
    Hybrid {
        /// Weight of the cosine similarity.
        similarity_weight: f32,
        /// Weight of recency.
        recency_weight: f32,
        /// Weight of importance.
        importance_weight: f32,
        /// Milliseconds for recency to halve.
        half_life_ms: f64,
        /// The time recency is measured from (unix ms).
        now_ms: i64,
    },
}

impl Scoring {
    /// The final score of a match of `similarity` with `facts`.
    pub fn score(&self, similarity: f32, facts: &RowFacts) -> f32 {
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
pub struct IndexQuery<'a> {
    /// Unit-length query vector of the index's dimension, all values finite.
    pub vector: &'a [f32],
    /// Most hits returned (at least 1).
    pub limit: usize,
    /// Least cosine similarity of a hit.
    pub min_similarity: f32,
    /// Which engrams may be returned.
    pub filter: Filter,
    /// How matches are ranked.
    pub scoring: Scoring,
}

/// What the index knows of an engram besides its vector: enough to filter and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowFacts {
    /// The engram's id (a UUID) as a number: ties are broken by it, smaller first.
    pub key: u128,
    /// The engram's category.
    pub category: Category,
    /// The engram's importance, 0.0 ..= 1.0.
    pub importance: f32,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub accessed_at: i64,
}
