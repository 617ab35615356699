//! Bad inputs: each is refused with the right error variant, status code and message.

use crate::{search_request, store_request, TestMemory};
use mimo_memory::MemoryError;
use mimo_proto::v1::{SearchRequest, StoreRequest};
use tonic::Code;

fn assert_refused(result: Result<impl std::fmt::Debug, MemoryError>, code: Code, message: &str) {
    let error = result.expect_err("request must be refused");
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

#[tokio::test]
async fn invalid_store_requests_are_invalid_arguments() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    assert!(matches!(
        store.store(store_request("")).await,
        Err(MemoryError::EmptyField("content"))
    ));
    assert_refused(
        store.store(store_request(" \n\t ")).await,
        Code::InvalidArgument,
        "content is empty",
    );
    assert_refused(
        store.store(store_request(&"x".repeat(102_401))).await,
        Code::InvalidArgument,
        "content is 102401 bytes; the limit is 102400",
    );
    let importance = |value: f32| StoreRequest {
        importance: Some(value),
        ..store_request("text")
    };
    assert!(matches!(
        store.store(importance(1.5)).await,
        Err(MemoryError::OutOfRange {
            field: "importance",
            ..
        })
    ));
    assert_refused(
        store.store(importance(1.5)).await,
        Code::InvalidArgument,
        "importance is 1.5; it must lie within 0.0..=1.0",
    );
    assert_refused(
        store.store(importance(-0.1)).await,
        Code::InvalidArgument,
        "importance is -0.1; it must lie within 0.0..=1.0",
    );
    assert_refused(
        store.store(importance(f32::NAN)).await,
        Code::InvalidArgument,
        "importance is NaN; it must lie within 0.0..=1.0",
    );
    let metadata = |text: &str| StoreRequest {
        metadata_json: text.into(),
        ..store_request("text")
    };
    assert!(matches!(
        store.store(metadata("{not json")).await,
        Err(MemoryError::InvalidMetadata(_))
    ));
    assert_refused(
        store.store(metadata("[1, 2]")).await,
        Code::InvalidArgument,
        "metadata_json must be empty or a JSON object: found an array",
    );
    let category = StoreRequest {
        category: 42,
        ..store_request("text")
    };
    assert_refused(
        store.store(category).await,
        Code::InvalidArgument,
        "category 42 is unknown",
    );
    for wordless in ["!!! ???", "\u{1F525}\u{1F525}", "\u{200B}\u{200B}"] {
        assert_refused(
            store.store(store_request(wordless)).await,
            Code::InvalidArgument,
            "content has nothing the embedder builtin-hash-v1 can index (its vector is all zeros); give text with words",
        );
    }
    assert_eq!(store.counts().engrams, 0, "nothing refused was stored");
    Ok(())
}

#[tokio::test]
async fn invalid_search_requests_are_invalid_arguments() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    let limit = |value: u32| SearchRequest {
        limit: Some(value),
        ..search_request("query")
    };
    assert!(matches!(
        store.search(limit(0)).await,
        Err(MemoryError::OutOfRange { field: "limit", .. })
    ));
    assert_refused(
        store.search(limit(0)).await,
        Code::InvalidArgument,
        "limit is 0; it must lie within 1..=1000",
    );
    assert_refused(
        store.search(limit(1001)).await,
        Code::InvalidArgument,
        "limit is 1001; it must lie within 1..=1000",
    );
    assert!(store.search(limit(1000)).await?.is_empty());
    let threshold = SearchRequest {
        min_similarity: Some(1.5),
        ..search_request("query")
    };
    assert_refused(
        store.search(threshold).await,
        Code::InvalidArgument,
        "min_similarity is 1.5; it must lie within -1.0..=1.0",
    );
    assert_refused(
        store.search(search_request("  ")).await,
        Code::InvalidArgument,
        "query is empty",
    );
    assert_refused(
        store.search(search_request("?!")).await,
        Code::InvalidArgument,
        "query has nothing the embedder builtin-hash-v1 can index (its vector is all zeros); give text with words",
    );
    Ok(())
}

#[tokio::test]
async fn empty_and_unknown_ids_are_refused() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    assert_refused(store.get("").await, Code::InvalidArgument, "id is empty");
    assert_refused(store.delete("").await, Code::InvalidArgument, "id is empty");
    let huge = "x".repeat(3_000_000);
    assert_refused(
        store.get(&huge).await,
        Code::InvalidArgument,
        "id is 3000000 bytes; the limit is 128",
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert!(matches!(
        store.get(&unknown).await,
        Err(MemoryError::NotFound(_))
    ));
    assert_refused(
        store.get(&unknown).await,
        Code::NotFound,
        &format!("engram {unknown} not found"),
    );
    assert_refused(
        store.delete(&unknown).await,
        Code::NotFound,
        &format!("engram {unknown} not found"),
    );
    Ok(())
}
