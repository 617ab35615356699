//! Search filters (importance, creation time) and hybrid scoring, end to end over SQLite.

use crate::{search_request, store_request, TestMemory};
use mimo_proto::v1::{HybridWeights, Scoring, SearchRequest, StoreRequest, UpdateRequest};
use tonic::Code;

fn important(content: &str, importance: f32) -> StoreRequest {
    StoreRequest {
        importance: Some(importance),
        ..store_request(content)
    }
}

fn ids(hits: &[mimo_proto::v1::SearchHit]) -> Vec<String> {
    hits.iter()
        .map(|hit| hit.engram.as_ref().unwrap().id.clone())
        .collect()
}

#[tokio::test]
async fn min_importance_and_creation_time_filter_during_the_search() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    let minor = store
        .store(important("garden tomatoes ripen in july", 0.2))
        .await?;
    let major = store
        .store(important("garden tomatoes need daily water", 0.9))
        .await?;
    let query = || search_request("garden tomatoes");
    assert_eq!(store.search(query()).await?.len(), 2);
    let filtered = store
        .search(SearchRequest {
            min_importance: Some(0.5),
            ..query()
        })
        .await?;
    assert_eq!(ids(&filtered), std::slice::from_ref(&major.id));
    let created_after_minor = store
        .search(SearchRequest {
            created_after_unix_ms: Some(major.created_at_unix_ms),
            ..query()
        })
        .await?;
    assert!(ids(&created_after_minor).contains(&major.id));
    let before_major = store
        .search(SearchRequest {
            created_before_unix_ms: Some(minor.created_at_unix_ms + 1),
            ..query()
        })
        .await?;
    assert!(ids(&before_major).contains(&minor.id));
    // An update moves an engram across the importance filter at once.
    store
        .update(UpdateRequest {
            id: minor.id.clone(),
            importance: Some(1.0),
            ..Default::default()
        })
        .await?;
    let after_update = store
        .search(SearchRequest {
            min_importance: Some(0.95),
            ..query()
        })
        .await?;
    assert_eq!(ids(&after_update), std::slice::from_ref(&minor.id));
    Ok(())
}

#[tokio::test]
async fn hybrid_scoring_ranks_an_important_engram_above_a_closer_one() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    let close = store
        .store(important("the red kite circles over the valley", 0.0))
        .await?;
    let weighty = store
        .store(important(
            "a red kite was seen near the old valley farm",
            1.0,
        ))
        .await?;
    let query = search_request("red kite circles over the valley");
    let semantic = store.search(query.clone()).await?;
    assert_eq!(ids(&semantic)[0], close.id);
    assert!(semantic.iter().all(|hit| hit.score == hit.similarity));
    let hybrid = store
        .search(SearchRequest {
            scoring: Scoring::Hybrid as i32,
            hybrid: Some(HybridWeights {
                similarity: Some(0.5),
                recency: Some(0.0),
                importance: Some(0.5),
                recency_half_life_hours: None,
            }),
            ..query
        })
        .await?;
    assert_eq!(ids(&hybrid), [weighty.id.clone(), close.id.clone()]);
    for hit in &hybrid {
        let importance = hit.engram.as_ref().unwrap().importance;
        let expected = 0.5 * hit.similarity + 0.5 * importance;
        assert!((hit.score - expected).abs() < 1e-5, "{hit:?}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_filters_and_weights_are_refused_with_what_is_wrong() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    store
        .store(store_request("a kept fact about rivers"))
        .await?;
    let cases = [
        (
            SearchRequest {
                min_importance: Some(1.5),
                ..search_request("rivers")
            },
            "min_importance is 1.5; it must lie within 0.0..=1.0",
        ),
        (
            SearchRequest {
                created_after_unix_ms: Some(20),
                created_before_unix_ms: Some(10),
                ..search_request("rivers")
            },
            "created_before_unix_ms (10) must be later than created_after_unix_ms (20)",
        ),
        (
            SearchRequest {
                scoring: 7,
                ..search_request("rivers")
            },
            "scoring is 7; it must lie within 0..=2 (SCORING_UNSPECIFIED, SCORING_SEMANTIC, SCORING_HYBRID)",
        ),
        (
            SearchRequest {
                scoring: Scoring::Hybrid as i32,
                hybrid: Some(HybridWeights {
                    recency_half_life_hours: Some(0.0),
                    ..Default::default()
                }),
                ..search_request("rivers")
            },
            "hybrid.recency_half_life_hours is 0; it must lie within (0, 1000000]",
        ),
        (
            SearchRequest {
                scoring: Scoring::Hybrid as i32,
                hybrid: Some(HybridWeights {
                    importance: Some(f32::NAN),
                    ..Default::default()
                }),
                ..search_request("rivers")
            },
            "hybrid.importance is NaN; it must lie within 0.0..=1.0",
        ),
    ];
    for (request, message) in cases {
        let status = tonic::Status::from(store.search(request).await.expect_err(message));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
    assert_eq!(store.counts().engrams, 1);
    Ok(())
}
