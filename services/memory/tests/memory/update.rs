//! Update and Stats: changes that keep the content, and the counts a caller can read.

use crate::{store_in, store_request, TestMemory};
use mimo_proto::v1::{Category, UpdateRequest};
use tonic::Code;

#[tokio::test]
async fn update_changes_only_the_fields_given_and_survives_a_reopen() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = memory
        .store
        .store(store_in("water the ferns on fridays", Category::Plan))
        .await?;
    let updated = memory
        .store
        .update(UpdateRequest {
            id: stored.id.clone(),
            importance: Some(0.8),
            metadata_json: Some(r#"{"room": "hall"}"#.to_string()),
            protected: Some(true),
            ..Default::default()
        })
        .await?;
    assert_eq!(updated.content, stored.content);
    assert_eq!(updated.category, Category::Plan as i32);
    assert_eq!(updated.importance, 0.8);
    assert_eq!(updated.metadata_json, r#"{"room":"hall"}"#);
    assert!(updated.protected);
    assert!(updated.updated_at_unix_ms >= stored.updated_at_unix_ms);
    let recategorised = memory
        .store
        .update(UpdateRequest {
            id: stored.id.clone(),
            category: Category::Procedure as i32,
            ..Default::default()
        })
        .await?;
    assert_eq!(recategorised.category, Category::Procedure as i32);
    assert_eq!(recategorised.importance, 0.8);
    let path = crate::database_path(&memory.directory);
    memory.store.close().await;
    let reopened = mimo_memory::open(mimo_memory::MemoryConfig::new(path)).await?;
    let reread = reopened.get(&stored.id).await?;
    assert_eq!(reread, recategorised);
    Ok(())
}

#[tokio::test]
async fn bad_updates_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = memory.store.store(store_request("a plain fact")).await?;
    let cases = [
        (
            UpdateRequest {
                id: stored.id.clone(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "an update must give at least one of importance, category, metadata_json, protected"
                .to_string(),
        ),
        (
            UpdateRequest {
                id: stored.id.clone(),
                importance: Some(-0.1),
                ..Default::default()
            },
            Code::InvalidArgument,
            "importance is -0.1; it must lie within 0.0..=1.0".to_string(),
        ),
        (
            UpdateRequest {
                id: stored.id.clone(),
                metadata_json: Some("[1]".to_string()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "metadata_json must be empty or a JSON object: found an array".to_string(),
        ),
        (
            UpdateRequest {
                id: stored.id.clone(),
                category: 99,
                ..Default::default()
            },
            Code::InvalidArgument,
            "category 99 is unknown".to_string(),
        ),
        (
            UpdateRequest {
                id: "0190a5e4-0000-7000-8000-000000000000".to_string(),
                importance: Some(0.3),
                ..Default::default()
            },
            Code::NotFound,
            "engram 0190a5e4-0000-7000-8000-000000000000 not found".to_string(),
        ),
    ];
    for (request, code, message) in cases {
        let status = tonic::Status::from(memory.store.update(request).await.expect_err(&message));
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(status.message(), message);
    }
    assert_eq!(memory.store.get(&stored.id).await?, stored);
    Ok(())
}

#[tokio::test]
async fn stats_count_by_category_and_name_the_embedder() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    for (content, category) in [
        ("one plan for monday", Category::Plan),
        ("another plan for tuesday", Category::Plan),
        ("an observed heron", Category::Observation),
    ] {
        memory.store.store(store_in(content, category)).await?;
    }
    let stats = memory.store.stats().await?;
    assert_eq!(stats.engrams, 3);
    assert_eq!(stats.by_category.get("plan"), Some(&2));
    assert_eq!(stats.by_category.get("observation"), Some(&1));
    assert_eq!(stats.by_category.get("fact"), None);
    assert_eq!(stats.index_vectors, 3);
    assert!(stats.index_bytes >= 3 * 2048 * 4);
    assert_eq!(stats.embedder, "builtin-hash-v1");
    assert_eq!(stats.dimension, 2048);
    Ok(())
}
