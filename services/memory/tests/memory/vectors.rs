//! Client vectors: a memory whose clients bring their own embeddings, and every way a vector
//! can be wrong.

use crate::{store_request, TestMemory};
use mimo_memory::{ExternalEmbedder, MemoryError};
use mimo_proto::v1::{SearchRequest, StoreRequest};
use std::sync::Arc;
use tonic::Code;

async fn open_external(dimension: usize) -> anyhow::Result<TestMemory> {
    TestMemory::open_with(|config| {
        config.with_embedder(Arc::new(ExternalEmbedder::new(
            "client-model-v1",
            dimension,
        )))
    })
    .await
}

fn with_vector(content: &str, embedding: Vec<f32>) -> StoreRequest {
    StoreRequest {
        embedding,
        ..store_request(content)
    }
}

fn by_vector(query_vector: Vec<f32>) -> SearchRequest {
    SearchRequest {
        query_vector,
        min_similarity: Some(-1.0),
        ..Default::default()
    }
}

fn status(error: MemoryError) -> tonic::Status {
    tonic::Status::from(error)
}

#[tokio::test]
async fn client_vectors_are_stored_normalised_and_found_by_query_vector() -> anyhow::Result<()> {
    let memory = open_external(3).await?;
    let store = &memory.store;
    let east = store
        .store(with_vector("east", vec![10.0, 0.0, 0.0]))
        .await?;
    let north = store
        .store(with_vector("north", vec![0.0, 3.0, 0.0]))
        .await?;
    assert_eq!(east.embedder, "client-model-v1");
    assert_eq!(east.dimension, 3);
    let hits = store.search(by_vector(vec![2.0, 1.0, 0.0])).await?;
    let ids: Vec<&str> = hits
        .iter()
        .map(|hit| hit.engram.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, [east.id.as_str(), north.id.as_str()]);
    // Normalised on both sides: cos = 2 / sqrt(5).
    assert!(
        (hits[0].similarity - 2.0 / 5.0_f32.sqrt()).abs() < 1e-5,
        "{hits:?}"
    );
    assert_eq!(hits[0].score, hits[0].similarity);
    Ok(())
}

#[tokio::test]
async fn a_memory_of_client_vectors_refuses_texts_it_cannot_embed() -> anyhow::Result<()> {
    let memory = open_external(3).await?;
    let stored = memory.store.store(store_request("no vector given")).await;
    let refused = status(stored.expect_err("a text without a vector"));
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "this memory's embedder client-model-v1 embeds no text: send embedding with a vector of 3 values"
    );
    let searched = memory
        .store
        .search(crate::search_request("text query"))
        .await;
    let refused = status(searched.expect_err("a text query"));
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("send query_vector"),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_vectors_are_refused_and_nothing_is_stored() -> anyhow::Result<()> {
    let memory = open_external(3).await?;
    let store = &memory.store;
    let kept = store
        .store(with_vector("kept", vec![1.0, 0.0, 0.0]))
        .await?;
    let cases: Vec<(Vec<f32>, &str)> = vec![
        (
            vec![1.0, 0.0],
            "embedding has 2 values; this memory's embedder makes 3-dimensional vectors",
        ),
        (
            vec![1.0, f32::NAN, 0.0],
            "embedding cannot be used: value 1 is NaN",
        ),
        (
            vec![f32::INFINITY, 0.0, 0.0],
            "embedding cannot be used: value 0 is inf",
        ),
        (
            vec![0.0, 0.0, 0.0],
            "embedding cannot be used: it is all zeros, so it has no direction",
        ),
    ];
    for (vector, message) in cases {
        let refused = status(
            store
                .store(with_vector("bad", vector.clone()))
                .await
                .expect_err("a bad vector"),
        );
        assert_eq!(refused.code(), Code::InvalidArgument, "{vector:?}");
        assert_eq!(refused.message(), message, "{vector:?}");
        let query = status(
            store
                .search(by_vector(vector.clone()))
                .await
                .expect_err("a bad query vector"),
        );
        assert_eq!(query.code(), Code::InvalidArgument);
        assert_eq!(
            query.message(),
            message.replacen("embedding", "query_vector", 1),
            "{vector:?}"
        );
    }
    let both = SearchRequest {
        query: "text".to_string(),
        ..by_vector(vec![1.0, 0.0, 0.0])
    };
    let refused = status(store.search(both).await.expect_err("both probes"));
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "give query or query_vector, not both");
    assert_eq!(store.counts().engrams, 1);
    let hits = store.search(by_vector(vec![1.0, 0.0, 0.0])).await?;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].engram.as_ref().unwrap().id, kept.id);
    // Tiny and huge values still have a direction: normalised in double precision.
    let tiny = store.search(by_vector(vec![1.0e-40, 0.0, 0.0])).await?;
    assert!((tiny[0].similarity - 1.0).abs() < 1e-6, "{tiny:?}");
    let huge = store.search(by_vector(vec![3.0e38, 3.0e38, 0.0])).await?;
    assert!(
        (huge[0].similarity - 0.5_f32.sqrt()).abs() < 1e-6,
        "{huge:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_vector_of_the_wrong_dimension_names_both_on_the_builtin_embedder(
) -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let refused = status(
        memory
            .store
            .store(with_vector("the moon", vec![0.5; 384]))
            .await
            .expect_err("384 values for a 2048-d memory"),
    );
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "embedding has 384 values; this memory's embedder makes 2048-dimensional vectors"
    );
    assert_eq!(memory.store.counts().engrams, 0);
    Ok(())
}

