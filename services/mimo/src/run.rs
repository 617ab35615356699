//! Service commands: `mimo up` runs all four services in one process; `mimo registry`,
//! `skill-host`, `memory` and `telemetry` run one each. Everything is validated before any
//! port is bound; SIGINT/SIGTERM stop gracefully and a second signal exits at once.

use crate::settings::Effective;
use anyhow::Context;
use mimo_reporter::ReporterConfig;
use mimo_skill_host::SkillHostConfig;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs every service on loopback in this process until a signal.
pub async fn up(settings: Effective, ready_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let skill_host_config = skill_host_config(&settings)?;
    let memory = open_memory(&settings).await?;
    let registry_listener = bind("registry", &settings.registry_listen).await?;
    let skill_host_listener = bind("skill-host", &settings.skill_host_listen).await?;
    let memory_listener = bind("memory", &settings.memory_listen).await?;
    let telemetry_listener = bind("telemetry", &settings.telemetry_listen).await?;
    let telemetry_http = match &settings.telemetry_http_listen {
        Some(address) => Some(bind("telemetry HTTP", address).await?),
        None => None,
    };
    let registry_address = local_address(&registry_listener)?;
    let telemetry_address = local_address(&telemetry_listener)?;
    let reporting = ReporterConfig {
        telemetry_address: Some(telemetry_address.clone()),
        interval: settings.report_interval,
    };
    let skill_host_config = SkillHostConfig {
        registry_address: Some(registry_address.clone()),
        ..skill_host_config
    };
    if let Some(path) = &ready_file {
        let addresses = serde_json::json!({
            "registry": registry_address,
            "skill_host": local_address(&skill_host_listener)?,
            "memory": local_address(&memory_listener)?,
            "telemetry": telemetry_address,
            "telemetry_http": telemetry_http.as_ref().map(local_address).transpose()?,
        });
        write_ready_file(path, &addresses.to_string())?;
    }
    tracing::info!(
        registry = %registry_address,
        skill_host = %local_address(&skill_host_listener)?,
        memory = %local_address(&memory_listener)?,
        telemetry = %telemetry_address,
        database = %settings.database,
        "mimo is up; press Ctrl-C to stop"
    );
    // The skill-host stops first, so that it can revoke its lease while the registry runs.
    let skill_host_shutdown = CancellationToken::new();
    let others_shutdown = CancellationToken::new();
    stop_on_signal(skill_host_shutdown.clone());
    let mut skill_host = tokio::spawn(boxed(mimo_skill_host::serve(
        skill_host_config,
        reporting.clone(),
        skill_host_listener,
        skill_host_shutdown.clone(),
    )));
    let mut others = JoinSet::new();
    let token = others_shutdown.clone();
    let with_name = |name: &'static str, serve: ServeFuture| async move { (name, serve.await) };
    others.spawn(with_name(
        "registry",
        boxed(mimo_registry::serve(
            registry_config(&settings),
            reporting.clone(),
            registry_listener,
            token.clone(),
        )),
    ));
    others.spawn(with_name(
        "memory",
        boxed(mimo_memory::serve(
            memory,
            reporting.clone(),
            memory_listener,
            token.clone(),
        )),
    ));
    others.spawn(with_name(
        "telemetry",
        boxed(mimo_telemetry::serve_with_http(
            settings.telemetry.clone(),
            reporting,
            telemetry_listener,
            telemetry_http,
            token,
        )),
    ));
    // Any service ending, by signal or by failure, stops the whole process.
    let mut failed = false;
    let skill_host_ended = tokio::select! {
        joined = &mut skill_host => {
            failed |= report_end("skill-host", joined);
            true
        }
        Some(joined) = others.join_next() => {
            failed |= report_joined(joined);
            false
        }
    };
    if !skill_host_ended {
        skill_host_shutdown.cancel();
        failed |= report_end("skill-host", skill_host.await);
    }
    others_shutdown.cancel();
    while let Some(joined) = others.join_next().await {
        failed |= report_joined(joined);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

type ServeResult = anyhow::Result<()>;
type ServeFuture = std::pin::Pin<Box<dyn Future<Output = ServeResult> + Send>>;

/// One service's `serve` future, with its error made an [`anyhow::Error`].
fn boxed<E>(serve: impl Future<Output = Result<(), E>> + Send + 'static) -> ServeFuture
where
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move { serve.await.map_err(anyhow::Error::from) })
}

/// Runs the registry alone.
pub async fn registry(settings: Effective) -> anyhow::Result<ExitCode> {
    let listener = bind("registry", &settings.registry_listen).await?;
    run_alone("registry", |shutdown| {
        mimo_registry::serve(
            registry_config(&settings),
            reporting(&settings),
            listener,
            shutdown,
        )
    })
    .await
}

/// Runs the skill-host alone, registering with the configured registry.
pub async fn skill_host(settings: Effective) -> anyhow::Result<ExitCode> {
    let config = SkillHostConfig {
        registry_address: Some(settings.registry_address.clone()),
        ..skill_host_config(&settings)?
    };
    let listener = bind("skill-host", &settings.skill_host_listen).await?;
    run_alone("skill-host", |shutdown| {
        mimo_skill_host::serve(config, reporting(&settings), listener, shutdown)
    })
    .await
}

/// Runs the memory service alone.
pub async fn memory(settings: Effective) -> anyhow::Result<ExitCode> {
    let store = open_memory(&settings).await?;
    let listener = bind("memory", &settings.memory_listen).await?;
    run_alone("memory", |shutdown| {
        mimo_memory::serve(store, reporting(&settings), listener, shutdown)
    })
    .await
}

/// Runs the telemetry service alone; it reports on itself to itself unless told otherwise.
pub async fn telemetry(settings: Effective) -> anyhow::Result<ExitCode> {
    let listener = bind("telemetry", &settings.telemetry_listen).await?;
    let http = match &settings.telemetry_http_listen {
        Some(address) => Some(bind("telemetry HTTP", address).await?),
        None => None,
    };
    run_alone("telemetry", |shutdown| {
        mimo_telemetry::serve_with_http(
            settings.telemetry.clone(),
            reporting(&settings),
            listener,
            http,
            shutdown,
        )
    })
    .await
}

/// Runs the MCP gateway: over stdio, or over streamable HTTP with `--http`.
pub async fn mcp(settings: Effective, args: crate::cli::McpArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.rate_limit > 0.0 && args.rate_limit.is_finite() && args.rate_burst >= 1,
        "--rate-limit must be a positive number and --rate-burst at least 1"
    );
    anyhow::ensure!(
        args.http.is_some() || (args.api_keys.is_none() && args.allowed_origins.is_empty()),
        "--api-keys and --allowed-origin apply to --http only; stdio has one client, the process that started mimo mcp"
    );
    anyhow::ensure!(
        args.http.is_none() || !mimo_proto::security::tls_enabled(),
        "--http serves plaintext HTTP only, and with TLS configured nothing listens in plaintext: \
         run mimo mcp over stdio, or put a TLS-terminating proxy in front of a gateway without TLS settings"
    );
    let api_keys = args
        .api_keys
        .as_deref()
        .map(mimo_gateway::ApiKeys::load)
        .transpose()?;
    let config = mimo_gateway::GatewayConfig {
        registry_address: settings.registry_address.clone(),
        memory_address: (!args.no_memory).then(|| settings.memory_address.clone()),
        call_timeout: Duration::from_millis(args.call_timeout_ms.max(1)),
        reporting: reporting(&settings),
    };
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
    let gateway = mimo_gateway::Gateway::start(&config, shutdown.clone())?;
    let finishing = gateway.clone();
    match args.http {
        None => {
            tracing::info!(registry = %config.registry_address, memory = ?config.memory_address, "serving MCP over stdio");
            gateway.serve_stdio(shutdown.clone()).await?;
        }
        Some(address) => {
            let listener = bind("MCP gateway", &address).await?;
            let http = mimo_gateway::HttpConfig {
                api_keys,
                rate_limit: mimo_gateway::RateLimit {
                    per_second: args.rate_limit,
                    burst: args.rate_burst,
                },
                max_body_bytes: args.max_body_bytes,
                allowed_hosts: args.allowed_hosts,
                allowed_origins: args.allowed_origins,
            };
            mimo_gateway::serve_http(gateway, http, listener, shutdown.clone()).await?;
        }
    }
    finishing.finish(&shutdown).await;
    Ok(ExitCode::SUCCESS)
}

