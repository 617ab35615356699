//! Benchmark of the registry side by side with etcd's own leases, driven by the same load
//! generator in one run: grant-and-register per second, keep-alives per second over many
//! streams, expiry delay after the TTL, and resident memory per lease (with a skill of ten
//! tools). The Mimo registry runs as a `mimo registry` process (built beside this binary),
//! etcd as Debian's etcd-server unpacked by `scripts/install-test-deps.sh`.
//!
//! Usage: registry-bench [--rounds 3] [--leases 10000] [--streams 16] [--seconds 3]
//!        [--expiring 1000] [--memory-leases 100000]

use mimo_etcd::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
    watch_request::RequestUnion, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    WatchCreateRequest, WatchRequest as EtcdWatchRequest,
};
use mimo_integration_tests::bench_stats::{median, percentile};
use mimo_integration_tests::EtcdServer;
use mimo_proto::connect::Channel;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::{
    GrantLeaseRequest, KeepAliveRequest, ListToolsRequest, RegisterSkillRequest, StoredSkill, Tool,
    WatchEventType, WatchRequest,
};
use prost::Message;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_stream::StreamExt;

/// What to run, from the command line.
#[derive(Debug, Clone)]
struct Plan {
    rounds: usize,
    leases: usize,
    streams: usize,
    seconds: u64,
    expiring: usize,
    memory_leases: usize,
}

fn parse_plan() -> Result<Plan, String> {
    let mut plan = Plan {
        rounds: 3,
        leases: 10_000,
        streams: 16,
        seconds: 3,
        expiring: 1_000,
        memory_leases: 100_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--rounds" => plan.rounds = number.max(1),
            "--leases" => plan.leases = number.max(1),
            "--streams" => plan.streams = number.max(1),
            "--seconds" => plan.seconds = number.max(1) as u64,
            "--expiring" => plan.expiring = number.max(1),
            "--memory-leases" => plan.memory_leases = number.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(plan)
}

/// Ten tools, as a typical skill has.
fn ten_tools() -> Vec<Tool> {
    (0..10)
        .map(|index| Tool {
            name: format!("tool_{index}"),
            description: format!("Tool number {index} of the benchmark skill."),
            input_schema_json: r#"{"type":"object","properties":{"text":{"type":"string"}}}"#
                .into(),
            title: String::new(),
        })
        .collect()
}

const ENDPOINT: &str = "10.0.0.1:50052";
/// Heartbeats in flight per stream at most.
const WINDOW: usize = 256;

/// A `mimo registry` process on a loopback port.
struct MimoRegistry {
    child: Child,
    client: RegistryClient<Channel>,
}

impl MimoRegistry {
    async fn start(max: usize) -> Result<MimoRegistry, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mimo = exe.with_file_name("mimo");
        if !mimo.exists() {
            return Err(format!(
                "{} is missing; cargo build --release -p mimo",
                mimo.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let address = format!("127.0.0.1:{port}");
        let max = max.to_string();
        let child = Command::new(&mimo)
            .args(["registry", "--registry-listen", &address])
            .args(["--telemetry-address", "127.0.0.1:1"])
            .args(["--registry-max-leases", &max])
            .args(["--registry-max-skills", &max])
            .args([
                "--registry-max-tools",
                &(max.parse::<usize>().unwrap_or(0) * 10).to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            if let Ok(channel) = mimo_proto::connect::channel(&address).await {
                let mut client = mimo_proto::connect::registry(channel);
                if client.list_tools(ListToolsRequest::default()).await.is_ok() {
                    return Ok(MimoRegistry { child, client });
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("mimo registry did not serve within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn rss(&self) -> Result<u64, String> {
        rss_of(self.child.id().ok_or("the registry exited")?)
    }
}

/// etcd with clients of its lease, KV and watch services.
struct Etcd {
    server: EtcdServer,
    leases: LeaseClient<tonic::transport::Channel>,
    kv: KvClient<tonic::transport::Channel>,
    watch: WatchClient<tonic::transport::Channel>,
}

impl Etcd {
    async fn start() -> Result<Etcd, String> {
        let server = EtcdServer::start().await;
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{}", server.address()))
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
        Ok(Etcd {
            server,
            leases: LeaseClient::new(channel.clone()),
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel),
        })
    }

    fn rss(&self) -> Result<u64, String> {
        rss_of(self.server.pid())
    }
}

fn rss_of(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS")?;
    Ok(kib * 1024)
}

/// Grants `count` leases of `ttl_ms`, each with one skill of ten tools, 64 at a time;
/// returns the lease ids and the grant-and-register rate.
async fn fill_mimo(
    client: &RegistryClient<Channel>,
    count: usize,
    ttl_ms: u64,
    first: usize,
) -> Result<(Vec<u64>, f64), String> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let mut client = client.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut leases = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                if index >= count {
                    return Ok::<_, String>(leases);
                }
                let lease = client
                    .grant_lease(GrantLeaseRequest { ttl_ms })
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner()
                    .lease_id;
                client
                    .register_skill(RegisterSkillRequest {
                        lease_id: lease,
                        skill: format!("s{}", first + index),
                        endpoint: ENDPOINT.into(),
                        tools: ten_tools(),
                    })
                    .await
                    .map_err(|s| s.message().to_string())?;
                leases.push(lease);
            }
        });
    }
    let mut leases = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        leases.extend(joined.map_err(|e| e.to_string())??);
    }
    Ok((leases, count as f64 / started.elapsed().as_secs_f64()))
}

/// The same load on etcd: LeaseGrant, then a Put of the same registration attached to it.
async fn fill_etcd(
    etcd: &Etcd,
    count: usize,
    ttl_s: i64,
    first: usize,
) -> Result<(Vec<u64>, f64), String> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let value = StoredSkill {
        endpoint: ENDPOINT.into(),
        tools: ten_tools(),
    }
    .encode_to_vec();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let mut leases_client = etcd.leases.clone();
        let mut kv = etcd.kv.clone();
        let next = next.clone();
        let value = value.clone();
        tasks.spawn(async move {
            let mut leases = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                if index >= count {
                    return Ok::<_, String>(leases);
                }
                let lease = leases_client
                    .lease_grant(LeaseGrantRequest { ttl: ttl_s, id: 0 })
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner()
                    .id;
                kv.put(PutRequest {
                    key: format!("/bench/skills/{lease:016x}/s{}", first + index).into_bytes(),
                    value: value.clone(),
                    lease,
                    ..PutRequest::default()
                })
                .await
                .map_err(|s| s.message().to_string())?;
                leases.push(lease as u64);
            }
        });
    }
    let mut leases = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        leases.extend(joined.map_err(|e| e.to_string())??);
    }
    Ok((leases, count as f64 / started.elapsed().as_secs_f64()))
}

