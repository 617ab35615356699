//! Benchmark of the skill-host against the same skill spoken to directly over stdio, in one
//! run, alternating rounds so that machine noise falls on both alike:
//!
//! - latency of one `echo` call, sequential: direct JSON-RPC over the skill's stdio versus a
//!   gRPC `CallTool` through the host (p50, p99, and the difference: the host's added cost);
//! - calls per second with `--concurrency` callers through one host, and direct with the
//!   same number of requests in flight;
//! - resident memory of the host per idle skill (`--idle-skills` skills, ready, no calls).
//!
//! Usage: skill-host-bench [--rounds N] [--calls N] [--concurrency N] [--idle-skills N]
//! Build with --release; prints medians and ratios on stdout, progress on stderr.

use mimo_integration_tests::bench_stats::{median, percentile};
use mimo_proto::connect::Channel;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::{CallToolRequest, ListSkillsRequest, SkillState};
use mimo_reporter::ReporterConfig;
use mimo_skill_host::{SkillHostConfig, SkillSpec};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{oneshot, Mutex};
use tokio_util::sync::CancellationToken;

struct Plan {
    rounds: usize,
    calls: usize,
    concurrency: usize,
    idle_skills: usize,
}

fn parse_plan() -> Result<Plan, String> {
    let mut plan = Plan {
        rounds: 5,
        calls: 2000,
        concurrency: 64,
        idle_skills: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: usize = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--rounds" => plan.rounds = value,
            "--calls" => plan.calls = value,
            "--concurrency" => plan.concurrency = value,
            "--idle-skills" => plan.idle_skills = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(plan)
}

fn skill_spec() -> SkillSpec {
    mimo_integration_tests::misbehaving_skill_beside_this_program(&[])
}

/// A minimal JSON-RPC client over a skill's stdio: the "direct" side of the comparison.
struct DirectSkill {
    _child: Child,
    stdin: Mutex<ChildStdin>,
    waiting: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl DirectSkill {
    async fn start() -> DirectSkill {
        let spec = skill_spec();
        let mut child = Command::new(&spec.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the skill");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let waiting: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        tokio::spawn(read_answers(stdout, waiting.clone()));
        let direct = DirectSkill {
            _child: child,
            stdin: Mutex::new(stdin),
            waiting,
            next_id: 1.into(),
        };
        direct
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"}}),
            )
            .await;
        direct
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        direct
    }

    async fn send(&self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(line.as_bytes()).await.expect("write");
        stdin.flush().await.expect("flush");
    }

    async fn request(&self, method: &str, params: Value) -> Value {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, sender);
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        answer.await.expect("an answer")
    }

    async fn echo(&self) {
        let answer = self
            .request(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "x"}}),
            )
            .await;
        assert!(answer.get("result").is_some(), "{answer}");
    }
}

async fn read_answers(
    stdout: ChildStdout,
    waiting: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = message.get("id").and_then(Value::as_u64);
        if let Some(sender) = id.and_then(|id| waiting.lock().unwrap().remove(&id)) {
            let _ = sender.send(message);
        }
    }
}

/// A skill-host serving `skills` copies of the skill on loopback, and a client of it.
struct Host {
    client: SkillHostClient<Channel>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), mimo_skill_host::ServeError>>,
}

impl Host {
    async fn start(skills: usize) -> Host {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let skills: BTreeMap<String, SkillSpec> = (0..skills)
            .map(|index| (format!("skill{index}"), skill_spec()))
            .collect();
        let count = skills.len();
        let config = SkillHostConfig {
            skills,
            ..SkillHostConfig::default()
        };
        let shutdown = CancellationToken::new();
        let reporting = ReporterConfig {
            telemetry_address: None,
            interval: Duration::from_secs(10),
        };
        let task = tokio::spawn(mimo_skill_host::serve(
            config,
            reporting,
            listener,
            shutdown.clone(),
        ));
        let channel = mimo_proto::connect::channel(&address)
            .await
            .expect("connect");
        let client = mimo_proto::connect::skill_host(channel);
        wait_all_ready(&address, count).await.expect("skills ready");
        Host {
            client,
            shutdown,
            task,
        }
    }