async fn run_alone<F, Fut, E>(name: &str, serve: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
    serve(shutdown)
        .await
        .with_context(|| format!("{name} stopped with an error"))?;
    Ok(ExitCode::SUCCESS)
}

fn registry_config(settings: &Effective) -> mimo_registry::RegistryConfig {
    let (max_leases, max_skills, max_tools) = settings.registry_limits;
    mimo_registry::RegistryConfig {
        etcd: settings.registry_etcd.clone(),
        max_leases,
        max_skills,
        max_tools,
        ..mimo_registry::RegistryConfig::default()
    }
}

fn reporting(settings: &Effective) -> ReporterConfig {
    ReporterConfig {
        telemetry_address: Some(settings.telemetry_address.clone()),
        interval: settings.report_interval,
    }
}

fn skill_host_config(settings: &Effective) -> anyhow::Result<SkillHostConfig> {
    let skills = match &settings.skills {
        Some(path) => mimo_skill_host::load_skills_file(path, |name| std::env::var(name).ok())?,
        None => {
            tracing::warn!("no skills file (give --skills FILE or create ./skills.json); the skill-host runs no skill");
            BTreeMap::new()
        }
    };
    Ok(SkillHostConfig {
        skills,
        skills_file: settings.skills.clone(),
        state_dir: Some(settings.data_dir.join("skill-host")),
        advertise_address: settings.advertise_address.clone(),
        lease_ttl: settings.lease_ttl,
        initialize_timeout: settings.skill_init_timeout,
        max_restarts: settings.skill_max_restarts,
        restart_window: settings.skill_restart_window,
        lazy_idle_timeout: settings.skill_lazy_idle,
        max_skills: settings.max_skills,
        max_message_bytes: settings.skill_max_message_bytes,
        max_in_flight_per_skill: settings.skill_max_in_flight,
        max_waiting_per_skill: settings.skill_max_waiting,
        ..SkillHostConfig::default()
    })
}

