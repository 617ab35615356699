//! `mimo mcp` with real MCP clients that no one here wrote: the official TypeScript SDK
//! (npm `@modelcontextprotocol/sdk`) and the Python `mcp` package, over stdio and streamable
//! HTTP, against the four services on loopback with the npm `server-everything` as a skill.
//! Each client initialises, lists the tools, calls a skill's tool and the memory's, and
//! hears `tools/list_changed` once a second skill is added.

use mimo_integration_tests::{everything_server, time_server, wait_until, Cluster, ClusterBuilder};
use mimo_proto::v1::{AddSkillRequest, GetSkillRequest, ListToolsRequest};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const MIMO: &str = env!("CARGO_BIN_EXE_mimo");
/// Generous: a cold `node` or Python start on a loaded 2-core machine can take seconds.
const PATIENCE: Duration = Duration::from_secs(90);
const API_KEY: &str = "test-key-0123456789abcdef";

fn clients_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../integration-tests/clients")
}

fn variable(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/test.sh (it installs the MCP clients these tests use)"
        )
    })
}

/// Which client library drives the gateway.
#[derive(Debug, Clone, Copy)]
enum Library {
    TypeScript,
    Python,
}

/// A running client script and the steps it prints.
struct ClientRun {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientRun {
    fn start(library: Library, arguments: &[String]) -> Self {
        Self::start_with(library, arguments, &[])
    }

