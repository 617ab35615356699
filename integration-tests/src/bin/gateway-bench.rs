//! Benchmark of the MCP gateway's added latency: one `echo` call, sequential, as a direct
//! gRPC `CallTool` to the skill-host versus an MCP `tools/call` to `mimo mcp` over stdio
//! (which resolves the tool at the registry and relays it over CallToolStream to the same
//! skill-host). Rounds alternate so that machine noise falls on both alike.
//!
//! Usage: gateway-bench --mimo PATH --registry HOST:PORT --skill-host HOST:PORT --skill NAME
//!                      [--rounds N] [--calls N]
//! The skill must have an `echo` tool taking {"text": ...} (the workspace's misbehaving-skill).
//! Prints a Markdown table on stdout, progress on stderr.

use clap::Parser;
use mimo_integration_tests::bench_stats::{median, percentile};
use mimo_proto::v1::CallToolRequest;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

#[derive(Debug, Parser)]
struct Args {
    /// The `mimo` binary.
    #[arg(long)]
    mimo: String,
    /// The registry the skill is registered with.
    #[arg(long)]
    registry: String,
    /// The skill-host serving it.
    #[arg(long)]
    skill_host: String,
    /// The skill's name.
    #[arg(long)]
    skill: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 2000)]
    calls: usize,
}

/// An MCP client over a child's stdio, one request at a time.
struct StdioClient {
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl StdioClient {
    async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.input.write_all(format!("{line}\n").as_bytes()).await?;
        loop {
            let line = self
                .output
                .next_line()
                .await?
                .ok_or_else(|| anyhow::anyhow!("mimo mcp closed its output"))?;
            let message: Value = serde_json::from_str(&line)?;
            if message["id"] == id {
                anyhow::ensure!(message.get("error").is_none(), "{message}");
                return Ok(message["result"].clone());
            }
        }
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let line = json!({"jsonrpc": "2.0", "method": method});
        self.input.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut child = Command::new(&args.mimo)
        .args(["mcp", "--no-memory", "--registry-address", &args.registry])
        .env("MIMO_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut gateway = StdioClient {
        input: child.stdin.take().unwrap(),
        output: BufReader::new(child.stdout.take().unwrap()).lines(),
        next_id: 0,
    };
    gateway
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "gateway-bench", "version": "1"}}),
        )
        .await?;
    gateway.notify("notifications/initialized").await?;
    let tool = format!("{}_echo", args.skill);
    let mut direct =
        mimo_proto::connect::skill_host(mimo_proto::connect::channel(&args.skill_host).await?);
    let request = CallToolRequest {
        skill: args.skill.clone(),
        tool: "echo".into(),
        arguments_json: r#"{"text":"x"}"#.into(),
        lease_id: 0,
    };
    let call = json!({"name": tool, "arguments": {"text": "x"}});
    // Warm both paths.
    for _ in 0..200 {
        direct.call_tool(request.clone()).await?;
        let result = gateway.request("tools/call", call.clone()).await?;
        anyhow::ensure!(result["isError"] != true, "{result}");
    }
    let (mut direct_p50, mut direct_p99, mut gateway_p50, mut gateway_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let mut latencies = Vec::with_capacity(args.calls);
        for _ in 0..args.calls {
            let started = Instant::now();
            direct.call_tool(request.clone()).await?;
            latencies.push(started.elapsed());
        }
        record(&mut latencies, &mut direct_p50, &mut direct_p99);
        let mut latencies = Vec::with_capacity(args.calls);
        for _ in 0..args.calls {
            let started = Instant::now();
            gateway.request("tools/call", call.clone()).await?;
            latencies.push(started.elapsed());
        }
        record(&mut latencies, &mut gateway_p50, &mut gateway_p99);
        eprintln!("gateway-bench: round {round}/{} done", args.rounds);
    }
    let (d50, d99) = (median(&mut direct_p50), median(&mut direct_p99));
    let (g50, g99) = (median(&mut gateway_p50), median(&mut gateway_p99));
    println!(
        "{} rounds x {} sequential calls; medians of the rounds' percentiles",
        args.rounds, args.calls
    );
    println!("| path | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    println!("| direct gRPC CallTool to the skill-host | {d50:.1} | {d99:.1} |");
    println!("| MCP tools/call through `mimo mcp` (stdio) | {g50:.1} | {g99:.1} |");
    println!(
        "added by the gateway: p50 {:.1} µs, p99 {:.1} µs",
        g50 - d50,
        g99 - d99
    );
    drop(gateway);
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ok(())
}

/// Adds the p50 and p99 of `latencies`, in µs, to the rounds' lists.
fn record(latencies: &mut [Duration], p50: &mut Vec<f64>, p99: &mut Vec<f64>) {
    latencies.sort();
    p50.push(percentile(latencies, 0.5).as_secs_f64() * 1e6);
    p99.push(percentile(latencies, 0.99).as_secs_f64() * 1e6);
}
