//! Store, get and delete round trips and the defaults a Store request gets.

use crate::{store_request, TestMemory};
use mimo_memory::{Embedder, HashEmbedder, MemoryError};
use mimo_proto::v1::{Category, StoreRequest};

#[tokio::test]
async fn store_get_delete_roundtrip() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = memory
        .store
        .store(StoreRequest {
            content: "The user prefers green tea in the afternoon.".into(),
            category: Category::Observation as i32,
            importance: Some(0.8),
            metadata_json: r#"{ "source": "chat", "turn": 12 }"#.into(),
            ..Default::default()
        })
        .await?;
    assert!(uuid::Uuid::parse_str(&stored.id)?.get_version_num() == 7);
    assert_eq!(stored.category, Category::Observation as i32);
    assert_eq!(stored.embedder, "builtin-hash-v1");
    assert_eq!(stored.dimension as usize, HashEmbedder::new().dimension());
    assert_eq!(stored.metadata_json, r#"{"source":"chat","turn":12}"#);
    assert!(stored.created_at_unix_ms > 0);
    let fetched = memory.store.get(&stored.id).await?;
    assert_eq!(fetched, stored);
    assert_eq!(memory.store.counts().engrams, 1);
    memory.store.delete(&stored.id).await?;
    assert!(
        matches!(memory.store.get(&stored.id).await, Err(MemoryError::NotFound(id)) if id == stored.id)
    );
    assert!(matches!(
        memory.store.delete(&stored.id).await,
        Err(MemoryError::NotFound(_))
    ));
    let counts = memory.store.counts();
    assert_eq!((counts.engrams, counts.index_vectors), (0, 0));
    Ok(())
}

#[tokio::test]
async fn store_applies_the_documented_defaults() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = memory
        .store
        .store(store_request("Remember to renew the passport."))
        .await?;
    assert_eq!(stored.category, Category::Fact as i32);
    assert_eq!(stored.importance, 0.5);
    assert_eq!(stored.metadata_json, "{}");
    assert_eq!(stored.access_count, 0);
    assert_eq!(stored.created_at_unix_ms, stored.updated_at_unix_ms);
    Ok(())
}

#[tokio::test]
async fn store_beyond_max_engrams_is_resource_exhausted() -> anyhow::Result<()> {
    let memory = TestMemory::open_with(|mut config| {
        config.max_engrams = 2;
        config
    })
    .await?;
    memory.store.store(store_request("first")).await?;
    let second = memory.store.store(store_request("second")).await?;
    let refused = memory
        .store
        .store(store_request("third"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, MemoryError::CapacityReached { limit: 2 }),
        "{refused}"
    );
    assert_eq!(
        tonic::Status::from(refused).code(),
        tonic::Code::ResourceExhausted
    );
    memory.store.delete(&second.id).await?;
    memory.store.store(store_request("third")).await?;
    Ok(())
}