/// One keep-alive stream: sends heartbeats for `leases` round and round, at most `WINDOW`
/// unanswered, for `seconds`; returns the answers received.
async fn keep_alive_stream<Req, Resp, Open, Fut>(
    leases: Vec<u64>,
    seconds: u64,
    request: fn(u64) -> Req,
    open: Open,
) -> Result<u64, String>
where
    Req: Send + 'static,
    Open: FnOnce(tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Streaming<Resp>, tonic::Status>>,
    Resp: Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(WINDOW);
    let credits = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    // The first heartbeat goes before the stream is awaited: etcd answers the opening only
    // with its first answer.
    credits.acquire().await.map_err(|e| e.to_string())?.forget();
    sender
        .send(request(leases[0]))
        .await
        .map_err(|e| e.to_string())?;
    let mut answers = open(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .map_err(|s| s.message().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let feeder = {
        let credits = credits.clone();
        tokio::spawn(async move {
            let mut index = 1;
            while Instant::now() < deadline {
                let Ok(permit) = credits.acquire().await else {
                    return;
                };
                permit.forget();
                if sender
                    .send(request(leases[index % leases.len()]))
                    .await
                    .is_err()
                {
                    return;
                }
                index += 1;
            }
        })
    };
    let mut answered = 0u64;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), answers.next()).await {
            Ok(Some(Ok(_))) => {
                answered += 1;
                credits.add_permits(1);
            }
            Ok(Some(Err(status))) => return Err(status.message().to_string()),
            Ok(None) | Err(_) => break,
        }
    }
    feeder.abort();
    Ok(answered)
}