    async fn echo(client: &SkillHostClient<Channel>) {
        let request = CallToolRequest {
            skill: "skill0".into(),
            tool: "echo".into(),
            arguments_json: r#"{"text":"x"}"#.into(),
            lease_id: 0,
        };
        client.clone().call_tool(request).await.expect("call");
    }

    /// A gRPC round trip that involves no skill: the floor under any call.
    async fn get_skill(client: &SkillHostClient<Channel>) {
        let request = mimo_proto::v1::GetSkillRequest {
            skill: "skill0".into(),
        };
        client.clone().get_skill(request).await.expect("get skill");
    }

    async fn stop(self) {
        drop(self.client);
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Waits (up to 120 s) until the host at `address` lists `count` skills, all ready.
async fn wait_all_ready(address: &str, count: usize) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let ready = async {
            let channel = mimo_proto::connect::channel(address).await.ok()?;
            let listed = mimo_proto::connect::skill_host(channel)
                .list_skills(ListSkillsRequest {})
                .await
                .ok()?
                .into_inner();
            let ready = listed
                .skills
                .iter()
                .filter(|s| s.state == SkillState::Ready as i32)
                .count();
            (ready == count).then_some(())
        };
        if ready.await.is_some() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the host's skills were not ready within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A separate `mimo skill-host` process (the `mimo` binary beside this one) running
/// `skills` ready copies of the skill.
struct HostProcess {
    child: Child,
    address: String,
    _folder: tempfile::TempDir,
}

impl HostProcess {
    async fn start(skills: usize) -> Result<HostProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mimo = exe.with_file_name("mimo");
        if !mimo.exists() {
            return Err(format!(
                "{} is missing; cargo build --release -p mimo",
                mimo.display()
            ));
        }
        let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
        let entries: serde_json::Map<String, Value> = (0..skills)
            .map(|index| {
                (
                    format!("skill{index}"),
                    json!({"command": skill_spec().command}),
                )
            })
            .collect();
        let skills_file = folder.path().join("skills.json");
        std::fs::write(&skills_file, json!({"mcpServers": entries}).to_string())
            .map_err(|e| e.to_string())?;
        // The port is chosen here and bound by the child: fine for a benchmark, not for tests.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(&mimo)
            .arg("skill-host")
            .arg("--skills")
            .arg(&skills_file)
            .arg("--data-dir")
            .arg(folder.path())
            .args(["--skill-host-listen", &address])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        wait_all_ready(&address, skills).await?;
        Ok(HostProcess {
            child,
            address,
            _folder: folder,
        })
    }

    fn rss(&self) -> Result<u64, String> {
        let pid = self.child.id().ok_or("the host exited")?;
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .ok_or("no VmRSS")?;
        Ok(rss_kib * 1024)
    }
}

/// Resident memory of a `mimo skill-host` process with `skills` idle, ready skills.
async fn host_process_rss(skills: usize) -> Result<u64, String> {
    let host = HostProcess::start(skills).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.rss()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

async fn sequential<F, Fut>(calls: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call().await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
}

/// Calls per second with `concurrency` callers making `calls` calls in all.
async fn throughput<F, Fut>(calls: usize, concurrency: usize, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let per_caller = calls / concurrency;
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    call().await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller");
    }
    (per_caller * concurrency) as f64 / started.elapsed().as_secs_f64()
}

async fn bench(plan: Plan) {
    eprintln!("bench: starting the skill directly and through a host");
    let direct = Arc::new(DirectSkill::start().await);
    let host = Host::start(1).await;
    let separate = match HostProcess::start(1).await {
        Ok(separate) => Some(separate),
        Err(error) => {
            eprintln!("bench: no separate host process: {error}");
            None
        }
    };
    let separate_client = match &separate {
        Some(process) => Some(mimo_proto::connect::skill_host(
            mimo_proto::connect::channel(&process.address)
                .await
                .expect("connect to the host process"),
        )),
        None => None,
    };
    let (mut separate_p50, mut separate_p99) = (Vec::new(), Vec::new());
    // Warm both paths.
    sequential(200, || direct.echo()).await;
    sequential(200, || Host::echo(&host.client)).await;
    let (mut direct_p50, mut direct_p99, mut host_p50, mut host_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut floor_p50, mut floor_p99) = (Vec::new(), Vec::new());
    let (mut direct_rate, mut host_rate) = (Vec::new(), Vec::new());
    for round in 1..=plan.rounds {
        let (p50, p99) = sequential(plan.calls, || direct.echo()).await;
        direct_p50.push(micros(p50));
        direct_p99.push(micros(p99));
        let (p50, p99) = sequential(plan.calls, || Host::echo(&host.client)).await;
        host_p50.push(micros(p50));
        host_p99.push(micros(p99));
        let (p50, p99) = sequential(plan.calls, || Host::get_skill(&host.client)).await;
        floor_p50.push(micros(p50));
        floor_p99.push(micros(p99));
        if let Some(client) = &separate_client {
            let (p50, p99) = sequential(plan.calls, || Host::echo(client)).await;
            separate_p50.push(micros(p50));
            separate_p99.push(micros(p99));
        }
        let total = plan.calls * 10;
        let skill = direct.clone();
        direct_rate.push(
            throughput(total, plan.concurrency, move || {
                let skill = skill.clone();
                async move { skill.echo().await }
            })
            .await,
        );
        let client = host.client.clone();
        host_rate.push(
            throughput(total, plan.concurrency, move || {
                let client = client.clone();
                async move { Host::echo(&client).await }
            })
            .await,
        );
        eprintln!("bench: round {round}/{} done", plan.rounds);
    }
    host.stop().await;
    drop(separate_client);
    drop(separate);

    eprintln!("bench: memory per idle skill ({} skills)", plan.idle_skills);
    let per_skill_kib = match (
        host_process_rss(0).await,
        host_process_rss(plan.idle_skills).await,
    ) {
        (Ok(empty), Ok(full)) => {
            (full.saturating_sub(empty)) as f64 / 1024.0 / plan.idle_skills.max(1) as f64
        }
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("bench: memory not measured: {error}");
            f64::NAN
        }
    };

