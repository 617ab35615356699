//! The registry on its own, on a loopback port: Watch (revisions, filters, resume,
//! compaction, the watcher bound) and ListTools pagination.

use super::PATIENCE;
use mimo_integration_tests::wait_until;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::{
    GrantLeaseRequest, ListToolsRequest, RegisterSkillRequest, RevokeLeaseRequest, Tool,
    WatchEventType, WatchRequest, WatchResponse,
};
use mimo_registry::RegistryConfig;
use mimo_reporter::ReporterConfig;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// A registry serving `config` on a loopback port, stopped when dropped.
struct Registry {
    client: RegistryClient<Channel>,
    shutdown: CancellationToken,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(config: RegistryConfig) -> Registry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let reporting = ReporterConfig {
        telemetry_address: None,
        interval: Duration::from_secs(10),
    };
    tokio::spawn(mimo_registry::serve(
        config,
        reporting,
        listener,
        shutdown.clone(),
    ));
    let channel = mimo_proto::connect::channel(&address).await.unwrap();
    Registry {
        client: mimo_proto::connect::registry(channel),
        shutdown,
    }
}

fn tool(name: &str, description: &str) -> Tool {
    Tool {
        name: name.into(),
        description: description.into(),
        input_schema_json: r#"{"type":"object"}"#.into(),
        ..Tool::default()
    }
}

async fn grant(client: &mut RegistryClient<Channel>, ttl_ms: u64) -> u64 {
    client
        .grant_lease(GrantLeaseRequest { ttl_ms })
        .await
        .unwrap()
        .into_inner()
        .lease_id
}

async fn register(client: &mut RegistryClient<Channel>, lease: u64, skill: &str, tools: &[Tool]) {
    client
        .register_skill(RegisterSkillRequest {
            lease_id: lease,
            skill: skill.into(),
            endpoint: "127.0.0.1:7".into(),
            tools: tools.to_vec(),
        })
        .await
        .unwrap();
}