#[tokio::test]
async fn a_memory_past_its_graph_size_searches_approximately_and_keeps_it_after_a_reopen(
) -> anyhow::Result<()> {
    let dimension = 16;
    let settings = mimo_memory::ApproximateSettings {
        min_vectors: 300,
        ..Default::default()
    };
    let memory = TestMemory::open_with(|mut config| {
        config.approximate = Some(settings);
        config.with_embedder(Arc::new(ExternalEmbedder::new(
            "client-model-v1",
            dimension,
        )))
    })
    .await?;
    // A distinct pseudo-random vector per row.
    let vector = |row: usize| -> Vec<f32> {
        let mut state = (row as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (0..dimension)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    };
    let mut stored = Vec::new();
    for row in 0..400 {
        stored.push(
            memory
                .store
                .store(with_vector(&format!("row {row}"), vector(row)))
                .await?,
        );
        assert_eq!(
            memory.store.stats().await?.approximate,
            row + 1 >= 300,
            "after {}",
            row + 1
        );
    }
    // Each row's own vector finds it (the graph is approximate: nearly always), and every
    // similarity reported is exact.
    let check = |store: mimo_memory::MemoryStore, stored: Vec<mimo_proto::v1::Engram>| async move {
        let mut found = 0;
        for (row, engram) in stored.iter().enumerate() {
            let hits = store.search(by_vector(vector(row))).await?;
            let top = &hits[0];
            if top.engram.as_ref().unwrap().id == engram.id {
                found += 1;
                assert!((top.similarity - 1.0).abs() < 1e-5);
            }
            assert!(top.similarity <= 1.0 + 1e-6);
        }
        assert!(
            found >= 380,
            "{found} of 400 rows found by their own vector"
        );
        anyhow::Ok(())
    };
    check(memory.store.clone(), stored.clone()).await?;
    let path = crate::database_path(&memory.directory);
    memory.store.close().await;
    let mut config = mimo_memory::MemoryConfig::new(path).with_embedder(Arc::new(
        ExternalEmbedder::new("client-model-v1", dimension),
    ));
    config.approximate = Some(settings);
    let reopened = mimo_memory::open(config).await?;
    assert!(reopened.stats().await?.approximate);
    check(reopened, stored).await?;
    Ok(())
}
