//! The memory on a real PostgreSQL server: every operation, restarts, several memory
//! processes sharing one database (each one's index follows the others' changes), a lost
//! notification connection, a refused statement inside a batch, and the server going away.

use super::PATIENCE;
use mimo_integration_tests::{wait_until, PostgresServer};
use mimo_memory::{Embedder, HashEmbedder, MemoryConfig, MemoryDatabase, MemoryError, MemoryStore};
use mimo_proto::v1::{
    Category, DecayRequest, DeleteMatchingRequest, ListOrder, ListRequest, SearchRequest,
    StoreRequest, UpdateRequest,
};
use sqlx::Connection;
use tonic::Code;

fn store_request(content: &str, category: Category) -> StoreRequest {
    StoreRequest {
        content: content.to_string(),
        category: category as i32,
        importance: Some(0.5),
        ..StoreRequest::default()
    }
}

fn search_for(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.to_string(),
        limit: Some(5),
        ..SearchRequest::default()
    }
}

async fn open(url: &str) -> MemoryStore {
    mimo_memory::open(MemoryConfig::new(MemoryDatabase::parse(url)))
        .await
        .expect("open the memory on postgres")
}

/// Ids of the hits of `query` at `store`.
async fn found(store: &MemoryStore, query: &str) -> Vec<String> {
    store
        .search(search_for(query))
        .await
        .expect("search")
        .into_iter()
        .filter_map(|hit| hit.engram.map(|engram| engram.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_works_on_postgres_and_engrams_outlive_a_restart() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let store = open(&url).await;
    let fact = store
        .store(store_request(
            "the deploy key lives in the vault",
            Category::Fact,
        ))
        .await
        .unwrap();
    let plan = store
        .store(store_request(
            "migrate the billing cluster on friday",
            Category::Plan,
        ))
        .await
        .unwrap();
    let note = store
        .store(store_request(
            "coffee machine on floor three is broken",
            Category::Observation,
        ))
        .await
        .unwrap();

    assert_eq!(found(&store, "where is the deploy key").await[0], fact.id);
    assert_eq!(store.get(&plan.id).await.unwrap().content, plan.content);
    let (again, reinforced) = store
        .store_or_reinforce(store_request(
            "the deploy key lives in the vault",
            Category::Fact,
        ))
        .await
        .unwrap();
    assert!(
        reinforced,
        "a near-duplicate reinforces the engram it copies"
    );
    // The search's access (queued before the reinforcement) and the reinforcement's.
    assert_eq!(
        (again.id.as_str(), again.access_count),
        (fact.id.as_str(), 2)
    );

    let updated = store
        .update(UpdateRequest {
            id: plan.id.clone(),
            importance: Some(0.9),
            ..UpdateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(updated.importance, 0.9);
    let important = store
        .search(SearchRequest {
            min_importance: Some(0.8),
            ..search_for("billing cluster migration")
        })
        .await
        .unwrap();
    assert_eq!(important.len(), 1, "the filter sees the new importance");

    let by_id = store
        .list(ListRequest {
            order: ListOrder::ById as i32,
            limit: Some(2),
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id.total, 3);
    let mut ids = [fact.id.clone(), plan.id.clone(), note.id.clone()];
    ids.sort();
    let first_page: Vec<_> = by_id.engrams.iter().map(|e| e.id.clone()).collect();
    assert_eq!(first_page, ids[..2]);
    let next = store
        .list(ListRequest {
            order: ListOrder::ById as i32,
            after_id: ids[1].clone(),
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(next.engrams.len(), 1);
    assert_eq!(next.engrams[0].id, ids[2]);

    let stats = store.stats().await.unwrap();
    assert_eq!((stats.engrams, stats.index_vectors), (3, 3));
    assert_eq!(stats.by_category.get("plan"), Some(&1));
    let decay = store
        .decay(DecayRequest {
            dry_run: true,
            forget_below: Some(1.0),
            ..DecayRequest::default()
        })
        .await
        .unwrap();
    // Only the note falls below: the fact and the plan were found by searches, which
    // takes an engram of importance 0.5 or more to the retention's cap of 1.0.
    assert_eq!((decay.examined, decay.count), (3, 1));
    assert_eq!(decay.forgotten[0].id, note.id);

    store.delete(&note.id).await.unwrap();
    assert!(matches!(
        store.delete(&note.id).await,
        Err(MemoryError::NotFound(_))
    ));
    let deleted = store
        .delete_matching(DeleteMatchingRequest {
            category: Category::Plan as i32,
            ..DeleteMatchingRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 1);
    store.close().await;

    let reopened = open(&url).await;
    let stats = reopened.stats().await.unwrap();
    assert_eq!((stats.engrams, stats.index_vectors), (1, 1));
    let kept = reopened.get(&fact.id).await.unwrap();
    assert_eq!(
        kept.access_count, 2,
        "the access records were committed before closing"
    );
    assert_eq!(
        found(&reopened, "deploy key vault").await,
        vec![fact.id.clone()]
    );
    reopened.close().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_sharing_a_database_follow_each_others_changes() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let (a, b) = (open(&url).await, open(&url).await);

    let stored = a
        .store(store_request(
            "the staging database runs on port 6543",
            Category::Fact,
        ))
        .await
        .unwrap();
    wait_until("b to find what a stored", PATIENCE, || async {
        found(&b, "staging database port")
            .await
            .contains(&stored.id)
            .then_some(())
    })
    .await;

    b.update(UpdateRequest {
        id: stored.id.clone(),
        importance: Some(0.95),
        category: Category::Procedure as i32,
        ..UpdateRequest::default()
    })
    .await
    .unwrap();
    wait_until("a to filter by b's update", PATIENCE, || async {
        let hits = a
            .search(SearchRequest {
                min_importance: Some(0.9),
                category: Category::Procedure as i32,
                ..search_for("staging database port")
            })
            .await
            .unwrap();
        (hits.len() == 1).then_some(())
    })
    .await;

    // Stored through b and deleted through a at once: a may not have indexed it yet, and
    // its count must not go below zero for it.
    let quick = b
        .store(store_request(
            "a short-lived note about lunch",
            Category::Observation,
        ))
        .await
        .unwrap();
    a.delete(&quick.id).await.unwrap();
    a.delete(&stored.id).await.unwrap();
    wait_until("b to drop what a deleted", PATIENCE, || async {
        (b.counts().index_vectors == 0).then_some(())
    })
    .await;
    assert!(found(&b, "staging database port").await.is_empty());
    assert_eq!(b.counts().engrams, 0);
    wait_until("a's count back to zero", PATIENCE, || async {
        (a.counts().engrams == 0 && a.counts().index_vectors == 0).then_some(())
    })
    .await;
    a.store(store_request("a store after it all", Category::Fact))
        .await
        .expect("a's capacity is intact");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_connection_rebuilds_the_index_from_the_table() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let memory = open(&url).await;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();

    // A row that arrives with no notice, as if sent while the listener was away.
    let embedder = HashEmbedder::new();
    let content = "the incident review is on tuesday at ten";
    let vector = embedder
        .embed(&[content.to_string()])
        .await
        .unwrap()
        .remove(0);
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO engrams (id, content, category, importance, embedding, embedder, dimension, \
         created_at, updated_at, last_accessed_at) VALUES ($1, $2, 'plan', 0.5, $3, $4, $5, 0, 0, 0)",
    )
    .bind(&id)
    .bind(content)
    .bind(mimo_memory::encode_embedding(&vector))
    .bind(embedder.id())
    .bind(embedder.dimension() as i64)
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(found(&memory, "incident review tuesday").await.is_empty());

    let cut: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut.len(), 1, "one listening connection");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(cut[0])
        .execute(&mut admin)
        .await
        .unwrap();
    wait_until("the rebuilt index to hold the row", PATIENCE, || async {
        found(&memory, "incident review tuesday")
            .await
            .contains(&id)
            .then_some(())
    })
    .await;
    memory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_in_a_batch_fails_alone() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let memory = open(&url).await;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.content LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON engrams \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut admin)
    .await
    .unwrap();

    // Stores sent together, so that the writer takes several into one transaction.
    let contents: Vec<String> = (0..40)
        .map(|n| {
            if n == 17 {
                "a poison row the database refuses".to_string()
            } else {
                format!("distinct note number {n} about topic {}", n * 7919)
            }
        })
        .collect();
    let results = futures::future::join_all(contents.iter().map(|content| {
        memory.store(StoreRequest {
            allow_duplicate: true,
            ..store_request(content, Category::Observation)
        })
    }))
    .await;
    for (n, result) in results.into_iter().enumerate() {
        if n == 17 {
            let error = result.unwrap_err();
            assert!(
                error.to_string().contains("poisoned row"),
                "the database's refusal: {error}"
            );
        } else {
            assert!(result.is_ok(), "store {n}: {result:?}");
        }
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM engrams")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(rows, 39);
    assert_eq!(memory.counts().index_vectors, 39);
    assert_eq!(memory.counts().engrams, 39);
    memory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_gives_unavailable_and_the_memory_recovers() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let memory = open(&url).await;
    memory
        .store(store_request("kept before the outage", Category::Fact))
        .await
        .unwrap();

    server.pause();
    let error = memory
        .store(store_request("written during the outage", Category::Fact))
        .await
        .unwrap_err();
    assert_eq!(tonic::Status::from(error).code(), Code::Unavailable);

    server.resume().await;
    let after = wait_until("a store to succeed again", PATIENCE, || async {
        memory
            .store(store_request("written after the outage", Category::Fact))
            .await
            .ok()
    })
    .await;
    assert_eq!(
        memory.get(&after.id).await.unwrap().content,
        "written after the outage"
    );
    assert_eq!(memory.stats().await.unwrap().engrams, 2);
    memory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reembedding_waits_for_every_memory_on_the_database_to_stop() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let memory = open(&url).await;
    let refused = mimo_memory::reembed(MemoryConfig::new(MemoryDatabase::parse(&url)), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(refused, MemoryError::SharedDatabaseBusy { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("stop every one"), "{refused}");

    // Its lock's connection lost (a restarted server, a terminated backend): its other
    // connections still count.
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE '%advisory_lock_shared%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "the memory's lock connection");
    let refused = mimo_memory::reembed(MemoryConfig::new(MemoryDatabase::parse(&url)), |_, _| {})
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("connections"), "{refused}");

    memory.close().await;
    // The closed connections' server processes end just after.
    let report = wait_until("the re-embedding to run alone", PATIENCE, || async {
        mimo_memory::reembed(MemoryConfig::new(MemoryDatabase::parse(&url)), |_, _| {})
            .await
            .ok()
    })
    .await;
    assert_eq!(report.reembedded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_embedder_on_the_same_database_is_noticed_and_refused() {
    let mut server = PostgresServer::start().await;
    let url = server.create_database().await;
    let builtin = open(&url).await;
    let other = mimo_memory::open(
        MemoryConfig::new(MemoryDatabase::parse(&url)).with_embedder(std::sync::Arc::new(
            mimo_memory::ExternalEmbedder::new("other-model", 8),
        )),
    )
    .await
    .unwrap();
    builtin
        .store(store_request(
            "stored with the built-in embedder",
            Category::Fact,
        ))
        .await
        .unwrap();
    let refusal = wait_until("the other process to notice", PATIENCE, || async {
        let attempt = other
            .search(SearchRequest {
                query_vector: vec![1.0; 8],
                ..SearchRequest::default()
            })
            .await;
        attempt.err()
    })
    .await;
    let status = tonic::Status::from(refusal);
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("builtin-hash-v1")
            && status.message().contains("another memory process"),
        "{status:?}"
    );
    builtin.close().await;
    other.close().await;
}