async fn watch(
    client: &mut RegistryClient<Channel>,
    start: u64,
    skill: &str,
) -> Streaming<WatchResponse> {
    client
        .watch(WatchRequest {
            start_revision: start,
            skill: skill.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a change within the patience")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// (type, skill, tool name) of each event, for comparing a change with what was expected.
fn summary(change: &WatchResponse) -> Vec<(WatchEventType, String, String)> {
    change
        .events
        .iter()
        .map(|event| (event.r#type(), event.skill.clone(), event.tool_name.clone()))
        .collect()
}

fn event(kind: WatchEventType, skill: &str, tool: &str) -> (WatchEventType, String, String) {
    (kind, skill.to_string(), tool.to_string())
}

async fn revision(client: &mut RegistryClient<Channel>) -> u64 {
    client
        .list_tools(ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_each_change_once_in_revision_order_and_resumes_from_the_history() {
    let registry = start(RegistryConfig::default()).await;
    let mut client = registry.client.clone();
    let listed = revision(&mut client).await;
    let mut all = watch(&mut client, listed + 1, "").await;
    let mut only_s = watch(&mut client, listed + 1, "s").await;

    let lease = grant(&mut client, 60_000).await;
    register(
        &mut client,
        lease,
        "s",
        &[tool("a", "one"), tool("b", "two")],
    )
    .await;
    let added = next(&mut all).await;
    assert_eq!(added.revision, listed + 1);
    assert_eq!(
        summary(&added),
        [
            event(WatchEventType::SkillAdded, "s", ""),
            event(WatchEventType::ToolAdded, "s", "s_a"),
            event(WatchEventType::ToolAdded, "s", "s_b"),
        ]
    );
    assert_eq!(added.events[1].tool.as_ref().unwrap().description, "one");
    assert_eq!(added.events[0].lease_id, lease);
    assert_eq!(added.events[0].endpoint, "127.0.0.1:7");

    // A new catalogue replaces the old one whole, as one change.
    register(
        &mut client,
        lease,
        "s",
        &[tool("b", "changed"), tool("c", "three")],
    )
    .await;
    let replaced = next(&mut all).await;
    assert_eq!(replaced.revision, listed + 2);
    assert_eq!(
        summary(&replaced),
        [
            event(WatchEventType::SkillUpdated, "s", ""),
            event(WatchEventType::ToolUpdated, "s", "s_b"),
            event(WatchEventType::ToolAdded, "s", "s_c"),
            event(WatchEventType::ToolRemoved, "s", "s_a"),
        ]
    );

    // Another skill's lease, left to expire: watchers of `s` do not hear of it.
    let short = grant(&mut client, 1000).await;
    register(&mut client, short, "other", &[tool("x", "")]).await;
    assert_eq!(
        summary(&next(&mut all).await)[0].0,
        WatchEventType::SkillAdded
    );
    let expired = next(&mut all).await;
    assert_eq!(
        summary(&expired),
        [
            event(WatchEventType::SkillExpired, "other", ""),
            event(WatchEventType::ToolRemoved, "other", "other_x"),
        ]
    );

    client
        .revoke_lease(RevokeLeaseRequest { lease_id: lease })
        .await
        .unwrap();
    let revoked = next(&mut all).await;
    assert_eq!(revoked.revision, listed + 5);
    assert_eq!(revoked.events[0].r#type(), WatchEventType::SkillRemoved);
    assert_eq!(revoked.events.len(), 3, "the skill and its two tools");

    let filtered: Vec<u64> = [
        next(&mut only_s).await,
        next(&mut only_s).await,
        next(&mut only_s).await,
    ]
    .iter()
    .map(|change| {
        assert!(change.events.iter().all(|event| event.skill == "s"));
        change.revision
    })
    .collect();
    assert_eq!(filtered, [listed + 1, listed + 2, listed + 5]);

    // A watcher that went away resumes from where it stopped, missing nothing.
    let mut resumed = watch(&mut client, listed + 2, "").await;
    for expected in listed + 2..=listed + 5 {
        assert_eq!(next(&mut resumed).await.revision, expected);
    }
    assert_eq!(revision(&mut client).await, listed + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_beyond_the_history_is_told_it_was_compacted() {
    let registry = start(RegistryConfig {
        watch_history: 2,
        ..RegistryConfig::default()
    })
    .await;
    let mut client = registry.client.clone();
    let first = revision(&mut client).await + 1;
    let lease = grant(&mut client, 60_000).await;
    for description in ["1", "2", "3"] {
        register(&mut client, lease, "s", &[tool("a", description)]).await;
    }
    let mut stale = watch(&mut client, first, "").await;
    let answer = next(&mut stale).await;
    assert!(answer.compacted, "{answer:?}");
    assert_eq!(answer.compact_revision, first + 1);
    assert!(stale.message().await.unwrap().is_none(), "nothing follows");

    // A revision from an earlier run of a registry is older than any of this one.
    let mut foreign = watch(&mut client, 1, "").await;
    assert!(next(&mut foreign).await.compacted);
    let mut kept = watch(&mut client, first + 1, "").await;
    assert_eq!(next(&mut kept).await.revision, first + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_bounded_and_a_closed_watch_frees_its_place() {
    let registry = start(RegistryConfig {
        max_watchers: 2,
        ..RegistryConfig::default()
    })
    .await;
    let mut client = registry.client.clone();
    let first = watch(&mut client, 0, "").await;
    let _second = watch(&mut client, 0, "").await;
    let refused = client
        .watch(WatchRequest::default())
        .await
        .expect_err("a third watcher is over the bound");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("watchers limit reached"),
        "{}",
        refused.message()
    );
    drop(first);
    wait_until("the closed watch's place to be free", PATIENCE, || {
        let mut client = client.clone();
        async move { client.watch(WatchRequest::default()).await.ok() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tools_pages_through_every_tool_once_in_name_order() {
    let registry = start(RegistryConfig::default()).await;
    let mut client = registry.client.clone();
    let lease = grant(&mut client, 60_000).await;
    let tools: Vec<Tool> = (0..25).map(|i| tool(&format!("t{i:02}"), "")).collect();
    register(&mut client, lease, "big", &tools).await;
    register(&mut client, lease, "small", &[tool("only", "")]).await;

    let mut names = Vec::new();
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tools(ListToolsRequest {
                skill: "big".into(),
                page_size: 10,
                page_token,
                ..ListToolsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.tools.len() <= 10);
        names.extend(page.tools.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("big_t{i:02}")).collect();
    assert_eq!(names, expected);
    assert_eq!(pages, 3);

    let prefixed = client
        .list_tools(ListToolsRequest {
            name_prefix: "big_t1".into(),
            page_size: 4,
            page_token: "big_t13".into(),
            ..ListToolsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let prefixed: Vec<String> = prefixed.tools.into_iter().map(|t| t.name).collect();
    assert_eq!(prefixed, ["big_t14", "big_t15", "big_t16", "big_t17"]);

    let too_big = client
        .list_tools(ListToolsRequest {
            page_size: 1001,
            ..ListToolsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(too_big.message().contains("1000"), "{}", too_big.message());
}
