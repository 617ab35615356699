//! An engram's life beyond store and search: near-duplicates reinforced, pages of List,
//! decay (dry run and real), and working memory with consolidation.

use crate::{search_request, store_in, store_request, TestMemory};
use mimo_memory::WorkingSettings;
use mimo_proto::v1::{
    Category, DecayRequest, ListOrder, ListRequest, RememberRequest, SearchRequest, StoreRequest,
    UpdateRequest,
};
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn a_near_duplicate_reinforces_the_engram_instead_of_adding_a_copy() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    let first = store
        .store(StoreRequest {
            importance: Some(0.3),
            ..store_request("The user drinks green tea every morning")
        })
        .await?;
    let (again, reinforced) = store
        .store_or_reinforce(StoreRequest {
            importance: Some(0.8),
            ..store_request("the user drinks green tea every morning!")
        })
        .await?;
    assert!(reinforced);
    assert_eq!(again.id, first.id);
    assert_eq!(again.importance, 0.8);
    assert_eq!(again.access_count, 1);
    assert_eq!(store.counts().engrams, 1);
    // Another category, or asking for a copy, stores a new engram.
    let (plan, reinforced) = store
        .store_or_reinforce(store_in(
            "the user drinks green tea every morning",
            Category::Plan,
        ))
        .await?;
    assert!(!reinforced);
    assert_ne!(plan.id, first.id);
    let (copy, reinforced) = store
        .store_or_reinforce(StoreRequest {
            allow_duplicate: true,
            ..store_request("The user drinks green tea every morning")
        })
        .await?;
    assert!(!reinforced);
    assert_ne!(copy.id, first.id);
    assert_eq!(store.counts().engrams, 3);
    // The reinforced importance is what filters see.
    let important = store
        .search(SearchRequest {
            min_importance: Some(0.7),
            category: Category::Fact as i32,
            ..search_request("green tea")
        })
        .await?;
    assert_eq!(important.len(), 1);
    assert_eq!(important[0].engram.as_ref().unwrap().id, first.id);
    Ok(())
}

#[tokio::test]
async fn list_pages_by_offset_and_after_id_in_each_order() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    let mut stored = Vec::new();
    for number in 0..25 {
        stored.push(
            store
                .store(StoreRequest {
                    importance: Some(number as f32 / 100.0),
                    ..store_in(
                        &format!("note number {number} on page work"),
                        Category::Episode,
                    )
                })
                .await?,
        );
    }
    store.store(store_request("a lone fact")).await?;
    let page = |request: ListRequest| async move { store.list(request).await };
    let newest = page(ListRequest {
        limit: Some(10),
        category: Category::Episode as i32,
        ..Default::default()
    })
    .await?;
    assert_eq!(newest.total, 25);
    assert_eq!(newest.engrams.len(), 10);
    assert_eq!(newest.engrams[0].id, stored[24].id);
    let important = page(ListRequest {
        limit: Some(3),
        offset: 1,
        order: ListOrder::MostImportantFirst as i32,
        category: Category::Episode as i32,
        ..Default::default()
    })
    .await?;
    let ids: Vec<&str> = important.engrams.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [&stored[23].id, &stored[22].id, &stored[21].id]);
    // BY_ID with after_id walks everything once, in order.
    let mut seen = Vec::new();
    let mut after_id = String::new();
    loop {
        let next = page(ListRequest {
            limit: Some(7),
            order: ListOrder::ById as i32,
            after_id: after_id.clone(),
            with_embeddings: true,
            ..Default::default()
        })
        .await?;
        let Some(last) = next.engrams.last() else {
            break;
        };
        after_id = last.id.clone();
        assert!(next.engrams.iter().all(|e| e.embedding.len() == 2048));
        seen.extend(next.engrams.into_iter().map(|e| e.id));
    }
    assert_eq!(seen.len(), 26);
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]));
    for (request, message) in [
        (
            ListRequest {
                limit: Some(0),
                ..Default::default()
            },
            "limit is 0; it must lie within 1..=1000",
        ),
        (
            ListRequest {
                after_id: seen[0].clone(),
                ..Default::default()
            },
            "after_id pages only in LIST_ORDER_BY_ID order",
        ),
        (
            ListRequest {
                offset: 2_000_000,
                ..Default::default()
            },
            "offset is 2000000; it must lie within 0..=1000000 (page deeper with LIST_ORDER_BY_ID and after_id)",
        ),
    ] {
        let status = tonic::Status::from(store.list(request).await.expect_err(message));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
    Ok(())
}

