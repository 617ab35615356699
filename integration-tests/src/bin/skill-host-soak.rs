//! Soak run of the skill-host: crash-and-restart cycles and calls with random faults against
//! the misbehaving test skill, then a check that the host holds exactly the descriptors,
//! threads and child processes it started with, no zombie, and a bounded memory growth.
//!
//! Usage: skill-host-soak [--cycles N] [--calls N] [--seed N] [--max-rss-growth-mib N]
//! Exits 1 (and says what leaked) when a count is not back at its start. Progress goes to
//! stderr every 10 %; the summary to stdout.

use mimo_proto::connect::Channel;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::{CallToolRequest, GetSkillRequest, ProcessStats, SkillState};
use mimo_reporter::{process_stats, ReporterConfig};
use mimo_skill_host::{SkillHostConfig, SkillSpec};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct Plan {
    cycles: u64,
    calls: u64,
    seed: u64,
    max_rss_growth_mib: f64,
}

fn parse_plan() -> Result<Plan, String> {
    let mut plan = Plan {
        cycles: 1000,
        calls: 10_000,
        seed: 1,
        max_rss_growth_mib: 64.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--cycles" => plan.cycles = number()?,
            "--calls" => plan.calls = number()?,
            "--seed" => plan.seed = number()?,
            "--max-rss-growth-mib" => {
                plan.max_rss_growth_mib = value.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(plan)
}

/// A small xorshift generator: the same seed gives the same faults.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn misbehaving(args: &[&str]) -> SkillSpec {
    mimo_integration_tests::misbehaving_skill_beside_this_program(args)
}

async fn wait_ready(host: &SkillHostClient<Channel>, skill: &str) {
    let started = Instant::now();
    loop {
        let request = GetSkillRequest {
            skill: skill.into(),
        };
        if let Ok(status) = host.clone().get_skill(request).await {
            if status.into_inner().state == SkillState::Ready as i32 {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{skill} not ready within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn call(
    host: &SkillHostClient<Channel>,
    skill: &str,
    tool: &str,
    arguments: &str,
    timeout: Duration,
) -> Result<(), tonic::Code> {
    let mut request = tonic::Request::new(CallToolRequest {
        skill: skill.into(),
        tool: tool.into(),
        arguments_json: arguments.into(),
        lease_id: 0,
    });
    request.set_timeout(timeout);
    match host.clone().call_tool(request).await {
        Ok(_) => Ok(()),
        Err(status) => Err(status.code()),
    }
}

fn progress(what: &str, done: u64, total: u64) {
    if total >= 10 && done.is_multiple_of(total / 10) {
        eprintln!("soak: {what} {done}/{total}");
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn soak(plan: &Plan) -> Result<(ProcessStats, ProcessStats, BTreeMap<String, u64>), String> {
    let start = process_stats();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut skills = BTreeMap::new();
    skills.insert("crashy".to_string(), misbehaving(&["--crash-after", "1"]));
    skills.insert("faulty".to_string(), misbehaving(&["--noise"]));
    let config = SkillHostConfig {
        skills,
        state_dir: Some(state.path().to_path_buf()),
        max_restarts: u32::MAX,
        restart_backoff: Duration::from_millis(1),
        restart_backoff_max: Duration::from_millis(1),
        max_message_bytes: 64 * 1024,
        stop_grace: Duration::from_millis(200),
        ..SkillHostConfig::default()
    };
    let shutdown = CancellationToken::new();
    let host_task = tokio::spawn(mimo_skill_host::serve(
        config,
        ReporterConfig {
            telemetry_address: None,
            interval: Duration::from_secs(10),
        },
        listener,
        shutdown.clone(),
    ));
    let channel = mimo_proto::connect::channel(&address.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let host = mimo_proto::connect::skill_host(channel);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |what: String| *outcomes.entry(what).or_default() += 1;

    wait_ready(&host, "faulty").await;
    wait_ready(&host, "crashy").await;
    let long = Duration::from_secs(60);
    for cycle in 1..=plan.cycles {
        wait_ready(&host, "crashy").await;
        let first = call(&host, "crashy", "echo", r#"{"text":"a"}"#, long).await;
        let second = call(&host, "crashy", "echo", r#"{"text":"b"}"#, long).await;
        if first.is_err() || second != Err(tonic::Code::Unavailable) {
            return Err(format!(
                "cycle {cycle}: expected ok then UNAVAILABLE, got {first:?} then {second:?}"
            ));
        }
        count("crash cycle".into());
        progress("crash cycles", cycle, plan.cycles);
    }
    let mut random = Random(plan.seed.max(1));
    for done in 1..=plan.calls {
        let outcome = match random.below(8) {
            0..=2 => call(&host, "faulty", "echo", r#"{"text":"x"}"#, long).await,
            3 => {
                let ms = random.below(20);
                call(&host, "faulty", "sleep", &format!(r#"{{"ms":{ms}}}"#), long).await
            }
            4 => call(&host, "faulty", "big", r#"{"bytes":100000}"#, long).await,
            5 => call(&host, "faulty", "no_such_tool", "{}", long).await,
            6 => call(&host, "faulty", "echo", "{not json", long).await,
            _ => {
                let short = Duration::from_millis(20);
                call(&host, "faulty", "sleep", r#"{"ms":100}"#, short).await
            }
        };
        count(match outcome {
            Ok(()) => "call ok".to_string(),
            Err(code) => format!("call {code:?}"),
        });
        progress("calls", done, plan.calls);
    }
    drop(host);
    shutdown.cancel();
    host_task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // Let closed connections and exited threads settle, up to a bound.
    let settled = Instant::now();
    let mut after = process_stats();
    while settled.elapsed() < Duration::from_secs(30)
        && (after.open_fds > start.open_fds
            || after.threads > start.threads
            || after.child_processes > 0)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = process_stats();
    }
    Ok((start, after, outcomes))
}

fn main() -> ExitCode {
    let plan = match parse_plan() {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let before = process_stats();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(100))
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let result = runtime.block_on(soak(&plan));
    let elapsed = started.elapsed();
    let (warm, after, outcomes) = match result {
        Ok(result) => result,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let baseline_threads = warm.threads;
    println!(
        "soak: {} crash cycles, {} calls in {:.1} s (seed {})",
        plan.cycles,
        plan.calls,
        elapsed.as_secs_f64(),
        plan.seed
    );
    for (outcome, times) in &outcomes {
        println!("  {outcome}: {times}");
    }
    let growth = mib(after.resident_memory_bytes) - mib(warm.resident_memory_bytes);
    println!(
        "  fds {} -> {}, threads {} -> {}, children {} -> {}, zombies {}, rss {:.1} -> {:.1} MiB (+{:.1}; {:.1} before the host)",
        warm.open_fds,
        after.open_fds,
        baseline_threads,
        after.threads,
        warm.child_processes,
        after.child_processes,
        after.zombie_children,
        mib(warm.resident_memory_bytes),
        mib(after.resident_memory_bytes),
        growth,
        mib(before.resident_memory_bytes),
    );
    let mut leaks = Vec::new();
    if after.open_fds > warm.open_fds {
        leaks.push(format!("{} descriptors", after.open_fds - warm.open_fds));
    }
    if after.threads > warm.threads {
        leaks.push(format!("{} threads", after.threads - warm.threads));
    }
    if after.child_processes > 0 || after.zombie_children > 0 {
        leaks.push(format!(
            "{} child processes ({} zombies)",
            after.child_processes, after.zombie_children
        ));
    }
    if growth > plan.max_rss_growth_mib {
        leaks.push(format!(
            "resident memory grew {growth:.1} MiB, over the {} MiB bound",
            plan.max_rss_growth_mib
        ));
    }
    if leaks.is_empty() {
        println!("soak: ok, nothing leaked");
        ExitCode::SUCCESS
    } else {
        println!("soak: LEAKED {}", leaks.join(", "));
        ExitCode::FAILURE
    }
}