/// Heartbeats per second over `streams` streams sharing `leases`.
async fn keep_alives_per_second<F>(leases: &[u64], streams: usize, run: F) -> Result<f64, String>
where
    F: Fn(Vec<u64>) -> tokio::task::JoinHandle<Result<u64, String>>,
{
    let share = leases.len().div_ceil(streams);
    let started = Instant::now();
    let handles: Vec<_> = leases
        .chunks(share)
        .map(|chunk| run(chunk.to_vec()))
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Grants `count` leases of `ttl` with a skill each, lets them expire, and returns each
/// expiry's delay past its deadline as seen by a watcher (the deadline taken from the
/// moment the grant was answered, so a delay is never under-stated).
async fn mimo_expiry_delays(
    client: &RegistryClient<Channel>,
    count: usize,
    ttl: Duration,
) -> Result<Vec<Duration>, String> {
    let mut watcher = client.clone();
    let mut changes = watcher
        .watch(WatchRequest::default())
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut client = client.clone();
    let mut deadlines = HashMap::new();
    for index in 0..count {
        let lease = client
            .grant_lease(GrantLeaseRequest {
                ttl_ms: ttl.as_millis() as u64,
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner()
            .lease_id;
        deadlines.insert(lease, Instant::now() + ttl);
        client
            .register_skill(RegisterSkillRequest {
                lease_id: lease,
                skill: format!("e{index}"),
                endpoint: ENDPOINT.into(),
                tools: ten_tools(),
            })
            .await
            .map_err(|s| s.message().to_string())?;
    }
    let mut delays = Vec::with_capacity(count);
    while delays.len() < count {
        let change = tokio::time::timeout(ttl * 4 + Duration::from_secs(10), changes.message())
            .await
            .map_err(|_| "expiries did not come".to_string())?
            .map_err(|s| s.message().to_string())?
            .ok_or("watch ended")?;
        let now = Instant::now();
        for event in change.events {
            if event.r#type() == WatchEventType::SkillExpired {
                if let Some(deadline) = deadlines.get(&event.lease_id) {
                    delays.push(now.saturating_duration_since(*deadline));
                }
            }
        }
    }
    Ok(delays)
}

/// The same on etcd: a watcher on the keys attached to the leases sees each deletion.
async fn etcd_expiry_delays(
    etcd: &Etcd,
    count: usize,
    ttl: Duration,
) -> Result<Vec<Duration>, String> {
    let prefix = b"/expiry/".to_vec();
    let mut end = prefix.clone();
    *end.last_mut().unwrap() += 1;
    let create = EtcdWatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.clone(),
            range_end: end,
            ..WatchCreateRequest::default()
        })),
    };
    let requests = tokio_stream::once(create).chain(tokio_stream::pending());
    let mut watch = etcd
        .watch
        .clone()
        .watch(requests)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut leases = etcd.leases.clone();
    let mut kv = etcd.kv.clone();
    let mut deadlines = HashMap::new();
    for index in 0..count {
        let granted = leases
            .lease_grant(LeaseGrantRequest {
                ttl: ttl.as_secs() as i64,
                id: 0,
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let key = format!("/expiry/{index}").into_bytes();
        deadlines.insert(
            key.clone(),
            Instant::now() + Duration::from_secs(granted.ttl as u64),
        );
        kv.put(PutRequest {
            key,
            value: vec![1; 64],
            lease: granted.id,
            ..PutRequest::default()
        })
        .await
        .map_err(|s| s.message().to_string())?;
    }
    let mut delays = Vec::with_capacity(count);
    while delays.len() < count {
        let answer = tokio::time::timeout(ttl * 4 + Duration::from_secs(10), watch.message())
            .await
            .map_err(|_| "etcd expiries did not come".to_string())?
            .map_err(|s| s.message().to_string())?
            .ok_or("etcd watch ended")?;
        let now = Instant::now();
        for event in answer.events {
            if event.r#type() == mimo_etcd::mvccpb::event::EventType::Delete {
                if let Some(deadline) = event.kv.as_ref().and_then(|kv| deadlines.get(&kv.key)) {
                    delays.push(now.saturating_duration_since(*deadline));
                }
            }
        }
    }
    Ok(delays)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mimo_keep_alive(lease: u64) -> KeepAliveRequest {
    KeepAliveRequest { lease_id: lease }
}

fn etcd_keep_alive(lease: u64) -> LeaseKeepAliveRequest {
    LeaseKeepAliveRequest { id: lease as i64 }
}

async fn bench(plan: Plan) -> Result<(), String> {
    println!("plan: {plan:?}");
    let (mut grant_mimo, mut grant_etcd) = (Vec::new(), Vec::new());
    let (mut beats_mimo, mut beats_etcd) = (Vec::new(), Vec::new());
    for round in 1..=plan.rounds {
        // Fresh servers each round, Mimo first then etcd, the same load on both.
        let mimo = MimoRegistry::start(plan.leases * 2).await?;
        let (leases, rate) = fill_mimo(&mimo.client, plan.leases, 60_000, 0).await?;
        grant_mimo.push(rate);
        let client = mimo.client.clone();
        let beats = keep_alives_per_second(&leases, plan.streams, |chunk| {
            let mut client = client.clone();
            tokio::spawn(async move {
                keep_alive_stream(chunk, plan.seconds, mimo_keep_alive, |requests| async move {
                    client.keep_alive(requests).await.map(|r| r.into_inner())
                })
                .await
            })
        })
        .await?;
        beats_mimo.push(beats);
        drop(mimo);

        let etcd = Etcd::start().await?;
        let (leases, rate) = fill_etcd(&etcd, plan.leases, 60, 0).await?;
        grant_etcd.push(rate);
        let lease_client = etcd.leases.clone();
        let beats = keep_alives_per_second(&leases, plan.streams, |chunk| {
            let mut client = lease_client.clone();
            tokio::spawn(async move {
                keep_alive_stream(
                    chunk,
                    plan.seconds,
                    etcd_keep_alive,
                    |requests| async move {
                        client
                            .lease_keep_alive(requests)
                            .await
                            .map(|r| r.into_inner())
                    },
                )
                .await
            })
        })
        .await?;
        beats_etcd.push(beats);
        drop(etcd);
        eprintln!(
            "round {round}: grant+register/s mimo {:.0} etcd {:.0}; keep-alives/s mimo {:.0} etcd {:.0}",
            grant_mimo[round - 1], grant_etcd[round - 1], beats_mimo[round - 1], beats_etcd[round - 1]
        );
    }
    let (gm, ge) = (median(&mut grant_mimo), median(&mut grant_etcd));
    let (km, ke) = (median(&mut beats_mimo), median(&mut beats_etcd));
    println!("| | Mimo registry | etcd | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| grant + register per second (64 callers) | {gm:.0} | {ge:.0} | {:.1}x |",
        gm / ge
    );
    println!(
        "| keep-alives per second ({} streams, {} leases) | {km:.0} | {ke:.0} | {:.1}x |",
        plan.streams,
        plan.leases,
        km / ke
    );

    // Expiry delay: TTL 2 s on both (etcd's shortest TTL is about 2 s).
    let ttl = Duration::from_secs(2);
    let mimo = MimoRegistry::start(plan.expiring * 2).await?;
    let mut mimo_delays = mimo_expiry_delays(&mimo.client, plan.expiring, ttl).await?;
    drop(mimo);
    let etcd = Etcd::start().await?;
    let mut etcd_delays = etcd_expiry_delays(&etcd, plan.expiring, ttl).await?;
    drop(etcd);
    mimo_delays.sort();
    etcd_delays.sort();
    println!(
        "| expiry delay after the TTL, p50 / p99 ms ({} leases of 2 s) | {:.1} / {:.1} | {:.1} / {:.1} | |",
        plan.expiring,
        ms(percentile(&mimo_delays, 0.5)),
        ms(percentile(&mimo_delays, 0.99)),
        ms(percentile(&etcd_delays, 0.5)),
        ms(percentile(&etcd_delays, 0.99)),
    );

    // Resident memory at 10,000 and `memory_leases` leases, each with a skill of ten tools.
    let small = 10_000.min(plan.memory_leases);
    let mimo = MimoRegistry::start(plan.memory_leases).await?;
    let empty = mimo.rss()?;
    fill_mimo(&mimo.client, small, 600_000, 0).await?;
    let at_small = mimo.rss()?;
    fill_mimo(&mimo.client, plan.memory_leases - small, 600_000, small).await?;
    let at_large = mimo.rss()?;
    drop(mimo);
    let etcd = Etcd::start().await?;
    let etcd_empty = etcd.rss()?;
    fill_etcd(&etcd, small, 600, 0).await?;
    let etcd_small = etcd.rss()?;
    fill_etcd(&etcd, plan.memory_leases - small, 600, small).await?;
    let etcd_large = etcd.rss()?;
    drop(etcd);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let per_lease = |large: u64, small_rss: u64| {
        large.saturating_sub(small_rss) as f64 / (plan.memory_leases - small).max(1) as f64
    };
    println!(
        "| resident memory empty / {small} / {} leases, MiB | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | |",
        plan.memory_leases,
        mib(empty),
        mib(at_small),
        mib(at_large),
        mib(etcd_empty),
        mib(etcd_small),
        mib(etcd_large),
    );
    println!(
        "| resident memory per lease (with a skill of ten tools), bytes | {:.0} | {:.0} | |",
        per_lease(at_large, at_small),
        per_lease(etcd_large, etcd_small),
    );
    Ok(())
}

fn main() {
    let plan = match parse_plan() {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("registry-bench: {error}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(error) = runtime.block_on(bench(plan)) {
        eprintln!("registry-bench: {error}");
        std::process::exit(1);
    }
}