    let (d50, d99) = (median(&mut direct_p50), median(&mut direct_p99));
    let (h50, h99) = (median(&mut host_p50), median(&mut host_p99));
    let (drate, hrate) = (median(&mut direct_rate), median(&mut host_rate));
    let (f50, f99) = (median(&mut floor_p50), median(&mut floor_p99));
    let separate_row = if separate_p50.is_empty() {
        String::new()
    } else {
        let (s50, s99) = (median(&mut separate_p50), median(&mut separate_p99));
        format!("| gRPC CallTool through a separate `mimo skill-host` process | {s50:.1} | {s99:.1} | |\n")
    };
    println!(
        "skill-host bench: {} rounds x {} sequential calls; throughput with {} callers; medians of rounds",
        plan.rounds, plan.calls, plan.concurrency
    );
    println!(
        "| path | p50 µs | p99 µs | calls/s ({} in flight) |",
        plan.concurrency
    );
    println!("|---|---|---|---|");
    println!("| direct stdio JSON-RPC | {d50:.1} | {d99:.1} | {drate:.0} |");
    println!("| gRPC CallTool through the skill-host | {h50:.1} | {h99:.1} | {hrate:.0} |");
    println!(
        "| gRPC GetSkill on the same host (no skill process involved) | {f50:.1} | {f99:.1} | |"
    );
    print!("{separate_row}");
    println!(
        "added by the host: p50 {:.1} µs, p99 {:.1} µs; host/direct throughput ratio {:.2}",
        h50 - d50,
        h99 - d99,
        hrate / drate
    );
    println!(
        "host resident memory per idle skill: {per_skill_kib:.0} KiB ({} skills)",
        plan.idle_skills
    );
}

fn main() {
    let plan = match parse_plan() {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(plan));
}
