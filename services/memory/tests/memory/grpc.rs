//! The memory over a real gRPC socket: answers, status codes, and shutdown.

use crate::{store_request, TestMemory};
use mimo_proto::v1::{DeleteRequest, GetRequest, SearchRequest, StoreRequest};
use mimo_reporter::ReporterConfig;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;

#[tokio::test]
async fn serve_answers_over_the_wire_and_stops_on_cancel() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let (address, shutdown, server) = serve(&memory).await?;
    let mut client = mimo_proto::connect::memory(mimo_proto::connect::channel(&address).await?);
    let stored = client
        .store(store_request("Saturn's rings are mostly ice."))
        .await?
        .into_inner()
        .engram
        .expect("stored engram");
    let fetched = client
        .get(GetRequest {
            id: stored.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(fetched.content, stored.content);
    let hits = client
        .search(SearchRequest {
            query: "icy rings around Saturn".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 1);

    let empty = client.store(store_request("")).await.unwrap_err();
    assert_eq!(
        (empty.code(), empty.message()),
        (Code::InvalidArgument, "content is empty")
    );
    let limit = client
        .search(SearchRequest {
            query: "rings".into(),
            limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(limit.code(), Code::InvalidArgument);
    assert_eq!(limit.message(), "limit is 0; it must lie within 1..=1000");
    let missing = client
        .get(GetRequest {
            id: "no-such-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (Code::NotFound, "engram no-such-id not found")
    );
    client
        .delete(DeleteRequest {
            id: stored.id.clone(),
        })
        .await?;
    let deleted = client
        .delete(DeleteRequest { id: stored.id })
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), Code::NotFound);

    drop(client);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    Ok(())
}

/// Serves `memory` on a loopback port; returns its address and the shutdown token.
async fn serve(
    memory: &TestMemory,
) -> anyhow::Result<(
    String,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let shutdown = CancellationToken::new();
    let reporting = ReporterConfig {
        telemetry_address: None,
        interval: Duration::from_secs(1),
    };
    let server = tokio::spawn(mimo_memory::serve(
        memory.store.clone(),
        reporting,
        listener,
        shutdown.clone(),
    ));
    Ok((address, shutdown, server))
}

#[tokio::test]
async fn a_store_stream_acknowledges_in_order_and_stops_at_the_first_bad_request(
) -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let (address, shutdown, server) = serve(&memory).await?;
    let mut client = mimo_proto::connect::memory(mimo_proto::connect::channel(&address).await?);
    let good = 1500;
    let requests: Vec<_> = (0..good)
        .map(|number| StoreRequest {
            allow_duplicate: true,
            ..store_request(&format!("streamed note {number} about herons"))
        })
        .chain([store_request("   ")])
        .chain((0..50).map(|number| store_request(&format!("after the bad one {number}"))))
        .collect();
    let mut answers = client
        .store_stream(futures::stream::iter(requests))
        .await?
        .into_inner();
    let mut acknowledged = Vec::new();
    let failure = loop {
        match answers.message().await {
            Ok(Some(answer)) => acknowledged.push(answer.engram.expect("engram")),
            Ok(None) => panic!("the stream ended without naming the bad request"),
            Err(status) => break status,
        }
    };
    assert_eq!(failure.code(), Code::InvalidArgument);
    assert_eq!(
        failure.message(),
        format!("request {} of the stream: content is empty", good + 1)
    );
    assert_eq!(acknowledged.len(), good);
    for (number, engram) in acknowledged.iter().enumerate() {
        assert_eq!(
            engram.content,
            format!("streamed note {number} about herons")
        );
    }
    // Everything acknowledged is stored; nothing after the bad request is.
    assert_eq!(memory.store.counts().engrams, good);
    let last = &acknowledged[good - 1];
    assert_eq!(memory.store.get(&last.id).await?.content, last.content);
    drop(client);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    Ok(())
}

#[tokio::test]
async fn a_stop_keeps_the_working_entries_worth_keeping() -> anyhow::Result<()> {
    use mimo_proto::v1::RememberRequest;
    let memory = TestMemory::open().await?;
    let (address, shutdown, server) = serve(&memory).await?;
    let mut client = mimo_proto::connect::memory(mimo_proto::connect::channel(&address).await?);
    for (content, importance) in [
        ("the alarm code changed to 4711", 0.9),
        ("it is cloudy", 0.1),
    ] {
        client
            .remember(RememberRequest {
                entry: Some(StoreRequest {
                    importance: Some(importance),
                    ..store_request(content)
                }),
                ttl_ms: None,
            })
            .await?;
    }
    drop(client);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    let kept = memory
        .store
        .search(crate::search_request("alarm code"))
        .await?;
    assert_eq!(kept.len(), 1);
    assert_eq!(
        memory.store.counts().engrams,
        1,
        "the unimportant entry is let go"
    );
    Ok(())
}

#[tokio::test]
async fn answers_stop_listing_at_their_size_bound_instead_of_failing() -> anyhow::Result<()> {
    use mimo_proto::v1::{ListRequest, SearchRequest as Search};
    let memory = TestMemory::open().await?;
    let big = "word ".repeat(18_000); // 90 KB
    let mut ids = Vec::new();
    for number in 0..120 {
        let stored = memory
            .store
            .store(StoreRequest {
                allow_duplicate: true,
                ..store_request(&format!("entry{number} {big}"))
            })
            .await?;
        ids.push(stored.id);
    }
    let (address, shutdown, server) = serve(&memory).await?;
    let mut client = mimo_proto::connect::memory(mimo_proto::connect::channel(&address).await?);
    let found = client
        .search(Search {
            query: "word".into(),
            limit: Some(120),
            min_similarity: Some(-1.0),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(found.truncated);
    assert!(
        found.hits.len() < 120 && found.hits.len() > 50,
        "{}",
        found.hits.len()
    );
    let page = client
        .list(ListRequest {
            limit: Some(120),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(page.truncated);
    assert_eq!(page.total, 120);
    assert!(page.engrams.len() < 120 && page.engrams.len() > 50);
    // Only the hits sent were counted as accessed.
    let returned: std::collections::HashSet<String> = found
        .hits
        .iter()
        .map(|hit| hit.engram.as_ref().unwrap().id.clone())
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut touched = 0;
        for id in &ids {
            let engram = memory.store.get(id).await?;
            if engram.access_count > 0 {
                assert!(
                    returned.contains(id),
                    "{id} was not sent but counted as accessed"
                );
                touched += 1;
            }
        }
        if touched == returned.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "accesses never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    Ok(())
}
