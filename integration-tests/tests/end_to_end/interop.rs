//! The skill-host with real third-party MCP servers: `@modelcontextprotocol/server-filesystem`
//! on a temporary folder (every tool called, a large result), and the everything server's
//! long-running tool with its progress streamed through `CallToolStream`.

use super::PATIENCE;
use mimo_integration_tests::{everything_server, filesystem_server, wait_until, ClusterBuilder};
use mimo_proto::connect::Channel;
use mimo_proto::v1::call_tool_event::Event;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::{CallToolRequest, CallToolResponse, GetSkillRequest, SkillState};
use serde_json::json;

async fn ready_tools(host: &SkillHostClient<Channel>, skill: &str) -> Vec<String> {
    wait_until(&format!("{skill} ready"), PATIENCE, || async {
        let status = host
            .clone()
            .get_skill(GetSkillRequest {
                skill: skill.into(),
            })
            .await
            .ok()?
            .into_inner();
        (status.state == SkillState::Ready as i32)
            .then(|| status.tools.into_iter().map(|tool| tool.name).collect())
    })
    .await
}

async fn call(
    host: &SkillHostClient<Channel>,
    tool: &str,
    arguments: serde_json::Value,
) -> CallToolResponse {
    call_skill(host, "files", tool, arguments).await
}

