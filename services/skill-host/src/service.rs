//! The skill-host's gRPC service and its `serve` entry point.

use crate::config::SkillHostConfig;
use crate::deadline::call_timeout;
use crate::error::SkillHostError;
use crate::group_records::GroupRecords;
use crate::mcp;
use crate::registered_leases::RegisteredLeases;
use crate::registrar::{run_registrar, Registration};
use crate::rpc::Progress;
use crate::skill::SkillRuntime;
use crate::skills_file::{load_skills_file, parse_skills};
use crate::supervisor::Supervisor;
use mimo_proto::v1::call_tool_event::Event;
use mimo_proto::v1::skill_host_server::SkillHost;
use mimo_proto::v1::{
    AddSkillRequest, CallToolEvent, CallToolRequest, CallToolResponse, Condition, Gauge,
    GetSkillRequest, ListSkillsRequest, ListSkillsResponse, ReloadSkillsRequest,
    ReloadSkillsResponse, RemoveSkillRequest, RemoveSkillResponse, RestartSkillRequest, SkillState,
    SkillStatus, ToolProgress,
};
use mimo_reporter::{Reporter, ReporterConfig};
use prost::Message;
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// The gRPC face of a host's skills.
#[derive(Debug, Clone)]
pub struct SkillHostService {
    supervisor: Arc<Supervisor>,
    config: Arc<SkillHostConfig>,
    leases: Arc<RegisteredLeases>,
    /// Tool calls counted per skill and tool, for telemetry.
    calls: Arc<crate::call_stats::CallStats>,
}

/// Why a skill-host could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state folder is unusable or held by another host.
    #[error(transparent)]
    State(#[from] crate::group_records::GroupRecordsError),
    /// The registry address is not usable.
    #[error("--registry-address: {0}")]
    Registry(#[from] mimo_proto::connect::ConnectError),
    /// The gRPC server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Ends what a killed earlier run left, runs every configured skill, registers them, and
/// serves calls on `listener` until `shutdown`; then drains calls, revokes the lease and
/// stops every skill. With a skills file, SIGHUP reloads it.
pub async fn serve(
    config: SkillHostConfig,
    reporting: ReporterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Listen for SIGHUP before anything else, so that it never ends the host.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let registry_addresses = config
        .registry_address
        .as_deref()
        .map(crate::registrar::registry_addresses)
        .transpose()?;
    let endpoint = advertised_endpoint(&config, &listener);
    let records = match &config.state_dir {
        Some(state_dir) => {
            let records = GroupRecords::open(state_dir)?;
            let leftovers = records.end_leftovers();
            if leftovers.records > 0 {
                tracing::warn!(records = leftovers.records, killed = ?leftovers.killed,
                    "ended the skill processes a previous run of this host left behind");
            }
            Some(Arc::new(records))
        }
        None => None,
    };
    let config = Arc::new(config);
    // Background work outlives the listener: skills keep serving calls being drained.
    let background = CancellationToken::new();
    let catalog_changed = Arc::new(Notify::new());
    let runtime = SkillRuntime {
        config: config.clone(),
        records,
        manifests: config
            .state_dir
            .as_deref()
            .map(crate::manifest::ManifestStore::new),
        catalog_changed: catalog_changed.clone(),
    };
    let supervisor = Arc::new(Supervisor::new(runtime, background.child_token()));
    supervisor.add_from_file(&config.skills).await;
    let mut tasks = JoinSet::new();
    let leases = Arc::new(RegisteredLeases::default());
    if let Some(registry_addresses) = registry_addresses {
        let registration = Registration {
            registry_addresses,
            endpoint: endpoint.clone(),
            lease_ttl: config.lease_ttl,
        };
        tasks.spawn(run_registrar(
            registration,
            supervisor.clone(),
            leases.clone(),
            catalog_changed.clone(),
            background.clone(),
        ));
    }
    let calls = Arc::new(crate::call_stats::CallStats::default());
    tasks.spawn(
        Reporter::new(
            "skill-host",
            reporting,
            gauges(supervisor.clone(), calls.clone()),
        )
        .with_conditions(conditions(supervisor.clone()))
        .run(background.clone()),
    );
    let service = SkillHostService {
        supervisor: supervisor.clone(),
        config: config.clone(),
        leases,
        calls,
    };
    match hangups {
        Ok(hangups) => {
            tasks.spawn(reload_on_hangup(
                hangups,
                service.clone(),
                background.clone(),
            ));
        }
        Err(error) => tracing::error!(%error, "cannot listen for SIGHUP; reload with ReloadSkills"),
    }
    tracing::info!(%endpoint, skills = config.skills.len(), "skill-host serving");
    // Calls in flight get `drain_timeout` after shutdown begins; then their skills stop.
    let drain = tokio::spawn({
        let supervisor = supervisor.clone();
        let shutdown = shutdown.clone();
        let drain_timeout = config.drain_timeout;
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(drain_timeout).await;
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "calls still running after the drain timeout; stopping their skills"
            );
            supervisor.stop_all();
        }
    });
    let router = mimo_proto::serve::server().add_service(mimo_proto::serve::skill_host(
        service,
        config.max_message_bytes,
    ));
    let result = mimo_proto::serve::serve_router(
        router,
        mimo_proto::v1::skill_host_server::SERVICE_NAME,
        listener,
        shutdown,
        // Past the drain timeout the skills are stopped, which ends their calls: allow for
        // each step of stopping them.
        config.drain_timeout + config.stop_grace * 2 + std::time::Duration::from_secs(1),
    )
    .await;
    drain.abort();
    supervisor.shutdown().await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("skill-host stopped");
    Ok(result?)
}

