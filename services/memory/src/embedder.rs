//! The embedder contract: texts in, one L2-normalised vector per text out.

/// Why an embedder could not embed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The embedder's backend failed (a model, a remote service); another attempt may work.
    #[error("{0}")]
    Backend(String),
    /// The embedder's backend refused the request for good (a bad key, an unknown model, a
    /// text it will not take): retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// The embedder returned a different number of vectors than texts.
    #[error("embedder {embedder} returned {returned} vectors for {expected} texts")]
    WrongCount {
        /// Id of the embedder.
        embedder: String,
        /// Texts given.
        expected: usize,
        /// Vectors returned.
        returned: usize,
    },
    /// A vector has a different length than the embedder's dimension, or holds NaN/infinity.
    #[error("embedder {embedder} returned a vector of length {length} (dimension {dimension}) or with non-finite values")]
    BadVector {
        /// Id of the embedder.
        embedder: String,
        /// Length of the vector returned.
        length: usize,
        /// The embedder's declared dimension.
        dimension: usize,
    },
}

/// Turns texts into vectors of one fixed dimension; the same text always gives the same vector.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// Stable id stored with every embedding, e.g. `builtin-hash-v1`; change it with the output.
    fn id(&self) -> &str;

    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// Least similarity a search keeps when it names none: a cosine threshold means something
    /// only on the scale of the embedder that made the vectors. 0.3 suits sentence-embedding
    /// models; lexical embedders override it.
    fn default_min_similarity(&self) -> f32 {
        0.3
    }

    /// Least similarity at which a new engram counts as a near-duplicate of a stored one of
    /// its category (and reinforces it instead of being added), on this embedder's scale.
    fn default_duplicate_threshold(&self) -> f32 {
        0.95
    }

    /// Whether [`Embedder::embed`] works; `false` for a memory whose clients send vectors.
    fn embeds_text(&self) -> bool {
        true
    }

    /// Texts worth embedding together in one call, when one call for many costs much less
    /// than many calls (a model's forward pass, an HTTP request): the memory then gathers
    /// the texts of concurrent stores and searches into calls of up to this many.
    fn gathers_texts(&self) -> Option<usize> {
        None
    }

    /// Returns one L2-normalised vector of [`Embedder::dimension`] per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Embeds `texts` and checks the embedder kept its contract; vectors are re-normalised so that
/// a dot product is a cosine whatever the embedder does.
pub(crate) async fn embed_checked(
    embedder: &dyn Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut vectors = embedder.embed(texts).await?;
    if vectors.len() != texts.len() {
        return Err(EmbedError::WrongCount {
            embedder: embedder.id().to_string(),
            expected: texts.len(),
            returned: vectors.len(),
        });
    }
    for vector in &mut vectors {
        if vector.len() != embedder.dimension() || vector.iter().any(|value| !value.is_finite()) {
            return Err(EmbedError::BadVector {
                embedder: embedder.id().to_string(),
                length: vector.len(),
                dimension: embedder.dimension(),
            });
        }
        normalize(vector);
    }
    Ok(vectors)
}

/// Scales `vector` to unit length; a zero vector stays zero.
pub(crate) fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|value| *value /= norm);
    }
}