fn text_of(response: &CallToolResponse) -> String {
    response
        .content
        .iter()
        .map(|item| item.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filesystem_tool_works_through_the_host_including_a_large_result() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().canonicalize().unwrap();
    let cluster = ClusterBuilder::default()
        .skill("files", filesystem_server(&root))
        .start()
        .await;
    let host = cluster.skill_host().await;
    let mut tools = ready_tools(&host, "files").await;
    tools.sort();
    let path = |name: &str| root.join(name).to_string_lossy().into_owned();
    let mut called = Vec::new();
    let mut check = |tool: &str| called.push(tool.to_string());

    let allowed = call(&host, "list_allowed_directories", serde_json::json!({})).await;
    assert!(text_of(&allowed).contains(&*root.to_string_lossy()));
    check("list_allowed_directories");
    call(
        &host,
        "create_directory",
        serde_json::json!({"path": path("notes")}),
    )
    .await;
    check("create_directory");
    let note = path("notes/hello.txt");
    call(
        &host,
        "write_file",
        serde_json::json!({"path": note, "content": "hello\nworld\n"}),
    )
    .await;
    check("write_file");
    let read = call(&host, "read_text_file", serde_json::json!({"path": note})).await;
    assert_eq!(text_of(&read), "hello\nworld\n");
    check("read_text_file");
    let head = call(
        &host,
        "read_file",
        serde_json::json!({"path": note, "head": 1}),
    )
    .await;
    assert_eq!(text_of(&head).trim(), "hello");
    check("read_file");
    call(
        &host,
        "edit_file",
        serde_json::json!({"path": note, "edits": [{"oldText": "world", "newText": "mimo"}]}),
    )
    .await;
    check("edit_file");
    let both = call(
        &host,
        "read_multiple_files",
        serde_json::json!({"paths": [note]}),
    )
    .await;
    assert!(text_of(&both).contains("hello\nmimo"), "{}", text_of(&both));
    check("read_multiple_files");
    let moved = path("notes/moved.txt");
    call(
        &host,
        "move_file",
        serde_json::json!({"source": note, "destination": moved}),
    )
    .await;
    check("move_file");
    let listing = call(
        &host,
        "list_directory",
        serde_json::json!({"path": path("notes")}),
    )
    .await;
    assert!(
        text_of(&listing).contains("moved.txt"),
        "{}",
        text_of(&listing)
    );
    check("list_directory");
    let sized = call(
        &host,
        "list_directory_with_sizes",
        serde_json::json!({"path": path("notes")}),
    )
    .await;
    assert!(text_of(&sized).contains("moved.txt"));
    check("list_directory_with_sizes");
    let tree = call(
        &host,
        "directory_tree",
        serde_json::json!({"path": path("")}),
    )
    .await;
    assert!(text_of(&tree).contains("notes"));
    check("directory_tree");
    let found = call(
        &host,
        "search_files",
        serde_json::json!({"path": path(""), "pattern": "**/moved*"}),
    )
    .await;
    assert!(text_of(&found).contains("moved.txt"), "{}", text_of(&found));
    check("search_files");
    let info = call(&host, "get_file_info", serde_json::json!({"path": moved})).await;
    assert!(text_of(&info).contains("size"), "{}", text_of(&info));
    check("get_file_info");
    // A PNG signature and some bytes: the server answers with base64 image content.
    let picture = path("pixel.png");
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain(0..=255u8)
        .collect();
    std::fs::write(&picture, &png).unwrap();
    let media = call(
        &host,
        "read_media_file",
        serde_json::json!({"path": picture}),
    )
    .await;
    let item = &media.content[0];
    assert_eq!(item.mime_type, "image/png");
    assert_eq!(item.data, png, "image bytes are decoded from base64");
    check("read_media_file");

    // A large result: 6 MiB of text read back whole.
    let large: String = (0..6 * 1024 * 16)
        .map(|line| format!("{line:063}\n"))
        .collect();
    let big = path("large.txt");
    std::fs::write(&big, &large).unwrap();
    let read_back = call(&host, "read_text_file", serde_json::json!({"path": big})).await;
    assert_eq!(text_of(&read_back).len(), large.len());
    assert!(text_of(&read_back) == large);
    check("read_text_file (6 MiB)");

    let mut covered: Vec<String> = called
        .iter()
        .map(|name| name.split(' ').next().unwrap().to_string())
        .collect();
    covered.sort();
    covered.dedup();
    assert_eq!(covered, tools, "every tool the server lists was called");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_long_running_tool_streams_before_its_result() {
    let cluster = ClusterBuilder::default()
        .skill("everything", everything_server())
        .start()
        .await;
    let host = cluster.skill_host().await;
    let tools = ready_tools(&host, "everything").await;
    assert!(tools.contains(&"trigger-long-running-operation".to_string()));
    let mut request = tonic::Request::new(CallToolRequest {
        skill: "everything".into(),
        tool: "trigger-long-running-operation".into(),
        arguments_json: r#"{"duration": 2, "steps": 4}"#.into(),
        lease_id: 0,
    });
    request.set_timeout(PATIENCE);
    let mut events = host
        .clone()
        .call_tool_stream(request)
        .await
        .unwrap()
        .into_inner();
    let mut progress = Vec::new();
    let mut result = None;
    while let Some(event) = events.message().await.unwrap() {
        match event.event.expect("an event") {
            Event::Progress(update) => {
                assert!(result.is_none(), "progress after the result");
                assert_eq!(update.total, Some(4.0));
                progress.push(update.progress);
            }
            Event::Result(response) => result = Some(response),
        }
    }
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0], "every step, in order");
    let result = result.expect("the result ends the stream");
    assert!(!result.is_error);
    assert!(
        result.content[0].text.contains("completed"),
        "{:?}",
        result.content[0].text
    );

    // An unknown tool is refused before any stream opens.
    let refused = host
        .clone()
        .call_tool_stream(CallToolRequest {
            skill: "nope".into(),
            tool: "x".into(),
            arguments_json: String::new(),
            lease_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    cluster.stop().await;
}

/// Calls `tool` of `skill` on the host and returns its result, which must not be an error.
async fn call_skill(
    host: &SkillHostClient<Channel>,
    skill: &str,
    tool: &str,
    arguments: serde_json::Value,
) -> CallToolResponse {
    let mut request = tonic::Request::new(CallToolRequest {
        skill: skill.into(),
        tool: tool.into(),
        arguments_json: arguments.to_string(),
        lease_id: 0,
    });
    request.set_timeout(PATIENCE);
    let response = host
        .clone()
        .call_tool(request)
        .await
        .unwrap_or_else(|status| panic!("{skill}/{tool}: {status:?}"))
        .into_inner();
    assert!(
        !response.is_error,
        "{skill}/{tool} reported an error: {response:?}"
    );
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_of_the_everything_and_time_servers_answers() {
    let cluster = ClusterBuilder::default()
        .skill("everything", everything_server())
        .skill("time", mimo_integration_tests::time_server())
        .start()
        .await;
    let host = cluster.skill_host().await;
    let mut everything = ready_tools(&host, "everything").await;
    let mut time = ready_tools(&host, "time").await;
    everything.sort();
    time.sort();
    let calls = [
        ("echo", json!({"message": "hi"})),
        (
            "get-annotated-message",
            json!({"messageType": "success", "includeImage": true}),
        ),
        ("get-env", json!({})),
        ("get-resource-links", json!({"count": 2})),
        (
            "get-resource-reference",
            json!({"resourceType": "Text", "resourceId": 1}),
        ),
        ("get-structured-content", json!({"location": "Chicago"})),
        ("get-sum", json!({"a": 2, "b": 3})),
        ("get-tiny-image", json!({})),
        // A data URI: the default would fetch a file from the network.
        (
            "gzip-file-as-resource",
            json!({"name": "hello.gz", "data": "data:text/plain;base64,aGVsbG8gbWltbw=="}),
        ),
        ("toggle-simulated-logging", json!({})),
        ("toggle-subscriber-updates", json!({})),
        (
            "trigger-long-running-operation",
            json!({"duration": 1, "steps": 2}),
        ),
    ];
    let mut called: Vec<String> = Vec::new();
    for (tool, arguments) in calls {
        let response = call_skill(&host, "everything", tool, arguments).await;
        assert!(
            !response.content.is_empty() || !response.structured_content_json.is_empty(),
            "{tool}: {response:?}"
        );
        called.push(tool.to_string());
    }
    let sum = call_skill(&host, "everything", "get-sum", json!({"a": 2, "b": 3})).await;
    assert!(
        sum.content[0].text.contains('5'),
        "{:?}",
        sum.content[0].text
    );
    let structured = call_skill(
        &host,
        "everything",
        "get-structured-content",
        json!({"location": "Chicago"}),
    )
    .await;
    assert!(
        structured.structured_content_json.contains("temperature"),
        "{}",
        structured.structured_content_json
    );
    // MCP task augmentation (`taskSupport: "required"`) is not supported by Mimo: the tool
    // answers with its own error, passed through unchanged.
    let mut request = tonic::Request::new(CallToolRequest {
        skill: "everything".into(),
        tool: "simulate-research-query".into(),
        arguments_json: json!({"topic": "process groups"}).to_string(),
        lease_id: 0,
    });
    request.set_timeout(PATIENCE);
    let unsupported = host.clone().call_tool(request).await.unwrap().into_inner();
    assert!(unsupported.is_error);
    assert!(
        unsupported.content[0].text.contains("task augmentation"),
        "{:?}",
        unsupported.content[0].text
    );
    called.push("simulate-research-query".into());
    called.sort();
    assert_eq!(
        called, everything,
        "every tool the everything server lists was called"
    );

    let now = call_skill(
        &host,
        "time",
        "get_current_time",
        json!({"timezone": "Europe/Paris"}),
    )
    .await;
    assert!(now.content[0].text.contains("Europe/Paris"));
    let converted = call_skill(
        &host,
        "time",
        "convert_time",
        json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
    )
    .await;
    assert!(
        converted.content[0].text.contains("21:00"),
        "{}",
        converted.content[0].text
    );
    assert_eq!(time, ["convert_time", "get_current_time"]);
    cluster.stop().await;
}