/// Reloads the skills file at each SIGHUP until `shutdown` (a host without one logs it).
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    service: SkillHostService,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangups.recv() => {
                if received.is_none() {
                    return;
                }
                if service.config.skills_file.is_none() {
                    tracing::warn!("SIGHUP ignored: this host was started without a skills file");
                    continue;
                }
                tracing::info!("SIGHUP: reloading the skills file");
                if let Err(error) = service.reload().await {
                    tracing::error!(%error, "SIGHUP reload refused");
                }
            }
        }
    }
}

/// This host's address for the registry, as `host:port`.
fn advertised_endpoint(config: &SkillHostConfig, listener: &TcpListener) -> String {
    if let Some(address) = &config.advertise_address {
        return address
            .strip_prefix("http://")
            .unwrap_or(address)
            .to_string();
    }
    match listener.local_addr() {
        Ok(address) if address.ip().is_unspecified() => {
            format!("{}:{}", mimo_reporter::host_name(), address.port())
        }
        Ok(address) => address.to_string(),
        Err(_) => String::new(),
    }
}

/// One `skill_failed` condition per skill the host gave up on: telemetry raises an alert
/// for each until the skill is restarted or removed.
fn conditions(supervisor: Arc<Supervisor>) -> mimo_reporter::ConditionSource {
    Arc::new(move || {
        supervisor
            .skills()
            .iter()
            .flat_map(|pool| {
                let many = pool.instances().len() > 1;
                pool.instances()
                    .iter()
                    .enumerate()
                    .filter(|(_, skill)| skill.state() == SkillState::Failed)
                    .map(move |(index, skill)| Condition {
                        name: "skill_failed".into(),
                        subject: if many {
                            format!("{}#{index}", pool.name())
                        } else {
                            pool.name().to_string()
                        },
                        message: skill.snapshot().error,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

fn gauges(
    supervisor: Arc<Supervisor>,
    calls: Arc<crate::call_stats::CallStats>,
) -> mimo_reporter::GaugeSource {
    Arc::new(move || {
        let mut gauges = host_gauges(&supervisor);
        gauges.extend(skill_gauges(&supervisor));
        gauges.extend(calls.gauges());
        gauges
    })
}

/// Each skill's calls in flight and waiting, with `mcp.server.name`.
fn skill_gauges(supervisor: &Supervisor) -> Vec<Gauge> {
    let mut gauges = Vec::new();
    for pool in supervisor.skills() {
        let connections: Vec<_> = pool
            .instances()
            .iter()
            .filter_map(|s| s.connection())
            .collect();
        let attributes: std::collections::HashMap<String, String> =
            [("mcp.server.name".to_string(), pool.name().to_string())].into();
        for (name, value) in [
            (
                "mcp.server.calls.in_flight",
                connections.iter().map(|c| c.in_flight()).sum::<usize>(),
            ),
            (
                "mcp.server.calls.waiting",
                connections.iter().map(|c| c.waiting()).sum::<usize>(),
            ),
        ] {
            gauges.push(Gauge {
                name: name.to_string(),
                value: value as f64,
                attributes: attributes.clone(),
            });
        }
    }
    gauges
}

/// The host's totals.
fn host_gauges(supervisor: &Supervisor) -> Vec<Gauge> {
    {
        let pools = supervisor.skills();
        let skills: Vec<_> = pools
            .iter()
            .flat_map(|pool| pool.instances().iter().cloned())
            .collect();
        let count = |state: SkillState| skills.iter().filter(|s| s.state() == state).count();
        let connections: Vec<_> = skills.iter().filter_map(|s| s.connection()).collect();
        let total = |counter: fn(&crate::rpc::RpcCounters) -> u64| {
            connections
                .iter()
                .map(|c| counter(c.counters()))
                .sum::<u64>()
        };
        let gauge = |name: &str, value: f64| Gauge {
            name: name.to_string(),
            value,
            attributes: Default::default(),
        };
        vec![
            gauge("skill_host.skills", pools.len() as f64),
            gauge("skill_host.instances", skills.len() as f64),
            gauge("skill_host.skills_ready", count(SkillState::Ready) as f64),
            gauge("skill_host.skills_failed", count(SkillState::Failed) as f64),
            gauge(
                "skill_host.skills_backoff",
                count(SkillState::Backoff) as f64,
            ),
            gauge(
                "skill_host.restarts",
                skills.iter().map(|s| f64::from(s.restarts())).sum(),
            ),
            gauge(
                "skill_host.calls_in_flight",
                connections.iter().map(|c| c.in_flight()).sum::<usize>() as f64,
            ),
            gauge(
                "skill_host.calls_waiting",
                connections.iter().map(|c| c.waiting()).sum::<usize>() as f64,
            ),
            gauge(
                "skill_host.late_answers",
                total(|c| c.late_answers.load(Ordering::Relaxed)) as f64,
            ),
            gauge(
                "skill_host.calls_refused_overloaded",
                total(|c| c.overloaded.load(Ordering::Relaxed)) as f64,
            ),
            gauge(
                "skill_host.bad_lines",
                total(|c| c.bad_lines.load(Ordering::Relaxed)) as f64,
            ),
            gauge(
                "skill_host.oversized_lines",
                total(|c| c.oversized_lines.load(Ordering::Relaxed)) as f64,
            ),
        ]
    }
}

/// Progress updates and the result buffered per streamed call.
const STREAM_BUFFER: usize = 32;

fn progress_event(update: Progress) -> CallToolEvent {
    CallToolEvent {
        event: Some(Event::Progress(ToolProgress {
            progress: update.progress,
            total: update.total,
            message: update.message,
        })),
    }
}

impl SkillHostService {
    /// The deadline of a call: the caller's, else the default, never past the maximum.
    fn deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        let timeout = call_timeout(
            metadata,
            self.config.default_call_timeout,
            self.config.max_call_timeout,
        );
        Instant::now() + timeout
    }

    /// Refuses a call routed by a registration (lease) the skill no longer has here.
    fn check_route(&self, request: &CallToolRequest) -> Result<(), SkillHostError> {
        if request.lease_id == 0 {
            return Ok(());
        }
        let now = self.leases.get(&request.skill);
        if now == Some(request.lease_id) {
            return Ok(());
        }
        Err(SkillHostError::StaleRoute {
            skill: request.skill.clone(),
            routed: request.lease_id,
            now: now.map_or_else(|| "none".to_string(), |lease| lease.to_string()),
        })
    }

    /// Runs one tool call until `deadline`, sending progress to `progress` when given.
    async fn run_call(
        &self,
        request: CallToolRequest,
        deadline: Instant,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<CallToolResponse, SkillHostError> {
        let pool = self.supervisor.get(&request.skill)?;
        self.check_route(&request)?;
        let arguments = parse_arguments(&request.arguments_json)?;
        let connection = pool.connection_for_call(&request.tool, deadline).await?;
        let started = Instant::now();
        // The MCP request as a client span of its own (OpenTelemetry's MCP conventions); its
        // context goes to the skill in the request's `_meta`.
        let span = tracing::info_span!(
            "mcp.client",
            otel.name = %format_args!("tools/call {}", request.tool),
            otel.kind = "client",
            mcp.method.name = "tools/call",
            mcp.server.name = %request.skill,
            mcp.tool.name = %request.tool,
        );
        let result = mcp::call_tool(&connection, &request.tool, arguments, deadline, progress)
            .instrument(span)
            .await;
        self.calls.record(
            &request.skill,
            &request.tool,
            started.elapsed(),
            result.as_ref().map_or(true, |response| response.is_error),
        );
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(response) => {
                tracing::debug!(skill = %request.skill, tool = %request.tool, elapsed_ms, is_error = response.is_error, "tool called");
                let bytes = response.encoded_len();
                let limit = self
                    .config
                    .max_message_bytes
                    .max(mimo_proto::MAX_MESSAGE_BYTES);
                if bytes > limit {
                    return Err(SkillHostError::ResultTooLarge {
                        skill: request.skill,
                        tool: request.tool,
                        bytes,
                        limit,
                    });
                }
                Ok(response)
            }
            Err(source) => {
                tracing::warn!(skill = %request.skill, tool = %request.tool, elapsed_ms, error = %source, "tool call failed");
                Err(SkillHostError::CallFailed {
                    skill: request.skill,
                    tool: request.tool,
                    source,
                })
            }
        }
    }

    /// Reads the skills file again and applies the difference.
    async fn reload(&self) -> Result<crate::supervisor::ReloadSummary, SkillHostError> {
        let Some(path) = &self.config.skills_file else {
            return Err(SkillHostError::NoSkillsFile);
        };
        let desired = load_skills_file(path, |name| std::env::var(name).ok())
            .map_err(SkillHostError::InvalidSkills)?;
        self.supervisor.reload(desired).await
    }
}

/// Parses call arguments: empty means `{}`, anything but a JSON object is refused.
fn parse_arguments(text: &str) -> Result<Map<String, Value>, SkillHostError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(arguments)) => Ok(arguments),
        Ok(other) => Err(SkillHostError::InvalidArguments(format!(
            "must be a JSON object, not {}",
            json_kind(&other)
        ))),
        Err(error) => Err(SkillHostError::InvalidArguments(format!(
            "is not valid JSON: {error}"
        ))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[tonic::async_trait]
impl SkillHost for SkillHostService {
    async fn call_tool(
        &self,
        request: Request<CallToolRequest>,
    ) -> Result<Response<CallToolResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let response = self.run_call(request.into_inner(), deadline, None).await?;
        Ok(Response::new(response))
    }

    type CallToolStreamStream = ReceiverStream<Result<CallToolEvent, Status>>;

    async fn call_tool_stream(
        &self,
        request: Request<CallToolRequest>,
    ) -> Result<Response<Self::CallToolStreamStream>, Status> {
        let deadline = self.deadline(request.metadata());
        let request = request.into_inner();
        // Refuse what cannot run before the stream opens.
        self.supervisor.get(&request.skill)?;
        self.check_route(&request)?;
        parse_arguments(&request.arguments_json)?;
        let (events, receiver) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let (progress, mut updates) = mpsc::channel(STREAM_BUFFER);
            let call = service.run_call(request, deadline, Some(progress));
            tokio::pin!(call);
            loop {
                tokio::select! {
                    // The caller closed the stream: dropping the call cancels it at the skill.
                    () = events.closed() => return,
                    Some(update) = updates.recv() => {
                        // A caller that reads too slowly misses updates, never the result.
                        let _ = events.try_send(Ok(progress_event(update)));
                    }
                    outcome = &mut call => {
                        while let Ok(update) = updates.try_recv() {
                            let _ = events.try_send(Ok(progress_event(update)));
                        }
                        let last = outcome
                            .map(|result| CallToolEvent { event: Some(Event::Result(result)) })
                            .map_err(Status::from);
                        let _ = events.send(last).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn list_skills(
        &self,
        _request: Request<ListSkillsRequest>,
    ) -> Result<Response<ListSkillsResponse>, Status> {
        Ok(Response::new(ListSkillsResponse {
            skills: self
                .supervisor
                .skills()
                .iter()
                .map(|s| s.snapshot())
                .collect(),
        }))
    }

    async fn get_skill(
        &self,
        request: Request<GetSkillRequest>,
    ) -> Result<Response<SkillStatus>, Status> {
        Ok(Response::new(
            self.supervisor.get(&request.into_inner().skill)?.snapshot(),
        ))
    }

    async fn add_skill(
        &self,
        request: Request<AddSkillRequest>,
    ) -> Result<Response<SkillStatus>, Status> {
        let request = request.into_inner();
        let entry: Value = serde_json::from_str(&request.entry_json).map_err(|error| {
            SkillHostError::InvalidEntry(format!("entry_json is not valid JSON: {error}"))
        })?;
        let mut entries = Map::new();
        entries.insert(request.name.clone(), entry);
        let mut parsed = parse_skills(Value::Object(entries), |name| std::env::var(name).ok())
            .map_err(|error| SkillHostError::InvalidEntry(error.to_string()))?;
        let spec = parsed.remove(&request.name).ok_or_else(|| {
            SkillHostError::InvalidEntry(format!("skill {:?}: the entry is disabled", request.name))
        })?;
        let skill = self.supervisor.add(&request.name, spec).await?;
        tracing::info!(skill = %request.name, "skill added");
        Ok(Response::new(skill.snapshot()))
    }

    async fn remove_skill(
        &self,
        request: Request<RemoveSkillRequest>,
    ) -> Result<Response<RemoveSkillResponse>, Status> {
        self.supervisor.remove(&request.into_inner().skill).await?;
        Ok(Response::new(RemoveSkillResponse {}))
    }

    async fn restart_skill(
        &self,
        request: Request<RestartSkillRequest>,
    ) -> Result<Response<SkillStatus>, Status> {
        let skill = self.supervisor.restart(&request.into_inner().skill).await?;
        Ok(Response::new(skill.snapshot()))
    }

    async fn reload_skills(
        &self,
        _request: Request<ReloadSkillsRequest>,
    ) -> Result<Response<ReloadSkillsResponse>, Status> {
        let summary = self.reload().await?;
        Ok(Response::new(ReloadSkillsResponse {
            added: summary.added,
            removed: summary.removed,
            changed: summary.changed,
            unchanged: summary.unchanged,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_a_json_object() {
        assert!(parse_arguments("").unwrap().is_empty());
        assert_eq!(parse_arguments(r#"{"a":1}"#).unwrap()["a"], 1);
        let not_json = parse_arguments("{oops").unwrap_err().to_string();
        assert!(not_json.contains("not valid JSON"), "{not_json}");
        let array = parse_arguments("[1]").unwrap_err().to_string();
        assert!(
            array.contains("must be a JSON object, not an array"),
            "{array}"
        );
    }
}
