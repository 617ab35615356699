//! Changing embedder: a memory of another embedder's engrams refuses searches and stores
//! with a clear error until `reembed` has embedded them again.

use crate::{search_request, store_request, TestMemory};
use mimo_memory::{EmbedError, Embedder, HashEmbedder, MemoryConfig, MemoryError};
use std::sync::Arc;
use tonic::Code;

/// The built-in embedder under another name: a different embedder as far as the memory
/// knows, with vectors the test can reason about.
struct Renamed(HashEmbedder);

#[async_trait::async_trait]
impl Embedder for Renamed {
    fn id(&self) -> &str {
        "renamed-hash-v1"
    }

    fn dimension(&self) -> usize {
        self.0.dimension()
    }

    fn default_min_similarity(&self) -> f32 {
        self.0.default_min_similarity()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.0.embed(texts).await
    }
}

fn renamed(config: MemoryConfig) -> MemoryConfig {
    config.with_embedder(Arc::new(Renamed(HashEmbedder::new())))
}

#[tokio::test]
async fn another_embedders_engrams_are_refused_until_reembedded() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let path = crate::database_path(&memory.directory);
    let kept = memory
        .store
        .store(store_request("owls hunt at night"))
        .await?;
    memory.store.store(store_request("bees make honey")).await?;
    memory
        .store
        .store(store_request("salmon swim upstream"))
        .await?;
    memory.store.close().await;

    let switched = mimo_memory::open(renamed(MemoryConfig::new(&path))).await?;
    let expected = "this memory holds 3 engrams made by builtin-hash-v1 (2048 dimensions), \
        but its embedder is renamed-hash-v1 (2048 dimensions): their vectors cannot be compared; \
        stop the memory and run `mimo memory reembed` with this --memory-embedder to re-embed \
        them (every memory sharing the database must then use it), or start the memory with \
        their embedder (--memory-embedder minilm:DIR for all-minilm-l6-v2, builtin for \
        builtin-hash-v1, ollama:MODEL or openai:MODEL for those)";
    for refused in [
        switched.search(search_request("owls")).await.map(|_| ()),
        switched
            .store(store_request("a new fact"))
            .await
            .map(|_| ()),
    ] {
        let status = tonic::Status::from(refused.expect_err("another embedder's engrams"));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), expected);
    }
    assert_eq!(switched.get(&kept.id).await?.content, kept.content);
    assert!(matches!(
        mimo_memory::reembed(renamed(MemoryConfig::new(&path)), |_, _| {}).await,
        Err(MemoryError::InUse { .. })
    ));
    switched.close().await;

    let mut seen = Vec::new();
    let report = mimo_memory::reembed(renamed(MemoryConfig::new(&path)), |done, total| {
        seen.push((done, total))
    })
    .await?;
    assert_eq!(report.reembedded, 3);
    assert_eq!(report.skipped, 0);
    assert_eq!(seen.last(), Some(&(3, 3)));

    let reopened = mimo_memory::open(renamed(MemoryConfig::new(&path))).await?;
    let hits = reopened.search(search_request("owls hunting")).await?;
    assert_eq!(hits[0].engram.as_ref().unwrap().id, kept.id);
    assert_eq!(hits[0].engram.as_ref().unwrap().embedder, "renamed-hash-v1");
    reopened.store(store_request("a new fact")).await?;
    Ok(())
}