#[tokio::test]
async fn decay_lists_in_a_dry_run_and_forgets_only_unprotected_faded_engrams() -> anyhow::Result<()>
{
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    let faint = store
        .store(StoreRequest {
            importance: Some(0.01),
            ..store_request("a faint passing remark about clouds")
        })
        .await?;
    let guarded = store
        .store(StoreRequest {
            importance: Some(0.01),
            protected: true,
            ..store_request("a faint but protected remark about rivers")
        })
        .await?;
    let strong = store
        .store(StoreRequest {
            importance: Some(0.9),
            ..store_request("a strong memory about mountains")
        })
        .await?;
    let dry = store
        .decay(DecayRequest {
            dry_run: true,
            ..Default::default()
        })
        .await?;
    assert_eq!(dry.count, 1);
    assert_eq!(dry.examined, 2, "protected engrams are not even examined");
    assert_eq!(dry.forgotten[0].id, faint.id);
    assert_eq!(store.counts().engrams, 3, "a dry run forgets nothing");
    let real = store.decay(DecayRequest::default()).await?;
    assert_eq!(real.count, 1);
    assert_eq!(store.counts().forgotten, 1);
    assert!(store.get(&faint.id).await.is_err());
    store.get(&guarded.id).await?;
    store.get(&strong.id).await?;
    // A tiny half-life fades even the strong one; protection still holds.
    store
        .update(UpdateRequest {
            id: strong.id.clone(),
            importance: Some(0.5),
            ..Default::default()
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fast = store
        .decay(DecayRequest {
            half_life_days: Some(1e-9),
            ..Default::default()
        })
        .await?;
    assert_eq!(fast.count, 1);
    assert_eq!(store.counts().engrams, 1);
    store.get(&guarded.id).await?;
    let refused = store
        .decay(DecayRequest {
            forget_below: Some(2.0),
            ..Default::default()
        })
        .await
        .expect_err("forget_below above 1");
    assert_eq!(
        tonic::Status::from(refused).message(),
        "forget_below is 2; it must lie within 0.0..=1.0"
    );
    Ok(())
}

fn remember(content: &str, importance: f32, ttl_ms: Option<u64>) -> RememberRequest {
    RememberRequest {
        entry: Some(StoreRequest {
            importance: Some(importance),
            ..store_request(content)
        }),
        ttl_ms,
    }
}

#[tokio::test]
async fn working_memory_is_searched_on_request_bounded_and_consolidated_when_worth_it(
) -> anyhow::Result<()> {
    let memory = TestMemory::open_with(|mut config| {
        config.working = WorkingSettings {
            capacity: 2,
            ..WorkingSettings::default()
        };
        config
    })
    .await?;
    let store = &memory.store;
    let long_term = store
        .store(store_request("the kettle is in the kitchen"))
        .await?;
    let short = store
        .remember(remember("the kettle is boiling right now", 0.2, None))
        .await?;
    let only_long = store.search(search_request("kettle")).await?;
    assert_eq!(
        only_long.len(),
        1,
        "working memory is searched only on request"
    );
    let both = store
        .search(SearchRequest {
            include_working: true,
            ..search_request("kettle")
        })
        .await?;
    assert_eq!(both.len(), 2);
    let working: Vec<_> = both.iter().filter(|hit| hit.working).collect();
    assert_eq!(working.len(), 1);
    assert_eq!(working[0].engram.as_ref().unwrap().id, short.id);
    assert_eq!(
        store.counts().engrams,
        1,
        "a working entry is not a long-term engram"
    );

    // Capacity 2: the third entry evicts the one nearest to expiry; an important one is
    // consolidated as it goes.
    let soon = store
        .remember(remember(
            "the meeting moved to friday afternoon",
            0.9,
            Some(60_000),
        ))
        .await?;
    store
        .remember(remember("the cat wants feeding", 0.1, None))
        .await?;
    assert_eq!(store.counts().working_entries, 2);
    let consolidated = store
        .search(search_request("meeting friday afternoon"))
        .await?;
    assert_eq!(consolidated.len(), 1);
    let kept = consolidated[0].engram.as_ref().unwrap();
    assert_eq!(kept.content, "the meeting moved to friday afternoon");
    assert_ne!(kept.id, soon.id, "a long-term engram of its own");

    // Consolidate takes what is worth keeping now (accessed twice here), lets the rest be.
    for _ in 0..2 {
        store
            .search(SearchRequest {
                include_working: true,
                ..search_request("kettle boiling")
            })
            .await?;
    }
    let moved = store.consolidate().await?;
    assert_eq!(moved.engrams.len(), 1);
    assert_eq!(moved.engrams[0].content, "the kettle is boiling right now");
    assert_eq!(store.counts().working_entries, 1);
    assert_eq!(store.counts().engrams, 3);
    assert_ne!(long_term.id, moved.engrams[0].id);
    Ok(())
}

#[tokio::test]
async fn an_expired_working_entry_leaves_searches_and_is_kept_only_if_worth_it(
) -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    store
        .remember(remember("a fleeting note about lunch", 0.1, Some(1)))
        .await?;
    store
        .remember(remember(
            "an important note about the deadline",
            0.95,
            Some(1),
        ))
        .await?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let hits = store
        .search(SearchRequest {
            include_working: true,
            ..search_request("note lunch deadline")
        })
        .await?;
    assert!(hits.iter().all(|hit| !hit.working), "{hits:?}");
    store.sweep_working_memory().await?;
    assert_eq!(store.counts().working_entries, 0);
    let kept = store.search(search_request("note deadline")).await?;
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].engram.as_ref().unwrap().content,
        "an important note about the deadline"
    );
    let refused = store
        .remember(remember("too long a wait", 0.5, Some(0)))
        .await
        .expect_err("a ttl of 0");
    assert_eq!(
        tonic::Status::from(refused).message(),
        "ttl_ms is 0; it must lie within 1..=86400000"
    );
    Ok(())
}