async fn open_memory(settings: &Effective) -> anyhow::Result<mimo_memory::MemoryStore> {
    mimo_memory::open(settings.memory.config(&settings.database).await?)
        .await
        .with_context(|| format!("cannot open the memory database {}", settings.database))
}

/// Writes the file whole under a temporary name first, so readers never see half of it.
fn write_ready_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write the ready file {}", path.display()))
}

async fn bind(service: &str, address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {service}"))
}

fn local_address(listener: &TcpListener) -> anyhow::Result<String> {
    Ok(listener.local_addr()?.to_string())
}

fn report_joined(joined: Result<(&str, ServeResult), tokio::task::JoinError>) -> bool {
    match joined {
        Ok((name, result)) => report_end(name, Ok(result)),
        Err(error) => report_end("a service", Err(error)),
    }
}

fn report_end(name: &str, joined: Result<ServeResult, tokio::task::JoinError>) -> bool {
    match joined {
        Ok(Ok(())) => false,
        Ok(Err(error)) => {
            tracing::error!(service = name, error = %format!("{error:#}"), "service failed");
            true
        }
        Err(error) => {
            tracing::error!(service = name, %error, "service panicked");
            true
        }
    }
}

/// Cancels `token` on the first SIGINT or SIGTERM; exits at once on the second.
fn stop_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping; send the signal again to exit at once");
        token.cancel();
        wait_for_signal().await;
        let groups = mimo_skill_host::kill_every_skill_group();
        tracing::warn!(skill_groups_killed = groups, "second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
