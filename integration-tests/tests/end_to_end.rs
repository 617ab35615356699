//! End to end: the four services on ephemeral loopback ports, with real third-party MCP
//! servers as skills, a real SQLite file, and clients speaking gRPC.

use mimo_integration_tests::{
    everything_server, test_data, time_server, wait_until, Cluster, ClusterBuilder,
};
use mimo_proto::v1::{
    CallToolRequest, GetSkillRequest, ListInstancesRequest, ListToolsRequest, ResolveToolRequest,
    SearchRequest, SkillState, StoreRequest,
};
use mimo_skill_host::SkillSpec;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;

/// Generous: a cold `node` or Python start on a loaded 2-core machine can take seconds.
const PATIENCE: Duration = Duration::from_secs(90);

/// Where a test registry keeps its state; scenarios written for both run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    Etcd,
}

/// Runs a scenario once per store, as two tests named after it.
macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_memory() {
                super::$scenario(super::Store::Memory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_etcd() {
                super::$scenario(super::Store::Etcd).await;
            }
        }
    };
}

#[path = "end_to_end/health.rs"]
mod health;
#[path = "end_to_end/interop.rs"]
mod interop;
#[path = "end_to_end/memory_postgres.rs"]
mod memory_postgres;
#[path = "end_to_end/registry.rs"]
mod registry;
#[path = "end_to_end/supervision.rs"]
mod supervision;

async fn cluster_with_real_skills() -> Cluster {
    let cluster = ClusterBuilder::default()
        .skill("everything", everything_server())
        .skill("time", time_server())
        .start()
        .await;
    let mut registry = cluster.registry().await;
    wait_until("both skills' tools in the registry", PATIENCE, || {
        let mut registry = registry.clone();
        async move {
            let tools = registry
                .list_tools(ListToolsRequest::default())
                .await
                .ok()?
                .into_inner()
                .tools;
            let names: Vec<String> = tools.into_iter().map(|t| t.name).collect();
            (names.iter().any(|n| n == "everything_echo")
                && names.iter().any(|n| n == "time_get_current_time"))
            .then_some(())
        }
    })
    .await;
    let _ = &mut registry;
    cluster
}