    fn start_with(library: Library, arguments: &[String], variables: &[(&str, &str)]) -> Self {
        let mut command = match library {
            Library::TypeScript => {
                let mut command = Command::new(variable("MIMO_TEST_NODE"));
                command
                    .arg(clients_folder().join("mcp_client.cjs"))
                    .env("NODE_PATH", variable("MIMO_TEST_NODE_PATH"));
                command
            }
            Library::Python => {
                let mut command = Command::new(variable("MIMO_TEST_PYTHON"));
                command.arg(clients_folder().join("mcp_client.py"));
                command
            }
        };
        let mut child = command
            .args(arguments)
            .envs(variables.iter().copied())
            .env("MIMO_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("client starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next step the client prints, which must be `step`.
    async fn step(&mut self, step: &str) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {step:?} step within {PATIENCE:?}"))
            .expect("client output")
            .unwrap_or_else(|| panic!("the client ended before the {step:?} step"));
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a step: {line}"));
        assert_eq!(value["step"], step, "{value}");
        value
    }

    async fn finish(mut self) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the client ends")
            .unwrap();
        assert!(status.success(), "the client failed: {status}");
    }
}

/// A cluster whose registry lists the everything server's tools.
async fn cluster() -> Cluster {
    let cluster = ClusterBuilder::default()
        .skill("everything", everything_server())
        .start()
        .await;
    let registry = cluster.registry().await;
    wait_until("the everything server's tools registered", PATIENCE, || {
        let mut registry = registry.clone();
        async move {
            let tools = registry
                .list_tools(ListToolsRequest::default())
                .await
                .ok()?
                .into_inner()
                .tools;
            tools
                .iter()
                .any(|tool| tool.name == "everything_echo")
                .then_some(())
        }
    })
    .await;
    cluster
}

fn gateway_arguments(cluster: &Cluster, extra: &[&str]) -> Vec<String> {
    let mut arguments = vec![
        "mcp".to_string(),
        "--registry-address".into(),
        cluster.registry.clone(),
        "--memory-address".into(),
        cluster.memory.clone(),
        "--telemetry-address".into(),
        cluster.telemetry.clone(),
        "--report-interval-ms".into(),
        "500".into(),
    ];
    arguments.extend(extra.iter().map(|word| word.to_string()));
    arguments
}

/// A free loopback port (bound, then released for the gateway to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `mimo mcp --http` on a free port with one API key; its URL, once it answers.
async fn http_gateway(cluster: &Cluster, folder: &std::path::Path) -> (Child, String) {
    http_gateway_with(
        cluster,
        folder,
        &["--rate-limit", "1000", "--rate-burst", "1000"],
    )
    .await
}

/// `mimo mcp --http` on a free port with one API key and `extra` flags; its URL.
async fn http_gateway_with(
    cluster: &Cluster,
    folder: &std::path::Path,
    extra: &[&str],
) -> (Child, String) {
    let keys = folder.join("keys");
    std::fs::write(&keys, format!("# the test's key\ntester {API_KEY}\n")).unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let keys_path = keys.to_string_lossy().into_owned();
    let mut flags = vec!["--http", &address, "--api-keys", &keys_path];
    flags.extend_from_slice(extra);
    let child = Command::new(MIMO)
        .args(gateway_arguments(cluster, &flags))
        .env("MIMO_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .expect("mimo mcp starts");
    wait_until("the gateway listening", PATIENCE, || {
        let address = address.clone();
        async move {
            tokio::net::TcpStream::connect(&address)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    (child, format!("http://{address}/mcp"))
}

/// The steps every client goes through, checked; `library` adds its own.
async fn check_scenario(cluster: &Cluster, library: Library, mut run: ClientRun, language: &str) {
    run.step("initialized").await;
    let tools = run.step("tools").await;
    let names: Vec<&str> = tools["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    for expected in [
        "everything_echo",
        "memory_store",
        "memory_search",
        "memory_get",
        "memory_delete",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    assert!(!names.contains(&"time_get_current_time"), "{names:?}");
    assert_eq!(
        tools["schemas"]["everything_echo"]["properties"]["message"]["type"],
        "string"
    );
    assert_eq!(
        tools["schemas"]["memory_store"]["required"],
        json!(["content"])
    );

    let echo = run.step("echo").await;
    assert_eq!(
        echo["text"],
        format!("Echo: hello from {language}"),
        "{echo}"
    );
    assert_eq!(echo["is_error"], false);

    let stored = run.step("stored").await;
    assert_eq!(stored["is_error"], false, "{stored}");
    let engram = &stored["structured"]["engram"];
    assert!(
        engram["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{stored}"
    );
    let found = run.step("found").await;
    assert_eq!(found["is_error"], false, "{found}");
    let first = &found["structured"]["memories"][0];
    assert_eq!(
        first["id"], engram["id"],
        "the stored memory is found first: {found}"
    );
    assert!(first["similarity"].as_f64().unwrap() > 0.3, "{found}");
    let bad = run.step("bad store").await;
    assert_eq!(bad["is_error"], true, "{bad}");
    assert!(
        bad["text"].as_str().unwrap().contains("memory"),
        "the error names the service: {bad}"
    );

    if let Library::TypeScript = library {
        let unknown = run.step("unknown").await;
        assert!(
            unknown["error"].as_str().unwrap().contains("no_such_tool"),
            "{unknown}"
        );
        assert_eq!(unknown["code"], -32602, "{unknown}");
        let progress = run.step("progress").await;
        let updates = progress["updates"].as_array().unwrap();
        assert!(updates.len() >= 2, "progress passed through: {progress}");
        assert!(
            updates
                .windows(2)
                .all(|pair| pair[0]["progress"].as_f64() < pair[1]["progress"].as_f64()),
            "{progress}"
        );
        assert_eq!(progress["is_error"], false, "{progress}");
        let cancelled = run.step("cancelled").await;
        assert!(!cancelled["error"].is_null(), "{cancelled}");
        // The skill's call ends long before its 60 s: the cancel reached it.
        let host = cluster.skill_host().await;
        wait_until(
            "the cancelled call gone from the skill",
            Duration::from_secs(30),
            || {
                let mut host = host.clone();
                async move {
                    let status = host
                        .get_skill(GetSkillRequest {
                            skill: "everything".into(),
                        })
                        .await
                        .ok()?
                        .into_inner();
                    (status.calls_in_flight == 0).then_some(())
                }
            },
        )
        .await;
    }

    // The gateway reports its counters to telemetry like every service.
    let telemetry = cluster.telemetry().await;
    wait_until("the gateway's calls counted in telemetry", PATIENCE, || {
        let mut telemetry = telemetry.clone();
        async move {
            let instances = telemetry
                .list_instances(mimo_proto::v1::ListInstancesRequest::default())
                .await
                .ok()?
                .into_inner()
                .instances;
            instances.iter().find_map(|instance| {
                let report = instance.latest.as_ref()?;
                (report.instance.as_ref()?.service == "mcp-gateway").then_some(())?;
                let gauge = |name: &str| {
                    report
                        .gauges
                        .iter()
                        .find(|g| g.name == name)
                        .map(|g| g.value)
                };
                (gauge("mcp.gateway.calls_total")? >= 4.0
                    && gauge("mcp.gateway.failed_calls_total")? >= 1.0)
                    .then_some(())
            })
        }
    })
    .await;
    run.step("waiting").await;
    let time = time_server();
    cluster
        .skill_host()
        .await
        .add_skill(AddSkillRequest {
            name: "time".into(),
            entry_json: json!({"command": time.command, "args": time.args}).to_string(),
        })
        .await
        .unwrap();
    let changed = run.step("changed").await;
    assert!(
        changed["names"]
            .as_array()
            .unwrap()
            .contains(&json!("time_get_current_time")),
        "{changed}"
    );
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_client_over_stdio() {
    let cluster = cluster().await;
    let mut arguments = vec!["stdio".to_string(), MIMO.to_string()];
    arguments.extend(gateway_arguments(&cluster, &[]));
    let run = ClientRun::start(Library::TypeScript, &arguments);
    check_scenario(&cluster, Library::TypeScript, run, "typescript").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_client_over_http_with_an_api_key() {
    let cluster = cluster().await;
    let folder = tempfile::tempdir().unwrap();
    let (_gateway, url) = http_gateway(&cluster, folder.path()).await;
    let run = ClientRun::start(Library::TypeScript, &["http".into(), url, API_KEY.into()]);
    check_scenario(&cluster, Library::TypeScript, run, "typescript").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_over_stdio() {
    let cluster = cluster().await;
    let mut arguments = vec!["stdio".to_string(), MIMO.to_string()];
    arguments.extend(gateway_arguments(&cluster, &[]));
    let run = ClientRun::start(Library::Python, &arguments);
    check_scenario(&cluster, Library::Python, run, "python").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_over_http_with_an_api_key() {
    let cluster = cluster().await;
    let folder = tempfile::tempdir().unwrap();
    let (_gateway, url) = http_gateway(&cluster, folder.path()).await;
    let run = ClientRun::start(Library::Python, &["http".into(), url, API_KEY.into()]);
    check_scenario(&cluster, Library::Python, run, "python").await;
    cluster.stop().await;
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}"#;

/// A raw initialize POST to `url`, with `key` and `origin` when given.
async fn post(
    url: &str,
    key: Option<&str>,
    origin: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("the gateway answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_transport_refuses_unknown_keys_foreign_origins_large_bodies_and_callers_over_their_rate(
) {
    let cluster = cluster().await;
    let folder = tempfile::tempdir().unwrap();
    let (_gateway, url) = http_gateway_with(
        &cluster,
        folder.path(),
        &[
            "--rate-limit",
            "0.5",
            "--rate-burst",
            "3",
            "--max-body-bytes",
            "2000",
        ],
    )
    .await;
    let initialize = || INITIALIZE.to_string();
    for key in [
        None,
        Some("not-the-key-0123456789"),
        Some(&API_KEY[..API_KEY.len() - 1]),
    ] {
        let refused = post(&url, key, None, initialize()).await;
        assert_eq!(refused.status(), 401, "key {key:?}");
        assert_eq!(
            refused.headers()["www-authenticate"],
            "Bearer realm=\"mimo\""
        );
        assert!(refused.text().await.unwrap().contains("--api-keys"));
    }
    // Refusals of unknown keys took no tokens; these three take the burst.
    let foreign = post(
        &url,
        Some(API_KEY),
        Some("http://evil.example"),
        initialize(),
    )
    .await;
    assert_eq!(foreign.status(), 403, "a foreign Origin is refused");
    let large = post(
        &url,
        Some(API_KEY),
        None,
        format!("{{\"padding\": \"{}\"}}", "x".repeat(4000)),
    )
    .await;
    assert_eq!(
        large.status(),
        413,
        "a body over --max-body-bytes is refused"
    );
    let admitted = post(&url, Some(API_KEY), None, initialize()).await;
    assert_eq!(admitted.status(), 200, "{:?}", admitted.text().await);
    let limited = post(&url, Some(API_KEY), None, initialize()).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(limited.text().await.unwrap().contains("rate limit"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_a_public_address_without_keys_is_refused_at_start() {
    let output = Command::new(MIMO)
        .args([
            "mcp",
            "--http",
            "0.0.0.0:0",
            "--registry-address",
            "127.0.0.1:9",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without API keys") && stderr.contains("--api-keys"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_memory_is_named_in_its_tools_errors_and_the_skills_still_work() {
    let cluster = cluster().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let arguments = vec![
        "stdio".to_string(),
        MIMO.to_string(),
        "mcp".into(),
        "--registry-address".into(),
        cluster.registry.clone(),
        "--memory-address".into(),
        dead.clone(),
    ];
    let mut run = ClientRun::start_with(
        Library::Python,
        &arguments,
        &[("MIMO_TEST_MEMORY_DOWN", "1")],
    );
    run.step("initialized").await;
    run.step("tools").await;
    let echo = run.step("echo").await;
    assert_eq!(echo["text"], "Echo: hello from python");
    let down = run.step("memory down").await;
    assert_eq!(down["is_error"], true, "{down}");
    let text = down["text"].as_str().unwrap();
    assert!(
        text.contains("memory") && text.contains(&dead) && text.contains("unreachable"),
        "{text}"
    );
    let echo = run.step("echo again").await;
    assert_eq!(
        echo["text"], "Echo: still here",
        "the gateway keeps serving the rest"
    );
    run.finish().await;
    cluster.stop().await;
}
