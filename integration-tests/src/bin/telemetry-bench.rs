//! Benchmark of the telemetry service and of the reporter every service runs: reports
//! ingested per second by one telemetry service from many instances streaming at once (each
//! report a real one: process statistics and 24 gauges), and what making one report costs the
//! reporting process (reading /proc included), as a share of one core at the default
//! 10 s interval.
//!
//! Usage: telemetry-bench [--rounds 3] [--instances 64] [--seconds 5] [--samples 2000]

use clap::Parser;
use mimo_integration_tests::bench_stats::median;
use mimo_proto::v1::{Gauge, ListInstancesRequest, ResourceReport};
use mimo_reporter::{Reporter, ReporterConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Runs of each measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Instances streaming reports at once.
    #[arg(long, default_value_t = 64)]
    instances: usize,
    /// Seconds each ingest round streams.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Reports made per reporter-cost round.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
}

fn progress(message: impl AsRef<str>) {
    eprintln!("telemetry-bench: {}", message.as_ref());
}

/// A reporter with 24 gauges, like a busy service's.
fn reporter(name: &str) -> Reporter {
    let gauges: mimo_reporter::GaugeSource = Arc::new(|| {
        (0..24)
            .map(|n| Gauge {
                name: format!("bench.gauge_{n}"),
                value: n as f64,
                attributes: Default::default(),
            })
            .collect()
    });
    Reporter::new(
        name,
        ReporterConfig {
            telemetry_address: None,
            interval: Duration::from_secs(10),
        },
        gauges,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rates = Vec::new();
    for round in 1..=args.rounds {
        progress(format!(
            "ingest round {round}: {} instances for {} s",
            args.instances, args.seconds
        ));
        rates.push(ingest(&args).await?);
    }
    let mut costs = Vec::new();
    for round in 1..=args.rounds {
        progress(format!(
            "reporter cost round {round}: {} reports",
            args.samples
        ));
        costs.push(report_cost(args.samples));
    }
    let rate = median(&mut rates);
    let cost = median(&mut costs);
    println!(
        "{}",
        serde_json::json!({
            "system": "mimo telemetry ingest",
            "instances": args.instances,
            "reports_per_second_median": rate,
            "rounds": rates,
        })
    );
    println!(
        "{}",
        serde_json::json!({
            "system": "mimo reporter, one report (24 gauges, /proc read)",
            "microseconds_median": cost,
            "share_of_a_core_at_10s": cost / 10_000_000.0,
            "rounds": costs,
        })
    );
    Ok(())
}

/// Streams reports from `instances` clients at once for `seconds`; returns reports per
/// second as counted by the telemetry service itself.
async fn ingest(args: &Args) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(mimo_telemetry::serve(
        mimo_telemetry::TelemetryConfig::default(),
        ReporterConfig {
            telemetry_address: None,
            interval: Duration::from_secs(10),
        },
        listener,
        shutdown.clone(),
    ));
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let mut clients = Vec::new();
    for n in 0..args.instances {
        let address = address.clone();
        clients.push(tokio::spawn(async move {
            let template: ResourceReport = reporter(&format!("bench-{n}")).report();
            let channel = mimo_proto::connect::channel(&address).await?;
            let mut client = mimo_proto::connect::telemetry(channel);
            let reports = futures::stream::unfold(0_u64, move |sent| {
                let mut report = template.clone();
                async move {
                    (Instant::now() < stop).then(|| {
                        report.timestamp_unix_ms = sent as i64;
                        (report, sent + 1)
                    })
                }
            });
            client.report(reports).await?;
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for client in clients {
        client.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let channel = mimo_proto::connect::channel(&address).await?;
    let listed = mimo_proto::connect::telemetry(channel)
        .list_instances(ListInstancesRequest::default())
        .await?
        .into_inner();
    let received: u64 = listed
        .instances
        .iter()
        .filter(|status| {
            status
                .latest
                .as_ref()
                .and_then(|report| report.instance.as_ref())
                .is_some_and(|id| id.service.starts_with("bench-"))
        })
        .map(|status| status.reports_received)
        .sum();
    shutdown.cancel();
    server.await??;
    Ok(received as f64 / elapsed)
}

/// Microseconds one report takes to make, averaged over `samples`.
fn report_cost(samples: usize) -> f64 {
    let reporter = reporter("cost");
    let started = Instant::now();
    let mut gauges = 0;
    for _ in 0..samples {
        gauges += reporter.report().gauges.len();
    }
    assert!(gauges >= samples * 24);
    started.elapsed().as_secs_f64() * 1e6 / samples as f64
}
