//! Semantic search: paraphrases, filters, limits and access tracking.

use crate::data::{paraphrases, sentences};
use crate::{search_request, store_all, store_in, TestMemory};
use mimo_proto::v1::{Category, SearchRequest};

#[tokio::test]
async fn every_paraphrase_finds_its_sentence_first() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let sentences = sentences();
    let stored = store_all(&memory.store, &sentences).await?;
    let mut misses = Vec::new();
    let mut target_similarities = Vec::new();
    for (query, expected) in paraphrases() {
        let hits = memory
            .store
            .search(SearchRequest {
                query: query.clone(),
                limit: Some(3),
                min_similarity: Some(-1.0),
                ..Default::default()
            })
            .await?;
        let first = hits[0].engram.as_ref().expect("hit engram");
        if let Some(hit) = hits
            .iter()
            .find(|hit| hit.engram.as_ref().map(|e| &e.id) == Some(&stored[expected].id))
        {
            target_similarities.push(hit.similarity);
        }
        if first.id != stored[expected].id {
            let ranked: Vec<String> = hits
                .iter()
                .map(|hit| {
                    format!(
                        "{:.3} {}",
                        hit.similarity,
                        hit.engram.as_ref().map_or("", |e| &e.content)
                    )
                })
                .collect();
            misses.push(format!(
                "{query:?} wants {:?}, got {ranked:#?}",
                sentences[expected]
            ));
        }
    }
    target_similarities.sort_by(f32::total_cmp);
    eprintln!("similarity of the intended sentence: {target_similarities:.3?}");
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn hits_are_best_first_within_limit_and_threshold() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    store_all(&memory.store, &sentences()).await?;
    let hits = memory
        .store
        .search(SearchRequest {
            query: "planets and moons of the solar system".into(),
            limit: Some(5),
            min_similarity: Some(-1.0),
            ..Default::default()
        })
        .await?;
    assert_eq!(hits.len(), 5);
    assert!(hits
        .windows(2)
        .all(|pair| pair[0].similarity >= pair[1].similarity));
    assert!(hits
        .iter()
        .all(|hit| (-1.0..=1.0).contains(&hit.similarity)));
    // The built-in embedder's default threshold drops weak matches; an unrelated query finds nothing.
    let unrelated = memory
        .store
        .search(search_request("quantum chromodynamics lagrangian"))
        .await?;
    assert!(unrelated.is_empty(), "{unrelated:?}");
    let exact = memory
        .store
        .search(SearchRequest {
            query: sentences()[0].clone(),
            min_similarity: Some(0.99),
            ..Default::default()
        })
        .await?;
    assert_eq!(exact.len(), 1);
    Ok(())
}

#[tokio::test]
async fn category_filter_returns_only_that_category() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let plan = memory
        .store
        .store(store_in(
            "water the tomato plants every morning",
            Category::Plan,
        ))
        .await?;
    let fact = memory
        .store
        .store(store_in(
            "tomato plants need water every morning",
            Category::Fact,
        ))
        .await?;
    let both = memory
        .store
        .search(search_request("watering tomato plants"))
        .await?;
    assert_eq!(both.len(), 2);
    for (category, expected) in [(Category::Plan, &plan.id), (Category::Fact, &fact.id)] {
        let hits = memory
            .store
            .search(SearchRequest {
                query: "watering tomato plants".into(),
                category: category as i32,
                ..Default::default()
            })
            .await?;
        let ids: Vec<&str> = hits
            .iter()
            .filter_map(|hit| hit.engram.as_ref())
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, [expected.as_str()], "{category:?}");
    }
    let episodes = memory
        .store
        .search(SearchRequest {
            query: "watering tomato plants".into(),
            category: Category::Episode as i32,
            ..Default::default()
        })
        .await?;
    assert!(episodes.is_empty());
    Ok(())
}

#[tokio::test]
async fn search_records_access_on_its_hits() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = memory
        .store
        .store(store_in(
            "the cat sleeps on the warm windowsill",
            Category::Observation,
        ))
        .await?;
    let other = memory
        .store
        .store(store_in("compound interest grows savings", Category::Fact))
        .await?;
    for round in 1..=2_u64 {
        let hits = memory
            .store
            .search(search_request("a cat sleeping on a windowsill"))
            .await?;
        assert_eq!(hits.len(), 1);
        let hit = hits[0].engram.as_ref().expect("engram");
        assert_eq!(hit.access_count, round);
        assert!(hit.last_accessed_at_unix_ms >= stored.last_accessed_at_unix_ms);
        // The access is recorded just after the answer.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while memory.store.get(&stored.id).await?.access_count < round {
            assert!(
                tokio::time::Instant::now() < deadline,
                "access never recorded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let reread = memory.store.get(&stored.id).await?;
    assert_eq!(reread.access_count, 2);
    assert_eq!(memory.store.get(&other.id).await?.access_count, 0);
    Ok(())
}

#[tokio::test]
async fn deleted_engram_is_no_longer_found() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = store_all(&memory.store, &sentences()).await?;
    let query = "Which planet is the biggest of all the worlds circling our star?";
    let before = memory
        .store
        .search(SearchRequest {
            min_similarity: Some(0.0),
            ..search_request(query)
        })
        .await?;
    assert_eq!(
        before[0].engram.as_ref().map(|e| e.id.as_str()),
        Some(stored[5].id.as_str())
    );
    memory.store.delete(&stored[5].id).await?;
    let after = memory
        .store
        .search(SearchRequest {
            query: query.into(),
            limit: Some(1000),
            min_similarity: Some(-1.0),
            ..Default::default()
        })
        .await?;
    assert_eq!(after.len(), 49);
    assert!(after
        .iter()
        .all(|hit| hit.engram.as_ref().map(|e| &e.id) != Some(&stored[5].id)));
    // The engram that moved into the deleted slot of the index is still found as itself.
    let last = memory
        .store
        .search(SearchRequest {
            query: sentences()[49].clone(),
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    assert_eq!(
        last[0].engram.as_ref().map(|e| e.id.as_str()),
        Some(stored[49].id.as_str())
    );
    let counts = memory.store.counts();
    assert_eq!((counts.engrams, counts.index_vectors), (49, 49));
    Ok(())
}
