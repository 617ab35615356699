//! The one writer: batching, a locked database, and a pool of one connection.

use crate::{search_request, store_request, TestMemory};
use mimo_memory::MemoryError;
use mimo_proto::v1::{StoreRequest, UpdateRequest};
use sqlx::Connection;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

/// Generous bound for work that takes milliseconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Opens the memory's file with a connection of its own, as another program would.
async fn other_program(memory: &TestMemory) -> anyhow::Result<sqlx::SqliteConnection> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(crate::database_path(&memory.directory))
        .busy_timeout(Duration::from_secs(30));
    Ok(sqlx::SqliteConnection::connect_with(&options).await?)
}

/// Waits until `ready` holds, polling.
async fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "condition not met in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn changes_waiting_for_the_writer_commit_together() -> anyhow::Result<()> {
    let memory = TestMemory::open_with(|mut config| {
        config.busy_timeout = Duration::from_secs(30);
        config
    })
    .await?;
    // Another program holds the write lock, so the writer's first transaction waits and
    // every later store queues behind it.
    let mut holder = other_program(&memory).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await?;
    let mut stores = JoinSet::new();
    for number in 0..100 {
        let store = memory.store.clone();
        stores.spawn(async move {
            store
                .store(store_request(&format!("queued fact number {number}")))
                .await
        });
    }
    wait_until(|| {
        let counts = memory.store.counts();
        counts.write_queue + counts.writing == 100
    })
    .await;
    let batches_before = memory.store.counts().write_batches;
    sqlx::query("COMMIT").execute(&mut holder).await?;
    while let Some(stored) = timeout(PATIENCE, stores.join_next()).await? {
        stored??;
    }
    let counts = memory.store.counts();
    assert_eq!(counts.engrams, 100);
    assert_eq!(counts.index_vectors, 100);
    assert!(
        counts.write_batches - batches_before <= 2,
        "100 queued stores took {} transactions",
        counts.write_batches - batches_before
    );
    Ok(())
}

#[tokio::test]
async fn a_database_locked_past_every_retry_is_a_retryable_error_and_loses_nothing(
) -> anyhow::Result<()> {
    let memory = TestMemory::open_with(|mut config| {
        config.busy_timeout = Duration::from_millis(50);
        config
    })
    .await?;
    let kept = memory
        .store
        .store(store_request("kept before the lock"))
        .await?;
    let mut holder = other_program(&memory).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await?;
    let refused = memory
        .store
        .store(store_request("stored while locked"))
        .await
        .expect_err("the file is locked by another program");
    assert!(
        matches!(refused, MemoryError::Busy { attempts: 5 }),
        "{refused:?}"
    );
    let status = tonic::Status::from(refused);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.message(),
        "the memory database stayed locked through 5 attempts; retry shortly"
    );
    assert!(memory.store.counts().busy_retries >= 4);
    assert_eq!(memory.store.counts().engrams, 1);
    sqlx::query("ROLLBACK").execute(&mut holder).await?;
    let after = memory
        .store
        .store(store_request("stored after the lock"))
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM engrams")
        .fetch_one(&mut holder)
        .await?;
    assert_eq!(rows, 2);
    memory.store.get(&kept.id).await?;
    memory.store.get(&after.id).await?;
    Ok(())
}

#[tokio::test]
async fn every_operation_finishes_with_a_pool_of_one_reader_under_concurrency() -> anyhow::Result<()>
{
    let memory = TestMemory::open_with(|mut config| {
        config.read_connections = 1;
        config
    })
    .await?;
    let seed = memory
        .store
        .store(store_request("the seed of every search"))
        .await?;
    let mut tasks = JoinSet::new();
    for worker in 0..40 {
        let store = memory.store.clone();
        let seed = seed.id.clone();
        tasks.spawn(async move {
            for round in 0..5 {
                let stored = store
                    .store(StoreRequest {
                        allow_duplicate: true,
                        ..store_request(&format!("worker {worker} round {round} seed note"))
                    })
                    .await?;
                store.search(search_request("seed note")).await?;
                store.get(&stored.id).await?;
                store.get(&seed).await?;
                store
                    .update(UpdateRequest {
                        id: stored.id.clone(),
                        importance: Some(0.9),
                        ..Default::default()
                    })
                    .await?;
                store.stats().await?;
                if round % 2 == 0 {
                    store.delete(&stored.id).await?;
                }
            }
            Ok::<_, MemoryError>(())
        });
    }
    while let Some(done) = timeout(PATIENCE, tasks.join_next()).await? {
        done??;
    }
    let counts = memory.store.counts();
    // Per worker: 5 stored, 3 deleted; plus the seed.
    assert_eq!(counts.engrams, 40 * 2 + 1);
    assert_eq!(counts.index_vectors, counts.engrams);
    assert_eq!(memory.store.stats().await?.engrams, 81);
    Ok(())
}
