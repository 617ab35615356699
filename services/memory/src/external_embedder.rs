//! The embedder of a memory whose clients bring their own vectors: it names the model they
//! use and its dimension, and embeds no text itself.

use crate::embedder::{EmbedError, Embedder};

/// Stands for a model run by the clients: every Store brings `embedding` and every Search
/// `query_vector`, all of [`ExternalEmbedder::dimension`] values.
#[derive(Debug, Clone)]
pub struct ExternalEmbedder {
    id: String,
    dimension: usize,
}

impl ExternalEmbedder {
    /// An embedder called `id` (stored with every vector) making `dimension`-long vectors.
    pub fn new(id: impl Into<String>, dimension: usize) -> Self {
        Self {
            id: id.into(),
            dimension,
        }
    }
}

#[async_trait::async_trait]
impl Embedder for ExternalEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embeds_text(&self) -> bool {
        false
    }

    async fn embed(&self, _texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::Backend(format!(
            "embedder {} takes vectors from its clients and embeds no text",
            self.id
        )))
    }
}
