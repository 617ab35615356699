//! Mimo across real network boundaries: one `mimo` process per service, each in its own Linux
//! network namespace with its own address, joined by veth pairs to a bridge (as separate
//! hosts on one switch would be). The test itself has a leg on the bridge too and speaks
//! gRPC to every host. Needs root and iproute2 (`ip`), as `scripts/test.sh` runs here.

use mimo_integration_tests::{time_server, wait_until};
use mimo_proto::connect;
use mimo_proto::v1::{CallToolRequest, ListToolsRequest, ResolveToolRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::Code;

const MIMO: &str = env!("CARGO_BIN_EXE_mimo");
/// Generous: five `mimo` processes and their skills start on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(90);
/// The lease TTL the skill-hosts ask for.
const LEASE_TTL: Duration = Duration::from_secs(3);

/// Runs `ip ARGS`, panicking with its stderr if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {} (this test needs root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A bridge in a namespace of its own, hosts in theirs, each joined to it by a veth pair;
/// everything is removed on drop (a namespace's removal takes its veth ends along).
struct Network {
    tag: String,
    subnet: String,
    namespaces: Vec<String>,
    /// Host name → (namespace, address, the bridge-side veth).
    hosts: BTreeMap<String, (String, String, String)>,
    root_link: Option<String>,
}

impl Network {
    fn new() -> Network {
        let pid = std::process::id();
        let tag = format!("{}", pid % 1_000_000);
        let subnet = format!("10.213.{}", pid % 250);
        let switch = format!("mimo-sw-{tag}");
        let mut network = Network {
            tag,
            subnet,
            namespaces: Vec::new(),
            hosts: BTreeMap::new(),
            root_link: None,
        };
        ip(&["netns", "add", &switch]);
        network.namespaces.push(switch.clone());
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        // The test's own leg: the root namespace reaches every host through the bridge.
        let (host_end, switch_end) = network.veth("r");
        network.root_link = Some(host_end.clone());
        network.plug(&switch_end);
        let address = format!("{}.254/24", network.subnet);
        ip(&["addr", "add", &address, "dev", &host_end]);
        ip(&["link", "set", &host_end, "up"]);
        network
    }

    fn switch(&self) -> &str {
        &self.namespaces[0]
    }

    /// Makes a veth pair in the root namespace; returns the names of its host end and its
    /// switch end (at most 15 characters each).
    fn veth(&self, which: &str) -> (String, String) {
        let host_end = format!("mh{}{which}", self.tag);
        let switch_end = format!("ms{}{which}", self.tag);
        ip(&[
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            &switch_end,
        ]);
        (host_end, switch_end)
    }

    /// Attaches `switch_end` (in the root namespace) to the bridge.
    fn plug(&self, switch_end: &str) {
        ip(&["link", "set", switch_end, "netns", self.switch()]);
        ip(&[
            "-n",
            self.switch(),
            "link",
            "set",
            switch_end,
            "master",
            "br0",
        ]);
        ip(&["-n", self.switch(), "link", "set", switch_end, "up"]);
    }

    /// Adds host `name` at `.{number}` of the subnet; returns its address.
    fn host(&mut self, name: &str, number: u8) -> String {
        let namespace = format!("mimo-{name}-{}", self.tag);
        ip(&["netns", "add", &namespace]);
        self.namespaces.push(namespace.clone());
        let (host_end, switch_end) = self.veth(&number.to_string());
        ip(&["link", "set", &host_end, "netns", &namespace]);
        self.plug(&switch_end);
        let address = format!("{}.{number}", self.subnet);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            &host_end,
        ]);
        ip(&["-n", &namespace, "link", "set", &host_end, "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        self.hosts
            .insert(name.into(), (namespace, address.clone(), switch_end));
        address
    }

    /// Cuts (`up = false`) or restores host `name`'s link to the bridge.
    fn set_link(&self, name: &str, up: bool) {
        let (_, _, switch_end) = &self.hosts[name];
        let state = if up { "up" } else { "down" };
        ip(&["-n", self.switch(), "link", "set", switch_end, state]);
    }

    /// Starts `mimo ARGS` on host `name`, logging into `logs`.
    fn run(&self, name: &str, args: &[String], logs: &Path) -> Child {
        let (namespace, _, _) = &self.hosts[name];
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace, MIMO])
            .args(args)
            .current_dir(logs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("MIMO_") && key_text != "MIMO_LOG" {
                command.env_remove(&key);
            }
        }
        command.spawn().expect("spawn mimo in its namespace")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for namespace in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        if let Some(link) = &self.root_link {
            let _ = Command::new("ip")
                .args(["link", "del", link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Processes stopped with SIGTERM, then SIGKILL, on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.0 {
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Prints every host's log if the test fails.
struct LogsOnFailure(std::path::PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                eprintln!("----- {}:\n{text}", path.display());
            }
        }
    }
}

/// The endpoints the registry at `registry` lists for each tool.
async fn tool_endpoints(registry: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let mut client = connect::registry(connect::channel(registry).await.ok()?);
    let tools = client
        .list_tools(ListToolsRequest::default())
        .await
        .ok()?
        .into_inner()
        .tools;
    Some(
        tools
            .into_iter()
            .map(|tool| (tool.name, tool.endpoints.into_iter().collect()))
            .collect(),
    )
}

/// Resolves `tool` at the registry and calls it where the registry says; returns the
/// endpoint that served it.
async fn call_through_registry(registry: &str, tool: &str) -> Result<String, tonic::Status> {
    let channel = connect::channel(registry)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let route = connect::registry(channel)
        .resolve_tool(ResolveToolRequest { name: tool.into() })
        .await?
        .into_inner();
    let channel = connect::channel(&route.endpoint)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(CallToolRequest {
        skill: route.skill,
        tool: route.tool,
        arguments_json: r#"{"timezone": "UTC"}"#.into(),
        lease_id: route.lease_id,
    });
    request.set_timeout(Duration::from_secs(20));
    let answer = connect::skill_host(channel)
        .call_tool(request)
        .await?
        .into_inner();
    if answer.is_error {
        return Err(tonic::Status::internal(format!("tool error: {answer:?}")));
    }
    Ok(route.endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_skill_host_leaves_the_registry_within_its_ttl_and_comes_back_by_itself() {
    let logs = tempfile::tempdir().expect("tempdir");
    let _dump = LogsOnFailure(logs.path().to_path_buf());
    let mut network = Network::new();
    let registry = network.host("reg", 1);
    let telemetry = network.host("tel", 2);
    let memory = network.host("mem", 3);
    let host_a = network.host("sh1", 11);
    let host_b = network.host("sh2", 12);
    let registry_address = format!("{registry}:50051");
    let telemetry_address = format!("{telemetry}:50054");
    let memory_address = format!("{memory}:50053");
    let time = time_server();
    let skill = serde_json::json!({"command": time.command, "args": time.args, "env": time.env});
    // Both hosts serve `time`; only the first serves `clock` (the same server by another
    // name), so its tools are the ones that must leave and come back.
    std::fs::write(
        logs.path().join("skills-a.json"),
        serde_json::json!({"mcpServers": {"time": skill, "clock": skill}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        logs.path().join("skills-b.json"),
        serde_json::json!({"mcpServers": {"time": skill}}).to_string(),
    )
    .unwrap();
    let common = |data: &str| -> Vec<String> {
        vec![
            "--registry-address".into(),
            registry_address.clone(),
            "--telemetry-address".into(),
            telemetry_address.clone(),
            "--report-interval-ms".into(),
            "500".into(),
            "--lease-ttl-ms".into(),
            LEASE_TTL.as_millis().to_string(),
            "--data-dir".into(),
            logs.path().join(data).display().to_string(),
        ]
    };
    let with = |mut args: Vec<String>, more: &[&str]| {
        args.extend(more.iter().map(|s| s.to_string()));
        args
    };
    let mut processes = Processes(Vec::new());
    processes.0.push(network.run(
        "reg",
        &with(
            common("reg"),
            &["registry", "--registry-listen", &registry_address],
        ),
        logs.path(),
    ));
    processes.0.push(network.run(
        "tel",
        &with(
            common("tel"),
            &[
                "telemetry",
                "--telemetry-listen",
                &telemetry_address,
                "--telemetry-http-listen",
                "off",
            ],
        ),
        logs.path(),
    ));
    processes.0.push(network.run(
        "mem",
        &with(
            common("mem"),
            &["memory", "--memory-listen", &memory_address],
        ),
        logs.path(),
    ));
    for (name, address, skills) in [
        ("sh1", &host_a, "skills-a.json"),
        ("sh2", &host_b, "skills-b.json"),
    ] {
        let listen = format!("{address}:50052");
        let skills = logs.path().join(skills).display().to_string();
        processes.0.push(network.run(
            name,
            &with(
                common(name),
                &[
                    "skill-host",
                    "--skill-host-listen",
                    &listen,
                    "--advertise-address",
                    &listen,
                    "--skills",
                    &skills,
                ],
            ),
            logs.path(),
        ));
    }
    let endpoint_a = format!("{host_a}:50052");
    let endpoint_b = format!("{host_b}:50052");
    let both: BTreeSet<String> = [endpoint_a.clone(), endpoint_b.clone()].into();
    let log_of = |name: &str| {
        std::fs::read_to_string(logs.path().join(format!("{name}.log"))).unwrap_or_default()
    };

    let everything_up = |registry: String, both: BTreeSet<String>, a: String| async move {
        let tools = tool_endpoints(&registry).await?;
        (tools.get("time_get_current_time") == Some(&both)
            && tools.get("clock_get_current_time") == Some(&[a].into()))
        .then_some(())
    };
    wait_until(
        "both hosts' tools in the registry across the bridge",
        PATIENCE,
        || everything_up(registry_address.clone(), both.clone(), endpoint_a.clone()),
    )
    .await;

    // The memory host answers across the bridge too.
    let mut memory_client = connect::memory(connect::channel(&memory_address).await.unwrap());
    let stored = memory_client
        .store(mimo_proto::v1::StoreRequest {
            content: "stored across a network namespace".into(),
            category: mimo_proto::v1::Category::Fact as i32,
            ..Default::default()
        })
        .await
        .expect("store on the memory host");
    assert!(stored.into_inner().engram.is_some());

    // Two hosts serving one skill share its calls.
    let mut served = BTreeMap::<String, usize>::new();
    for _ in 0..10 {
        let endpoint = call_through_registry(&registry_address, "time_get_current_time")
            .await
            .expect("a call through the registry");
        *served.entry(endpoint).or_default() += 1;
    }
    assert_eq!(
        served.keys().cloned().collect::<BTreeSet<_>>(),
        both,
        "calls served per host: {served:?}"
    );
    println!("calls served per host: {served:?}");

    // Cut the first host's link: within its lease TTL its registrations expire; `time`
    // stays served by the second host, and a call sent to the cut host fails instead of
    // hanging.
    network.set_link("sh1", false);
    let cut = std::time::Instant::now();
    let only_b: BTreeSet<String> = [endpoint_b.clone()].into();
    wait_until(
        "the cut host's tools to leave the registry",
        LEASE_TTL * 10,
        || {
            let registry = registry_address.clone();
            let only_b = only_b.clone();
            async move {
                let tools = tool_endpoints(&registry).await?;
                (tools.get("time_get_current_time") == Some(&only_b)
                    && !tools.contains_key("clock_get_current_time"))
                .then_some(())
            }
        },
    )
    .await;
    println!(
        "the cut host's tools left the registry {:?} after the cut",
        cut.elapsed()
    );
    for _ in 0..4 {
        let endpoint = call_through_registry(&registry_address, "time_get_current_time")
            .await
            .expect("the second host keeps serving time");
        assert_eq!(endpoint, endpoint_b);
    }
    let gone = call_through_registry(&registry_address, "clock_get_current_time")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    // A caller holding the stale route gets UNAVAILABLE once the connection attempt times
    // out (well before the call's own 60 s deadline), not a hang.
    let direct = tokio::time::timeout(PATIENCE, async {
        let channel = connect::lazy_channel(&endpoint_a).expect("an address");
        let mut request = tonic::Request::new(CallToolRequest {
            skill: "clock".into(),
            tool: "get_current_time".into(),
            arguments_json: r#"{"timezone": "UTC"}"#.into(),
            lease_id: 0,
        });
        request.set_timeout(Duration::from_secs(60));
        connect::skill_host(channel).call_tool(request).await
    })
    .await
    .expect("a call to the cut host ends by itself");
    let refused = direct.expect_err("the cut host cannot answer");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    println!("a call to the cut host: {refused:?}");

    // Restore the link: the host notices its lost leases and registers again by itself.
    network.set_link("sh1", true);
    let restored = std::time::Instant::now();
    wait_until(
        "the restored host's tools back in the registry",
        PATIENCE,
        || everything_up(registry_address.clone(), both.clone(), endpoint_a.clone()),
    )
    .await;
    println!(
        "its tools came back {:?} after the restore",
        restored.elapsed()
    );
    let endpoint = call_through_registry(&registry_address, "clock_get_current_time")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "clock after the restore: {e:?}; sh1 log:\n{}",
                log_of("sh1")
            )
        });
    assert_eq!(endpoint, endpoint_a);
    drop(processes);
}