#[tokio::test]
async fn delete_matching_removes_what_the_filter_names_and_spares_protected_engrams(
) -> anyhow::Result<()> {
    use mimo_proto::v1::DeleteMatchingRequest;
    let memory = TestMemory::open().await?;
    let store = &memory.store;
    for number in 0..700 {
        store
            .store(StoreRequest {
                importance: Some(if number % 2 == 0 { 0.1 } else { 0.9 }),
                allow_duplicate: true,
                ..store_in(
                    &format!("observation number {number}"),
                    Category::Observation,
                )
            })
            .await?;
    }
    let guarded = store
        .store(StoreRequest {
            importance: Some(0.1),
            protected: true,
            ..store_in("a protected observation", Category::Observation)
        })
        .await?;
    store
        .store(store_request("a fact of low importance"))
        .await?;
    let request = DeleteMatchingRequest {
        category: Category::Observation as i32,
        importance_below: Some(0.5),
        ..Default::default()
    };
    let counted = store
        .delete_matching(DeleteMatchingRequest {
            dry_run: true,
            ..request
        })
        .await?;
    assert_eq!(counted.deleted, 350);
    assert_eq!(store.counts().engrams, 702);
    assert_eq!(store.delete_matching(request).await?.deleted, 350);
    assert_eq!(store.counts().engrams, 352);
    assert_eq!(store.counts().index_vectors, 352);
    store.get(&guarded.id).await?;
    let unfiltered = store
        .delete_matching(DeleteMatchingRequest::default())
        .await
        .expect_err("no condition");
    assert_eq!(
        tonic::Status::from(unfiltered).code(),
        Code::InvalidArgument
    );
    Ok(())
}

#[tokio::test]
async fn a_full_long_term_memory_keeps_working_entries_where_they_are() -> anyhow::Result<()> {
    let memory = TestMemory::open_with(|mut config| {
        config.max_engrams = 1;
        config.working = WorkingSettings {
            capacity: 2,
            ..WorkingSettings::default()
        };
        config
    })
    .await?;
    let store = &memory.store;
    store
        .store(store_request("the only long-term room is taken"))
        .await?;
    let first = store
        .remember(remember("an important first note", 0.9, None))
        .await?;
    store
        .remember(remember("an important second note", 0.9, None))
        .await?;
    // Consolidation cannot store them: both stay held.
    let refused = store
        .consolidate()
        .await
        .expect_err("long-term memory is full");
    assert_eq!(tonic::Status::from(refused).code(), Code::ResourceExhausted);
    assert_eq!(store.counts().working_entries, 2);
    // A third entry would evict the first, which cannot be kept: nothing changes.
    let refused = store
        .remember(remember("a third note", 0.1, None))
        .await
        .expect_err("the evicted entry cannot be kept");
    assert_eq!(tonic::Status::from(refused).code(), Code::ResourceExhausted);
    assert_eq!(store.counts().working_entries, 2);
    let held = store
        .search(SearchRequest {
            include_working: true,
            ..search_request("important first note")
        })
        .await?;
    assert!(held
        .iter()
        .any(|hit| hit.working && hit.engram.as_ref().unwrap().id == first.id));
    assert_eq!(store.counts().engrams, 1);
    Ok(())
}