async fn call(
    cluster: &Cluster,
    name: &str,
    arguments_json: &str,
) -> Result<mimo_proto::v1::CallToolResponse, tonic::Status> {
    let target = cluster
        .registry()
        .await
        .resolve_tool(ResolveToolRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    let channel = mimo_proto::connect::channel(&target.endpoint)
        .await
        .expect("skill-host reachable");
    let mut request = tonic::Request::new(CallToolRequest {
        skill: target.skill,
        tool: target.tool,
        arguments_json: arguments_json.to_string(),
        lease_id: 0,
    });
    request.set_timeout(Duration::from_secs(30));
    Ok(mimo_proto::connect::skill_host(channel)
        .call_tool(request)
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mcp_servers_tools_are_listed_and_called_through_grpc() {
    let cluster = cluster_with_real_skills().await;
    let tools = cluster
        .registry()
        .await
        .list_tools(ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools;
    let echo = tools
        .iter()
        .find(|t| t.name == "everything_echo")
        .expect("echo listed");
    assert_eq!(echo.skill, "everything");
    let echo_tool = echo.tool.clone().unwrap();
    assert_eq!(echo_tool.name, "echo");
    let schema: serde_json::Value = serde_json::from_str(&echo_tool.input_schema_json).unwrap();
    assert_eq!(schema["properties"]["message"]["type"], "string");
    assert_eq!(echo.endpoints, vec![cluster.skill_host.clone()]);

    let echoed = call(&cluster, "everything_echo", r#"{"message":"hello mimo"}"#)
        .await
        .unwrap();
    assert!(!echoed.is_error);
    assert_eq!(echoed.content.len(), 1);
    assert_eq!(echoed.content[0].r#type, "text");
    assert_eq!(echoed.content[0].text, "Echo: hello mimo");

    let now = call(&cluster, "time_get_current_time", r#"{"timezone":"UTC"}"#)
        .await
        .unwrap();
    assert!(!now.is_error, "{now:?}");
    let answer: serde_json::Value =
        serde_json::from_str(&now.content[0].text).expect("time answers JSON text");
    assert_eq!(answer["timezone"], "UTC");
    let datetime = answer["datetime"].as_str().unwrap();
    assert!(
        datetime.ends_with("+00:00") && datetime.len() >= 25,
        "{datetime}"
    );
    let structured: serde_json::Value = serde_json::from_str(&now.structured_content_json).unwrap();
    assert_eq!(structured["timezone"], "UTC");

    // A tool's own failure is a result with is_error, not a transport error.
    let bad_zone = call(
        &cluster,
        "time_get_current_time",
        r#"{"timezone":"Not/AZone"}"#,
    )
    .await
    .unwrap();
    assert!(bad_zone.is_error);
    assert!(bad_zone.content[0].text.contains("Not/AZone"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tool_calls_get_clear_errors_and_the_host_keeps_serving() {
    let cluster = cluster_with_real_skills().await;
    let unknown = call(&cluster, "no_such_tool", "{}").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains("no_such_tool"),
        "{}",
        unknown.message()
    );

    let malformed = call(&cluster, "everything_echo", r#"{"message": "#)
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("not valid JSON"),
        "{}",
        malformed.message()
    );

    let not_object = call(&cluster, "everything_echo", "[1, 2]")
        .await
        .unwrap_err();
    assert_eq!(not_object.code(), Code::InvalidArgument);
    assert!(
        not_object.message().contains("JSON object"),
        "{}",
        not_object.message()
    );

    let mut host = cluster.skill_host().await;
    let no_skill = host
        .call_tool(CallToolRequest {
            skill: "nope".into(),
            tool: "echo".into(),
            arguments_json: String::new(),
            lease_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(no_skill.code(), Code::NotFound);
    assert!(
        no_skill.message().contains("everything, time"),
        "{}",
        no_skill.message()
    );
    let no_tool = host
        .call_tool(CallToolRequest {
            skill: "time".into(),
            tool: "nope".into(),
            arguments_json: String::new(),
            lease_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(no_tool.code(), Code::NotFound);
    assert!(
        no_tool.message().contains("get_current_time"),
        "{}",
        no_tool.message()
    );

    let still_serving = call(&cluster, "everything_echo", r#"{"message":"still here"}"#)
        .await
        .unwrap();
    assert_eq!(still_serving.content[0].text, "Echo: still here");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_that_fails_to_start_is_reported_and_the_others_run() {
    let missing = SkillSpec {
        command: "/nonexistent/mcp-server".into(),
        args: vec![],
        env: BTreeMap::new(),
        cwd: None,
        lazy: false,
        instances: 1,
    };
    let exits_at_once = SkillSpec {
        command: "sh".into(),
        args: vec![
            "-c".into(),
            "echo 'cannot find my config' >&2; exit 3".into(),
        ],
        env: BTreeMap::new(),
        cwd: None,
        lazy: false,
        instances: 1,
    };
    let cluster = ClusterBuilder::default()
        .skill("missing", missing)
        .skill("crashes", exits_at_once)
        .skill("time", time_server())
        .start()
        .await;
    let host = cluster.skill_host().await;
    for (skill, expected) in [
        ("missing", "cannot start"),
        ("crashes", "cannot find my config"),
    ] {
        let status = wait_until(&format!("{skill} reported failed"), PATIENCE, || {
            let mut host = host.clone();
            async move {
                let status = host
                    .get_skill(GetSkillRequest {
                        skill: skill.into(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                (status.state == SkillState::Failed as i32).then_some(status)
            }
        })
        .await;
        assert!(status.error.contains(expected), "{skill}: {}", status.error);
    }
    let crashed = host
        .clone()
        .get_skill(GetSkillRequest {
            skill: "crashes".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(crashed.last_exit.contains('3'), "{}", crashed.last_exit);
    wait_until("time ready", PATIENCE, || {
        let mut host = host.clone();
        async move {
            let status = host
                .get_skill(GetSkillRequest {
                    skill: "time".into(),
                })
                .await
                .ok()?
                .into_inner();
            (status.state == SkillState::Ready as i32).then_some(())
        }
    })
    .await;
    let now = call(&cluster, "time_get_current_time", r#"{"timezone":"UTC"}"#).await;
    let now = match now {
        Ok(now) => now,
        // The registry may not have heard of the skill yet; wait for it.
        Err(_) => {
            wait_until("time registered", PATIENCE, || async {
                call(&cluster, "time_get_current_time", r#"{"timezone":"UTC"}"#)
                    .await
                    .ok()
            })
            .await
        }
    };
    assert!(!now.is_error);
    let failed = cluster
        .skill_host()
        .await
        .call_tool(CallToolRequest {
            skill: "crashes".into(),
            tool: "anything".into(),
            arguments_json: String::new(),
            lease_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    assert!(failed.message().contains("failed"), "{}", failed.message());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_finds_each_intended_sentence_by_a_paraphrase() {
    let cluster = ClusterBuilder::default().start().await;
    let mut memory = cluster.memory().await;
    let sentences: Vec<String> = std::fs::read_to_string(test_data("sentences.txt"))
        .expect("sentences.txt")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(sentences.len(), 50);
    let mut ids = Vec::new();
    for sentence in &sentences {
        let stored = memory
            .store(StoreRequest {
                content: sentence.clone(),
                ..StoreRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(stored.engram.unwrap().id);
    }
    let paraphrases =
        std::fs::read_to_string(test_data("paraphrases.tsv")).expect("paraphrases.tsv");
    let mut checked = 0;
    for line in paraphrases.lines().filter(|l| !l.trim().is_empty()) {
        let (query, line_number) = line.split_once('\t').expect("query<TAB>line");
        let intended = line_number.trim().parse::<usize>().unwrap() - 1;
        let hits = memory
            .search(SearchRequest {
                query: query.to_string(),
                limit: Some(3),
                ..SearchRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .hits;
        let top = hits
            .first()
            .unwrap_or_else(|| panic!("no hit for {query:?}"));
        let engram = top.engram.as_ref().unwrap();
        assert_eq!(
            engram.id, ids[intended],
            "query {query:?} found {:?}, not {:?}",
            engram.content, sentences[intended]
        );
        assert!(
            top.similarity >= mimo_memory::HASH_DEFAULT_MIN_SIMILARITY && top.similarity <= 1.0001
        );
        assert!(hits
            .windows(2)
            .all(|pair| pair[0].similarity >= pair[1].similarity));
        checked += 1;
    }
    assert!(checked >= 10);

    let empty = memory.store(StoreRequest::default()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let zero = memory
        .search(SearchRequest {
            query: "anything".into(),
            limit: Some(0),
            ..SearchRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    assert!(zero.message().contains('0'), "{}", zero.message());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_services_report_their_resources_to_telemetry() {
    let cluster = cluster_with_real_skills().await;
    let telemetry = cluster.telemetry().await;
    let instances = wait_until(
        "four services reporting, skill-host with its two skills",
        PATIENCE,
        || {
            let mut telemetry = telemetry.clone();
            async move {
                let instances = telemetry
                    .list_instances(ListInstancesRequest::default())
                    .await
                    .ok()?
                    .into_inner()
                    .instances;
                let services: Vec<String> = instances
                    .iter()
                    .map(|i| i.latest.clone().unwrap().instance.unwrap().service)
                    .collect();
                let skill_host_ready = instances.iter().any(|i| {
                    let report = i.latest.clone().unwrap();
                    report.instance.unwrap().service == "skill-host"
                        && report
                            .gauges
                            .iter()
                            .any(|g| g.name == "skill_host.skills_ready" && g.value == 2.0)
                });
                (services.len() == 4 && skill_host_ready).then_some(instances)
            }
        },
    )
    .await;
    let mut services: Vec<String> = instances
        .iter()
        .map(|i| i.latest.clone().unwrap().instance.unwrap().service)
        .collect();
    services.sort();
    assert_eq!(services, ["memory", "registry", "skill-host", "telemetry"]);
    for status in &instances {
        let report = status.latest.clone().unwrap();
        let process = report.process.unwrap();
        assert!(process.resident_memory_bytes > 1_000_000, "{process:?}");
        assert!(process.open_fds > 0 && process.threads > 0 && process.pid > 0);
        assert!(!report.instance.unwrap().host.is_empty());
    }
    // Both skills run as child processes of this (test) process.
    let skill_host = instances
        .iter()
        .find(|i| i.latest.clone().unwrap().instance.unwrap().service == "skill-host")
        .unwrap();
    assert!(
        skill_host
            .latest
            .clone()
            .unwrap()
            .process
            .unwrap()
            .child_processes
            >= 2
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_skill_host_revokes_its_tools_and_ends_its_skills() {
    let mut cluster = cluster_with_real_skills().await;
    let mut host = cluster.skill_host().await;
    let pids: Vec<i32> = host
        .list_skills(mimo_proto::v1::ListSkillsRequest {})
        .await
        .unwrap()
        .into_inner()
        .skills
        .iter()
        .map(|s| s.pid as i32)
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|pid| *pid > 0));
    cluster.stop_skill_host().await;
    let tools = cluster
        .registry()
        .await
        .list_tools(ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools;
    assert!(
        tools.is_empty(),
        "revoked at once, not left to expire: {tools:?}"
    );
    for pid in pids {
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        assert!(!alive, "skill process {pid} outlived its skill-host");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_abandoned_and_the_skill_keeps_serving() {
    // The host's own deadline for calls that set none, so that the answer is the host's.
    let cluster = ClusterBuilder::default()
        .skill("everything", everything_server())
        .default_call_timeout(Duration::from_millis(1500))
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_until("everything ready", PATIENCE, || {
        let mut host = host.clone();
        async move {
            let status = host
                .get_skill(GetSkillRequest {
                    skill: "everything".into(),
                })
                .await
                .ok()?
                .into_inner();
            (status.state == SkillState::Ready as i32).then_some(())
        }
    })
    .await;
    let mut host = host.clone();
    let request = tonic::Request::new(CallToolRequest {
        skill: "everything".into(),
        tool: "trigger-long-running-operation".into(),
        arguments_json: r#"{"duration": 60, "steps": 2}"#.into(),
        lease_id: 0,
    });
    let started = std::time::Instant::now();
    let late = host.call_tool(request).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");
    assert!(
        late.message().contains("no answer before the deadline"),
        "{}",
        late.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the deadline, not the tool, ended the call"
    );

    let echoed = call(
        &cluster,
        "everything_echo",
        r#"{"message":"after the timeout"}"#,
    )
    .await
    .unwrap();
    assert_eq!(echoed.content[0].text, "Echo: after the timeout");
    let image = call(&cluster, "everything_get-tiny-image", "{}")
        .await
        .unwrap();
    let picture = image
        .content
        .iter()
        .find(|item| item.r#type == "image")
        .expect("an image item");
    assert_eq!(picture.mime_type, "image/png");
    assert!(
        picture.data.starts_with(b"\x89PNG"),
        "image bytes are decoded from base64"
    );
    cluster.stop().await;
}
