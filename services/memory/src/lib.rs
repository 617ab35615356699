//! Mimo's memory: long-term text engrams with embeddings and semantic search, over SQLite
//! or PostgreSQL.
//!
//! Engrams live in one table (SQLite by default, PostgreSQL for many processes); the embeddings of the current embedder are also held in
//! an in-memory index rebuilt from disk at [`open`] and kept in step with every store and
//! delete. [`serve`] exposes a [`MemoryStore`] as the `mimo.v1.Memory` gRPC service.

mod blob;
mod category;
mod checkpointer;
mod config;
mod database;
mod decay;
mod delete_matching;
mod embedder;
mod embedder_check;
mod error;
mod external_embedder;
mod gathering_embedder;
mod hash_embedder;
mod http_embedder;
mod index;
mod instance_lock;
mod list;
mod load;
mod minilm_embedder;
mod peer_changes;
mod pool_stats;
mod postgres_lock;
mod reembed;
mod remember;
mod response_size;
mod service;
mod shared_state;
mod store;
mod store_stream;
mod text;
mod validate;
mod working;
mod writer;

pub use blob::{decode_embedding, encode_embedding};
pub use config::{HybridSettings, MemoryConfig};
pub use database::MemoryDatabase;
pub use decay::DecaySettings;
pub use embedder::{EmbedError, Embedder};
pub use error::MemoryError;
pub use external_embedder::ExternalEmbedder;
pub use hash_embedder::{HashEmbedder, HASH_DEFAULT_MIN_SIMILARITY};
pub use http_embedder::{HttpApi, HttpEmbedder, HttpEmbedderConfig};
pub use index::{
    ApproximateError, ApproximateSettings, Filter, GraphVectors, IndexHit, IndexQuery, RowFacts,
    Scoring, VectorIndex,
};
pub use minilm_embedder::{MiniLmEmbedder, ModelLoadError, MINILM_ID};
pub use reembed::{reembed, ReembedReport};
pub use service::{serve, MemoryService};
pub use store::{open, MemoryCounts, MemoryStore};
pub use working::WorkingSettings;
