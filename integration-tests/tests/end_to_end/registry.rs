//! The registry on its own, on a loopback port: Watch (revisions, filters, resume,
//! compaction, the watcher bound) and ListTools pagination.

use super::{Store, PATIENCE};
use mimo_integration_tests::wait_until;
use mimo_integration_tests::EtcdServer;
use mimo_proto::connect::Channel;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::{
    GrantLeaseRequest, KeepAliveRequest, ListToolsRequest, RegisterSkillRequest,
    RevokeLeaseRequest, TimeToLiveRequest, Tool, WatchEventType, WatchRequest, WatchResponse,
};
use mimo_registry::{EtcdConfig, RegistryConfig};
use mimo_reporter::ReporterConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};

/// A registry serving `config` on a loopback port, stopped when dropped (with its etcd).
struct Registry {
    client: RegistryClient<Channel>,
    shutdown: CancellationToken,
    etcd: Option<Arc<EtcdServer>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Registry {
    /// Another registry replica sharing this one's etcd.
    async fn replica(&self, config: RegistryConfig) -> Registry {
        let etcd = self.etcd.clone().expect("replicas share an etcd");
        serve_registry(config, Some(etcd)).await
    }
}

async fn start(store: Store, config: RegistryConfig) -> Registry {
    let etcd = match store {
        Store::Memory => None,
        Store::Etcd => Some(Arc::new(EtcdServer::start().await)),
    };
    serve_registry(config, etcd).await
}

async fn serve_registry(mut config: RegistryConfig, etcd: Option<Arc<EtcdServer>>) -> Registry {
    if let Some(etcd) = &etcd {
        config.etcd = Some(EtcdConfig::parse(&format!("etcd://{}", etcd.address())).unwrap());
    }
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
    let client = mimo_proto::connect::registry(channel);
    // Serving once a read answers (an etcd-backed registry loads its state first).
    wait_until("the registry to serve", PATIENCE, || {
        let mut client = client.clone();
        async move { client.list_tools(ListToolsRequest::default()).await.ok() }
    })
    .await;
    Registry {
        client,
        shutdown,
        etcd,
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

on_both_stores!(watch_sends_each_change_once_in_revision_order_and_resumes_from_the_history);
async fn watch_sends_each_change_once_in_revision_order_and_resumes_from_the_history(store: Store) {
    let registry = start(store, RegistryConfig::default()).await;
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
    assert!(added.revision > listed);
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
    assert!(replaced.revision > added.revision);
    assert_eq!(
        summary(&replaced),
        [
            event(WatchEventType::SkillUpdated, "s", ""),
            event(WatchEventType::ToolRemoved, "s", "s_a"),
            event(WatchEventType::ToolUpdated, "s", "s_b"),
            event(WatchEventType::ToolAdded, "s", "s_c"),
        ]
    );

    // Another skill's lease, left to expire: watchers of `s` do not hear of it.
    let short = grant(&mut client, 1000).await;
    register(&mut client, short, "other", &[tool("x", "")]).await;
    let other = next(&mut all).await;
    assert_eq!(summary(&other)[0].0, WatchEventType::SkillAdded);
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
    assert_eq!(revoked.events[0].r#type(), WatchEventType::SkillRemoved);
    assert_eq!(revoked.events.len(), 3, "the skill and its two tools");
    let revisions = [
        added.revision,
        replaced.revision,
        other.revision,
        expired.revision,
        revoked.revision,
    ];
    assert!(
        revisions.windows(2).all(|pair| pair[0] < pair[1]),
        "{revisions:?}"
    );

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
    assert_eq!(
        filtered,
        [added.revision, replaced.revision, revoked.revision]
    );

    // A watcher that went away resumes from where it stopped, missing nothing.
    let mut resumed = watch(&mut client, replaced.revision, "").await;
    for expected in &revisions[1..] {
        assert_eq!(next(&mut resumed).await.revision, *expected);
    }
    assert_eq!(revision(&mut client).await, revoked.revision);
}

on_both_stores!(a_watch_from_beyond_the_history_is_told_it_was_compacted);
async fn a_watch_from_beyond_the_history_is_told_it_was_compacted(store: Store) {
    let registry = start(
        store,
        RegistryConfig {
            watch_history: 2,
            ..RegistryConfig::default()
        },
    )
    .await;
    let mut client = registry.client.clone();
    let mut changes = watch(&mut client, 0, "").await;
    let lease = grant(&mut client, 60_000).await;
    let mut revisions = Vec::new();
    for description in ["1", "2", "3"] {
        register(&mut client, lease, "s", &[tool("a", description)]).await;
        revisions.push(next(&mut changes).await.revision);
    }
    let mut stale = watch(&mut client, revisions[0], "").await;
    let answer = next(&mut stale).await;
    assert!(answer.compacted, "{answer:?}");
    assert_eq!(answer.compact_revision, revisions[0] + 1);
    assert!(stale.message().await.unwrap().is_none(), "nothing follows");

    // A revision from an earlier run of a registry is older than any of this one.
    let mut foreign = watch(&mut client, 1, "").await;
    assert!(next(&mut foreign).await.compacted);
    let mut kept = watch(&mut client, revisions[1], "").await;
    assert_eq!(next(&mut kept).await.revision, revisions[1]);
}

on_both_stores!(a_lease_not_kept_alive_expires_and_one_stream_keeps_others_alive);
async fn a_lease_not_kept_alive_expires_and_one_stream_keeps_others_alive(store: Store) {
    let registry = start(store, RegistryConfig::default()).await;
    let mut client = registry.client.clone();
    let granted = client
        .grant_lease(GrantLeaseRequest { ttl_ms: 1000 })
        .await
        .unwrap()
        .into_inner();
    assert!(granted.ttl_ms >= 1000, "{granted:?}");
    let left = granted.lease_id;
    let kept = grant(&mut client, 1000).await;
    register(&mut client, left, "left", &[tool("t", "")]).await;
    register(&mut client, kept, "kept", &[tool("t", "")]).await;

    let (beats, receiver) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .keep_alive(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    // Read answers as they come, so that the registry never waits on this test.
    let (answer_sender, mut received) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok(Some(answer)) = answers.message().await {
            if answer_sender.send(answer).await.is_err() {
                return;
            }
        }
    });
    let names = wait_until("the unkept lease's tool to go", PATIENCE, || {
        let mut client = client.clone();
        let beats = beats.clone();
        async move {
            beats.send(KeepAliveRequest { lease_id: kept }).await.ok()?;
            let names: Vec<String> = client
                .list_tools(ListToolsRequest::default())
                .await
                .ok()?
                .into_inner()
                .tools
                .into_iter()
                .map(|t| t.name)
                .collect();
            (!names.contains(&"left_t".to_string())).then_some(names)
        }
    })
    .await;
    assert_eq!(names, ["kept_t"]);
    let answer = received.recv().await.unwrap();
    assert_eq!(answer.lease_id, kept);
    assert_eq!(answer.ttl_ms, granted.ttl_ms);
    assert!(!answer.expired);

    // The expired lease is answered as such, and the same stream keeps the other alive.
    beats
        .send(KeepAliveRequest { lease_id: left })
        .await
        .unwrap();
    beats
        .send(KeepAliveRequest { lease_id: kept })
        .await
        .unwrap();
    let mut last_two = Vec::new();
    while let Some(answer) = received.recv().await {
        last_two.push(answer);
        if last_two.len() > 2 {
            last_two.remove(0);
        }
        if last_two.len() == 2 && last_two[0].lease_id == left && last_two[1].lease_id == kept {
            break;
        }
    }
    assert!(
        last_two[0].expired && last_two[0].ttl_ms == 0,
        "{last_two:?}"
    );
    assert!(!last_two[1].expired, "{last_two:?}");

    let gone = client
        .register_skill(RegisterSkillRequest {
            lease_id: left,
            skill: "left".into(),
            endpoint: "127.0.0.1:7".into(),
            tools: vec![tool("t", "")],
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let lost = client
        .time_to_live(TimeToLiveRequest { lease_id: left })
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Code::NotFound);
    let alive = client
        .time_to_live(TimeToLiveRequest { lease_id: kept })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alive.skills, ["kept"]);
    let too_short = client
        .grant_lease(GrantLeaseRequest { ttl_ms: 10 })
        .await
        .unwrap_err();
    assert_eq!(too_short.code(), Code::InvalidArgument);
}

on_both_stores!(watchers_are_bounded_and_a_closed_watch_frees_its_place);
async fn watchers_are_bounded_and_a_closed_watch_frees_its_place(store: Store) {
    let registry = start(
        store,
        RegistryConfig {
            max_watchers: 2,
            ..RegistryConfig::default()
        },
    )
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

on_both_stores!(list_tools_pages_through_every_tool_once_in_name_order);
async fn list_tools_pages_through_every_tool_once_in_name_order(store: Store) {
    let registry = start(store, RegistryConfig::default()).await;
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

    let page = |page_token: String| {
        let mut client = client.clone();
        async move {
            client
                .list_tools(ListToolsRequest {
                    name_prefix: "big_t1".into(),
                    page_size: 4,
                    page_token,
                    ..ListToolsRequest::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = page(String::new()).await;
    let second = page(first.next_page_token.clone()).await;
    let names = |page: &mimo_proto::v1::ListToolsResponse| -> Vec<String> {
        page.tools.iter().map(|t| t.name.clone()).collect()
    };
    assert_eq!(names(&first), ["big_t10", "big_t11", "big_t12", "big_t13"]);
    assert_eq!(names(&second), ["big_t14", "big_t15", "big_t16", "big_t17"]);
    let forged = client
        .list_tools(ListToolsRequest {
            page_token: "big_t13".into(),
            ..ListToolsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument, "{forged:?}");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_replicas_on_one_etcd_share_one_view_with_the_same_revisions() {
    let first = start(Store::Etcd, RegistryConfig::default()).await;
    let second = first.replica(RegistryConfig::default()).await;
    let mut a = first.client.clone();
    let mut b = second.client.clone();
    let mut changes_at_b = watch(&mut b, 0, "").await;

    let lease = grant(&mut a, 60_000).await;
    register(&mut a, lease, "shared", &[tool("t", "")]).await;
    let seen_at_b = next(&mut changes_at_b).await;
    assert_eq!(seen_at_b.events[0].r#type(), WatchEventType::SkillAdded);
    let listed_at_a = a
        .list_tools(ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed_at_a.revision, seen_at_b.revision,
        "one revision for one change"
    );
    let resolved = b
        .resolve_tool(mimo_proto::v1::ResolveToolRequest {
            name: "shared_t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.lease_id, lease);

    // A lease kept alive through one replica and revoked through the other.
    let (beats, receiver) = tokio::sync::mpsc::channel(4);
    let mut answers = b
        .keep_alive(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    beats
        .send(KeepAliveRequest { lease_id: lease })
        .await
        .unwrap();
    let answer = answers.message().await.unwrap().unwrap();
    assert_eq!((answer.lease_id, answer.expired), (lease, false));
    b.revoke_lease(RevokeLeaseRequest { lease_id: lease })
        .await
        .unwrap();
    wait_until("the revoke to reach the first replica", PATIENCE, || {
        let mut a = a.clone();
        async move {
            let tools = a.list_tools(ListToolsRequest::default()).await.ok()?;
            tools.into_inner().tools.is_empty().then_some(())
        }
    })
    .await;
    let removed = next(&mut changes_at_b).await;
    assert_eq!(removed.events[0].r#type(), WatchEventType::SkillRemoved);

    // A third replica started now loads what etcd holds.
    let lease = grant(&mut a, 60_000).await;
    register(&mut a, lease, "later", &[tool("u", "")]).await;
    let third_replica = first.replica(RegistryConfig::default()).await;
    let mut third = third_replica.client.clone();
    let names: Vec<String> = third
        .list_tools(ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["later_u"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_whose_etcd_lost_its_data_drops_what_went_and_goes_on() {
    let mut etcd = EtcdServer::start().await;
    let config = RegistryConfig {
        etcd: Some(EtcdConfig::parse(&format!("etcd://{}", etcd.address())).unwrap()),
        ..RegistryConfig::default()
    };
    let registry = serve_registry(config, None).await;
    let mut client = registry.client.clone();
    let lease = grant(&mut client, 60_000).await;
    register(&mut client, lease, "old", &[tool("t", "")]).await;
    let before = revision(&mut client).await;
    let mut changes = watch(&mut client, before + 1, "").await;

    etcd.replace_with_an_empty_one().await;
    let gone = next(&mut changes).await;
    assert!(gone.revision > before, "revisions still grow: {gone:?}");
    assert!(
        gone.events
            .iter()
            .any(|event| event.skill == "old" && event.r#type() == WatchEventType::SkillExpired),
        "{gone:?}"
    );
    assert!(client
        .list_tools(ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools
        .is_empty());

    // The new etcd takes registrations, and their revisions follow the earlier ones.
    let lease = wait_until("a lease from the new etcd", PATIENCE, || {
        let mut client = client.clone();
        async move {
            client
                .grant_lease(GrantLeaseRequest { ttl_ms: 60_000 })
                .await
                .ok()
                .map(|granted| granted.into_inner().lease_id)
        }
    })
    .await;
    register(&mut client, lease, "new", &[tool("t", "")]).await;
    let added = next(&mut changes).await;
    assert!(added.revision > gone.revision, "{added:?}");
    assert_eq!(added.events[0].skill, "new");
}

on_both_stores!(big_catalogues_are_refused_and_pages_stay_under_the_message_limit);
async fn big_catalogues_are_refused_and_pages_stay_under_the_message_limit(store: Store) {
    let registry = start(store, RegistryConfig::default()).await;
    let mut client = registry.client.clone();
    let lease = grant(&mut client, 60_000).await;
    let huge = vec![tool("t", &"x".repeat(2 * 1024 * 1024))];
    let refused = client
        .register_skill(RegisterSkillRequest {
            lease_id: lease,
            skill: "huge".into(),
            endpoint: "127.0.0.1:7".into(),
            tools: huge,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("the limit is 1048576"),
        "{}",
        refused.message()
    );

    // Eight skills of one 900 KiB tool each: 7 MiB in all, listed in pages under 4 MiB.
    for index in 0..8 {
        let lease = grant(&mut client, 60_000).await;
        let big = vec![tool("t", &"y".repeat(900 * 1024))];
        register(&mut client, lease, &format!("big{index}"), &big).await;
    }
    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tools(ListToolsRequest {
                page_token,
                ..ListToolsRequest::default()
            })
            .await
            .expect("every page fits in a message")
            .into_inner();
        assert!(
            page.tools.len() <= 4,
            "{} tools in one page",
            page.tools.len()
        );
        names.extend(page.tools.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(names.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_each_others_fresh_leases_and_skip_foreign_records_in_etcd() {
    use mimo_etcd::etcdserverpb::{kv_client::KvClient, PutRequest};
    let first = start(Store::Etcd, RegistryConfig::default()).await;
    let second = first.replica(RegistryConfig::default()).await;
    let mut a = first.client.clone();
    let mut b = second.client.clone();
    // A lease granted through one replica is good at the other at once.
    for index in 0..20 {
        let lease = grant(&mut a, 60_000).await;
        register(&mut b, lease, &format!("s{index}"), &[tool("t", "")]).await;
    }

    // Records written under the prefix by something else: a registration with a bad
    // endpoint, and one attached to no lease. Neither is served; real ones still are.
    let address = first.etcd.as_ref().unwrap().address().to_string();
    let mut kv = KvClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let lease = grant(&mut a, 60_000).await;
    let bad = mimo_proto::v1::StoredSkill {
        endpoint: "not an endpoint".into(),
        tools: vec![tool("t", "")],
    };
    let good = mimo_proto::v1::StoredSkill {
        endpoint: "127.0.0.1:9".into(),
        tools: vec![tool("t", "")],
    };
    for (skill, value, attached) in [("bad", &bad, lease as i64), ("ghost", &good, 0)] {
        use prost::Message;
        kv.put(PutRequest {
            key: format!("/mimo/registry/skills/{lease:016x}/{skill}").into_bytes(),
            value: value.encode_to_vec(),
            lease: attached,
            ..PutRequest::default()
        })
        .await
        .unwrap();
    }
    register(&mut a, lease, "real", &[tool("t", "")]).await;
    // The other replica learns of it from etcd's watch: shortly, not at once.
    let names = wait_until("the other replica to list the real skill", PATIENCE, || {
        let mut b = b.clone();
        async move {
            let names: Vec<String> = b
                .list_tools(ListToolsRequest {
                    name_prefix: "real".into(),
                    ..ListToolsRequest::default()
                })
                .await
                .ok()?
                .into_inner()
                .tools
                .into_iter()
                .map(|t| t.name)
                .collect();
            (!names.is_empty()).then_some(names)
        }
    })
    .await;
    assert_eq!(names, ["real_t"]);
    for skill in ["bad", "ghost"] {
        let listed = b
            .list_tools(ListToolsRequest {
                skill: skill.into(),
                ..ListToolsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.tools.is_empty(), "{skill}: {listed:?}");
    }
}

on_both_stores!(a_skill_on_two_hosts_is_resolved_to_each_in_turn);
async fn a_skill_on_two_hosts_is_resolved_to_each_in_turn(store: Store) {
    let registry = start(store, RegistryConfig::default()).await;
    let mut client = registry.client.clone();
    let mut lease_of = std::collections::BTreeMap::new();
    for endpoint in ["127.0.0.1:7", "127.0.0.1:8"] {
        let lease = grant(&mut client, 60_000).await;
        client
            .register_skill(RegisterSkillRequest {
                lease_id: lease,
                skill: "shared".into(),
                endpoint: endpoint.into(),
                tools: vec![tool("t", "")],
            })
            .await
            .unwrap();
        lease_of.insert(endpoint.to_string(), lease);
    }
    let mut chosen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let resolved = client
            .resolve_tool(mimo_proto::v1::ResolveToolRequest {
                name: "shared_t".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (resolved.skill.as_str(), resolved.tool.as_str()),
            ("shared", "t")
        );
        assert_eq!(resolved.endpoints, ["127.0.0.1:7", "127.0.0.1:8"]);
        assert_eq!(
            resolved.lease_id, lease_of[&resolved.endpoint],
            "{resolved:?}"
        );
        chosen.insert(resolved.endpoint);
    }
    assert_eq!(chosen.len(), 2, "calls go to both hosts");
}
