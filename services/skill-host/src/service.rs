//! The skill-host's gRPC service and its `serve` entry point.

use crate::config::SkillHostConfig;
use crate::deadline::call_timeout;
use crate::error::SkillHostError;
use crate::mcp;
use crate::registrar::{run_registrar, Registration};
use crate::skill::{run_skill, Skill, SkillTable};
use mimo_proto::v1::skill_host_server::SkillHost;
use mimo_proto::v1::{
    CallToolRequest, CallToolResponse, Gauge, GetSkillRequest, ListSkillsRequest,
    ListSkillsResponse, SkillState, SkillStatus,
};
use mimo_reporter::{Reporter, ReporterConfig};
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The gRPC face of a host's skills.
#[derive(Debug, Clone)]
pub struct SkillHostService {
    skills: Arc<SkillTable>,
    config: Arc<SkillHostConfig>,
}

/// Runs every configured skill, registers them, and serves calls on `listener` until
/// `shutdown`; then drains calls, revokes the lease and stops every skill.
pub async fn serve(
    config: SkillHostConfig,
    reporting: ReporterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let endpoint = advertised_endpoint(&config, &listener);
    let config = Arc::new(config);
    let skills: Arc<SkillTable> = Arc::new(
        config
            .skills
            .iter()
            .map(|(name, spec)| {
                let skill = Skill::new(name, spec.clone(), config.stderr_lines_kept);
                (name.clone(), Arc::new(skill))
            })
            .collect(),
    );
    // Background work outlives the listener: skills keep serving calls being drained.
    let background = CancellationToken::new();
    let catalog_changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    for skill in skills.values() {
        tasks.spawn(run_skill(
            skill.clone(),
            config.clone(),
            catalog_changed.clone(),
            background.clone(),
        ));
    }
    if let Some(registry_address) = &config.registry_address {
        let registration = Registration {
            registry_address: registry_address.clone(),
            endpoint: endpoint.clone(),
            lease_ttl: config.lease_ttl,
        };
        tasks.spawn(run_registrar(
            registration,
            skills.clone(),
            catalog_changed.clone(),
            background.clone(),
        ));
    }
    tasks.spawn(
        Reporter::new("skill-host", reporting, gauges(skills.clone())).run(background.clone()),
    );
    tracing::info!(%endpoint, skills = skills.len(), "skill-host serving");
    let service = SkillHostService { skills, config };
    let router = mimo_proto::serve::server().add_service(mimo_proto::serve::skill_host(service));
    let result = mimo_proto::serve::serve_router(router, listener, shutdown).await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("skill-host stopped");
    result
}

fn advertised_endpoint(config: &SkillHostConfig, listener: &TcpListener) -> String {
    if let Some(address) = &config.advertise_address {
        return mimo_proto::connect::normalize_address(address);
    }
    match listener.local_addr() {
        Ok(address) if address.ip().is_unspecified() => {
            format!("http://{}:{}", mimo_reporter::host_name(), address.port())
        }
        Ok(address) => format!("http://{address}"),
        Err(_) => String::new(),
    }
}

fn gauges(skills: Arc<SkillTable>) -> mimo_reporter::GaugeSource {
    Arc::new(move || {
        let count = |state: SkillState| skills.values().filter(|s| s.state() == state).count();
        let gauge = |name: &str, value: usize| Gauge {
            name: name.to_string(),
            value: value as f64,
        };
        vec![
            gauge("skill_host.skills", skills.len()),
            gauge("skill_host.skills_ready", count(SkillState::Ready)),
            gauge("skill_host.skills_failed", count(SkillState::Failed)),
            gauge(
                "skill_host.calls_in_flight",
                skills.values().map(|s| s.in_flight()).sum(),
            ),
            Gauge {
                name: "skill_host.late_answers".to_string(),
                value: skills.values().map(|s| s.late_answers()).sum::<u64>() as f64,
            },
        ]
    })
}

impl SkillHostService {
    fn skill(&self, name: &str) -> Result<&Arc<Skill>, SkillHostError> {
        self.skills
            .get(name)
            .ok_or_else(|| SkillHostError::SkillNotFound {
                skill: name.to_string(),
                configured: self.skills.keys().cloned().collect::<Vec<_>>().join(", "),
            })
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
        let timeout = call_timeout(
            request.metadata(),
            self.config.default_call_timeout,
            self.config.max_call_timeout,
        );
        let deadline = Instant::now() + timeout;
        let request = request.into_inner();
        let skill = self.skill(&request.skill)?;
        let connection = skill.connection_for(&request.tool)?;
        let arguments = parse_arguments(&request.arguments_json)?;
        let started = Instant::now();
        let result = mcp::call_tool(&connection, &request.tool, arguments, deadline).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(response) => {
                tracing::debug!(skill = %request.skill, tool = %request.tool, elapsed_ms, is_error = response.is_error, "tool called");
                Ok(Response::new(response))
            }
            Err(source) => {
                tracing::warn!(skill = %request.skill, tool = %request.tool, elapsed_ms, error = %source, "tool call failed");
                Err(SkillHostError::CallFailed {
                    skill: request.skill,
                    tool: request.tool,
                    source,
                }
                .into())
            }
        }
    }

    async fn list_skills(
        &self,
        _request: Request<ListSkillsRequest>,
    ) -> Result<Response<ListSkillsResponse>, Status> {
        Ok(Response::new(ListSkillsResponse {
            skills: self.skills.values().map(|s| s.snapshot()).collect(),
        }))
    }

    async fn get_skill(
        &self,
        request: Request<GetSkillRequest>,
    ) -> Result<Response<SkillStatus>, Status> {
        Ok(Response::new(
            self.skill(&request.into_inner().skill)?.snapshot(),
        ))
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
