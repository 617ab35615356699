//! End-to-end tests of the memory store on real SQLite files and a real gRPC socket.

mod data;
mod errors;
mod grpc;
mod http_embedders;
mod lifecycle;
mod minilm;
mod persistence;
mod ranking;
mod reembed;
mod search;
mod store;
mod update;
mod vectors;
mod writer;

use mimo_memory::{MemoryConfig, MemoryStore};
use mimo_proto::v1::{Category, Engram, SearchRequest, StoreRequest};
use tempfile::TempDir;

/// A memory in a fresh temporary directory, removed when dropped.
pub struct TestMemory {
    /// The open store.
    pub store: MemoryStore,
    /// Holds the database; removed on drop.
    pub directory: TempDir,
}

impl TestMemory {
    /// Opens an empty memory with default limits.
    pub async fn open() -> anyhow::Result<Self> {
        Self::open_with(|config| config).await
    }

    /// Opens an empty memory whose config `adjust` may change.
    pub async fn open_with(
        adjust: impl FnOnce(MemoryConfig) -> MemoryConfig,
    ) -> anyhow::Result<Self> {
        let directory = tempfile::tempdir()?;
        let config = adjust(MemoryConfig::new(database_path(&directory)));
        let store = mimo_memory::open(config).await?;
        Ok(Self { store, directory })
    }
}

/// The database file inside `directory`, one level down so that `open` must create it.
pub fn database_path(directory: &TempDir) -> std::path::PathBuf {
    directory.path().join("nested").join("memory.sqlite")
}

/// A Store request for `content` with every other field left to its default.
pub fn store_request(content: &str) -> StoreRequest {
    StoreRequest {
        content: content.to_string(),
        ..Default::default()
    }
}

/// A Store request for `content` in `category`.
pub fn store_in(content: &str, category: Category) -> StoreRequest {
    StoreRequest {
        content: content.to_string(),
        category: category as i32,
        ..Default::default()
    }
}

/// A Search request for `query` with every other field left to its default.
pub fn search_request(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.to_string(),
        ..Default::default()
    }
}

/// Stores every line of `sentences` in order and returns the stored engrams.
pub async fn store_all(store: &MemoryStore, sentences: &[String]) -> anyhow::Result<Vec<Engram>> {
    let mut stored = Vec::with_capacity(sentences.len());
    for sentence in sentences {
        stored.push(store.store(store_request(sentence)).await?);
    }
    Ok(stored)
}
